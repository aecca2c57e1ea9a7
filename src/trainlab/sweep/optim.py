"""Batched optimizers: the rows of one [K, P] buffer stepped by trainlab.optim's equations.

Row k of the buffer holds model k's parameters, flattened. A :class:`StackedOptimizer`
partitions the rows into runs of consecutive models that share an optimizer family, its
switches (``nesterov``, ``bias_correction`` …) and a learning-rate schedule, and calls that
family's own ``update`` on the run's rows. The equations are not written here a second
time: ``SGD.update``, ``RMSProp.update`` and ``Adam.update`` run as they are, on
:class:`_Rows` wrappers (as ``impl="foreach"`` runs them on ``TensorList`` objects), whose
methods accept a column of per-model values wherever torch's take a scalar.

A hyperparameter that every model of a run shares stays a Python number, so the arithmetic
is that of the sequential optimizer. One that differs becomes a :class:`PerModel` column of
shape [n, 1] that broadcasts against the [n, P] rows: model k's row is updated with model
k's learning rate, momentum, ρ, β₁, β₂, ε or weight decay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import torch

from trainlab.optim import Optimizer

__all__ = ["PerModel", "StackedOptimizer"]


class PerModel(torch.Tensor):
    """The values of one hyperparameter for n models, as an [n, 1] column of float64 (the
    precision of the Python numbers a sequential optimizer computes with: ``1 − β₂ᵗ``
    loses its digits in float32).

    Arithmetic on it gives plain tensors (``1 − ρ``, ``lr·λ``). Its truth value is that
    of *any* model's value: an equation's branch such as ``if weight_decay:`` then runs for
    all models, which is exact for the others (a decay of 0, a momentum of 0 or a β of 0
    leaves their update unchanged).
    """

    __torch_function__ = torch._C._disabled_torch_function_impl
    _any: bool

    @staticmethod
    def of(values: Sequence[float], device: torch.device) -> PerModel:
        """The column of ``values`` on ``device``."""
        column = torch.tensor(values, dtype=torch.float64, device=device)
        column = column.view(-1, 1).as_subclass(PerModel)
        column._any = any(v != 0 for v in values)
        return column

    def __bool__(self) -> bool:
        return self._any


#: The update runs on column blocks of at most about this many elements (all rows): the
#: temporaries of the equation (``s.sqrt()``, ``g·value`` …) of a very large stack then
#: stay a bounded size. Measured on the 2-core CPU for K = 32 MNIST-1D MLPs (487K
#: elements), Adam: 1.82 ms a step in blocks of 16K elements, 1.21 ms in 64K, 1.08 ms in
#: one block: per-operation overhead costs more than the cache misses.
CHUNK_NUMEL = 2**20


class _Rows:
    """Rows of n models, [n, P], answering the tensor methods of an update equation.

    A Python-number argument (``alpha=``, ``value=``, a ``lerp`` weight, ``ε``) goes to
    torch's own method: the sequential optimizer's arithmetic, to the bit. A column of
    per-model values [n, 1] (float64, like a Python number) is cast to the rows' dtype, as
    torch casts a scalar, and broadcasts over each model's row; it is multiplied in the
    order torch's kernels multiply a scalar (``(value·a)/b``, ``(value·a)·b``).
    """

    __slots__ = ("t",)

    def __init__(self, t: torch.Tensor):
        self.t = t

    def _u(self, x: Any) -> Any:
        """A tensor or number argument as the kernels take it."""
        if isinstance(x, _Rows):
            return x.t
        if isinstance(x, torch.Tensor) and x.dtype != self.t.dtype:
            return x.to(self.t.dtype)  # a per-model column, computed in float64
        return x

    @staticmethod
    def _one(x: Any) -> Any:
        return 1 if x is None else x

    # in place -------------------------------------------------------------------------
    def mul_(self, other: Any) -> _Rows:
        self.t.mul_(self._u(other))
        return self

    def div_(self, other: Any) -> _Rows:
        self.t.div_(self._u(other))
        return self

    def add_(self, other: Any, alpha: Any = None) -> _Rows:
        if isinstance(alpha, torch.Tensor):
            self.t.add_(self._u(other) * self._u(alpha))
        else:
            self.t.add_(self._u(other), alpha=self._one(alpha))
        return self

    def sub_(self, other: _Rows) -> _Rows:
        self.t.sub_(other.t)
        return self

    def lerp_(self, end: _Rows, weight: Any) -> _Rows:
        self.t.lerp_(end.t, self._u(weight))
        return self

    def _fused_(self, op: Any, a: _Rows, b: _Rows, value: Any) -> _Rows:
        """``op(t, a, b, value=…)`` in place (``addcmul_`` / ``addcdiv_``); a per-model
        ``value`` column multiplies ``a`` first, as torch's kernel takes (value·a)·b, /b."""
        if isinstance(value, torch.Tensor):
            op(self.t, self._u(value) * a.t, b.t)
        else:
            op(self.t, a.t, b.t, value=self._one(value))
        return self

    def addcmul_(self, a: _Rows, b: _Rows, value: Any = None) -> _Rows:
        return self._fused_(torch.Tensor.addcmul_, a, b, value)

    def addcdiv_(self, a: _Rows, b: _Rows, value: Any = None) -> _Rows:
        return self._fused_(torch.Tensor.addcdiv_, a, b, value)

    def sqrt_(self) -> _Rows:
        self.t.sqrt_()
        return self

    def clamp_min_(self, low: Any) -> _Rows:
        self.t.clamp_min_(self._u(low))
        return self

    def copy_(self, other: _Rows) -> _Rows:
        self.t.copy_(other.t)
        return self

    def maximum_(self, other: _Rows) -> _Rows:
        torch.maximum(self.t, other.t, out=self.t)
        return self

    # out of place ---------------------------------------------------------------------
    def add(self, other: Any, alpha: Any = None) -> _Rows:
        if isinstance(alpha, torch.Tensor):
            return _Rows(self.t + self._u(other) * self._u(alpha))
        return _Rows(self.t.add(self._u(other), alpha=self._one(alpha)))

    def div(self, other: Any) -> _Rows:
        return _Rows(self.t.div(self._u(other)))

    def neg(self) -> _Rows:
        return _Rows(self.t.neg())

    def sqrt(self) -> _Rows:
        return _Rows(self.t.sqrt())

    def addcmul(self, a: _Rows, b: _Rows, value: Any = None) -> _Rows:
        if isinstance(value, torch.Tensor):
            return _Rows(torch.addcmul(self.t, self._u(value) * a.t, b.t))
        return _Rows(torch.addcmul(self.t, a.t, b.t, value=self._one(value)))


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _column(values: list, device: torch.device) -> Any:
    """One value when all models share it, else a :class:`PerModel` column (tuples, such
    as Adam's betas, element by element)."""
    first = values[0]
    if all(v == first for v in values):
        return first
    if isinstance(first, tuple):
        return tuple(_column([v[i] for v in values], device) for i in range(len(first)))
    return PerModel.of([float(v) for v in values], device)


