"""Callbacks: early stopping, checkpoints, the metrics log, progress, TensorBoard.

A callback is any object with some of the hooks ``on_fit_start(trainer)``,
``on_batch_end(trainer, loss)``, ``on_epoch_end(trainer, logs)``,
``on_non_finite(trainer)``, ``on_fit_end(trainer)``; one with ``state_dict`` /
``load_state_dict`` is saved in checkpoints and restored on resume.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainlab.atomic import remove_partial_writes, write_atomic

from . import distributed
from .checkpoint import save_checkpoint
from .metrics import minimize

__all__ = [
    "Callback",
    "EarlyStopping",
    "Checkpoint",
    "MetricsLog",
    "Progress",
    "TensorBoard",
    "StopOnSignal",
]


class Callback:
    """Base class with no-op hooks (subclassing it is optional).

    In a distributed run the Trainer calls a callback on rank 0 only, unless it has
    ``all_ranks = True``."""

    all_ranks = False

    def on_fit_start(self, trainer) -> None: ...
    def on_batch_end(self, trainer, loss: float) -> None: ...
    def on_epoch_end(self, trainer, logs: dict) -> None: ...
    def on_non_finite(self, trainer) -> None: ...
    def on_fit_end(self, trainer) -> None: ...


class _Best:
    """Tracks the best value of a monitored metric."""

    def __init__(self, metric: str, min_delta: float = 0.0):
        self.metric, self.min_delta = metric, min_delta
        self.sign = -1.0 if minimize(metric) else 1.0
        self.best: float | None = None
        self.best_epoch = 0

    def improved(self, logs: dict) -> bool:
        value = logs.get(self.metric)
        if value is None or math.isnan(value):
            return False
        if self.best is None or self.sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch = value, int(logs["epoch"])
            return True
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EarlyStopping(Callback):
    """Stop when ``metric`` has not improved by more than ``min_delta`` for ``patience``
    epochs (minimized for losses and errors, maximized otherwise).

    In a distributed run it runs on every rank (the metrics are all-reduced, so every
    rank stops at the same epoch)."""

    all_ranks = True  # the other callbacks write files: rank 0 only

    def __init__(self, metric: str = "val_loss", patience: int = 10, min_delta: float = 0.0):
        self.tracker = _Best(metric, min_delta)
        self.patience = patience
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer, logs: dict) -> None:
        if self.tracker.metric not in logs:
            raise ValueError(
                f"early_stopping.metric {self.tracker.metric!r} is not logged; available: "
                f"{', '.join(k for k in logs if k not in ('epoch', 'seconds'))}"
            )
        self.tracker.improved(logs)
        if trainer.epoch - self.tracker.best_epoch >= self.patience:
            trainer.stop = True
            self.stopped_epoch = trainer.epoch

    def state_dict(self) -> dict:
        return {**self.tracker.state_dict(), "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state)
        self.stopped_epoch = state.get("stopped_epoch")


class Checkpoint(Callback):
    """Write ``last.pt`` every ``every`` epochs (the whole trainer state, for --resume) and
    ``best.pt`` whenever ``metric`` improves (the model weights and ``extra()``).

    Both are written atomically (:func:`~trainlab.train.checkpoint.save_checkpoint`).
    """

    def __init__(
        self,
        directory: str | Path,
        metric: str = "val_loss",
        every: int = 1,
        extra: Callable[[], dict] | None = None,
    ):
        self.directory = Path(directory)
        self.tracker = _Best(metric)
        self.every = every
        self.extra = extra or dict
        self._saved_epoch: int | None = None

    #: The file names in ``directory`` (a run directory's ``checkpoints/``).
    LAST, BEST = "last.pt", "best.pt"

    @property
    def last(self) -> Path:
        return self.directory / self.LAST

    @property
    def best(self) -> Path:
        return self.directory / self.BEST

    def on_fit_start(self, trainer) -> None:
        remove_partial_writes(self.directory)  # left by a write a kill interrupted

    def on_epoch_end(self, trainer, logs: dict) -> None:
        if self.tracker.improved(logs):
            save_checkpoint(
                {"model": trainer.model.state_dict(), "epoch": trainer.epoch, **self.extra()},
                self.best,
            )
        if trainer.epoch % self.every == 0:
            self.save_last(trainer)

    def on_fit_end(self, trainer) -> None:
        if self._saved_epoch != trainer.epoch:  # stopped early, or not on an `every`
            self.save_last(trainer)

    def save_last(self, trainer) -> None:
        save_checkpoint({"trainer": trainer.state_dict(), **self.extra()}, self.last)
        self._saved_epoch = trainer.epoch

    def state_dict(self) -> dict:
        return self.tracker.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state)


class MetricsLog(Callback):
    """One JSON line per epoch in ``path``. On (re)start the file is rewritten from the
    trainer's history, so epochs logged after the last checkpoint of a killed run vanish."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_fit_start(self, trainer) -> None:
        write_atomic(self.path, "".join(json.dumps(h) + "\n" for h in trainer.history))

    def on_epoch_end(self, trainer, logs: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(logs) + "\n")
            f.flush()

    def on_non_finite(self, trainer) -> None:
        self.on_epoch_end(trainer, trainer.history[-1])  # the epoch that blew up


