"""The engine every trainlab optimizer runs on.

An optimizer family (``sgd.py``, ``rmsprop.py``, ``adam.py``) is three things:

* its hyperparameters: trainlab's defaults and the overrides of each framework's
  convention (``DEFAULTS``, ``CONVENTIONS``);
* the state one parameter needs (``state_keys``);
* its update equation (``update``), written once, line by line like the slide, with
  tensor methods only (``mul_``, ``lerp_``, ``addcdiv_`` …).

The equation never knows how the parameters are laid out. An *implementation* decides
that and calls the same ``update``:

* ``"reference"`` calls it once per parameter tensor;
* ``"foreach"`` calls it once per (device, dtype, step) bucket, on :class:`TensorList`
  objects whose methods dispatch to torch's multi-tensor ``torch._foreach_*`` kernels;
* a ``"flat"`` implementation only has to call it once on one contiguous buffer per
  bucket (parameters, gradients and state as views of it): it is registered in
  :data:`IMPLEMENTATIONS` like the two above, and no equation changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

__all__ = ["Optimizer", "TensorList", "CONVENTIONS", "IMPLEMENTATIONS"]

#: The frameworks whose conventions every optimizer can reproduce step for step.
CONVENTIONS = ("lecture", "torch", "keras", "optax")


class TensorList:
    """A list of tensors that answers the tensor methods of an update equation.

    Each method runs one ``torch._foreach_*`` kernel over all the tensors, so an
    equation written for one tensor runs unchanged on a whole bucket of them.
    """

    __slots__ = ("tensors",)

    def __init__(self, tensors: Sequence[torch.Tensor]):
        self.tensors = list(tensors)

    @staticmethod
    def _unwrap(x: Any) -> Any:
        return x.tensors if isinstance(x, TensorList) else x

    def __len__(self) -> int:
        return len(self.tensors)

    # in place -------------------------------------------------------------------------
    def mul_(self, other: Any) -> TensorList:
        torch._foreach_mul_(self.tensors, self._unwrap(other))
        return self

    def div_(self, other: Any) -> TensorList:
        torch._foreach_div_(self.tensors, self._unwrap(other))
        return self

    def add_(self, other: Any, alpha: float = 1.0) -> TensorList:
        if isinstance(other, TensorList):
            torch._foreach_add_(self.tensors, other.tensors, alpha=alpha)
        else:
            torch._foreach_add_(self.tensors, other * alpha)
        return self

    def sub_(self, other: TensorList) -> TensorList:
        torch._foreach_sub_(self.tensors, other.tensors)
        return self

    def lerp_(self, end: TensorList, weight: float) -> TensorList:
        torch._foreach_lerp_(self.tensors, end.tensors, weight)
        return self

    def addcmul_(self, a: TensorList, b: TensorList, value: float = 1.0) -> TensorList:
        torch._foreach_addcmul_(self.tensors, a.tensors, b.tensors, value)
        return self

    def addcdiv_(self, a: TensorList, b: TensorList, value: float = 1.0) -> TensorList:
        torch._foreach_addcdiv_(self.tensors, a.tensors, b.tensors, value)
        return self

    def sqrt_(self) -> TensorList:
        torch._foreach_sqrt_(self.tensors)
        return self

    def clamp_min_(self, low: float) -> TensorList:
        torch._foreach_clamp_min_(self.tensors, low)
        return self

    def copy_(self, other: TensorList) -> TensorList:
        torch._foreach_copy_(self.tensors, other.tensors)
        return self

    def maximum_(self, other: TensorList) -> TensorList:
        torch._foreach_maximum_(self.tensors, other.tensors)
        return self

    # out of place ---------------------------------------------------------------------
    def add(self, other: Any, alpha: float = 1.0) -> TensorList:
        if isinstance(other, TensorList):
            return TensorList(torch._foreach_add(self.tensors, other.tensors, alpha=alpha))
        return TensorList(torch._foreach_add(self.tensors, other * alpha))

    def div(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_div(self.tensors, self._unwrap(other)))

    def sqrt(self) -> TensorList:
        return TensorList(torch._foreach_sqrt(self.tensors))

    def addcmul(self, a: TensorList, b: TensorList, value: float = 1.0) -> TensorList:
        return TensorList(torch._foreach_addcmul(self.tensors, a.tensors, b.tensors, value))


def maximum_(a: Any, b: Any) -> Any:
    """``a ← max(a, b)`` element-wise, in place, for a tensor or a :class:`TensorList`."""
    if isinstance(a, TensorList):
        return a.maximum_(b)
    return torch.maximum(a, b, out=a)


# --- implementations ----------------------------------------------------------------------
# Each takes the optimizer, a group, and the parameters of that group that have a
# gradient, with their gradients and state dicts (step already advanced).


def _step_reference(opt: Optimizer, group: dict, params: list, grads: list, states: list):
    for p, g, state in zip(params, grads, states):
        opt.update(p, g, state, group, state["step"])


def _step_foreach(opt: Optimizer, group: dict, params: list, grads: list, states: list):
    buckets: dict[tuple, list[int]] = {}
    for i, (p, state) in enumerate(zip(params, states)):
        buckets.setdefault((p.device, p.dtype, state["step"]), []).append(i)
    for (_, _, step), idx in buckets.items():
        keys = [k for k in states[idx[0]] if k != "step"]
        bucket_state = {k: TensorList([states[i][k] for i in idx]) for k in keys}
        opt.update(
            TensorList([params[i] for i in idx]),
            TensorList([grads[i] for i in idx]),
            bucket_state,
            group,
            step,
        )


#: On a CPU, foreach wins while per-tensor overhead dominates (small tensors) and loses
#: once tensors are large enough for its extra temporaries to cost memory bandwidth:
#: measured (docs/performance.md) foreach 1.6–1.8× faster at 1K elements a tensor,
#: reference 2–2.7× faster at 64K and up for RMSProp/Adam.
AUTO_FOREACH_MAX_MEAN_NUMEL = 16_384


def _step_auto(opt: Optimizer, group: dict, params: list, grads: list, states: list):
    small = sum(p.numel() for p in params) <= AUTO_FOREACH_MAX_MEAN_NUMEL * len(params)
    accelerator = any(p.device.type != "cpu" for p in params)
    (_step_foreach if small or accelerator else _step_reference)(opt, group, params, grads, states)


#: ``impl=`` name → how the equation is applied to a group. A new layout registers here.
IMPLEMENTATIONS: dict[str, Callable[..., None]] = {
    "reference": _step_reference,
    "foreach": _step_foreach,
    "auto": _step_auto,
}


# --- validation ---------------------------------------------------------------------------


def _check_range(owner: str, name: str, value: Any, low: float, high: float, closed: str):
    """Raise ValueError unless ``value`` lies in the interval; ``closed`` is e.g. '[)'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    value = float(value)
    ok_low = value >= low if closed[0] == "[" else value > low
    ok_high = value <= high if closed[1] == "]" else value < high
    if math.isnan(value) or not (ok_low and ok_high):
        hi = "∞" if math.isinf(high) else f"{high:g}"
        raise ValueError(
            f"{owner}: {name} must be in {closed[0]}{low:g}, {hi}{closed[1]}, got {value!r}"
        )


