"""K models of one architecture as one batched model (``torch.func``: stacked parameters,
``functional_call``, ``vmap``).

The K models' parameters live in one [K, P] buffer, row k holding model k's parameters
flattened; each parameter the forward pass sees is a [K, …] view of it (a leaf for
autograd), so the optimizer steps all of them with one pass over the buffer. Buffers (batch
norm's running statistics) are stacked too: every model keeps its own. The forward pass
runs one template copy of the architecture, in which every :class:`trainlab.nn.Dropout` is
replaced by :class:`_MaskDropout`, a layer that multiplies by a mask drawn beforehand: for
the layers of trainlab's builders as one wide layer per layer (:mod:`trainlab.sweep.wide`),
for any other model as ``vmap`` over ``functional_call`` of the template. The masks:

* each model has its own ``torch.Generator``, started from the global random state its
  sequential run has when training starts (after the model was built);
* masks are drawn per model, layer after layer, reproducing the call
  ``trainlab.nn.Dropout`` makes (``bernoulli_(1 − p)`` then ``÷ (1 − p)``, as ``F.dropout``
  on a CPU; or ``torch.bernoulli`` of a ``1 − p`` tensor for ``scale_at_test``) from the
  uniform draws it consumes (see :meth:`StackedModel.mask`); a model with p = 0 has no
  Dropout in its sequential run, draws nothing and gets a mask of ones.

So on a CPU every model sees the masks of its sequential run. (On a GPU ``F.dropout`` uses a
fused kernel with its own random stream: there the masks are from the same distribution,
reproducible, but not those of a sequential run.) ``vmap`` runs with
``randomness="error"``: nothing inside it may draw random numbers.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from trainlab.errors import UserError
from trainlab.nn import Dropout

from . import _mt
from .wide import plan

__all__ = ["StackedModel", "ArchitectureError"]


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor | None:
    """Threads that draw dropout masks, one per torch thread (None with one thread).

    The draw of a mask is one serial kernel that releases the GIL, so the threads run
    at once; each model's generator is used by one thread at a time."""
    global _POOL
    n = torch.get_num_threads()
    if n < 2:
        return None
    if _POOL is None or _POOL._max_workers != n:
        if _POOL is not None:
            _POOL.shutdown(wait=True)
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="trainlab-dropout")
    return _POOL


@functools.cache
def uniform_draws_reproduce_bernoulli() -> bool:
    """Whether this torch's CPU ``bernoulli_(q)`` equals ``uniform_()`` on float64 < q, and
    ``torch.bernoulli`` of a float32 q tensor equals ``uniform_()`` on float32 < q, mask and
    generator state alike (as in torch 2.x: one uniform per element)."""
    n, q = 4099, 0.7
    for precision, bernoulli in (
        (torch.float64, lambda g: torch.empty(n).bernoulli_(q, generator=g)),
        (torch.float32, lambda g: torch.bernoulli(torch.full((n,), q), generator=g)),
    ):
        a, b = torch.Generator().manual_seed(12345), torch.Generator().manual_seed(12345)
        mask = bernoulli(a).bool()
        u = torch.empty(n, dtype=precision).uniform_(generator=b)
        threshold = torch.tensor(q, dtype=precision)  # float32(q) for the float32 tensor
        if not (torch.equal(mask, u < threshold) and torch.equal(a.get_state(), b.get_state())):
            return False
    return True


class ArchitectureError(UserError, ValueError):
    """The models given to :class:`StackedModel` do not share one architecture."""


