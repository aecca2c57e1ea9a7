"""The Trainer: one loop, callbacks around it, and a state that resumes exactly."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Trainer",
    "NonFiniteLossError",
    "TASK_METRICS",
    "resolve_device",
    "history_best",
    "minimize",
    "default_loss",
    "rng_state",
    "set_rng_state",
]

#: Metric names per task, as they appear in histories, metrics.jsonl and summary.json.
TASK_METRICS = {"classification": ("loss", "accuracy"), "regression": ("loss", "mse", "r2")}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; ``str(err)`` says what to do."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → a CUDA GPU when present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Sums:
    """Running sums over batches, so a metric over a whole split is exact, not a mean of
    per-batch means (batches may differ in size)."""

    def __init__(self, task: str):
        self.task, self.n, self.loss = task, 0, 0.0
        self.correct = 0
        self.sse = self.sum_y = self.sum_y2 = 0.0

    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        n = y.shape[0]
        self.n += n
        self.loss += loss.item() * n
        if self.task == "classification":
            self.correct += (out.argmax(dim=1) == y).sum().item()
        else:
            pred = out.reshape(y.shape)
            self.sse += ((pred - y) ** 2).sum().item()
            self.sum_y += y.sum().item()
            self.sum_y2 += (y**2).sum().item()

    def result(self) -> dict[str, float]:
        if self.n == 0:
            return {}
        metrics = {"loss": self.loss / self.n}
        if self.task == "classification":
            metrics["accuracy"] = self.correct / self.n
        else:
            metrics["mse"] = self.sse / self.n
            sst = self.sum_y2 - self.sum_y**2 / self.n
            metrics["r2"] = 1.0 - self.sse / sst if sst > 0 else float("nan")
        return metrics


def default_loss(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy on logits for classification; mean squared error for regression."""
    if task == "classification":
        return F.cross_entropy
    return lambda out, y: F.mse_loss(out.reshape(y.shape), y)


class Trainer:
    """Train a model with an optimizer; evaluate; save and restore the whole state.

    Parameters
    ----------
    model : nn.Module
    optimizer : torch.optim.Optimizer
    task : {"classification", "regression"}
        Chooses the default loss (cross-entropy or mean squared error) and the metrics
        (:data:`TASK_METRICS`).
    loss : callable, optional
        ``loss(output, target) -> scalar``; default per task.
    scheduler : torch LR scheduler, optional
        Stepped once per optimizer step.
    callbacks : iterable of :class:`~trainlab.train.callbacks.Callback`
    device : str
        ``"auto"`` (a GPU when present), ``"cpu"``, ``"cuda"``, …

    A history is a list of one dict per epoch: ``epoch``, ``train_<metric>``,
    ``val_<metric>``, ``lr``, ``seconds`` — the lines of ``metrics.jsonl``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        task: str = "classification",
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        scheduler: Any = None,
        callbacks: Iterable[Any] = (),
        device: str | torch.device = "auto",
    ):
        if task not in TASK_METRICS:
            raise ValueError(f"task must be one of {', '.join(TASK_METRICS)}; got {task!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.task = task
        self.loss_fn = loss or default_loss(task)
        self.scheduler = scheduler
        self.callbacks: list[Any] = list(callbacks)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        self.stop = False  # a callback sets it to end training after this epoch
        self.train_loader: Any = None

    # --- the loop ---------------------------------------------------------------------
    def fit(self, train: Any, val: Any = None, epochs: int = 1) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are complete (counting those already done)."""
        self.train_loader = train
        self.stop = False
        self._call("on_fit_start")
        while self.epoch < epochs and not self.stop:
            started = time.perf_counter()
            if hasattr(train, "set_epoch"):
                train.set_epoch(self.epoch)
            self.model.train()
            sums = _Sums(self.task)
            for xb, yb in train:
                xb, yb = xb.to(self.device), yb.to(self.device)
                out = self.model(xb)
                loss = self.loss_fn(out, yb)
                if not torch.isfinite(loss):
                    self._non_finite(loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.step += 1
                sums.update(out.detach(), yb, loss.detach())
                self._call("on_batch_end", loss.item())
            logs: dict[str, float] = {"epoch": self.epoch + 1}
            logs.update({f"train_{k}": v for k, v in sums.result().items()})
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(val).items()})
            logs["lr"] = self.optimizer.param_groups[0]["lr"]
            logs["seconds"] = time.perf_counter() - started
            self.epoch += 1
            self.history.append(logs)
            self._call("on_epoch_end", logs)
        self._call("on_fit_end")
        return self.history

    @torch.no_grad()
    def evaluate(self, data: Any) -> dict[str, float]:
        """Metrics of the model in eval mode over a loader of ``(x, y)`` batches."""
        was_training = self.model.training
        self.model.eval()
        sums = _Sums(self.task)
        try:
            for xb, yb in data:
                xb, yb = xb.to(self.device), yb.to(self.device)
                out = self.model(xb)
                sums.update(out, yb, self.loss_fn(out, yb))
        finally:
            self.model.train(was_training)
        return sums.result()

    def _non_finite(self, loss: torch.Tensor) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        # the failed epoch is logged (so a diagnosis sees it) but never checkpointed
        self.history.append({"epoch": self.epoch + 1, "train_loss": loss.item(), "lr": lr})
        self._call("on_non_finite")
        raise NonFiniteLossError(
            f"the training loss became {loss.item()} at {where} (lr {lr:g}): the learning "
            "rate is probably too high; lower it 3–10× (e.g. --set optimizer.lr="
            f"{lr / 3:.3g}) and start the run again; the checkpoint of the last finite "
            "epoch is kept"
        )

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(self, *args)

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly where this one is."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "history": list(self.history),
            "loader": self.train_loader.state_dict()
            if hasattr(self.train_loader, "state_dict")
            else None,
            "rng": rng_state(),
            "callbacks": {
                type(cb).__name__: cb.state_dict()
                for cb in self.callbacks
                if hasattr(cb, "state_dict")
            },
        }

    def load_state_dict(self, state: dict[str, Any], train_loader: Any = None) -> None:
        """Restore a state saved by :meth:`state_dict` (model, optimizer, scheduler,
        counters, history, RNGs, loader position and callback states)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])
        loader = train_loader or self.train_loader
        if loader is not None and state.get("loader") is not None:
            loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        saved = state.get("callbacks", {})
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict") and type(cb).__name__ in saved:
                cb.load_state_dict(saved[type(cb).__name__])


def rng_state() -> dict[str, Any]:
    """The torch, NumPy, Python (and CUDA) random states, as checkpoint-safe values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["key"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