def _check_choice(owner: str, name: str, value: Any, allowed: Iterable[Any]):
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{owner}: {name} must be one of {listed}; got {value!r}")


# --- the base class -----------------------------------------------------------------------


class Optimizer(torch.optim.Optimizer):
    """Base of trainlab's optimizers: conventions, validation, state, implementations.

    A subclass sets ``DEFAULTS`` (trainlab's defaults of every hyperparameter and
    switch), ``CONVENTIONS`` (per framework, the values that differ from ``DEFAULTS``),
    ``RANGES`` (hyperparameter → (low, high, closed)) and implements
    :meth:`init_state` and :meth:`update`.
    """

    DEFAULTS: dict[str, Any] = {}
    CONVENTIONS: dict[str, dict[str, Any]] = {}
    RANGES: dict[str, tuple[float, float, str]] = {}

    def __init__(
        self,
        params: Iterable,
        given: dict[str, Any],
        convention: str | None = None,
        impl: str = "auto",
    ):
        name = type(self).__name__
        if convention is not None:
            _check_choice(name, "convention", convention, CONVENTIONS)
        defaults = dict(self.DEFAULTS)
        if convention is not None:
            defaults.update(self.CONVENTIONS.get(convention, {}))
        # An argument the caller gave (not None) wins over the convention's default.
        defaults.update({k: v for k, v in given.items() if v is not None})
        defaults["impl"] = impl
        self.convention = convention
        self._validate(defaults)
        super().__init__(params, defaults)

    # torch.optim.Optimizer calls this for the first and every later group.
    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            self._validate(group)
            for p in group["params"]:
                self._check_param(p)
        except ValueError:
            self.param_groups.pop()
            raise

    def _check_param(self, p: torch.Tensor) -> None:
        if isinstance(p, torch.Tensor) and torch.is_complex(p):
            raise ValueError(
                f"{type(self).__name__} does not support complex parameters "
                f"(got one of shape {tuple(p.shape)}, dtype {p.dtype}); "
                "view it as real with torch.view_as_real"
            )

    def _validate(self, hp: dict[str, Any]) -> None:
        name = type(self).__name__
        for key, (low, high, closed) in self.RANGES.items():
            value = hp.get(key)
            if key == "betas":
                if not isinstance(value, (tuple, list)) or len(value) != 2:
                    raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {value!r}")
                for i, b in enumerate(value):
                    _check_range(name, f"betas[{i}]", b, low, high, closed)
            elif value is not None:
                _check_range(name, key, value, low, high, closed)
        _check_choice(name, "impl", hp.get("impl", "auto"), IMPLEMENTATIONS)
        self.check_switches(hp)

    def check_switches(self, hp: dict[str, Any]) -> None:
        """Check combinations of switches; a subclass raises ValueError on a bad one."""

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # A state dict saved by another optimizer (e.g. torch.optim.Adam) lacks trainlab's
        # switches: fill them from this optimizer's defaults. torch keeps steps as tensors.
        own = {**self.DEFAULTS, "impl": self.defaults.get("impl", "auto")}
        for group in self.param_groups:
            for key in own:
                group.setdefault(key, self.defaults.get(key, own[key]))
        for st in self.state.values():
            if isinstance(st.get("step"), torch.Tensor):
                st["step"] = int(st["step"].item())

    # The two methods a family implements ----------------------------------------------
    def state_keys(self, group: dict) -> tuple[str, ...]:
        """Names of the state tensors one parameter needs under ``group``'s switches.

        Each starts as zeros like the parameter; a switch turned on mid-run (momentum,
        ``centered``, ``amsgrad``) gets its tensor at the next step.
        """
        raise NotImplementedError

    def update(self, p, g, state: dict, group: dict, step: int) -> None:
        """Apply one step of the equation in place (tensors or TensorLists)."""
        raise NotImplementedError

    # The step ---------------------------------------------------------------------------
    def _gather(self, group: dict) -> tuple[list, list, list]:
        params, grads, states = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if g.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients (parameter of "
                    f"shape {tuple(p.shape)}); use torch.optim.SparseAdam or dense gradients"
                )
            if torch.is_complex(g):
                raise RuntimeError(
                    f"{type(self).__name__} does not support complex gradients "
                    f"(parameter of shape {tuple(p.shape)})"
                )
            state = self.state[p]
            if "step" not in state:
                # new; or loaded from torch.optim.SGD, which keeps no step count (a
                # loaded momentum buffer has seen at least one step)
                state["step"] = 1 if state else 0
            for key in self.state_keys(group):
                if key not in state:
                    state[key] = zeros_like(p)
            state["step"] += 1
            params.append(p)
            grads.append(g)
            states.append(state)
        return params, grads, states

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        """Perform one optimization step; ``closure`` re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = self._gather(group)
            if params:
                IMPLEMENTATIONS[group["impl"]](self, group, params, grads, states)
        return loss


def zeros_like(p: torch.Tensor) -> torch.Tensor:
    """A state tensor for ``p``: zeros of its shape, dtype, device and memory format."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)
