"""What a run measures: the metric names of each task, their exact sums over a split, the
loss of a task, and which epoch is best.

One home for these: the Trainer, the sweep, the run procedures, the diagnosis and the
reports all read them from here."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from . import distributed

__all__ = [
    "TASK_METRICS",
    "MetricSums",
    "default_loss",
    "default_monitor",
    "history_best",
    "infer_task",
    "minimize",
]

#: Metric names per task, as they appear in histories, metrics.jsonl and summary.json.
TASK_METRICS = {"classification": ("loss", "accuracy"), "regression": ("loss", "mse", "r2")}


class MetricSums:
    """Running sums over batches, so a metric over a whole split is exact, not a mean of
    per-batch means (batches may differ in size).

    Adding a batch computes nothing and reads nothing back to the host: its outputs,
    targets and loss are kept as they are (on the device) and reduced together every
    :attr:`FOLD_BATCHES` batches (sooner when they hold :attr:`FOLD_NUMEL` output
    elements), into one tensor ``[n, Σ_b n_b·loss_b, correct, sse, Σ y, Σ y²]`` on the
    device (float64; float32 on MPS, which has no float64): a few operations per fold
    instead of a few per batch. A distributed run all-reduces that one tensor
    (:meth:`totals`); :meth:`result` reads it in one transfer.
    """

    FIELDS = ("n", "loss", "correct", "sse", "sum_y", "sum_y2")
    FOLD_BATCHES = 64
    FOLD_NUMEL = 1 << 22  # bounds the memory held by pending outputs

    def __init__(self, task: str, device: torch.device | str = "cpu"):
        self.task = task
        device = torch.device(device)
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self._totals = torch.zeros(len(self.FIELDS), dtype=dtype, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending_numel = 0

    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        """Add a batch: its outputs, targets and mean loss (detached; kept, not copied,
        until the next fold)."""
        self._pending.append((out, y, loss))
        self._pending_numel += out.numel()
        if len(self._pending) >= self.FOLD_BATCHES or self._pending_numel >= self.FOLD_NUMEL:
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        outs, ys, losses = zip(*self._pending)
        self._pending, self._pending_numel = [], 0
        dtype, device = self._totals.dtype, self._totals.device
        sizes = torch.tensor([t.shape[0] for t in ys], dtype=dtype, device=device)
        # each loss is its batch's mean: Σ_b n_b·loss_b is the split's sum of losses
        terms = [sizes.sum(), (torch.stack(losses).reshape(-1).to(dtype) * sizes).sum()]
        y, zero = torch.cat(ys), sizes.new_zeros(())
        if self.task == "classification":
            terms += [(torch.cat(outs).argmax(dim=1) == y).sum().to(dtype), zero, zero, zero]
        else:
            pred = torch.cat([o.reshape(t.shape) for o, t in zip(outs, ys)]).to(dtype)
            y = y.to(dtype)
            terms += [zero, ((pred - y) ** 2).sum(), y.sum(), (y**2).sum()]
        self._totals += torch.stack(terms)  # in the order of FIELDS

    def totals(self) -> torch.Tensor:
        """The sums so far as one tensor on the device, in the order of :attr:`FIELDS`."""
        self._fold()
        return self._totals

    def all_reduce(self) -> MetricSums:
        """Sum over the ranks of a distributed run (every rank gets the totals)."""
        distributed.all_reduce_sum(self.totals())
        return self

    def result(self) -> dict[str, float]:
        """loss = Σ_b n_b·loss_b / n; accuracy = correct / n; mse = sse / n;
        r2 = 1 − sse / (Σ y² − (Σ y)² / n) (nan when the targets do not vary)."""
        n, loss, correct, sse, sum_y, sum_y2 = self.totals().tolist()
        if n == 0:
            return {}
        metrics = {"loss": loss / n}
        if self.task == "classification":
            metrics["accuracy"] = correct / n
        else:
            metrics["mse"] = sse / n
            sst = sum_y2 - sum_y**2 / n
            metrics["r2"] = 1.0 - sse / sst if sst > 0 else float("nan")
        return metrics


def default_loss(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy on logits for classification; mean squared error for regression."""
    if task == "classification":
        return F.cross_entropy
    return lambda out, y: F.mse_loss(out.reshape(y.shape), y)


def history_best(history: Sequence[dict[str, float]], metric: str) -> tuple[int, float] | None:
    """(epoch, value) of the best epoch by ``metric`` (minimized if it is a loss or an
    error, maximized otherwise); None when the metric was never logged."""
    values = [(h["epoch"], h[metric]) for h in history if metric in h and not math.isnan(h[metric])]
    if not values:
        return None
    pick = min if minimize(metric) else max
    return pick(values, key=lambda ev: ev[1])


def minimize(metric: str) -> bool:
    """Whether smaller is better for a metric name like ``val_loss`` or ``val_accuracy``."""
    return metric.endswith(("loss", "mse"))


def default_monitor(task: str, has_val: bool) -> str:
    """The metric that picks the best epoch: validation accuracy for classification (the
    validation loss of an overconfident classifier can rise while its accuracy still
    improves), validation loss for regression; the training loss without a validation set."""
    if not has_val:
        return "train_loss"
    return "val_accuracy" if task == "classification" else "val_loss"


def infer_task(history: Iterable[dict]) -> str | None:
    """The task a history was logged for: classification when an accuracy was logged,
    regression when an mse or r2 was; None when neither was (a history of losses only)."""
    keys = {k for h in history for k in h}
    if any(k.endswith("accuracy") for k in keys):
        return "classification"
    if any(k.endswith(("_mse", "_r2")) for k in keys):
        return "regression"
    return None
