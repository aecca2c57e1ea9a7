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
from torch.optim.optimizer import register_optimizer_step_pre_hook

from trainlab.errors import HyperparameterError, check_choice, check_range

from ._precision import LOW_PRECISION, state_dtype
from .flat import step_flat, zero_flat_grads

__all__ = [
    "Optimizer",
    "TensorList",
    "CONVENTIONS",
    "IMPLEMENTATIONS",
    "TORCH_SWITCHES",
    "TRAINLAB_ONLY",
]

#: The frameworks whose conventions every optimizer can reproduce step for step.
CONVENTIONS = ("lecture", "torch", "keras", "optax")

#: torch.optim's switches that every trainlab optimizer takes too (keyword-only, as torch
#: does), and their defaults. ``maximize=True`` ascends: ``g ← −g`` before anything else.
#: They are not in a family's ``DEFAULTS``, so a run's config does not offer them (its
#: loss is minimized).
TORCH_SWITCHES: dict[str, Any] = {"maximize": False}

#: torch.optim's param-group keys that choose how torch computes, not what: a torch state
#: dict's are dropped on loading (``impl`` chooses here); torch fills in its defaults.
_TORCH_ONLY_KEYS = ("foreach", "fused", "capturable", "differentiable")

#: The param-group key of a state dict whose group's update torch.optim has no equation
#: for (``"Adam(eps_hat=True)"``); a torch optimizer that loaded it refuses to step.
TRAINLAB_ONLY = "trainlab_only"


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

    def neg(self) -> TensorList:
        return TensorList(torch._foreach_neg(self.tensors))

    def sqrt(self) -> TensorList:
        return TensorList(torch._foreach_sqrt(self.tensors))

    def addcmul(self, a: TensorList, b: TensorList, value: float = 1.0) -> TensorList:
        return TensorList(torch._foreach_addcmul(self.tensors, a.tensors, b.tensors, value))


def settings_on(settings: dict[str, Any]) -> str | None:
    """The names of the settings that hold, joined (``"eps_hat=True, eps_in_sqrt=True"``),
    or None: what :meth:`Optimizer.not_in_torch` returns."""
    return ", ".join(name for name, on in settings.items() if on) or None


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
    ``RANGES`` (hyperparameter → (low, high, closed)), ``TORCH_NAMES`` (its keys that its
    torch.optim counterpart names otherwise) and implements :meth:`state_keys`,
    :meth:`update` and :meth:`not_in_torch`.

    Its :meth:`state_dict` loads into the torch.optim counterpart, and a torch state dict
    loads into it; either continues with the same steps (see :meth:`state_dict`).
    """

    DEFAULTS: dict[str, Any] = {}
    CONVENTIONS: dict[str, dict[str, Any]] = {}
    RANGES: dict[str, tuple[float, float, str]] = {}
    TORCH_NAMES: dict[str, str] = {}

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
        defaults = {**self.DEFAULTS, **TORCH_SWITCHES}
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
        # A group written for the torch counterpart names some keys as torch does (alpha).
        for ours, theirs in self.TORCH_NAMES.items():
            if theirs in param_group:
                param_group = dict(param_group)
                value = param_group.pop(theirs)
                if param_group.setdefault(ours, value) != value:
                    raise HyperparameterError(
                        type(self).__name__,
                        theirs,
                        f"is torch's name of {ours}: give one of them, "
                        f"got {theirs}={value!r} and {ours}={param_group[ours]!r}",
                    )
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
        # a switch is true or false, not 3
        for key, default in {**self.DEFAULTS, **TORCH_SWITCHES}.items():
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
        # A group of a state dict saved before a switch existed lacks it: this optimizer's
        # default fills it (load_state_dict gives a torch group torch's meaning first).
        # torch keeps steps as tensors.
        own = {**self.DEFAULTS, **TORCH_SWITCHES, "impl": self.defaults.get("impl", "auto")}
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

    def not_in_torch(self, group: dict) -> str | None:
        """The switches of ``group`` (``"eps_hat=True"``) whose update the torch.optim
        counterpart has no equation for, or None when torch's equation is ``group``'s."""
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

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, which the torch.optim counterpart loads too.

        Each param group carries trainlab's keys and, under torch's names, those torch
        names otherwise (``TORCH_NAMES``: RMSProp's ``rho`` is torch's ``alpha``); the
        state tensors have torch's names already. torch then continues with the same
        steps. A group whose update torch has no equation for (``not_in_torch``: Keras'
        ``eps_hat``, ``bias_correction=False`` …) is marked ``TRAINLAB_ONLY``, and a
        torch optimizer that loaded it raises at its next step instead of going on with
        another equation.
        """
        saved = super().state_dict()
        for group in saved["param_groups"]:
            for ours, theirs in self.TORCH_NAMES.items():
                group[theirs] = group[ours]
            lacking = self.not_in_torch(group)
            if lacking is not None:
                group[TRAINLAB_ONLY] = f"{type(self).__name__}({lacking})"
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by :meth:`state_dict`, by trainlab before it wrote torch's
        names, or by the torch.optim counterpart.

        A torch group (one without ``impl``) keeps torch's meaning: its keys are renamed
        (``alpha`` → ``rho``, ``decoupled_weight_decay`` → ``decoupled``), the switches it
        lacks are torch's (``convention="torch"``), its ``maximize`` is honoured and its
        ``foreach``/``fused``/``capturable``/``differentiable`` are dropped.

        torch casts each state tensor to its parameter's dtype; the state of a float16 or
        bfloat16 parameter is float32 here (``_precision.py``), and is restored as saved.
        """
        groups = [self._from_saved(group) for group in state_dict["param_groups"]]
        super().load_state_dict({**state_dict, "param_groups": groups})
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for saved_id, p in zip(saved_ids, params):
            if p.dtype not in LOW_PRECISION or saved_id not in state_dict["state"]:
                continue
            for key, value in state_dict["state"][saved_id].items():
                if key != "step" and torch.is_tensor(value) and value.is_floating_point():
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32)

    def _from_saved(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A saved param group with trainlab's names and meaning (see load_state_dict)."""
        group = {k: v for k, v in saved.items() if k != TRAINLAB_ONLY}
        from_torch = "impl" not in group
        for ours, theirs in self.TORCH_NAMES.items():
            if theirs in group:
                value = group.pop(theirs)
                group.setdefault(ours, value)
        if from_torch:
            for key in _TORCH_ONLY_KEYS:
                group.pop(key, None)
            torchs = {**self.DEFAULTS, **self.CONVENTIONS.get("torch", {}), **TORCH_SWITCHES}
            for key, value in torchs.items():
                group.setdefault(key, value)
            group["impl"] = self.defaults["impl"]
        return group

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


def _refuse_trainlab_only(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """A torch optimizer that loaded a trainlab state dict whose update it lacks raises
    before stepping (a global step pre-hook of torch.optim, registered on import)."""
    if isinstance(optimizer, Optimizer):
        return
    for i, group in enumerate(optimizer.param_groups):
        if TRAINLAB_ONLY in group:
            raise ValueError(
                f"{type(optimizer).__name__}: param group {i} was saved by "
                f"trainlab.optim.{group[TRAINLAB_ONLY]}, an update torch.optim has no "
                "equation for; load that state dict into the trainlab optimizer instead"
            )


register_optimizer_step_pre_hook(_refuse_trainlab_only)
