"""The LR range test: raise the learning rate step by step and read a good one off the loss.

The lecture's claim C15a, as a procedure: the training-loss curve tells the range of good
learning rates. Too low, the loss barely moves; good, it falls fast; too high, it explodes.
:func:`lr_find` draws that curve in one short run of increasing learning rates and puts the
model, the optimizer, the loader and every random generator back exactly as they were.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainlab import figures
from trainlab.train.trainer import resolve_device, rng_state, set_rng_state

__all__ = ["LRFinderResult", "RULES", "lr_find", "suggest"]

#: The ways to read a learning rate off the smoothed loss curve (see :func:`suggest`).
RULES = ("valley", "steepest", "minimum")

# A rule needs this many finite points; and the explosion test waits this many steps, so
# that the smoothed loss of the first few batches (an average of very few) cannot stop it.
_MIN_POINTS = 5


@dataclass
class LRFinderResult:
    """What an LR range test measured and what it suggests.

    Attributes
    ----------
    lrs : list of float
        The learning rate of each step taken.
    losses : list of float
        The raw mini-batch loss of each step, measured before that step's update; a NaN or
        infinite loss is kept as ``nan`` / ``inf`` (it is the last point).
    smoothed : list of float
        Debiased exponential moving average of ``losses``:
        ``avg_t = β·avg_{t−1} + (1−β)·loss_t``, ``smoothed_t = avg_t / (1 − β^t)``.
    suggestion : float or None
        The suggested learning rate, or None when the curve does not allow one.
    rule : str
        The rule that read it (one of :data:`RULES`).
    message : str
        One line: how the suggestion was read, or why there is none.
    stopped_early : bool
        The run ended before its last step because the smoothed loss exceeded
        ``stop_factor`` × its best value or became NaN or infinite.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    rule: str
    message: str
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (NaN and inf stay floats, as in ``metrics.jsonl``)."""
        return asdict(self)

    def plot(self, path: str | Path) -> Path:
        """Save the loss curve as a PNG: loss against learning rate on a log axis.

        The drawing is :func:`trainlab.figures.lr_find_plot`, the one the run's report
        shows: raw losses faint, smoothed ones bold, the suggestion as a dashed line.

        Returns
        -------
        pathlib.Path
            ``path``; its parent folders are created if missing.
        """
        fig = figures.lr_find_plot(
            self.lrs,
            self.losses,
            self.smoothed,
            self.suggestion,
            rule=self.rule,
            message=self.message,
            stopped_early=self.stopped_early,
        )
        return figures.save(fig, path)


def lr_find(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    smooth: float = 0.98,
    stop_factor: float = 4.0,
    rule: str = "valley",
    device: str | torch.device | None = None,
) -> LRFinderResult:
    """Run the LR range test and suggest a learning rate; leave everything as it was.

    Procedure (Smith 2017; the exponential schedule and the smoothing are fastai's
    ``lr_find``'s, the stop rule and the suggestion rules differ from fastai's as
    :func:`suggest` says):

    1. Step i = 0 … steps−1 sets ``lr_i = start · (end/start)^(i/(steps−1))`` on every
       param group, draws the next batch (starting the loader over when it runs out), and
       records the batch loss measured *before* that step's update, i.e. the loss that
       the learning rates up to ``lr_{i−1}`` led to. Then it takes the step.
    2. The loss is smoothed: ``avg_t = β·avg_{t−1} + (1−β)·loss_t`` with β = ``smooth``,
       debiased as ``avg_t / (1 − β^t)`` (t counted from 1).
    3. The run stops early when the loss or the smoothed loss is NaN or infinite, or, from
       step 5 on, when the smoothed loss exceeds ``stop_factor`` × the best smoothed loss
       so far (only while that best is positive: the rule assumes a loss ≥ 0).
    4. A rule reads a learning rate off the smoothed curve without its first
       ``steps // 10`` points (:func:`suggest`): ``valley`` (the middle of the longest
       decreasing run), ``steepest`` (the steepest descent against log₁₀ lr) or
       ``minimum`` (the lr of the lowest loss, ÷ 10).

    Afterwards — also when an exception ends the run — the model's parameters, buffers,
    gradients and train/eval modes, the optimizer's state dict (its state and every
    group's lr), the loader's position (if it has ``state_dict``) and the random states of
    torch, CUDA, NumPy and Python are restored exactly: a later ``fit`` is unaffected by
    the test. The copies cost one model and one optimizer state of memory.

    Parameters
    ----------
    model : nn.Module
        Trained in ``train()`` mode during the test.
    optimizer : torch.optim.Optimizer
        An optimizer over ``model``'s parameters; any of trainlab's or torch's.
    loader : iterable of (inputs, targets)
        E.g. a :class:`~trainlab.data.TensorLoader`. A one-shot iterator that cannot be
        restarted ends the test when it is exhausted.
    loss : callable
        ``loss(model(inputs), targets) -> scalar tensor``.
    start, end : float
        First and last learning rate, ``0 < start < end``.
    steps : int
        Number of steps (mini-batches), ≥ 2.
    smooth : float
        β of the moving average, in [0, 1); 0 means no smoothing.
    stop_factor : float
        Stop when the smoothed loss exceeds this multiple of its best, > 1
        (``math.inf`` never stops early except on a non-finite loss).
    rule : {"valley", "steepest", "minimum"}
        How to read the suggestion.
    device : str or torch.device, optional
        Where to run (``"auto"``: a GPU when present). The model is moved there first and
        stays there. Default: where the model's parameters are; batches are moved there.

    Returns
    -------
    LRFinderResult

    Raises
    ------
    ValueError
        For an argument out of range (the message names it and what it accepts), or a
        loader that yields no batch.

    References
    ----------
    L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017
    (arXiv:1506.01186), section 3.3: the LR range test. fastai, ``Learner.lr_find``.

    Examples
    --------
    >>> result = lr_find(model, optimizer, loader, torch.nn.functional.cross_entropy)
    ... # doctest: +SKIP
    >>> result.suggestion, result.message  # doctest: +SKIP
    """
    _check_arguments(start, end, steps, smooth, stop_factor, rule)
    if device is not None:
        model.to(resolve_device(device))
    first = next(iter(model.parameters()), None)
    run_on = first.device if first is not None else torch.device("cpu")

    saved_model = copy.deepcopy(model.state_dict())
    saved_grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    saved_modes = [m.training for m in model.modules()]
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_loader = copy.deepcopy(loader.state_dict()) if hasattr(loader, "state_dict") else None
    saved_rng = rng_state()

    schedule = [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stopped_early = False
    batches = _cycle(loader)
    try:
        model.train()
        avg, best = 0.0, math.inf
        with torch.enable_grad():
            for t, lr in enumerate(schedule, start=1):
                batch = next(batches, None)
                if batch is None:
                    if t == 1:
                        raise ValueError("loader yielded no batches: the LR range test needs some")
                    break
                for group in optimizer.param_groups:
                    group["lr"] = lr
                xb, yb = batch
                batch_loss = loss(model(xb.to(run_on)), yb.to(run_on))
                value = float(batch_loss.detach())
                avg = smooth * avg + (1.0 - smooth) * value
                current = avg / (1.0 - smooth**t)
                lrs.append(lr)
                losses.append(value)
                smoothed.append(current)
                if not (math.isfinite(value) and math.isfinite(current)):
                    stopped_early = True
                    break
                best = min(best, current)
                if t >= _MIN_POINTS and best > 0 and current > stop_factor * best:
                    stopped_early = True
                    break
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                optimizer.step()
    finally:
        batches.close()  # leaves the loader's own iteration where it was; restored below
        model.load_state_dict(saved_model)
        for p, grad in zip(model.parameters(), saved_grads):
            p.grad = grad
        for module, training in zip(model.modules(), saved_modes):
            module.training = training
        optimizer.load_state_dict(saved_optimizer)
        # Loading may fill in group keys the groups did not have (torch's `differentiable`,
        # through trainlab's Optimizer.__setstate__): drop them, so the groups are as before.
        for group, saved in zip(optimizer.param_groups, saved_optimizer["param_groups"]):
            for key in set(group) - set(saved):
                del group[key]
        if saved_loader is not None:
            loader.load_state_dict(saved_loader)
        set_rng_state(saved_rng)

    suggestion, message = suggest(lrs, smoothed, rule, skip=steps // 10)
    return LRFinderResult(lrs, losses, smoothed, suggestion, rule, message, stopped_early)


def suggest(
    lrs: Iterable[float], smoothed: Iterable[float], rule: str = "valley", skip: int = 0
) -> tuple[float | None, str]:
    """Read a learning rate off a smoothed loss curve.

    The first ``skip`` points are left out, then every point whose loss or lr is NaN or
    infinite; ``lrs`` are expected in increasing order. Fewer than 5 points left, or a
    curve that never decreases (no point below an earlier one), give no suggestion. The
    rules:

    * ``valley`` (after fastai's default rule, not equal to it): find the longest chain of
      points each lower than the one before — a longest strictly decreasing subsequence,
      so its points need not be adjacent and a bump of noise does not cut it; of equal
      chains, the one ending first. With L its length and e its last point, the run is
      the L points ending at e (not the chain's own first point, which can lie far back
      on a noisy plateau), and the suggestion is its middle point, index
      ``⌊(e − L + 1 + e) / 2⌋`` — on an exponential schedule, the middle in log lr.
      fastai's ``valley`` (fastai/callback/schedule.py) finds the same chain but differs
      in three ways: it first drops the last 5 points of the curve as well as the first
      10 %, its valley starts one point before the chain (``e − L``), and it picks index
      ``start + ⌊s⌋ + ⌊s/2⌋`` with ``s = (e − start)/3``. Its ramp also ends where fastai's
      ``end_lr`` or its divergence check stops it, while :func:`lr_find` waits 5 steps
      before its stop rule and keeps the points up to it. On one digits run fastai's rule
      applied to trainlab's curve gave 2.31e-3 where ``valley`` gave 3.35e-3 (a factor
      1.45; measured against fastai's code, ../shared/FACTS.md).
    * ``steepest``: the lr where the slope of the smoothed loss against log₁₀ lr
      (``np.gradient``, central differences) is the most negative.
    * ``minimum``: the lr of the lowest smoothed loss, divided by 10 (one decade below
      where the loss stops falling). None when that is the first point.

    Parameters
    ----------
    lrs, smoothed : sequences of float of the same length
    rule : {"valley", "steepest", "minimum"}
    skip : int
        Points to leave out at the start. :func:`lr_find` leaves out the first
        ``steps // 10``, as fastai does: the smoothed loss of the first few batches is an
        average of too few of them, and its noise would pass for a slope.

    Returns
    -------
    (float or None, str)
        The learning rate, or None; and one line saying how it was read or why there is
        none.

    Raises
    ------
    ValueError
        For an unknown rule, a negative ``skip`` or sequences of different lengths.
    """
    _check_choice("rule", rule, RULES)
    if not (isinstance(skip, numbers.Integral) and not isinstance(skip, bool) and skip >= 0):
        raise ValueError(f"skip must be an integer >= 0, got {skip!r}")
    x, y = np.asarray(list(lrs), dtype=float), np.asarray(list(smoothed), dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"lrs and smoothed must have the same length, got {len(x)} and {len(y)}")
    x, y = x[skip:], y[skip:]
    keep = np.isfinite(x) & (x > 0) & np.isfinite(y)
    dropped = int(len(x) - keep.sum())
    note = f" ({dropped} non-finite point{'s' * (dropped != 1)} ignored)" if dropped else ""
    x, y = x[keep], y[keep]
    if len(y) < _MIN_POINTS:
        after = f" after the first {skip}" if skip else ""
        return None, (
            f"{rule}: no suggestion: only {len(y)} finite point{'s' * (len(y) != 1)}{after}, "
            f"a rule needs {_MIN_POINTS}; run more steps, or lower start if the loss "
            f"explodes at once{note}"
        )
    if not np.any(np.diff(y) < 0):
        return None, (
            f"{rule}: no suggestion: the smoothed loss never decreases between lr {x[0]:.2e} "
            f"and {x[-1]:.2e}; lower start (or the model is already at a minimum){note}"
        )
    lr, how = _READERS[rule](x, y)
    return lr, how + note


def _valley(lrs: np.ndarray, loss: np.ndarray) -> tuple[float | None, str]:
    n = len(loss)
    length = np.ones(n, dtype=int)  # length of the longest decreasing chain ending at i
    for i in range(1, n):
        higher = loss[:i] > loss[i]
        if higher.any():
            length[i] = length[:i][higher].max() + 1
    last = int(np.argmax(length))
    first = max(last - int(length[last]) + 1, 0)
    middle = (first + last) // 2
    lr = float(lrs[middle])
    return lr, (
        f"valley: the longest decreasing run of the smoothed loss has {length[last]} points "
        f"and ends at lr {lrs[last]:.2e}; suggestion: its middle, lr {lr:.2e}"
    )


def _steepest(lrs: np.ndarray, loss: np.ndarray) -> tuple[float | None, str]:
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.gradient(loss, np.log10(lrs))
    slope[~np.isfinite(slope)] = np.inf
    i = int(np.argmin(slope))
    if not slope[i] < 0:
        return None, "steepest: no suggestion: the smoothed loss has no falling slope"
    lr = float(lrs[i])
    return lr, (
        f"steepest: the smoothed loss falls fastest at lr {lr:.2e} "
        f"({slope[i]:.3g} per decade of lr)"
    )


def _minimum(lrs: np.ndarray, loss: np.ndarray) -> tuple[float | None, str]:
    i = int(np.argmin(loss))
    if i == 0:
        return None, (
            f"minimum: no suggestion: the smoothed loss is lowest at the first lr "
            f"{lrs[0]:.2e}; lower start"
        )
    lr = float(lrs[i]) / 10
    return lr, (
        f"minimum: the smoothed loss is lowest ({loss[i]:.4g}) at lr {lrs[i]:.2e}; "
        f"suggestion: a tenth of it, lr {lr:.2e}"
    )


_READERS = {"valley": _valley, "steepest": _steepest, "minimum": _minimum}


def _cycle(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's batches, starting it over whenever it runs out; ends if a pass is empty."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return


def _check_arguments(
    start: float, end: float, steps: int, smooth: float, stop_factor: float, rule: str
) -> None:
    def real(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    if not (real(start) and math.isfinite(start) and start > 0):
        raise ValueError(f"start must be a finite number > 0, got {start!r}")
    if not (real(end) and math.isfinite(end) and end > start):
        raise ValueError(f"end must be a finite number > start ({start!r}), got {end!r}")
    if not (isinstance(steps, numbers.Integral) and not isinstance(steps, bool) and steps >= 2):
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    if not (real(smooth) and 0 <= smooth < 1):
        raise ValueError(f"smooth must be a number in [0, 1), got {smooth!r}")
    if not (real(stop_factor) and stop_factor > 1):
        raise ValueError(f"stop_factor must be a number > 1 (math.inf: never), got {stop_factor!r}")
    _check_choice("rule", rule, RULES)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
