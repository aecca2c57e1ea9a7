"""Learning-rate schedules as plain functions of the step, and a torch scheduler built from one.

A schedule is a pure callable ``f(t) -> float`` that gives the learning-rate *multiplier*
after ``t`` scheduler steps (t = 0, 1, 2, ...). The learning rate it asks for is

    lr_t = η · f(t)

where η is the optimizer's base learning rate (each param group's ``lr`` when the scheduler
is made). Multipliers rather than absolute rates keep one schedule usable for every param
group and every optimizer, which is exactly what ``torch.optim.lr_scheduler.LambdaLR``
expects; :func:`scheduler` wraps a schedule in one.

Schedules are small frozen dataclasses rather than closures, so they print as the call that
made them (``cosine(total_steps=1000, final=0.0)``), pickle, compare equal, and their
parameters are saved in ``LambdaLR.state_dict()``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import torch

from trainlab.errors import HyperparameterError, check_choice, check_range

__all__ = [
    "Schedule",
    "constant",
    "cosine",
    "exponential",
    "NAMES",
    "create",
    "one_cycle",
    "scheduler",
    "step",
    "warmup",
]


# --- validation at the boundary ---------------------------------------------------------------
# A schedule's error names the parameter alone ("gamma must be in (0, 1], got 2"): the
# schedule's name is the caller's context (a config prefixes "schedule: ").


def _positive_int(key: str, value: object) -> int:
    return check_range(key, value, 1, integer=True)


def _fraction(key: str, value: object, *, low_open: bool = False, high_open: bool = False) -> float:
    return float(check_range(key, value, 0.0, 1.0, low_open=low_open, high_open=high_open))


def _divisor(key: str, value: object) -> float:
    return float(check_range(key, value, 1.0))


# --- the schedules -----------------------------------------------------------------------------


class Schedule:
    """A pure function of the step ``t >= 0`` returning the learning-rate multiplier.

    Every schedule of this module is one (a frozen dataclass whose fields are its
    parameters); any other ``Callable[[int], float]`` works wherever a schedule is accepted.
    """

    _name: ClassVar[str]

    def __call__(self, t: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self._name}({args})"


@dataclass(frozen=True, repr=False)
class _Constant(Schedule):
    _name = "constant"

    def __call__(self, t: int) -> float:
        return 1.0


@dataclass(frozen=True, repr=False)
class _Step(Schedule):
    step_size: int
    gamma: float
    _name = "step"

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_size", _positive_int("step_size", self.step_size))
        object.__setattr__(self, "gamma", _fraction("gamma", self.gamma, low_open=True))

    def __call__(self, t: int) -> float:
        return self.gamma ** (t // self.step_size)


@dataclass(frozen=True, repr=False)
class _Exponential(Schedule):
    gamma: float
    _name = "exponential"

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _fraction("gamma", self.gamma, low_open=True))

    def __call__(self, t: int) -> float:
        return self.gamma**t


@dataclass(frozen=True, repr=False)
class _Cosine(Schedule):
    total_steps: int
    final: float
    _name = "cosine"

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_steps", _positive_int("total_steps", self.total_steps))
        object.__setattr__(self, "final", _fraction("final", self.final))

    def __call__(self, t: int) -> float:
        # Held at `final` after the end (like Keras and optax); torch's CosineAnnealingLR
        # would climb back up along the cosine instead.
        progress = min(t, self.total_steps) / self.total_steps
        return self.final + (1.0 - self.final) * (1.0 + math.cos(math.pi * progress)) / 2.0


@dataclass(frozen=True, repr=False)
class _Warmup(Schedule):
    warmup_steps: int
    after: Callable[[int], float] | None
    start: float
    _name = "warmup"

    def __post_init__(self) -> None:
        object.__setattr__(self, "warmup_steps", _positive_int("warmup_steps", self.warmup_steps))
        if self.after is not None and not callable(self.after):
            raise HyperparameterError(
                None, "after", f"must be a callable of the step or None, got {self.after!r}"
            )
        object.__setattr__(self, "start", _fraction("start", self.start))

    def __call__(self, t: int) -> float:
        if t < self.warmup_steps:
            return self.start + (1.0 - self.start) * t / self.warmup_steps
        return 1.0 if self.after is None else self.after(t - self.warmup_steps)


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def _anneal_linear(start: float, end: float, pct: float) -> float:
    # torch writes (end - start)·pct + start, which cancels at pct = 1 and misses a final rate
    # 1e4x below the peak by ~1e-11 relative; this form is exact at both ends.
    return start * (1.0 - pct) + end * pct


_ANNEALS = {"cos": _anneal_cos, "linear": _anneal_linear}


@dataclass(frozen=True, repr=False)
class _OneCycle(Schedule):
    total_steps: int
    pct_start: float
    div_factor: float
    final_div_factor: float
    anneal: str
    _name = "one_cycle"

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_steps", _positive_int("total_steps", self.total_steps))
        pct_start = _fraction("pct_start", self.pct_start, low_open=True, high_open=True)
        object.__setattr__(self, "pct_start", pct_start)
        object.__setattr__(self, "div_factor", _divisor("div_factor", self.div_factor))
        final_div_factor = _divisor("final_div_factor", self.final_div_factor)
        object.__setattr__(self, "final_div_factor", final_div_factor)
        check_choice("anneal", self.anneal, tuple(_ANNEALS))

    def __call__(self, t: int) -> float:
        # Phase boundaries exactly as torch's OneCycleLR places them (a float, possibly
        # negative), so the two agree step for step; held at the minimum from total_steps - 1
        # on, where torch would extrapolate or raise.
        initial = 1.0 / self.div_factor
        minimum = initial / self.final_div_factor
        peak_step = self.pct_start * self.total_steps - 1.0
        last_step = self.total_steps - 1
        t = min(t, last_step)
        anneal = _ANNEALS[self.anneal]
        if 0.0 < peak_step and t <= peak_step:
            return anneal(initial, 1.0, t / peak_step)
        return anneal(1.0, minimum, (t - peak_step) / (last_step - peak_step))


# --- the public constructors -------------------------------------------------------------------


def constant() -> Schedule:
    r"""Constant learning rate.

    .. math:: f(t) = 1

    Returns
    -------
    Schedule
        The multiplier ``f(t)``.
    """
    return _Constant()


def step(step_size: int, gamma: float = 0.1) -> Schedule:
    r"""Step decay: multiply the learning rate by ``gamma`` every ``step_size`` steps.

    .. math:: f(t) = \gamma^{\lfloor t / s \rfloor}

    Same as ``torch.optim.lr_scheduler.StepLR(step_size=s, gamma=γ)``.

    Parameters
    ----------
    step_size : int
        ``s``, the number of steps between decays; a positive int.
    gamma : float
        ``γ``, the decay factor; in (0, 1].

    Returns
    -------
    Schedule
        The multiplier ``f(t)``.

    Raises
    ------
    ValueError
        If a parameter is outside its range.
    """
    return _Step(step_size, gamma)


def exponential(gamma: float) -> Schedule:
    r"""Exponential decay: multiply the learning rate by ``gamma`` every step.

    .. math:: f(t) = \gamma^{t}

    Same as ``torch.optim.lr_scheduler.ExponentialLR(gamma=γ)``.

    Parameters
    ----------
    gamma : float
        ``γ``, the per-step decay factor; in (0, 1].

    Returns
    -------
    Schedule
        The multiplier ``f(t)``.

    Raises
    ------
    ValueError
        If ``gamma`` is outside (0, 1].
    """
    return _Exponential(gamma)


def cosine(total_steps: int, final: float = 0.0) -> Schedule:
    r"""Cosine annealing from the base learning rate to ``final`` times it (Loshchilov & Hutter).

    .. math:: f(t) = a + (1 - a)\,\tfrac12\bigl(1 + \cos(\pi \min(t, T) / T)\bigr)

    with ``a = final`` and ``T = total_steps``; ``f(t) = a`` for ``t >= T``. Same as
    ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T, eta_min=a·lr)`` for ``t <= T``.

    Parameters
    ----------
    total_steps : int
        ``T``, the number of steps of the decay; a positive int.
    final : float
        ``a``, the final multiplier (a fraction of the base learning rate); in [0, 1].

    Returns
    -------
    Schedule
        The multiplier ``f(t)``.

    Raises
    ------
    ValueError
        If a parameter is outside its range.
    """
    return _Cosine(total_steps, final)


def warmup(
    warmup_steps: int, after: Callable[[int], float] | None = None, start: float = 0.0
) -> Schedule:
    r"""Linear warm-up from ``start`` times the base learning rate to it, then ``after``.

    .. math::
        f(t) = \begin{cases}
            s + (1 - s)\, t / W & t < W \\
            g(t - W) & t \ge W
        \end{cases}

    with ``W = warmup_steps``, ``s = start`` and ``g = after`` (``g = 1`` when ``after`` is
    None). ``after`` sees its own step count, starting at 0 when the warm-up ends, so
    ``warmup(W, cosine(T))`` runs ``W + T`` steps in all and is continuous when ``g(0) = 1``.
    Without ``after`` it is ``torch.optim.lr_scheduler.LinearLR(start_factor=s,
    end_factor=1, total_iters=W)``.

    Parameters
    ----------
    warmup_steps : int
        ``W``, the number of warm-up steps; a positive int.
    after : callable or None
        The schedule that follows, shifted by ``W`` steps; None for a constant 1.
    start : float
        ``s``, the multiplier at ``t = 0``; in [0, 1].

    Returns
    -------
    Schedule
        The multiplier ``f(t)``.

    Raises
    ------
    ValueError
        If a parameter is outside its range or ``after`` is not callable.
    """
    return _Warmup(warmup_steps, after, start)


def one_cycle(
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: Literal["cos", "linear"] = "cos",
) -> Schedule:
    r"""Smith's one-cycle policy, two-phase, exactly as torch's ``OneCycleLR`` defines it.

    The base learning rate is the peak. With ``T = total_steps``, ``p = pct_start``,
    ``f_0 = 1/div_factor``, ``f_min = f_0/final_div_factor`` and ``u = pT - 1``:

    .. math::
        f(t) = \begin{cases}
            A(f_0, 1, t/u) & t \le u \\
            A(1, f_{min}, (t - u)/(T - 1 - u)) & u < t \le T - 1 \\
            f_{min} & t > T - 1
        \end{cases}

    where ``A(a, b, x) = b + (a - b)·½(1 + cos πx)`` for ``anneal="cos"`` and
    ``A(a, b, x) = a + (b - a)·x`` for ``anneal="linear"``. Same as
    ``OneCycleLR(max_lr=lr, total_steps=T, pct_start=p, anneal_strategy=anneal,
    div_factor=..., final_div_factor=..., three_phase=False)`` for ``t <= T - 1``
    (the momentum cycling of ``OneCycleLR`` is not a learning-rate schedule and is not here).

    Parameters
    ----------
    total_steps : int
        ``T``, the length of the cycle in steps; a positive int.
    pct_start : float
        ``p``, the fraction of the cycle spent rising; in (0, 1).
    div_factor : float
        The initial multiplier is ``1/div_factor``; in [1, inf).
    final_div_factor : float
        The final multiplier is ``1/(div_factor·final_div_factor)``; in [1, inf).
    anneal : {"cos", "linear"}
        The shape of both phases.

    Returns
    -------
    Schedule
        The multiplier ``f(t)``.

    Raises
    ------
    ValueError
        If a parameter is outside its range.
    """
    return _OneCycle(total_steps, pct_start, div_factor, final_div_factor, anneal)


# LambdaLR.state_dict() holds each schedule's __dict__, and warmup's holds the `after`
# schedule itself; allow-listing these inert dataclasses lets a checkpoint with a scheduler in
# it load under torch.load's default weights_only=True.
torch.serialization.add_safe_globals([_Constant, _Step, _Exponential, _Cosine, _Warmup, _OneCycle])

_SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "step": step,
    "exponential": exponential,
    "cosine": cosine,
    "warmup": warmup,
    "one_cycle": one_cycle,
}

#: The schedules :func:`create` makes (a config's ``schedule.name``).
NAMES: tuple[str, ...] = tuple(_SCHEDULES)


def create(name: str, **kwargs: object) -> Schedule:
    """Build a schedule from its name and keyword arguments, e.g. from a config file.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`: ``constant``, ``step``, ``exponential``, ``cosine``,
        ``warmup``, ``one_cycle``.
    **kwargs
        The parameters of that schedule's function.

    Returns
    -------
    Schedule
        ``create("cosine", total_steps=100)`` is ``cosine(total_steps=100)``.

    Raises
    ------
    HyperparameterError
        If the name is unknown, a keyword is not a parameter of that schedule, a required
        one is missing, or a value is outside its range (a ``ValueError``).
    """
    check_choice("name", name, NAMES, owner="schedule")
    function = _SCHEDULES[name]
    parameters = inspect.signature(function).parameters
    listed = ", ".join(parameters) or "none"
    for key in kwargs:
        if key not in parameters:
            raise HyperparameterError(
                name, key, f"is not a parameter; its parameters are: {listed}"
            )
    for key, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty and key not in kwargs:
            raise HyperparameterError(name, key, f"is required; its parameters are: {listed}")
    return function(**kwargs)


def scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: Callable[[int], float],
    last_epoch: int = -1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Wrap a schedule in a ``torch.optim.lr_scheduler.LambdaLR`` for ``optimizer``.

    Each param group's learning rate becomes ``initial_lr · schedule(t)``, ``t`` being the
    number of ``scheduler.step()`` calls so far. The result is an ordinary torch scheduler:
    ``state_dict``/``load_state_dict`` save and restore the step count and the schedule's
    parameters, and it composes with ``SequentialLR``, ``ChainedScheduler`` and so on.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any torch optimizer, trainlab's included.
    schedule : callable
        ``f(t) -> float``, the multiplier of the base learning rate at step ``t``.
    last_epoch : int
        Passed to ``LambdaLR``: -1 to start from the beginning.

    Returns
    -------
    torch.optim.lr_scheduler.LambdaLR
        The scheduler; it has already set the learning rate for ``t = last_epoch + 1``.

    Raises
    ------
    ValueError
        If ``schedule`` is not callable.
    """
    if not callable(schedule):
        raise ValueError(f"schedule must be a callable of the step, got {schedule!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule, last_epoch=last_epoch)
