"""The Trainer: one loop, callbacks around it, and a state that resumes exactly."""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from trainlab.config import ConfigError
from trainlab.errors import UserError

from . import distributed
from .callbacks import Callback
from .metrics import TASK_METRICS, MetricSums, default_loss

__all__ = [
    "Trainer",
    "NonFiniteLossError",
    "resolve_device",
    "rng_state",
    "set_rng_state",
]


class NonFiniteLossError(UserError, RuntimeError):
    """The training loss became NaN or infinite (or the gradient did, for
    :data:`MAX_SKIPPED_IN_A_ROW` steps in a row); ``str(err)`` says what to do."""


#: A step whose gradient holds an inf or a NaN is skipped; this many in a row stop the run.
MAX_SKIPPED_IN_A_ROW = 10


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → a CUDA GPU when present, else the CPU.

    Raises
    ------
    ConfigError
        For a device this machine does not have (``train.device``).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        missing = (device.index or 0) >= count
        have = f"{count} CUDA GPU{'s' if count != 1 else ''}"
    elif device.type == "mps":
        missing, have = not torch.backends.mps.is_available(), "no MPS (Apple GPU)"
    else:
        missing = False
    if missing:
        raise ConfigError(
            f"train.device: {str(device)!r} is not available, this machine has {have}; "
            f"use auto or cpu"
        )
    return device


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

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the Trainer joins the process group (gloo on
    the CPU, NCCL on ``cuda:LOCAL_RANK``), trains ``DistributedDataParallel(model)``,
    gives each rank its share of every batch of a :class:`~trainlab.data.TensorLoader`
    (the batch size stays global; each rank's loss is weighted by its share, so the
    gradient is the global batch's), all-reduces the metrics, and calls the callbacks on
    rank 0 only — except those with ``all_ranks = True`` (early stopping, which every
    rank must apply alike). Dropout draws from a generator seeded per (seed, epoch, rank),
    so a run resumed at an epoch boundary continues exactly. See docs/distributed.md.

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
        self.device = distributed.rank_device(resolve_device(device))
        self.world = distributed.init(self.device)
        self.model = model.to(self.device)
        self.net: nn.Module = self.model  # what the training forward calls
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
            self._seed = torch.initial_seed()
        self.optimizer = optimizer
        # trainlab's flat optimizers keep the gradients as views of one buffer: zeroing it
        # in place lets backward accumulate there, so a step copies no gradient
        self._grads_to_none = not getattr(optimizer, "zeroes_flat_gradients", False)
        self.task = task
        self.loss_fn = loss or default_loss(task)
        self.scheduler = scheduler
        self.callbacks: list[Any] = list(callbacks)
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        self.skipped_steps = 0  # of them, skipped for a non-finite gradient
        self._skipped_in_a_row = 0
        self._grad_flags: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.stop = False  # a callback sets it to end training after this epoch
        self.train_loader: Any = None

    # --- the loop ---------------------------------------------------------------------
    def fit(self, train: Any, val: Any = None, epochs: int = 1) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are complete (counting those already done)."""
        self.train_loader = train
        self.stop = False
        world = self.world
        if world.distributed and hasattr(train, "shard"):
            train.shard(world.rank, world.size)
        self._call("on_fit_start")
        while self.epoch < epochs and not self.stop:
            started = time.perf_counter()
            if hasattr(train, "set_epoch"):
                train.set_epoch(self.epoch)
            if world.distributed:  # dropout: its own stream per rank and epoch
                torch.manual_seed((self._seed * 1_000_003 + self.epoch) * 1009 + world.rank)
            self.model.train()
            sums = MetricSums(self.task, self.device)
            batch_hooks = self._hooks("on_batch_end")
            for xb, yb in train:
                xb, yb = xb.to(self.device), yb.to(self.device)
                out = self.net(xb)
                loss = self.loss_fn(out, yb)
                # The one read of the step back to the host: the guard and the batch hooks
                # share it; the metrics stay on the device (MetricSums).
                value = loss.item()
                if not math.isfinite(value):
                    self._non_finite(loss)
                self.optimizer.zero_grad(set_to_none=self._grads_to_none)
                self._weighted(loss, len(yb), train).backward()
                self._skip_if_non_finite_gradient(loss)
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.step += 1
                sums.update(out.detach(), yb, loss.detach())
                for hook in batch_hooks:
                    hook(self, value)
            logs: dict[str, float] = {"epoch": self.epoch + 1}
            if world.distributed:
                sums.all_reduce()
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

    def _weighted(self, loss: torch.Tensor, n: int, loader: Any) -> torch.Tensor:
        # DDP averages the ranks' gradients; a rank whose share of the global batch is not
        # 1/size (the last batch of an epoch) weights its mean loss by share·size.
        total = getattr(loader, "batch_samples", 0)
        size = self.world.size
        if size > 1 and total and n * size != total:
            return loss * (n * size / total)
        return loss

    def _shard_for_eval(self, data: Any) -> Any:
        # Each rank evaluates a contiguous 1/size of the samples (none is dropped); the
        # sums are all-reduced.
        if not (self.world.distributed and hasattr(data, "shard") and hasattr(data, "X")):
            return data
        rank, size = self.world.rank, self.world.size
        X = torch.tensor_split(data.X, size)[rank]
        y = torch.tensor_split(data.y, size)[rank]
        return type(data)(X, y, batch_size=data.batch_size, shuffle=False)

    @torch.no_grad()
    def evaluate(self, data: Any) -> dict[str, float]:
        """Metrics of the model in eval mode over a loader of ``(x, y)`` batches (in a
        distributed run: each rank evaluates its share, the sums are all-reduced)."""
        data = self._shard_for_eval(data)
        was_training = self.model.training
        self.model.eval()
        sums = MetricSums(self.task, self.device)
        try:
            for xb, yb in data:
                xb, yb = xb.to(self.device), yb.to(self.device)
                out = self.model(xb)
                sums.update(out, yb, self.loss_fn(out, yb))
        finally:
            self.model.train(was_training)
        if self.world.distributed:
            sums.all_reduce()
        return sums.result()

    def _non_finite(self, loss: torch.Tensor, what: str | None = None) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        base = self.optimizer.param_groups[0].get("initial_lr", lr)  # before the schedule
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        # the failed epoch is logged (so a diagnosis sees it) but never checkpointed
        self.history.append({"epoch": self.epoch + 1, "train_loss": loss.item(), "lr": lr})
        self._call("on_non_finite")
        what = what or f"the training loss became {loss.item()}"
        raise NonFiniteLossError(
            f"{what} at {where} (lr {lr:g}): the learning rate is probably too high; lower "
            f"it 3–10× (e.g. --set optimizer.lr={base / 3:.3g}) and start the run again; the "
            "checkpoint of the last finite epoch is kept"
        )

    def _skip_if_non_finite_gradient(self, loss: torch.Tensor) -> None:
        """Drop every gradient when one holds an inf or a NaN (a finite loss can still
        overflow in the backward pass, e.g. in float16), so the optimizer step changes
        nothing; count the step in ``skipped_steps`` and warn. The schedule still advances.
        :data:`MAX_SKIPPED_IN_A_ROW` skipped steps in a row stop the run
        (:class:`NonFiniteLossError`)."""
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for group in self.optimizer.param_groups:  # cheaper than walking the model's modules
            for p in group["params"]:
                if p.grad is not None:
                    g = p.grad.coalesce().values() if p.grad.is_sparse else p.grad
                    by_device.setdefault(g.device, []).append(g)
        found = False
        for device, grads in by_device.items():  # GradScaler's fused check, with scale 1
            if device not in self._grad_flags:
                self._grad_flags[device] = (
                    torch.zeros(1, device=device),
                    torch.ones(1, device=device),
                )
            flag, one = self._grad_flags[device]
            flag.zero_()
            torch._amp_foreach_non_finite_check_and_unscale_(grads, flag, one)
            found = found or bool(flag.item())
        if not found:
            self._skipped_in_a_row = 0
            return
        bad = [
            name
            for name, p in self.model.named_parameters()
            if p.grad is not None and not bool(torch.isfinite(p.grad).all())
        ]
        self.optimizer.zero_grad(set_to_none=True)  # no gradient: the step is a no-op
        self.skipped_steps += 1
        self._skipped_in_a_row += 1
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        if self._skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            self._non_finite(
                loss,
                f"the gradient was not finite for {self._skipped_in_a_row} steps in a row "
                f"({shown})",
            )
        warnings.warn(
            f"step {self.step + 1} (epoch {self.epoch + 1}) skipped: the gradient of "
            f"{shown} is not finite; {self.skipped_steps} step(s) skipped so far",
            RuntimeWarning,
            stacklevel=3,
        )

    def _call(self, hook: str, *args: Any) -> None:
        for method in self._hooks(hook):
            method(self, *args)

    def _hooks(self, hook: str) -> list[Callable[..., Any]]:
        """The callbacks' ``hook`` methods this process calls, in order; the no-op defaults
        of :class:`~trainlab.train.callbacks.Callback` are left out, so a per-batch hook
        that no callback implements costs nothing."""
        default = getattr(Callback, hook, None)
        main = self.world.main
        methods = []
        for cb in self.callbacks:
            if not main and not getattr(cb, "all_ranks", False):
                continue  # only rank 0 writes
            method = getattr(cb, hook, None)
            inherited = default is not None and getattr(method, "__func__", None) is default
            if method is not None and not inherited:
                methods.append(method)
        return methods

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly where this one is."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "skipped_steps": self.skipped_steps,
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
        self.skipped_steps = int(state.get("skipped_steps", 0))
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