class _MaskDropout(nn.Module):
    """:class:`trainlab.nn.Dropout` inside the stack: training multiplies by ``mask``
    (drawn outside ``vmap``, already scaled for the mode); eval multiplies by ``keep``
    (= 1 − p) for ``scale_at_test`` and passes the input for ``inverted``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.register_buffer("mask", torch.ones(()), persistent=False)
        self.register_buffer("keep", torch.ones(()), persistent=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training:
            return input * self.mask
        if self.mode == "scale_at_test":
            return input * self.keep
        return input


def _signature(model: nn.Module) -> list[tuple]:
    """What two models must share to be stacked: module names and types with their
    settings, and every parameter's and buffer's name, shape and dtype. Dropout layers are
    left out (they hold nothing, and a model built with p = 0 has none)."""
    sig: list[tuple] = []
    for name, module in model.named_modules():
        if not isinstance(module, Dropout):
            sig.append((name, type(module).__name__, module.extra_repr()))
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        sig.append((name, tuple(t.shape), t.dtype))
    return sig


def _dropouts(model: nn.Module) -> dict[str, Dropout]:
    return {n: m for n, m in model.named_modules() if isinstance(m, Dropout)}


class StackedModel:
    """K models of one architecture, trained and evaluated as one.

    Parameters
    ----------
    models : sequence of nn.Module
        The K models, with their initial weights. They must have the same modules (by
        name, type and settings), parameters and buffers. Their trainlab Dropout layers
        may differ in p; a model without any (built with p = 0) stacks with models that
        have them, and has p = 0 there.
    rng_states : sequence of torch.ByteTensor, optional
        Each model's dropout random state: the ``torch.get_rng_state()`` its sequential
        run has when training starts. Default: the current global state for every model.
    device : torch.device or str, optional
        Where the stack lives (default: the models' device).

    Raises
    ------
    ArchitectureError
        When the models differ in anything but dropout p (the message names the first
        difference).
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        rng_states: Sequence[torch.Tensor] | None = None,
        device: torch.device | str | None = None,
    ):
        models = list(models)
        if not models:
            raise ValueError("StackedModel needs at least one model")
        first = _signature(models[0])
        for k, m in enumerate(models[1:], start=1):
            sig = _signature(m)
            if sig != first:
                a, b = next((a, b) for a, b in zip(first + [None], sig + [None]) if a != b)
                raise ArchitectureError(
                    f"model {k} has another architecture than model 0: {b} where model 0 has {a}"
                )
        # the template takes its Dropout layers from a model that has them
        with_dropout = max(models, key=lambda m: len(_dropouts(m)))
        layers = _dropouts(with_dropout)
        for k, m in enumerate(models):
            mine = _dropouts(m)
            if mine and [(n, d.mode) for n, d in mine.items()] != [
                (n, d.mode) for n, d in layers.items()
            ]:
                raise ArchitectureError(
                    f"model {k} has other Dropout layers than the others: "
                    f"{list(mine)} against {list(layers)} (or another dropout mode)"
                )
        self.K = len(models)
        ref = next(models[0].parameters())
        self.device = torch.device(device) if device is not None else ref.device
        self.dtype = ref.dtype

        self.template = copy.deepcopy(with_dropout).to(self.device)
        #: (module name, mode) of each Dropout layer, in the order the forward pass runs
        #: them (nn.Sequential: the order they were added)
        self.dropouts = [(name, d.mode) for name, d in layers.items()]
        self._layer = {name: j for j, (name, _) in enumerate(self.dropouts)}
        for name, mode in self.dropouts:
            parent, _, child = name.rpartition(".")
            owner = self.template.get_submodule(parent) if parent else self.template
            setattr(owner, child, _MaskDropout(mode))
        #: p of each model's Dropout layers (0 where it has none)
        self.p = [
            [_dropouts(m)[name].p if _dropouts(m) else 0.0 for name, _ in self.dropouts]
            for m in models
        ]

        names = [n for n, _ in models[0].named_parameters()]
        self.shapes = [tuple(p.shape) for p in models[0].parameters()]
        with torch.no_grad():
            self.theta = torch.stack(
                [
                    torch.cat([p.detach().reshape(-1) for p in m.parameters()]).to(self.device)
                    for m in models
                ]
            )
            self.buffers = {
                n: torch.stack([dict(m.named_buffers())[n] for m in models]).to(self.device)
                for n, _ in models[0].named_buffers()
            }
        self.names = names
        self._views()

        states = list(rng_states) if rng_states is not None else [torch.get_rng_state()] * self.K
        self.generators = []
        for state in states:
            g = torch.Generator(device=self.device)
            if self.device.type == "cpu":
                g.set_state(state)
            else:  # a GPU's dropout stream cannot match the sequential one: seed it from it
                cpu = torch.Generator().set_state(state)
                g.manual_seed(int(torch.randint(2**62, (1,), generator=cpu)))
            self.generators.append(g)
        self._features: dict[str, tuple[int, ...]] | None = None
        #: the generators' states while :mod:`._mt` draws the masks (None until then)
        self._twisters: _mt.Twisters | None = None
        #: the wide forward pass (trainlab's layers), or None: vmap over functional_call
        self.steps = plan(self.template, _MaskDropout)
        self._forward = vmap(self._one, in_dims=(0, 0, 0), randomness="error")
        self._forward_shared = vmap(self._one, in_dims=(0, 0, None), randomness="error")
        self.training = True

    # --- layout ---------------------------------------------------------------------------
    def _views(self) -> None:
        """Each parameter as a [K, …] view of ``theta`` that autograd treats as a leaf."""
        self.params: dict[str, torch.Tensor] = {}
        offset = 0
        for name, shape in zip(self.names, self.shapes):
            n = math.prod(shape)
            view = self.theta[:, offset : offset + n].view(self.K, *shape)
            self.params[name] = view.requires_grad_()
            offset += n
        self.n_params = offset

    def select(self, keep: Sequence[int]) -> None:
        """Keep only the models at positions ``keep`` (ascending), in that order."""
        keep = list(keep)
        idx = torch.tensor(keep, device=self.device)
        with torch.no_grad():
            self.theta = self.theta.index_select(0, idx)
            self.buffers = {n: b.index_select(0, idx) for n, b in self.buffers.items()}
        self.generators = [self.generators[i] for i in keep]
        if self._twisters is not None:
            self._twisters.select(keep)
        self.p = [self.p[i] for i in keep]
        self.K = len(keep)
        self._views()

    # --- modes ----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> StackedModel:
        self.training = mode
        self.template.train(mode)
        return self

    def eval(self) -> StackedModel:
        return self.train(False)

    # --- forward --------------------------------------------------------------------------
    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: torch.Tensor, per_model: bool = False) -> torch.Tensor:
        """The K models' outputs, [K, B, …], for inputs ``x``: one batch [B, …] that every
        model sees, or (``per_model=True``) one per model, [K, B, …]. In training mode
        each call draws the dropout masks of one step."""
        buffers = dict(self.buffers)
        for j, (name, _) in enumerate(self.dropouts):
            keep = [1.0 - p[j] for p in self.p]
            buffers[f"{name}.keep"] = torch.tensor(keep, device=self.device, dtype=self.dtype)
        if self.steps is None:
            if self.training and self.dropouts:
                batch = x.shape[1] if per_model else x.shape[0]
                buffers.update(self._masks(batch, x[0, :1] if per_model else x[:1]))
            forward = self._forward if per_model else self._forward_shared
            return forward(self.params, buffers, x)
        shared = not per_model
        for step in self.steps:
            x, shared = step(self, x, shared, buffers)
        return x.expand(self.K, *x.shape) if shared else x

    def _masks(self, batch: int, sample: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step's dropout masks for ``vmap``: per layer a [K, batch, …] tensor."""
        if self._features is None:
            self._features = self._feature_shapes(sample)
        return {
            f"{name}.mask": self.mask(
                name,
                torch.empty(
                    self.K, batch, *self._features[name], device=self.device, dtype=self.dtype
                ),
            )
            for name, _ in self.dropouts
        }

    def mask(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Dropout layer ``name``'s masks for one step, a tensor like ``like`` ([K, B, …],
        any memory layout): model k's are those its sequential run draws with its
        generator, so this is called for the layers in the order the forward pass runs them.

        On a CPU, for float32 models, :mod:`trainlab.sweep._mt` draws them: each model's
        generator (torch's MT19937) runs in compiled code and its mask is made from its
        words — what ``bernoulli_(q)`` (``F.dropout``) or ``torch.bernoulli`` of a float32
        q tensor (``scale_at_test``) would draw, and the generator state they would leave.
        Otherwise (other dtypes, a GPU, no numba) torch draws them: a CPU ``bernoulli_(q)``
        is a float64 ``uniform_`` < q on the same stream, ``torch.bernoulli`` of a float32
        tensor a float32 one (:func:`uniform_draws_reproduce_bernoulli` checks both once;
        if they differ, ``bernoulli_`` itself draws), the models shared out among the
        threads, then one comparison makes all K masks. Either way a mask comes scaled:
        ``1/q`` where kept for ``inverted`` (the float32 quotient ``F.dropout`` multiplies
        by), 1 for ``scale_at_test``, 0 where dropped. A model with p = 0 has no Dropout in
        its sequential run: it draws nothing and gets ones."""
        j = self._layer[name]
        mode = self.dropouts[j][1]
        keep = [1.0 - ps[j] for ps in self.p]
        inverted = mode == "inverted"
        if self.device.type == "cpu" and self.dtype == torch.float32 and _mt.available():
            return self._twister_mask(like, keep, inverted)
        # the precision the sequential call compares in: a float64 q, or a float32 q tensor
        precision = torch.float64 if inverted else torch.float32
        fast = self.device.type != "cpu" or (
            self.dtype == torch.float32 and uniform_draws_reproduce_bernoulli()
        )
        u = torch.empty_like(like, dtype=precision if fast else self.dtype)

        def draw(models: range) -> None:
            for k in models:
                g = self.generators[k]
                if keep[k] == 1.0:  # kept everywhere; nothing is drawn
                    u[k].fill_(0.0 if fast else 1.0)
                elif fast:
                    u[k].uniform_(generator=g)
                elif inverted:  # torch's own draws, 1 where kept
                    u[k].bernoulli_(keep[k], generator=g)
                else:
                    torch.bernoulli(torch.full_like(u[k], keep[k]), generator=g, out=u[k])

        pool = _pool() if self.device.type == "cpu" else None
        if pool is None or self.K < 2:
            draw(range(self.K))
        else:
            n = pool._max_workers
            bounds = [self.K * i // n for i in range(n + 1)]
            for future in [pool.submit(draw, range(a, b)) for a, b in zip(bounds, bounds[1:])]:
                future.result()
        shape = (self.K, *([1] * (like.dim() - 1)))
        q = torch.tensor(keep, dtype=precision).view(shape)
        if inverted:  # F.dropout: bernoulli_(q) ÷ q, the quotient taken in float32
            q32 = q.to(self.dtype)
            kept = torch.ones_like(q32).div_(q32)
        else:
            kept = torch.ones(shape, dtype=self.dtype)
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        hit = u < q.to(self.device) if fast else u != 0
        return torch.where(hit, kept.to(self.device), zero)

    def _twister_mask(self, like: torch.Tensor, keep: list[float], inverted: bool) -> torch.Tensor:
        """:meth:`mask` by :mod:`trainlab.sweep._mt`: the generators' own streams run in
        compiled code, each model's mask made as its words are drawn."""
        if self._twisters is None:
            self._twisters = _mt.Twisters(self.generators)
        out = torch.empty_like(like, dtype=torch.float32)
        if not (out.is_contiguous() or out.transpose(0, 1).is_contiguous()):
            out = torch.empty(like.shape, dtype=torch.float32)  # the kernel's layouts only
        q = torch.tensor(keep, dtype=torch.float64)
        if inverted:  # F.dropout multiplies by the float32 quotient 1/q
            q32 = q.to(torch.float32)
            kept = torch.ones_like(q32).div_(q32).tolist()
        else:
            kept = [1.0] * self.K
        self._twisters.masks(out, keep, kept, double=inverted)
        return out

    @torch.no_grad()
    def _feature_shapes(self, sample: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """The shape of one sample at each dropout layer (one eval-mode pass of model 0)."""
        shapes: dict[str, tuple[int, ...]] = {}
        hooks = [
            self.template.get_submodule(name).register_forward_pre_hook(
                lambda mod, args, name=name: shapes.__setitem__(name, tuple(args[0].shape[1:]))
            )
            for name, _ in self.dropouts
        ]
        was = self.template.training
        try:
            self.template.eval()
            one = {n: p[0].detach() for n, p in self.params.items()}
            bufs = {n: b[0].clone() for n, b in self.buffers.items()}
            functional_call(self.template, (one, bufs), (sample,))
        finally:
            self.template.train(was)
            for h in hooks:
                h.remove()
        return shapes

    # --- one model --------------------------------------------------------------------------
    def state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's ``state_dict`` (the keys of the models given), as copies."""
        state = {n: p[k].detach().clone() for n, p in self.params.items()}
        state.update({n: b[k].clone() for n, b in self.buffers.items()})
        return state

    def rows(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The parameters [K, P] and the stacked buffers, as they are now (not copies)."""
        return self.theta, self.buffers

    def load_rows(self, theta: torch.Tensor, buffers: dict[str, Any]) -> None:
        """Overwrite every model's parameters and buffers (same layout as :meth:`rows`)."""
        with torch.no_grad():
            self.theta.copy_(theta)
            for n, b in self.buffers.items():
                b.copy_(buffers[n])
