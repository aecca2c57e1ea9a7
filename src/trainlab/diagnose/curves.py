"""The curve doctor: read a run's learning curves the way the lecture does.

C15a: the training-loss curve tells the range of good learning rates — very high: the
loss explodes; high: it drops fast, then plateaus high; low: a slow, nearly linear
decrease; good: in between. C15b: training vs validation performance tells whether the
model is too flexible (overfitting: a large gap, the validation loss worsens) or not
flexible enough (underfitting: both poor, close together).

:func:`diagnose` turns a history — one dict per epoch, the lines of ``metrics.jsonl`` —
into :class:`Finding` s: what is wrong, the numbers that show it, and what to do.
Curves are first smoothed with a centred moving median of :data:`SMOOTH_WINDOW` epochs
(3 in runs shorter than 15 epochs, none below 6), so one noisy epoch neither raises nor
hides an alarm. "The last third" is the last ``max(3, ⌈n/3⌉)`` epochs of an n-epoch run;
a curve is *flat* there when a straight line fitted to its smoothed values falls by
less than :data:`FLAT_DROP` of its starting value, and *improving* when it falls by at
least that and by at least :data:`TREND_T` standard errors of the slope.

Rules (thresholds are the constants below; docs/diagnose.md gives the reasoning):

- ``too_short`` (info): fewer than :data:`MIN_EPOCHS` epochs — nothing else is judged,
  except a non-finite loss.
- ``diverged`` (error): a non-finite loss (any ``*_loss`` or ``*_mse``; the other rules
  then read the epochs before it); or a final train loss (the lowest of the last
  :data:`SUSTAIN` epochs) above :data:`DIVERGE_FACTOR` × the first epoch's; or one that
  climbed back by at least :data:`GIVE_BACK` of what it had gained; or (``n_classes``
  given) one at chance level, ≥ :data:`CHANCE_FRACTION` · ln C, after the loss exploded
  above :data:`EXPLOSION_FACTOR` · ln C or after it had been below
  :data:`LEARNED_FRACTION` · ln C.
- ``lr_too_high`` (warning, ≥ :data:`MIN_EPOCHS_SHAPE` epochs): over the last third the
  train loss does not beat the best level reached before it by :data:`FLAT_DROP`,
  oscillates (residual coefficient of variation around a line ≥ :data:`OSCILLATION_CV`,
  at least :data:`OSCILLATION_UPS` of its steps up) and is high (classification: train
  accuracy < :data:`HIGH_PLATEAU_ACCURACY`); or (classification) the first epoch's loss
  was ≥ :data:`EXPLOSION_FACTOR` × the median of the others and training then stalled at
  a train accuracy below :data:`UNDERFIT_ACCURACY`.
- ``lr_too_low`` (warning, ≥ :data:`MIN_EPOCHS_SHAPE` epochs): the smoothed train loss falls
  in at least :data:`SLOW_DECREASING` of the epochs, along a line (R² ≥
  :data:`SLOW_LINEAR_R2`) whose slope has not flattened (last third ≥
  :data:`SLOW_SLOPE_RATIO` × first third), and has lost less than :data:`SLOW_MAX_DROP` of
  its first value.
- ``overfitting`` (warning): the smoothed validation loss has its minimum at least
  :data:`OVERFIT_PATIENCE` epochs before the end, has risen by ≥ :data:`OVERFIT_RISE`
  (relative) since, while the train loss kept falling; and/or a train − validation gap
  (accuracy or R²) ≥ :data:`OVERFIT_GAP` with a train score ≥ :data:`OVERFIT_TRAIN_SCORE`.
- ``underfitting`` (warning): a poor fit — train score below :data:`UNDERFIT_ACCURACY`
  (accuracy) or :data:`UNDERFIT_R2` (R²) and the validation score too, or, with only a
  loss and ``n_classes``, a train loss ≥ :data:`UNDERFIT_CHANCE_FRACTION` · ln C — with a
  train loss that is not improving at the end; not reported when a learning-rate finding
  already explains the poor fit.
- ``not_converged`` (info): on an otherwise clean run, the validation loss (the train loss
  without validation, unless the train score is already ≥ :data:`OVERFIT_TRAIN_SCORE`)
  is still improving over the last third, or the fit is poor and the train loss is.
- ``healthy`` (info): nothing above; gives the best epoch and the final metrics.

Without validation metrics only the train-based rules run, and every finding says so in
its evidence (``"validation": "missing"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainlab.train.metrics import history_best, infer_task

__all__ = [
    "KINDS",
    "SEVERITIES",
    "Finding",
    "diagnose",
    "format_findings",
    "MIN_EPOCHS",
    "MIN_EPOCHS_SHAPE",
    "SMOOTH_WINDOW",
    "FLAT_DROP",
    "TREND_T",
    "SUSTAIN",
    "DIVERGE_FACTOR",
    "GIVE_BACK",
    "CHANCE_FRACTION",
    "LEARNED_FRACTION",
    "EXPLOSION_FACTOR",
    "OSCILLATION_CV",
    "OSCILLATION_UPS",
    "HIGH_PLATEAU_ACCURACY",
    "SLOW_DECREASING",
    "SLOW_LINEAR_R2",
    "SLOW_SLOPE_RATIO",
    "SLOW_MAX_DROP",
    "OVERFIT_RISE",
    "OVERFIT_PATIENCE",
    "OVERFIT_GAP",
    "OVERFIT_TRAIN_SCORE",
    "UNDERFIT_ACCURACY",
    "UNDERFIT_R2",
    "UNDERFIT_CHANCE_FRACTION",
]

#: Finding kinds, in the order findings of the same severity are listed.
KINDS = (
    "diverged",
    "lr_too_high",
    "lr_too_low",
    "overfitting",
    "underfitting",
    "not_converged",
    "healthy",
    "too_short",
)
#: Severities, most severe first (findings are sorted by it).
SEVERITIES = ("error", "warning", "info")

# --- thresholds (docs/diagnose.md explains each) -----------------------------------------
#: Fewer epochs than this: too short to judge anything but a non-finite loss.
MIN_EPOCHS = 3
#: The shape rules (lr_too_high, lr_too_low) need this many epochs: a last third of 3
#: epochs, 3 before it to compare with, and a smoothing window of 3.
MIN_EPOCHS_SHAPE = 6
#: Width of the centred moving median applied before any slope is read (3 below 15 epochs).
SMOOTH_WINDOW = 5
#: A curve is flat when a line fitted to its smoothed last third falls by less than this
#: fraction of its starting value; it is improving when it falls by at least this…
FLAT_DROP = 0.05
#: …and by at least this many standard errors of the slope of a line fitted to the raw
#: values of the last third: more than epoch-to-epoch noise.
TREND_T = 2.0
#: diverged reads the final train loss as the lowest of the last this many epochs: a
#: sustained level, not one spike (equal to MIN_EPOCHS, so every judged run has them).
SUSTAIN = MIN_EPOCHS
#: diverged: the final train loss is above this many times the first epoch's.
DIVERGE_FACTOR = 3.0
#: diverged: the train loss climbed back by at least this fraction of what it had gained
#: (first epoch → minimum).
GIVE_BACK = 0.5
#: Chance level: a final train loss ≥ this × ln C counts as "learned nothing".
CHANCE_FRACTION = 0.95
#: …after having been below this × ln C (it had learned, then collapsed).
LEARNED_FRACTION = 0.8
#: A loss this many times above chance (or above the rest of the run) exploded.
EXPLOSION_FACTOR = 3.0
#: lr_too_high: residual std / mean of the train loss over the last third (around a line).
OSCILLATION_CV = 0.02
#: lr_too_high: at least this fraction of the epoch-to-epoch steps of the last third go up.
OSCILLATION_UPS = 1 / 3
#: lr_too_high (classification): the plateau is "high" below this train accuracy.
HIGH_PLATEAU_ACCURACY = 0.9
#: lr_too_low: the smoothed train loss falls in at least this fraction of the epochs…
SLOW_DECREASING = 0.8
#: …along a line: R² of a straight-line fit at least this…
SLOW_LINEAR_R2 = 0.95
#: …whose slope over the last third is still at least this fraction of the first third's…
SLOW_SLOPE_RATIO = 0.5
#: …and the loss lost less than this fraction of its first value.
SLOW_MAX_DROP = 0.25
#: overfitting: the smoothed validation loss rose by at least this fraction of its minimum…
OVERFIT_RISE = 0.10
#: …and its minimum is at least this many epochs before the end.
OVERFIT_PATIENCE = 3
#: overfitting: train score − validation score (accuracy or R²) at least this, with…
OVERFIT_GAP = 0.10
#: …a train score of at least this (the model fits its training data).
OVERFIT_TRAIN_SCORE = 0.95
#: underfitting (classification): train accuracy below this is poor.
UNDERFIT_ACCURACY = 0.6
#: underfitting (regression): train R² below this is poor.
UNDERFIT_R2 = 0.5
#: underfitting (classification, no accuracy logged): a train loss ≥ this × ln C is poor.
UNDERFIT_CHANCE_FRACTION = 0.5

_SEVERITY = {
    "diverged": "error",
    "lr_too_high": "warning",
    "lr_too_low": "warning",
    "overfitting": "warning",
    "underfitting": "warning",
    "not_converged": "info",
    "healthy": "info",
    "too_short": "info",
}
_TASKS = ("classification", "regression")
_T_CAP = 999.0  # a t statistic shown for a noiseless line
_MISSING_VAL = "missing: only the train-based rules ran"


@dataclass
class Finding:
    """One diagnosis of a learning curve.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    severity : str
        ``"error"``, ``"warning"`` or ``"info"``.
    evidence : dict
        The numbers that triggered it (JSON-serializable ints, floats and strings).
    advice : str
        What to do, concretely.
    message : str
        One line to read first: what is wrong, with the key numbers.
    """

    kind: str
    severity: str
    evidence: dict = field(default_factory=dict)
    advice: str = ""
    message: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"severity must be one of {', '.join(SEVERITIES)}; got {self.severity!r}"
            )

    def to_dict(self) -> dict:
        """The finding as plain JSON-serializable data."""
        return json.loads(json.dumps(asdict(self), allow_nan=False))


# --- the curves ----------------------------------------------------------------------------
@dataclass
class _Curves:
    """The arrays the rules read, cut at the first non-finite loss."""

    epochs: list[int]
    train: np.ndarray  # train loss
    val: np.ndarray | None  # validation loss
    score: str | None  # "accuracy" | "r2" | None
    train_score: np.ndarray | None
    val_score: np.ndarray | None
    lr: float | None

    @property
    def n(self) -> int:
        return len(self.train)


def _column(history: Sequence[dict], key: str) -> np.ndarray | None:
    """The values of ``key`` in every epoch as floats; None if an epoch lacks it or one is
    not finite (an R² of a constant target is NaN)."""
    values = [h.get(key) for h in history]
    if not values or not all(isinstance(v, (int, float)) for v in values):
        return None
    arr = np.asarray(values, dtype=float)
    return arr if np.isfinite(arr).all() else None


def _last_lr(history: Sequence[dict]) -> float | None:
    """The learning rate of the last epoch, when the history logged a usable one."""
    lr = history[-1].get("lr") if history else None
    ok = isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0
    return float(lr) if ok else None


def _curves(history: Sequence[dict], task: str | None) -> _Curves:
    score = {"classification": "accuracy", "regression": "r2"}.get(task or "")
    return _Curves(
        epochs=[int(h.get("epoch", i + 1)) for i, h in enumerate(history)],
        train=np.asarray([h["train_loss"] for h in history], dtype=float),
        val=_column(history, "val_loss"),
        score=score,
        train_score=_column(history, f"train_{score}") if score else None,
        val_score=_column(history, f"val_{score}") if score else None,
        lr=_last_lr(history),
    )


def _window(n: int) -> int:
    """Smoothing width for an n-epoch curve: :data:`SMOOTH_WINDOW`, 3 below 15 epochs, 1
    below 6."""
    return SMOOTH_WINDOW if n >= 3 * SMOOTH_WINDOW else 3 if n >= 6 else 1


def _smooth(values: np.ndarray) -> np.ndarray:
    """Centred moving median of :func:`_window` width; the window shrinks at both ends."""
    n = len(values)
    half = _window(n) // 2
    return np.array([np.median(values[max(0, i - half) : i + half + 1]) for i in range(n)])


def _last_third(n: int) -> int:
    """How many epochs make the last third of an n-epoch run (at least 3, at most n)."""
    return min(n, max(3, math.ceil(n / 3)))


def _drop(smoothed: np.ndarray, k: int) -> float:
    """Relative fall of a smoothed curve over its last k points (negative: it rose), read
    off a straight line fitted to them, so one noisy end point does not decide it."""
    slope, _, residuals = _line_fit(smoothed[-k:])
    start = float(smoothed[-k] - residuals[0])  # the line's value at the first point
    return -slope * (k - 1) / abs(start) if start != 0 else 0.0


def _line_fit(y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares line through y over 0..n−1: (slope, R², residuals)."""
    x = np.arange(len(y), dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residuals**2).sum()) / total if total > 0 else 0.0
    return float(slope), r2, residuals


