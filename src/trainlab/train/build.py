"""Building a run's pieces from a config, in one place.

``trainlab fit``, a tuning trial, a sweep and the LR finder all build what a config names
through :func:`build`: the data set (:func:`load_dataset`), its split, the preprocessing
fitted on the training split only, the loaders, the model and the optimizer; then
:meth:`Pieces.trainer` adds the schedule and early stopping. Nothing here writes a file.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainlab import data as tl_data
from trainlab import models, optim, preprocess
from trainlab.config import Config, ConfigError

from .callbacks import EarlyStopping
from .metrics import TASK_METRICS, default_loss, default_monitor
from .trainer import Trainer, resolve_device

__all__ = [
    "EVAL_BATCH",
    "Pieces",
    "build",
    "check_metrics",
    "early_stopping",
    "eval_loader",
    "load_dataset",
    "seed_everything",
]

#: The batch size of every evaluation pass (no gradients: larger batches, fewer steps).
EVAL_BATCH = 1000


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic``, ask torch for deterministic
    kernels (a resumed run then equals an uninterrupted one).

    Deterministic mode would also have torch fill every new tensor with NaN
    (``torch.utils.deterministic.fill_uninitialized_memory``), a debugging aid that costs
    a write of every allocation — 13 % of a batched sweep step (K = 32 MNIST-1D MLPs,
    ``bench/sweep.py``). No kernel here reads memory it has not written, so it is off."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def load_dataset(config: Config) -> tl_data.Dataset:
    """The data set ``data.dataset`` names, with the config's target column and task.

    Raises
    ------
    DataError
        For an unknown name or a missing path (the message names ``data.dataset``).
    """
    try:
        return tl_data.load(config.data.dataset, target=config.data.target, task=config.data.task)
    except tl_data.UnknownDataset as err:
        raise tl_data.DataError(f"data.dataset: {err}") from None


def eval_loader(loader: tl_data.TensorLoader) -> tl_data.TensorLoader:
    """The same samples in order, in batches of :data:`EVAL_BATCH` (for an evaluation in
    eval mode of a split that was trained on, e.g. the training split)."""
    return tl_data.TensorLoader(loader.X, loader.y, batch_size=EVAL_BATCH, shuffle=False)


def check_metrics(config: Config, task: str, has_val: bool) -> str:
    """The metric that picks the best epoch (``train.monitor`` or the task's default).

    Raises
    ------
    ConfigError
        When ``train.monitor`` or ``train.early_stopping.metric`` names a metric this run
        does not log.
    """
    monitor = config.train.monitor or default_monitor(task, has_val)
    es = config.train.early_stopping
    logged = [
        f"{part}_{m}"
        for part in ("train", "val")
        if part == "train" or has_val
        for m in TASK_METRICS[task]
    ]
    checks = (("train.monitor", monitor), ("train.early_stopping.metric", es and es.metric))
    for key, metric in checks:
        if metric and metric not in logged:
            raise ConfigError(
                f"{key}: {metric!r} is not logged by this run ({task}); logged: {', '.join(logged)}"
            )
    return monitor


def early_stopping(config: Config) -> EarlyStopping | None:
    """The config's early stopping (``train.early_stopping``), or None."""
    es = config.train.early_stopping
    return None if es is None else EarlyStopping(es.metric, es.patience, es.min_delta)


@dataclass
class Pieces:
    """What a config builds before anything is written: data, split, model, optimizer."""

    config: Config
    dataset: Any
    split: Any
    preprocessor: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loaders: dict[str, Any]
    device: torch.device

    def loss(self):
        """The training loss of the task (cross-entropy or mean squared error)."""
        return default_loss(self.dataset.task)

    def monitor(self) -> str:
        """The metric that picks the best epoch (checked: see :func:`check_metrics`)."""
        return check_metrics(self.config, self.dataset.task, "val" in self.loaders)

    def scheduler(self) -> Any:
        """The config's learning-rate schedule over the run's optimizer steps."""
        steps = self.config.train.epochs * len(self.loaders["train"])
        return optim.schedule.scheduler(self.optimizer, self.config.schedule.build(steps))

    def trainer(self, callbacks: list[Any] | None = None) -> Trainer:
        """A Trainer of the pieces with the config's schedule; early stopping (when the
        config asks for it) comes first among the ``callbacks``."""
        stop = early_stopping(self.config)
        return Trainer(
            self.model,
            self.optimizer,
            task=self.dataset.task,
            scheduler=self.scheduler(),
            callbacks=([stop] if stop else []) + list(callbacks or []),
            device=self.device,
        )


def build(
    config: Config, split: Any = None, parts: tuple[str, ...] = ("train", "val", "test")
) -> Pieces:
    """Load the data, split it (unless ``split`` is given), fit the preprocessing on the
    training split, build the model and the optimizer. Writes nothing.

    Only the ``parts`` named get a loader: a tuning trial asks for train and val, so the
    test samples are never even indexed before the final evaluation."""
    seed_everything(config.seed, config.train.deterministic)
    device = resolve_device(config.train.device)
    dataset = load_dataset(config)
    if split is None:
        s = config.data.split
        split = tl_data.split(
            dataset, val=s.val, test=s.test, stratify=s.stratify, seed=config.seed
        )

    X, y = dataset.X, dataset.y
    pre = None
    if config.data.preprocess:
        # fitted on the training split only, always
        pre = preprocess.Pipeline([preprocess.create(name) for name in config.data.preprocess])
        pre.fit(X[torch.as_tensor(split.train)])
        X = pre.transform(X).float()
    X, y = X.to(device), y.to(device)

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.as_tensor(idx, device=device)
        return X[i], y[i]

    batch = config.train.batch_size
    loaders = {
        "train": tl_data.TensorLoader(
            *part(split.train), batch_size=batch, shuffle=True, seed=config.seed
        )
    }
    for name in ("val", "test"):
        idx = getattr(split, name)
        if len(idx) and name in parts:
            loaders[name] = tl_data.TensorLoader(
                *part(idx), batch_size=max(batch, EVAL_BATCH), shuffle=False
            )

    n_out = dataset.n_classes if dataset.task == "classification" else 1
    try:
        options = config.model.options()
        model = models.create(config.model.kind, tuple(X.shape[1:]), n_out, **options)
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None
    hyper = config.optimizer.hyperparameters()
    if config.optimizer.lr == "auto":
        hyper["lr"] = 1e-3  # a stand-in until the LR finder (or a resumed state) sets it
    opt = optim.create(config.optimizer.name, model.parameters(), **hyper)
    return Pieces(config, dataset, split, pre, model.to(device), opt, loaders, device)
