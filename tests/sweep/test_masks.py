"""The sweep's dropout masks are each model's sequential masks, drawn by either path.

trainlab.sweep._mt runs torch's CPU generator (MT19937) in compiled code; these tests hold
it to torch itself: the same masks as ``bernoulli_`` (``F.dropout``) and ``torch.bernoulli``
of a float32 tensor (``Dropout(mode="scale_at_test")``), and the same generator state after,
from any point of the stream, in every memory layout the stack uses. Without numba the
stack draws with torch (uniforms compared with q), which must give the same masks.
"""

from __future__ import annotations

import pytest
import torch

from trainlab import models
from trainlab.sweep import StackedModel, _mt
from trainlab.sweep import stack as stack_module


def test_the_compiled_kernel_is_in_use_here():
    # numba is a core dependency: without it (or if torch's generator changed) the sweep
    # would draw with torch, exactly but several times slower
    assert _mt.available() and _mt.reproduces_torch()


def _twins(k: int, offsets: list[int]) -> tuple[list[torch.Generator], list[torch.Generator]]:
    """Two identical sets of generators, each at its own point of its stream."""
    ours, theirs = [], []
    for i in range(k):
        a, b = torch.Generator().manual_seed(10 + i), torch.Generator().manual_seed(10 + i)
        for g in (a, b):
            if offsets[i]:
                torch.rand(offsets[i], generator=g)  # one word each
        ours.append(a)
        theirs.append(b)
    return ours, theirs


def _torch_mask(shape, q: float, g: torch.Generator, double: bool) -> torch.Tensor:
    if q >= 1.0:
        return torch.ones(shape)
    if double:
        return torch.empty(shape).bernoulli_(q, generator=g)
    return torch.bernoulli(torch.full(shape, q), generator=g)


LAYOUTS = {
    "models first": lambda k, b, f: torch.empty(k, b, *f),
    "batch first": lambda k, b, f: torch.empty(b, k, *f).transpose(0, 1),
}


@pytest.mark.parametrize("double", [True, False], ids=["bernoulli_", "bernoulli of a tensor"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("features", [(37,), (3, 11)])
def test_the_compiled_masks_are_torchs_draws_mask_for_mask_and_state_for_state(
    double, layout, features
):
    # fresh (the next draw twists), mid-stream, one word before a twist, two words before
    offsets = [0, 5, 623, 622, 1000]
    q = [0.7, 0.5, 1.0, 0.123456789, 0.999]
    ours, theirs = _twins(len(q), offsets)
    twisters = _mt.Twisters(ours)
    batch = 29
    for _ in range(6):  # 29 × 37 elements (two words each) a call: several twists
        out = LAYOUTS[layout](len(q), batch, features)
        twisters.masks(out, q, [2.0] * len(q), double)
        for k, g in enumerate(theirs):
            expected = _torch_mask((batch, *features), q[k], g, double)
            assert torch.equal(out[k], expected * 2.0), f"model {k}"
    for state, g in zip(twisters.states(), theirs):
        assert torch.equal(state, g.get_state())
    for g, state in zip(ours, twisters.states()):
        g.set_state(state)
    for a, b in zip(ours, theirs):  # the torch generators go on as torch's own
        assert torch.equal(torch.rand(7, generator=a), torch.rand(7, generator=b))


def test_masks_of_some_models_advance_only_theirs_and_a_bad_layout_is_refused():
    ours, theirs = _twins(3, [0, 0, 0])
    twisters = _mt.Twisters(ours)
    out = torch.zeros(3, 4, 5)
    twisters.masks(out, [0.5] * 3, [1.0] * 3, True, models=[1])
    assert torch.equal(out[1], _torch_mask((4, 5), 0.5, theirs[1], True))
    assert not out[0].any() and not out[2].any()
    states = twisters.states()
    assert torch.equal(states[0], theirs[0].get_state())  # untouched
    assert torch.equal(states[1], theirs[1].get_state())
    with pytest.raises(ValueError, match="contiguous"):
        twisters.masks(torch.empty(3, 4, 10)[:, :, ::2], [0.5] * 3, [1.0] * 3, True)


def _stack(ps: list[float]) -> tuple[StackedModel, list[torch.Tensor]]:
    nets, states = [], []
    for i, p in enumerate(ps):
        torch.manual_seed(i)
        nets.append(models.create("mlp", (6,), 3, hidden=[8, 8], dropout=p))
        states.append(torch.get_rng_state())
    return StackedModel(nets, states), states


def test_a_stack_draws_the_same_masks_without_numba_and_after_models_leave(monkeypatch):
    ps = [0.3, 0.0, 0.5, 0.2]
    like = torch.empty(10, 4, 8).transpose(0, 1)  # the layout after a batch norm
    fast, states = _stack(ps)
    slow, _ = _stack(ps)
    drawn = [fast.mask("fc1_dropout", like), fast.mask("fc2_dropout", like)]
    monkeypatch.setattr(_mt, "available", lambda: False)
    assert stack_module.uniform_draws_reproduce_bernoulli()
    assert torch.equal(slow.mask("fc1_dropout", like), drawn[0])
    assert torch.equal(slow.mask("fc2_dropout", like), drawn[1])
    monkeypatch.undo()
    # each model's masks are F.dropout's on its own generator (a model with p = 0 draws none)
    for k, (p, state) in enumerate(zip(ps, states)):
        g = torch.Generator().set_state(state)
        for mask in drawn:
            keep = 1.0 - p
            expected = torch.ones(10, 8) if p == 0 else _torch_mask((10, 8), keep, g, True) / keep
            assert torch.equal(mask[k], expected)
    # models 1 and 3 leave: the others' next masks come on from where theirs stopped
    fast.select([0, 2])
    like = torch.empty(2, 10, 8)
    nxt = fast.mask("fc1_dropout", like)
    for row, k in enumerate([0, 2]):
        g = torch.Generator().set_state(states[k])
        for _ in drawn:
            _torch_mask((10, 8), 1.0 - ps[k], g, True)
        assert torch.equal(nxt[row], _torch_mask((10, 8), 1.0 - ps[k], g, True) / (1.0 - ps[k]))


def test_a_kernel_that_fails_or_differs_falls_back_to_torch_with_one_warning(monkeypatch):
    def broken(*args):
        raise RuntimeError("no such CPU")

    try:
        for kernel, why in [(broken, "it failed: RuntimeError: no such CPU"), (None, "numba")]:
            _mt.available.cache_clear()
            _mt.reproduces_torch.cache_clear()
            monkeypatch.setattr(_mt, "_kernels", lambda kernel=kernel: kernel)
            with pytest.warns(RuntimeWarning, match=why):
                assert not _mt.available()
            monkeypatch.undo()
    finally:
        _mt.available.cache_clear()
        _mt.reproduces_torch.cache_clear()
    assert _mt.available()  # the real kernel again