@dataclass
class _Run:
    """Consecutive rows [start, stop) that one call of the family's ``update`` steps."""

    optimizer: Optimizer  # its ``update`` and ``state_keys``; its own parameters are unused
    schedule: Callable[[int], float] | None
    start: int
    stop: int
    groups: list[dict]  # each model's resolved param group (without "params")
    group: dict = field(default_factory=dict)  # the hyperparameters of the call
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    step: int = 0


def _key(opt: Optimizer, group: dict, schedule: Any) -> tuple:
    """What models must share to be stepped by one call: the family, every setting that
    is not a number (switches, convention), and the schedule."""
    fixed = tuple(
        sorted(
            (k, repr(v))
            for k, v in group.items()
            if k not in ("params", "impl", "lr")
            and not _is_number(v)
            and not (isinstance(v, tuple) and all(_is_number(x) for x in v))
        )
    )
    return (type(opt), fixed, schedule)


class StackedOptimizer:
    """K models' optimizers as one: each model's row of a [K, P] buffer gets its own
    optimizer's update, with its own hyperparameters.

    Step t of model k is exactly ``optimizers[k].step()`` — the family's ``update`` with
    model k's hyperparameters, and the learning rate ``lr_k · f_k(t)`` of its schedule
    (``torch.optim.lr_scheduler.LambdaLR``'s rule, stepped after every optimizer step) —
    up to float rounding.

    Parameters
    ----------
    optimizers : sequence of trainlab.optim.Optimizer
        One per model, with one param group each (as :func:`trainlab.optim.create` makes
        them); only their settings are read.
    schedules : sequence of callables or None, optional
        One learning-rate multiplier ``f(t)`` per model (a
        :mod:`trainlab.optim.schedule` schedule), or None for a constant rate.
    n_params : int
        P, the length of a row.
    device, dtype
        Of the buffers.

    Raises
    ------
    ValueError
        For an optimizer with more than one param group.
    """

    def __init__(
        self,
        optimizers: Sequence[Optimizer],
        schedules: Sequence[Callable[[int], float] | None] | None,
        n_params: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        schedules = list(schedules) if schedules is not None else [None] * len(optimizers)
        self.n_params, self.device, self.dtype = n_params, torch.device(device), dtype
        self.runs: list[_Run] = []
        for k, (opt, schedule) in enumerate(zip(optimizers, schedules)):
            if len(opt.param_groups) != 1:
                raise ValueError(
                    f"model {k}: a stacked optimizer takes one param group per model, "
                    f"got {len(opt.param_groups)}"
                )
            group = {key: v for key, v in opt.param_groups[0].items() if key != "params"}
            last = self.runs[-1] if self.runs else None
            if last is not None and _key(last.optimizer, last.groups[0], last.schedule) == _key(
                opt, group, schedule
            ):
                last.stop += 1
                last.groups.append(group)
            else:
                self.runs.append(_Run(opt, schedule, k, k + 1, [group]))
        for run in self.runs:
            self._build(run)

    def _build(self, run: _Run) -> None:
        keys = run.groups[0].keys()
        run.group = {k: _column([g[k] for g in run.groups], self.device) for k in keys}
        run.group["base_lr"] = run.group["lr"]
        n = run.stop - run.start
        for key in run.optimizer.state_keys(run.group):
            if key not in run.state:
                run.state[key] = torch.zeros(n, self.n_params, device=self.device, dtype=self.dtype)
        self._set_lr(run)

    def _set_lr(self, run: _Run) -> None:
        base = run.group["base_lr"]
        run.group["lr"] = base if run.schedule is None else base * run.schedule(run.step)

    @torch.no_grad()
    def step(self, params: torch.Tensor, grads: torch.Tensor) -> None:
        """One step of every model: ``params`` [K, P] is updated in place from ``grads``.

        The update runs on column blocks of about ``CHUNK_NUMEL`` elements."""
        for run in self.runs:
            run.step += 1
            n = run.stop - run.start
            width = max(1, CHUNK_NUMEL // n)
            p, g = params[run.start : run.stop], grads[run.start : run.stop]
            for lo in range(0, self.n_params, width):
                cols = slice(lo, lo + width)
                run.optimizer.update(
                    _Rows(p[:, cols]),
                    _Rows(g[:, cols]),
                    {k: _Rows(v[:, cols]) for k, v in run.state.items()},
                    run.group,
                    run.step,
                )
            self._set_lr(run)

    def lrs(self, t: int | None = None) -> list[float]:
        """Each model's learning rate after ``t`` steps (default: the steps taken, i.e. the
        rate of the next step, which a history logs as ``lr``)."""
        out: list[float] = []
        for run in self.runs:
            base = run.group["base_lr"]
            step = run.step if t is None else t
            lr = base if run.schedule is None else base * run.schedule(step)
            n = run.stop - run.start
            out += lr.view(-1).tolist() if isinstance(lr, torch.Tensor) else [float(lr)] * n
        return out

    def select(self, keep: Sequence[int]) -> None:
        """Keep only the models at rows ``keep`` (ascending), in that order; their state,
        step counts and schedules carry on."""
        keep = list(keep)
        runs = []
        for run in self.runs:
            mine = [i for i, k in enumerate(keep) if run.start <= k < run.stop]
            if not mine:
                continue
            local = torch.tensor([keep[i] - run.start for i in mine], device=self.device)
            state = {k: v.index_select(0, local) for k, v in run.state.items()}
            groups = [run.groups[keep[i] - run.start] for i in mine]
            new = _Run(run.optimizer, run.schedule, mine[0], mine[-1] + 1, groups, {}, state)
            new.step = run.step
            self._build(new)
            runs.append(new)
        self.runs = runs
