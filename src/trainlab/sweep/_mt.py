"""Dropout masks of many CPU generators at once, reproducing torch's draws (with numba).

A sequential run's dropout mask comes from torch's CPU generator, a 32-bit Mersenne
Twister (MT19937) read one word at a time behind a lock: about 1.5 ns a word, and a
``bernoulli_`` on a float tensor takes two words per element (8 ns an element with its
conversions). For K models that is the serial part of a sweep step. This module runs the
same generator in compiled code — the state twisted 624 words at a time with the loops
vectorized, the words tempered in bulk — and turns each model's words into its mask in the
same pass: about 0.9 ns an element instead of 8 (32 models' 100 × 100 masks in 0.29 ms).

What is reproduced, to the bit (checked against torch by :func:`reproduces_torch` before it
is used, and in tests/sweep):

* torch's ``mt19937`` engine (``at::mt19937``): ``left``/``next`` counters, the twist and
  the tempering, so the state written back is the one torch's own draws would leave;
* ``bernoulli_(q)`` with a Python float q (``F.dropout`` on a CPU): per element a 64-bit
  draw ``hi << 32 | lo`` of two words, ``u = (draw mod 2⁵³)·2⁻⁵³`` in float64, kept when
  ``u < q``;
* ``torch.bernoulli`` of a float32 tensor of q (``Dropout(mode="scale_at_test")``): one word
  per element, ``u = (word mod 2²⁴)·2⁻²⁴``, kept when ``u < float32(q)``.

The layout of torch's generator state (a 5056-byte ``ByteTensor``) is read and written at
the offsets of its ``CPUGeneratorImplState``: ``left`` (int32) at byte 8, ``next`` (uint64)
at 16 and the 624 state words (each a uint64) from 24. Without numba, or where the check
fails, :func:`available` is False and the masks are drawn with torch.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from trainlab.errors import first_line

__all__ = ["available", "reproduces_torch", "Twisters"]

N = 624  # MT19937's state words
STATE_BYTES = 5056
_LEFT, _NEXT, _WORDS = 8, 16, 24


@functools.cache
def _kernels():
    """The compiled mask kernel (numba's on-disk cache keeps it across processes), or None
    without numba."""
    try:
        from . import _mt_numba
    except ImportError:
        return None
    return _mt_numba.masks


class Twisters:
    """K torch CPU generators' MT19937 states as arrays the compiled kernel advances.

    Parameters
    ----------
    generators : sequence of torch.Generator
        CPU generators; their states are read now. While the masks are drawn here the
        generators themselves are not advanced: :meth:`states` gives the states torch's
        own draws would have left (``Generator.set_state`` takes them).
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        raw = [g.get_state().numpy() for g in generators]
        if any(r.size != STATE_BYTES for r in raw):
            raise ValueError("unknown torch generator state layout")
        self.raw = np.stack(raw)  # [K, 5056] bytes: the fields not used here kept as read
        self.state = np.ascontiguousarray(
            self.raw[:, _WORDS : _WORDS + 8 * N].view(np.uint64).astype(np.uint32)
        )
        self.counters = np.stack(
            [
                self.raw[:, _LEFT : _LEFT + 4].view(np.int32)[:, 0].astype(np.int64),
                self.raw[:, _NEXT : _NEXT + 8].view(np.uint64)[:, 0].astype(np.int64),
            ],
            axis=1,
        )

    def __len__(self) -> int:
        return len(self.state)

    def select(self, keep: Sequence[int]) -> None:
        keep = list(keep)
        self.raw, self.state, self.counters = self.raw[keep], self.state[keep], self.counters[keep]

    def masks(
        self,
        out: torch.Tensor,
        q: Sequence[float],
        kept: Sequence[float],
        double: bool,
        models: Sequence[int] | None = None,
    ) -> None:
        """Write model k's mask into ``out[k]`` for each k in ``models`` (default all).

        ``out`` is a float32 CPU tensor [K, B, …], contiguous or a ``transpose(0, 1)`` of a
        contiguous [B, K, …] (each model's [B, …] is drawn in row-major order, as torch
        draws a contiguous tensor); ``q[k]`` the keep probability, ``kept[k]`` the value a
        kept unit gets."""
        mem, models_first = _rows(out)
        idx = np.arange(len(self)) if models is None else np.asarray(models, dtype=np.int64)
        _kernels()(
            self.state,
            self.counters,
            idx,
            mem.numpy(),
            models_first,
            limits(q, double),
            np.asarray(kept, dtype=np.float32),
            double,
        )

    def states(self) -> list[torch.Tensor]:
        """Each generator's state as ``torch.Generator.get_state()`` gives it."""
        raw = self.raw.copy()
        raw[:, _WORDS : _WORDS + 8 * N] = self.state.astype(np.uint64).view(np.uint8)
        raw[:, _LEFT : _LEFT + 4] = self.counters[:, :1].astype(np.int32).view(np.uint8)
        raw[:, _NEXT : _NEXT + 8] = self.counters[:, 1:].astype(np.uint64).view(np.uint8)
        return [torch.from_numpy(r.copy()) for r in raw]


def _rows(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A [K, B, …] tensor as a C-contiguous 3-D array, [K, B, F] or (a transposed layout)
    [B, K, F], and whether the models come first."""
    if t.is_contiguous():
        return t.view(t.shape[0], t.shape[1], -1), True
    if t.transpose(0, 1).is_contiguous():
        return t.transpose(0, 1).view(t.shape[1], t.shape[0], -1), False
    raise ValueError("masks: tensors must be [K, B, …] contiguous or a transposed [B, K, …]")


def limits(q: Sequence[float], double: bool) -> np.ndarray:
    """Each model's integer threshold: a draw d (53 bits for ``double``, else 24) is kept
    when d < ⌈q·2^bits⌉, which is ``d·2^-bits < q`` exactly (q as float32 for the one-word
    draws, as torch compares them); -1 for q ≥ 1 (nothing drawn, all kept)."""
    q = np.asarray(q, dtype=np.float64)
    if not double:
        q = q.astype(np.float32).astype(np.float64)
    bits = 53 if double else 24
    out = np.ceil(np.ldexp(q, bits)).astype(np.int64)
    out[q >= 1.0] = -1
    return out


@functools.cache
def available() -> bool:
    """Whether numba is installed and the kernel reproduces this torch's draws; if not,
    one warning says so (the sweep then draws the masks with torch: the same, slower)."""
    why = None
    if _kernels() is None:
        why = "numba is not installed"
    else:
        try:
            if not reproduces_torch():
                why = "its masks differ from this torch's"
        except Exception as err:  # noqa: BLE001 - a failing kernel must not stop a sweep
            why = f"it failed: {type(err).__name__}: {first_line(err)}"
    if why is not None:
        warnings.warn(
            f"trainlab.sweep: the compiled dropout masks are not used ({why}); "
            "torch draws them instead (the same masks, several times slower)",
            RuntimeWarning,
            stacklevel=2,
        )
    return why is None


@functools.cache
def reproduces_torch() -> bool:
    """Whether the kernel's masks and final states equal torch's ``bernoulli_`` (float64
    q) and ``torch.bernoulli`` (float32 q tensor) on generators part-way through their
    stream, over more than one twist."""
    if _kernels() is None:
        return False
    shape, q = (3, 700), [0.7, 0.25, 1.0]
    for double in (True, False):
        ours = [torch.Generator().manual_seed(100 + k) for k in range(3)]
        theirs = [torch.Generator().manual_seed(100 + k) for k in range(3)]
        for g in ours + theirs:  # start mid-stream, not at a twist
            torch.rand(5, generator=g)
        twisters = Twisters(ours)
        out = torch.empty(3, *shape)
        twisters.masks(out, q, [1.0 / qk for qk in q], double)
        twisters.masks(out, q, [1.0 / qk for qk in q], double)  # a second call goes on
        for k, g in enumerate(theirs):
            for _ in range(2):
                if q[k] >= 1.0:
                    expected = torch.ones(shape)
                elif double:
                    expected = torch.empty(shape).bernoulli_(q[k], generator=g)
                else:
                    expected = torch.bernoulli(torch.full(shape, q[k]), generator=g)
            if not torch.equal(out[k] != 0, expected.bool()):
                return False
        for state, g in zip(twisters.states(), theirs):
            if not torch.equal(state, g.get_state()):
                return False
    return True