class Progress(Callback):
    """A tqdm bar over epochs with the latest metrics; silent when ``enabled`` is False
    (the default when stderr is not a terminal)."""

    def __init__(self, epochs: int, enabled: bool | None = None):
        self.epochs = epochs
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None

    def on_fit_start(self, trainer) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.epochs, initial=trainer.epoch, unit="epoch", file=sys.stderr, leave=False
            )

    def on_epoch_end(self, trainer, logs: dict) -> None:
        if self.bar is not None:
            shown = {
                k: f"{v:.4g}"
                for k, v in logs.items()
                if k.startswith(("train_", "val_")) and k.endswith(("loss", "accuracy", "r2"))
            }
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

    def on_fit_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_non_finite = on_fit_end


class TensorBoard(Callback):
    """Scalars per epoch for TensorBoard (``pip install trainlab[tensorboard]``)."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_epoch_end(self, trainer, logs: dict[str, Any]) -> None:
        for key, value in logs.items():
            if key != "epoch":
                self.writer.add_scalar(key.replace("_", "/", 1), value, int(logs["epoch"]))
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        self.writer.close()


class StopOnSignal(Callback):
    """Turn SIGINT (Ctrl-C) and SIGTERM into a clean stop: the epoch under way finishes,
    :class:`Checkpoint` (earlier in the callback list) saves it, and training ends;
    ``received`` then holds the signal's number. A second signal stops at once — SIGINT
    raises ``KeyboardInterrupt``, SIGTERM ends the process as it would by default — and
    the checkpoint of the previous epoch is intact either way.

    Use it as a context manager around :meth:`~trainlab.train.Trainer.fit`: entering
    installs the handlers (from the main thread only; elsewhere it does nothing), leaving
    restores the previous ones. ``stopped`` says whether it ended the training. In a
    distributed run every rank stops at the same epoch (the ranks that received the signal
    are counted with an all-reduce), ``received`` being None on those that did not.

    Stopping at an epoch boundary keeps a resumed run identical to an uninterrupted one;
    the price is that the epoch under way finishes first.
    """

    all_ranks = True
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify: Callable[[str], None] | None = None):
        self.received: int | None = None
        self.stopped = False
        self.notify = notify or (lambda line: print(line, file=sys.stderr, flush=True))
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def name(self) -> str | None:
        """The received signal's name (``"SIGINT"``, ``"SIGTERM"``), or None."""
        return None if self.received is None else signal.Signals(self.received).name

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # the second signal: stop now
            self.__exit__()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.notify(
            f"trainlab: {signal.Signals(signum).name} received: stopping once this epoch "
            f"ends and is saved ({again} again stops at once, losing this epoch)"
        )

    def on_epoch_end(self, trainer, logs: dict) -> None:
        received = torch.tensor([float(self.received is not None)])
        if distributed.all_reduce_sum(received).item() > 0:  # any rank: every rank stops
            trainer.stop = self.stopped = True