def _num(x: float) -> float | int | str:
    """A number for evidence: 4 significant digits; non-finite values as strings."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return float(f"{x:.4g}")


def _pct(x: float) -> str:
    """A fraction as a percentage: 194%, 4.0%, 0.027%."""
    x = 100 * float(x)
    return f"{x:.0f}%" if abs(x) >= 10 else f"{x:.2g}%"


def _lr_change(direction: str, lr: float | None) -> str:
    """'lower the learning rate 3–10×', with the numbers when the history logged lr."""
    if direction == "lower":
        text = "lower the learning rate 3–10×"
        if lr is not None:
            text += f" (from {lr:.3g} to {lr / 10:.2g}–{lr / 3:.2g})"
    else:
        text = "raise the learning rate 3–10×"
        if lr is not None:
            text += f" (from {lr:.3g} to {lr * 3:.2g}–{lr * 10:.2g})"
    return text


def _finding(kind: str, message: str, advice: str, **evidence: Any) -> Finding:
    return Finding(
        kind=kind,
        severity=_SEVERITY[kind],
        evidence={
            k: _num(v) if isinstance(v, (int, float, np.number)) else v for k, v in evidence.items()
        },
        advice=advice,
        message=message,
    )


# --- the rules -----------------------------------------------------------------------------
def _non_finite(history: Sequence[dict]) -> tuple[int, str, Any] | None:
    """(index, key, value) of the first non-finite loss in the history, or None."""
    for i, h in enumerate(history):
        for key, value in h.items():
            if not key.endswith(("_loss", "_mse")):
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return i, key, value
    return None


def _diverged_non_finite(history: Sequence[dict], where: tuple[int, str, Any], lr) -> Finding:
    i, key, value = where
    epoch = int(history[i].get("epoch", i + 1))
    shown = str(float(value)) if isinstance(value, (int, float)) else repr(value)
    return _finding(
        "diverged",
        f"diverged: {key} became {shown} at epoch {epoch}",
        _lr_change("lower", lr) + " and train again",
        epoch=epoch,
        key=key,
        value=shown,
        last_finite_epoch=epoch - 1,
    )


def _diverged(c: _Curves, n_classes: int | None) -> Finding | None:
    s = _smooth(c.train)
    # "Final": the lowest of the last SUSTAIN epochs, so a single spike is not a verdict
    # and an oscillation is judged by its bottom.
    first, final = float(c.train[0]), float(c.train[-SUSTAIN:].min())
    i_min = int(np.argmin(s))
    low = float(s[i_min])
    advice = _lr_change("lower", c.lr) + " and train again"
    if first > 0 and final > DIVERGE_FACTOR * first:
        return _finding(
            "diverged",
            f"diverged: the train loss rose from {first:.4g} (epoch {c.epochs[0]}) to "
            f"{final:.4g} or more over the last {SUSTAIN} epochs, {final / first:.1f}× the start",
            advice,
            train_loss_first=first,
            train_loss_last=final,
            ratio=final / first,
        )
    gained = max(first, float(s[0])) - low
    if gained > 0 and i_min < c.n - 1:
        given_back = (final - low) / gained
        if given_back >= GIVE_BACK:
            return _finding(
                "diverged",
                f"diverged: the train loss fell to {low:.4g} (epoch {c.epochs[i_min]}) and "
                f"climbed back to {final:.4g} or more for its last {SUSTAIN} epochs, giving back "
                f"{_pct(given_back)} of its progress",
                advice,
                train_loss_first=first,
                train_loss_min=low,
                min_epoch=c.epochs[i_min],
                train_loss_last=final,
                given_back=given_back,
            )
    if n_classes is not None:
        chance = math.log(n_classes)
        peak = float(c.train.max())
        exploded = peak >= EXPLOSION_FACTOR * chance
        collapsed = low <= LEARNED_FRACTION * chance
        if final >= CHANCE_FRACTION * chance and (exploded or collapsed):
            how = (
                f"after exploding to {peak:.4g} (epoch {c.epochs[int(np.argmax(c.train))]})"
                if exploded
                else f"after having been down to {low:.4g} (epoch {c.epochs[i_min]})"
            )
            return _finding(
                "diverged",
                f"diverged: the train loss ended at {final:.4g}, at chance level "
                f"(ln {n_classes} = {chance:.4g}), {how}",
                advice,
                train_loss_last=final,
                chance_loss=chance,
                train_loss_max=peak,
                train_loss_min=low,
            )
    return None


def _lr_too_high(c: _Curves) -> Finding | None:
    if c.n < MIN_EPOCHS_SHAPE:
        return None
    s = _smooth(c.train)
    k = _last_third(c.n)
    tail = c.train[-k:]
    advice = _lr_change("lower", c.lr) + ", or decay it (schedule.name: cosine or step)"
    acc = float(_smooth(c.train_score)[-1]) if c.train_score is not None else None
    is_acc = c.score == "accuracy" and acc is not None

    # Exploded in the first epoch, then stalled far from fitting the training data.
    rest = float(np.median(c.train[1:]))
    if is_acc and rest > 0 and c.train[0] >= EXPLOSION_FACTOR * rest and acc < UNDERFIT_ACCURACY:
        return _finding(
            "lr_too_high",
            f"learning rate too high: the train loss spiked to {c.train[0]:.4g} in epoch "
            f"{c.epochs[0]} ({c.train[0] / rest:.1f}× the rest of the run) and training "
            f"stalled at train accuracy {acc:.2f}",
            advice,
            train_loss_first=float(c.train[0]),
            train_loss_median_rest=rest,
            train_accuracy=acc,
        )

    # Drops, then a high plateau that oscillates: the last third does not beat the best
    # level reached before it (by FLAT_DROP), and jumps around a line through it.
    level = float(np.median(tail))
    before = float(s[:-k].min())
    gain = (before - level) / abs(before) if before != 0 else 0.0
    mean = float(tail.mean())
    _, _, residuals = _line_fit(tail)
    cv = float(residuals.std() / mean) if mean > 0 else 0.0
    ups = float((np.diff(tail) > 0).mean())
    high = not is_acc or acc < HIGH_PLATEAU_ACCURACY
    if gain < FLAT_DROP and cv >= OSCILLATION_CV and ups >= OSCILLATION_UPS and high:
        where = f"train accuracy {acc:.2f}" if is_acc else f"its best before was {before:.4g}"
        return _finding(
            "lr_too_high",
            f"learning rate too high: over the last {k} epochs the train loss stalls at "
            f"~{level:.4g} ({where}) and oscillates (±{_pct(cv)} around its trend, "
            f"{ups:.0%} of the epochs up)",
            advice,
            last_epochs=k,
            train_loss_median=level,
            train_loss_best_before=before,
            gain=gain,
            oscillation_cv=cv,
            fraction_up=ups,
            **({"train_accuracy": acc} if is_acc else {}),
        )
    return None


def _lr_too_low(c: _Curves) -> Finding | None:
    if c.n < MIN_EPOCHS_SHAPE:
        return None
    s = _smooth(c.train)
    k = _last_third(c.n)
    steps = np.diff(s)
    decreasing = float((steps < 0).mean())
    slope, r2, _ = _line_fit(s)
    first_slope, _, _ = _line_fit(s[:k])
    last_slope, _, _ = _line_fit(s[-k:])
    total_drop = float((s[0] - s[-1]) / abs(s[0])) if s[0] != 0 else 0.0
    ratio = last_slope / first_slope if first_slope < 0 else 0.0
    if (
        decreasing >= SLOW_DECREASING
        and r2 >= SLOW_LINEAR_R2
        and ratio >= SLOW_SLOPE_RATIO
        and 0 < total_drop < SLOW_MAX_DROP
    ):
        return _finding(
            "lr_too_low",
            f"learning rate too low: the train loss falls slowly and almost linearly "
            f"({s[0]:.5g} → {s[-1]:.5g}, −{_pct(total_drop)} in {c.n} epochs, R² {r2:.2f})",
            _lr_change("raise", c.lr) + ", or train longer",
            train_loss_first=float(s[0]),
            train_loss_last=float(s[-1]),
            total_drop=total_drop,
            fraction_decreasing=decreasing,
            linear_r2=r2,
            slope_per_epoch=slope,
            slope_ratio_last_first=ratio,
        )
    return None


def _score_end(values: np.ndarray | None) -> float | None:
    return float(_smooth(values)[-1]) if values is not None else None


def _overfitting(c: _Curves) -> Finding | None:
    evidence: dict[str, Any] = {}
    parts: list[str] = []
    advice: list[str] = []
    if c.val is not None:
        s = _smooth(c.val)
        i_s = int(np.argmin(s))
        half = max(1, _window(c.n) // 2)
        lo, hi = max(0, i_s - half), min(c.n, i_s + half + 1)
        i_min = lo + int(np.argmin(c.val[lo:hi]))  # the raw minimum near the smoothed one
        low = float(s[i_s])
        rise = float((s[-1] - low) / abs(low)) if low != 0 else 0.0
        after = c.n - 1 - i_min
        train = _smooth(c.train)
        # C15b: the model keeps fitting its training data better while validation worsens;
        # a validation loss that rises with the train loss is instability, not overfitting.
        fitting = train[-1] < train[i_min]
        if after >= OVERFIT_PATIENCE and rise >= OVERFIT_RISE and fitting:
            best = c.epochs[i_min]
            evidence.update(
                best_epoch=best,
                val_loss_min=float(c.val[i_min]),
                val_loss_last=float(c.val[-1]),
                rise=rise,
                epochs_since_min=after,
                train_loss_at_best=float(train[i_min]),
                train_loss_last=float(train[-1]),
            )
            parts.append(
                f"validation loss was lowest at epoch {best} ({c.val[i_min]:.4g}) and has "
                f"risen {_pct(rise)} since ({c.val[-1]:.4g} at epoch {c.epochs[-1]}) while "
                "the train loss kept falling"
            )
            advice.append(f"stop at epoch {best} (train.early_stopping or the best checkpoint)")
    train_end, val_end = _score_end(c.train_score), _score_end(c.val_score)
    gap = None
    if train_end is not None and val_end is not None:
        gap = train_end - val_end
        evidence.update({f"train_{c.score}": train_end, f"val_{c.score}": val_end, "gap": gap})
        if gap >= OVERFIT_GAP and train_end >= OVERFIT_TRAIN_SCORE:
            parts.append(f"train {c.score} {train_end:.2f} vs validation {val_end:.2f}")
    if not parts:
        return None
    if len(parts) == 1 and "gap" in evidence and "rise" not in evidence:
        parts[0] = "a large train/validation gap: " + parts[0]
    advice.append("add dropout 0.3–0.5 or weight decay 1e-4, or more data")
    return _finding(
        "overfitting", "overfitting: " + "; ".join(parts), "; ".join(advice), **evidence
    )


def _poor_fit(c: _Curves, n_classes: int | None) -> tuple[dict[str, Any], str] | None:
    """Evidence and words when the model fits poorly (C15b's "poor"): a train score below
    its threshold and, with validation, a validation score below it too; None otherwise
    or when nothing gives the loss a scale."""
    train_end, val_end = _score_end(c.train_score), _score_end(c.val_score)
    if train_end is not None:
        limit = UNDERFIT_ACCURACY if c.score == "accuracy" else UNDERFIT_R2
        if train_end >= limit or (val_end is not None and val_end >= limit):
            return None
        evidence: dict[str, Any] = {f"train_{c.score}": train_end}
        what = f"train {c.score} {train_end:.2f}"
        if val_end is not None:
            gap = train_end - val_end
            evidence.update({f"val_{c.score}": val_end, "gap": gap})
            together = "close together" if abs(gap) < OVERFIT_GAP else f"{abs(gap):.2f} apart"
            what += f" and validation {val_end:.2f}, both poor and {together}"
        return evidence, what
    if c.score == "accuracy" and n_classes is not None:
        chance = math.log(n_classes)
        final = float(_smooth(c.train)[-1])
        if final < UNDERFIT_CHANCE_FRACTION * chance:
            return None
        evidence = {"train_loss": final, "chance_loss": chance}
        return evidence, f"train loss {final:.3g}, near chance (ln {n_classes} = {chance:.3g})"
    return None


def _trend(values: np.ndarray, k: int) -> tuple[float, float, bool]:
    """How a curve moves over its last k epochs: (drop, t, improving).

    ``drop`` is the relative fall of a line fitted to the smoothed values (:func:`_drop`);
    ``t`` is the fall of a line fitted to the raw values in standard errors of its slope.
    The curve is *improving* when it fell by at least :data:`FLAT_DROP` and ``t`` is at
    least :data:`TREND_T`: a fall both worth training for and more than noise.
    """
    drop = _drop(_smooth(values), k)
    tail = values[-k:]
    slope, _, residuals = _line_fit(tail)
    x = np.arange(k, dtype=float)
    se = math.sqrt(float((residuals**2).sum()) / (k - 2) / float(((x - x.mean()) ** 2).sum()))
    t = -slope / se if se > 0 else math.copysign(_T_CAP, -slope) if slope else 0.0
    t = max(-_T_CAP, min(_T_CAP, t))
    return drop, t, drop >= FLAT_DROP and t >= TREND_T


def _underfitting(c: _Curves, n_classes: int | None) -> Finding | None:
    k = _last_third(c.n)
    drop, t, improving = _trend(c.train, k)
    poor = _poor_fit(c, n_classes)
    if improving or poor is None:
        return None  # still improving (not a verdict on capacity yet), or fits well
    evidence, what = poor
    how = "has flattened" if drop < FLAT_DROP else "is not clearly improving"
    return _finding(
        "underfitting",
        f"underfitting: {what}; the train loss {how} ({'down' if drop >= 0 else 'up'} "
        f"{_pct(abs(drop))} over the last {k} epochs)",
        "a larger model (more or wider layers), train longer, or raise the learning rate 3×",
        **evidence,
        train_loss_drop_last_third=drop,
        trend_t=t,
        last_epochs=k,
    )


def _not_converged(c: _Curves, n_classes: int | None) -> Finding | None:
    k = _last_third(c.n)
    curve, name = (c.val, "validation") if c.val is not None else (c.train, "train")
    drop, t, improving = _trend(curve, k)
    poor_fit = None
    if not improving and c.val is not None:
        # The validation loss has flattened, but a model that still fits its training data
        # poorly and keeps improving on it has not converged either.
        poor = _poor_fit(c, n_classes)
        train_drop, train_t, train_improving = _trend(c.train, k)
        if train_improving and poor is not None:
            name, drop, t, improving, poor_fit = "train", train_drop, train_t, True, poor[1]
    train_end = _score_end(c.train_score)
    if c.val is None and train_end is not None and train_end >= OVERFIT_TRAIN_SCORE:
        return None  # it fits its training data already: more epochs would only memorize
    if not improving:
        return None
    message = f"not converged: the {name} loss still fell {_pct(drop)} over the last {k} epochs"
    if poor_fit:
        message += f" ({poor_fit})"
    return _finding(
        "not_converged",
        message,
        "train longer (more train.epochs) or raise the learning rate 3×",
        curve=name,
        drop_last_third=drop,
        trend_t=t,
        last_epochs=k,
        **_final_metrics(c),
    )


def _final_metrics(c: _Curves) -> dict[str, float]:
    out = {"train_loss": float(c.train[-1])}
    if c.val is not None:
        out["val_loss"] = float(c.val[-1])
    if c.train_score is not None:
        out[f"train_{c.score}"] = float(c.train_score[-1])
    if c.val_score is not None:
        out[f"val_{c.score}"] = float(c.val_score[-1])
    return out


def _healthy(c: _Curves, history: Sequence[dict]) -> Finding:
    metric = "train_loss"
    if c.val_score is not None and c.score == "accuracy":
        metric = "val_accuracy"
    elif c.val is not None:
        metric = "val_loss"
    best = history_best(history, metric)
    assert best is not None  # the metric is in every epoch
    final = _final_metrics(c)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in final.items())
    return _finding(
        "healthy",
        f"healthy: best epoch {best[0]} ({metric} {best[1]:.4g}); final {shown}",
        f"nothing to fix; epoch {best[0]} had the best {metric}",
        best_epoch=int(best[0]),
        best_metric=metric,
        best_value=float(best[1]),
        **final,
    )


# --- the public functions ------------------------------------------------------------------
def _check(history: Any, task: str | None, n_classes: int | None) -> list[dict]:
    if task is not None and task not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(_TASKS)} or None; got {task!r}")
    if n_classes is not None and (
        isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2
    ):
        raise ValueError(f"n_classes must be an int ≥ 2 or None; got {n_classes!r}")
    if isinstance(history, (str, bytes, dict)) or not isinstance(history, Sequence):
        raise ValueError(f"history must be a list of per-epoch dicts; got {type(history).__name__}")
    for i, h in enumerate(history):
        if not isinstance(h, dict) or "train_loss" not in h:
            raise ValueError(
                f"history[{i}] must be a dict with a 'train_loss' (a line of metrics.jsonl); "
                f"got {h!r:.80}"
            )
        loss = h["train_loss"]
        if loss is not None and (isinstance(loss, bool) or not isinstance(loss, (int, float))):
            raise ValueError(f"history[{i}]['train_loss'] must be a number; got {loss!r:.40}")
    return list(history)


def diagnose(
    history: Sequence[dict], task: str | None = None, n_classes: int | None = None
) -> list[Finding]:
    """Read a run's learning curves (C15a, C15b) and say what is wrong, if anything.

    Parameters
    ----------
    history : list of dict
        One dict per epoch, as the Trainer returns it and ``metrics.jsonl`` stores it:
        ``epoch``, ``train_loss``, ``train_accuracy`` | ``train_mse``, ``train_r2``,
        ``val_*`` (optional), ``lr``, ….
    task : {"classification", "regression"}, optional
        Default: inferred from the keys (``train_accuracy`` → classification).
    n_classes : int, optional
        Number of classes; enables the chance-level rules (ln C).

    Returns
    -------
    list of Finding
        Sorted by severity (error, warning, info), then by :data:`KINDS`; never empty.
        ``healthy`` and ``too_short`` come alone.

    Raises
    ------
    ValueError
        For a history that is not a list of dicts with ``train_loss``, an unknown task or
        a bad ``n_classes``.
    """
    history = _check(history, task, n_classes)
    task = task or infer_task(history)
    bad = _non_finite(history)
    lr = _last_lr(history)
    if len(history) < MIN_EPOCHS:
        if bad is not None:
            return [_diverged_non_finite(history, bad, lr)]
        return [
            _finding(
                "too_short",
                f"too short to judge: {len(history)} epoch(s) logged, at least {MIN_EPOCHS} needed",
                f"train for at least {MIN_EPOCHS} epochs ({MIN_EPOCHS_SHAPE}+ to judge the "
                "learning rate) and diagnose again",
                epochs=len(history),
                min_epochs=MIN_EPOCHS,
            )
        ]

    findings: list[Finding] = []
    judged = history
    if bad is not None:
        findings.append(_diverged_non_finite(history, bad, lr))
        judged = history[: bad[0]]  # the other rules read the epochs before it
    if len(judged) >= MIN_EPOCHS:
        c = _curves(judged, task)
        if bad is None:
            findings += [f for f in (_diverged(c, n_classes), _lr_too_high(c)) if f]
        findings += [f for f in (_lr_too_low(c), _overfitting(c)) if f]
        kinds = {f.kind for f in findings}
        if not kinds & {"diverged", "lr_too_high", "lr_too_low"}:
            findings += [f for f in (_underfitting(c, n_classes),) if f]
        if not findings:
            findings += [f for f in (_not_converged(c, n_classes),) if f]
        if not findings:
            findings.append(_healthy(c, judged))
        if c.val is None:
            for f in findings:
                f.evidence.setdefault("validation", _MISSING_VAL)
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), KINDS.index(f.kind)))
    return findings


def format_findings(findings: Sequence[Finding]) -> str:
    """The text ``trainlab diagnose RUN_DIR`` prints: one block per finding.

    Each block is the severity and the message, the evidence as ``key=value`` pairs, and
    the advice, e.g.::

        [warning] overfitting: validation loss was lowest at epoch 8 (1.169) …
          evidence: best_epoch=8 val_loss_min=1.169 …
          advice:   stop at epoch 8 (train.early_stopping or the best checkpoint); …
    """
    blocks = []
    for f in findings:
        evidence = " ".join(f"{k}={_show(v)}" for k, v in f.evidence.items())
        blocks.append(f"[{f.severity}] {f.message}\n  evidence: {evidence}\n  advice:   {f.advice}")
    return "\n\n".join(blocks)


def _show(value: Any) -> str:
    if isinstance(value, str) and " " in value:
        return f'"{value}"'
    return str(value)
