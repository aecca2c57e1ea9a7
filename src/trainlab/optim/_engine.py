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
* ``"flat"`` (``flat.py``) calls it once per (param group, device, dtype) on one
  contiguous buffer each of parameters, gradients and state (the per-tensor objects
  become views of them), eagerly or as one ``torch.compile``'d kernel whose methods come
  from :class:`~trainlab.optim.flat.KernelTensor`. No equation changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from trainlab.errors import HyperparameterError, check_choice, check_range

from ._precision import LOW_PRECISION, state_dtype
from .flat import step_flat, zero_flat_grads

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
    """``a ← max(a, b)`` element-wise, in place, for a tensor, a :class:`TensorList` or a
    :class:`~trainlab.optim.flat.KernelTensor`."""
    if not isinstance(a, torch.Tensor):
        return a.maximum_(b)
    return torch.maximum(a, b, out=a)


# --- implementations ----------------------------------------------------------------------
# Each takes the optimizer and one param group, and steps the group's parameters that
# have a gradient (``reference`` and ``foreach`` through :meth:`Optimizer._gather`).


def _step_reference(opt: Optimizer, group: dict):
    for p, g, state in zip(*opt._gather(group)):
        opt.update(p, g, state, group, state["step"])


def _step_foreach(opt: Optimizer, group: dict):
    params, grads, states = opt._gather(group)
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


#: ``impl=`` name → how the equation is applied to a group. A new layout registers here.
#: ``"auto"`` is ``"flat"``: it applies to every group trainlab accepts (any device and
#: float dtype) and was the fastest on every layout measured (docs/performance.md).
IMPLEMENTATIONS: dict[str, Callable[[Optimizer, dict], None]] = {
    "reference": _step_reference,
    "foreach": _step_foreach,
    "flat": step_flat,
    "auto": step_flat,
}


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
            check_choice("convention", convention, CONVENTIONS, owner=name)
        defaults = dict(self.DEFAULTS)
        if convention is not None:
            defaults.update(self.CONVENTIONS.get(convention, {}))
        # An argument the caller gave (not None) wins over the convention's default.
        defaults.update({k: v for k, v in given.items() if v is not None})
        defaults["impl"] = impl
        self.convention = convention
        self._flat: dict[int, Any] = {}  # impl="flat": id(group) → its buffers (flat.py)
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
            interval = dict(
                low=low, high=high, low_open=closed[0] == "(", high_open=closed[1] == ")"
            )
            if key == "betas":
                if not isinstance(value, (tuple, list)) or len(value) != 2:
                    raise HyperparameterError(
                        name, key, f"must be a pair (beta1, beta2), got {value!r}"
                    )
                for i, b in enumerate(value):
                    check_range(f"betas[{i}]", b, **interval, owner=name)
            elif value is not None:
                check_range(key, value, **interval, owner=name)
        for key, default in self.DEFAULTS.items():  # a switch is true or false, not 3
            if isinstance(default, bool) and not isinstance(hp.get(key, default), bool):
                raise HyperparameterError(name, key, f"must be true or false, got {hp[key]!r}")
        check_choice("impl", hp.get("impl", "auto"), tuple(IMPLEMENTATIONS), owner=name)
        self.check_switches(hp)

    def check_switches(self, hp: dict[str, Any]) -> None:
        """Check combinations of switches; a subclass raises
        :class:`~trainlab.errors.HyperparameterError` on a bad one."""

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # load_state_dict lands here with new state tensors: flat buffers are rebuilt from
        # them at the next step. (Unpickled or deep-copied, the object has no attributes
        # but torch's: restore trainlab's.)
        self._flat = {}
        self.__dict__.setdefault("convention", None)
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
    def _check_grad(self, p: torch.Tensor, g: torch.Tensor) -> None:
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

    def _gather(self, group: dict) -> tuple[list, list, list]:
        """The group's parameters with a gradient, their gradients and state dicts, each
        state completed with its keys and its step advanced (per tensor)."""
        # State this adds is not in a flat layout of the group: rebuild one if flat runs again.
        self._flat.pop(id(group), None)
        params, grads, states = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            self._check_grad(p, g)
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
            IMPLEMENTATIONS[group["impl"]](self, group)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by :meth:`state_dict` (or by a torch optimizer).

        torch casts each state tensor to its parameter's dtype; the state of a float16 or
        bfloat16 parameter is float32 here (``_precision.py``), and is restored as saved.
        """
        super().load_state_dict(state_dict)
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for saved_id, p in zip(saved_ids, params):
            if p.dtype not in LOW_PRECISION or saved_id not in state_dict["state"]:
                continue
            for key, value in state_dict["state"][saved_id].items():
                if key != "step" and torch.is_tensor(value) and value.is_floating_point():
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32)

    #: Tells a training loop that ``zero_grad(set_to_none=False)`` is the fast reset here
    #: (the Trainer then uses it): flat gradient buffers are zeroed in one pass.
    zeroes_flat_gradients = True

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, as :meth:`torch.optim.Optimizer.zero_grad` does.

        With ``set_to_none=False`` and ``impl="flat"``, each flat gradient buffer is zeroed
        in one pass and the gradients stay its views, so that backward accumulates into it
        and the next step copies nothing.
        """
        if set_to_none or not self._flat:
            super().zero_grad(set_to_none)
            return
        done = zero_flat_grads(self)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and id(p) not in done:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()


def zeros_like(p: torch.Tensor) -> torch.Tensor:
    """A state tensor for ``p``: zeros of its shape, device and memory format, in float32
    for a float16/bfloat16 ``p`` (``_precision.py``), else in ``p``'s dtype."""
    return torch.zeros_like(p, dtype=state_dtype(p.dtype), memory_format=torch.preserve_format)
