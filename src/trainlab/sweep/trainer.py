"""The batched Trainer: K models of one architecture trained together, each as its own
:class:`~trainlab.train.Trainer` run would train it.

Per step, every model still training takes one step on its own mini-batch: the same batch
for all when their data and order coincide (one ``TensorLoader`` shared), else each its
own. Per epoch each model gets a history entry in the Trainer's format (``epoch``,
``train_<metric>``, ``val_<metric>``, ``lr``, ``seconds``), its own early stopping, its own
best epoch (whose weights are kept), and its own fate: a model whose loss turns non-finite
is stopped as diverged, as is one that its early stopping or an ``on_epoch_end`` hook
stops. Models that stop leave the stack at the end of that epoch: the others go on
without computing them. Metrics are summed on the device during an epoch and read once at
its end (no per-step host synchronisation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.optim import Optimizer
from trainlab.train import EarlyStopping
from trainlab.train.callbacks import _Best
from trainlab.train.metrics import TASK_METRICS, MetricSums
from trainlab.train.trainer import resolve_device

from .optim import StackedOptimizer
from .stack import StackedModel

__all__ = ["SweepTrainer"]


def _per_model(value: Any, k: int, what: str) -> list:
    """One object for every model, or a sequence of k objects."""
    if isinstance(value, (list, tuple)):
        if len(value) != k:
            raise ValueError(f"{what}: got {len(value)} for {k} models")
        return list(value)
    return [value] * k


_LOADER_STATE = ("seed", "batch_size", "shuffle", "drop_last", "epoch", "position")


def _same_batches(a: Any, b: Any) -> bool:
    """Whether two loaders yield the same batches: the same object, or two
    TensorLoaders with equal settings, position and tensors."""
    if a is b:
        return True
    if not all(hasattr(x, k) for x in (a, b) for k in ("X", "y", *_LOADER_STATE)):
        return False
    return (
        all(getattr(a, k) == getattr(b, k) for k in _LOADER_STATE)
        and a.X.shape == b.X.shape
        and a.y.shape == b.y.shape
        and a.X.device == b.X.device
        and bool(torch.equal(a.X, b.X))
        and bool(torch.equal(a.y, b.y))
    )


class _Feed:
    """The mini-batches of the models still training: one loader per distinct data (loaders
    that would yield the same batches count as one, so their models share each batch)."""

    def __init__(self, loaders: list, where: str):
        self.units: list = []  # the distinct loaders
        self.unit_of: list[int] = []  # model → its loader's index
        for loader in loaders:
            i = next((j for j, u in enumerate(self.units) if _same_batches(u, loader)), None)
            if i is None:
                self.units.append(loader)
                i = len(self.units) - 1
            self.unit_of.append(i)
        first = self.units[0]
        for u in self.units[1:]:
            same = len(u) == len(first) and getattr(u, "batch_size", None) == getattr(
                first, "batch_size", None
            )
            if hasattr(u, "X") and hasattr(first, "X"):
                same = same and len(u.X) == len(first.X)
            if not same:
                raise ValueError(
                    f"{where}: the models' loaders must yield batches of the same sizes in "
                    "step (same number of samples and batch size)"
                )

    def batches(self, rows: list[int], device: torch.device):
        """(x, y, per_model) for each step: x [B, …] when the models in ``rows`` share one
        loader, else [len(rows), B, …] stacked from theirs."""
        used = sorted({self.unit_of[k] for k in rows})
        if len(used) == 1:
            for xb, yb in self.units[used[0]]:
                yield xb.to(device), yb.to(device), False
            return
        pick = torch.tensor([used.index(self.unit_of[k]) for k in rows], device=device)
        iterators = [iter(self.units[u]) for u in used]
        while True:  # every loader is run to its end (a loader notes where it stopped)
            parts = [next(it, None) for it in iterators]
            if all(part is None for part in parts):
                return
            if any(part is None for part in parts):
                raise ValueError("the models' loaders ran out of batches at different steps")
            xs = torch.stack([xb.to(device) for xb, _ in parts])
            ys = torch.stack([yb.to(device) for _, yb in parts])
            yield xs.index_select(0, pick), ys.index_select(0, pick), True

    def set_epoch(self, epoch: int, rows: list[int]) -> None:
        for u in {self.unit_of[k] for k in rows}:
            if hasattr(self.units[u], "set_epoch"):
                self.units[u].set_epoch(epoch)


class _Totals:
    """Per-model running sums of one pass, kept on the device: row k holds model k's
    ``[n, Σ_b n_b·loss_b, correct, sse, Σ y, Σ y²]`` (the Trainer's ``MetricSums.FIELDS``)."""

    def __init__(self, task: str, k: int, device: torch.device):
        self.task = task
        self.sums = torch.zeros(k, len(MetricSums.FIELDS), dtype=torch.float64, device=device)

    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor, per_model: bool):
        k = out.shape[0]
        yk = y if per_model else y.expand(k, *y.shape)
        n = yk.shape[1]
        terms = {"n": torch.full((k,), float(n), device=out.device), "loss": loss * n}
        if self.task == "classification":  # argmax over the classes, as a max over dim 1
            # of [K, C, B] (faster; ties go to the first class either way)
            terms["correct"] = (out.transpose(1, 2).max(dim=1).indices == yk).sum(dim=-1)
        else:
            pred = out.reshape(yk.shape)
            terms["sse"] = ((pred - yk) ** 2).flatten(1).sum(1)
            terms["sum_y"] = yk.flatten(1).sum(1)
            terms["sum_y2"] = (yk**2).flatten(1).sum(1)
        for i, field in enumerate(MetricSums.FIELDS):
            if field in terms:
                self.sums[:, i] += terms[field].to(torch.float64)

    def results(self) -> list[dict[str, float]]:
        """One metrics dict per model, by the Trainer's own ``MetricSums.result``."""
        return [MetricSums.result(_Row(self.task, row)) for row in self.sums.cpu()]


class _Row:
    """One model's sums, as ``MetricSums.result`` reads them (``task``, ``totals()``)."""

    def __init__(self, task: str, totals: torch.Tensor):
        self.task, self._totals = task, totals

    def totals(self) -> torch.Tensor:
        return self._totals


class SweepTrainer:
    """Train K models of one architecture together.

    Model k ends as ``Trainer(models[k], optimizers[k], task, scheduler,
    [EarlyStopping]).fit(train[k], val[k], epochs)`` would leave it, up to float rounding
    (on a CPU; see :mod:`trainlab.sweep.stack` for dropout on a GPU), provided the global
    random state before that sequential run is ``rng_states[k]``.

    Parameters
    ----------
    models : sequence of nn.Module
        The K models (same architecture; see :class:`~trainlab.sweep.stack.StackedModel`).
        Training updates them in place: afterwards each holds its final weights.
    optimizers : sequence of trainlab.optim.Optimizer
        One per model (made on its parameters, one param group); only their settings and
        families are used.
    task : {"classification", "regression"}
    schedules : sequence of callables or None, optional
        Learning-rate multipliers ``f(t)`` per model (a :mod:`trainlab.optim.schedule`
        schedule, as a ``LambdaLR`` stepped every optimizer step would apply it).
    rng_states : sequence of torch.ByteTensor, optional
        The global random state each model's sequential run has when it starts training
        (its dropout masks come from it). Default: the current one, for all.
    early_stopping : EarlyStopping or None, or one per model, optional
        A fresh :class:`~trainlab.train.EarlyStopping` per model (or None); shared settings
        may be given as one instance, which is copied.
    monitor : str, optional
        The metric that picks each model's best epoch (whose weights :meth:`best_state`
        returns), e.g. ``"val_accuracy"``. Default: ``val_loss`` with validation data, else
        ``train_loss``.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, …

    Attributes
    ----------
    histories : list of list of dict
        Per model, one dict per epoch (the Trainer's history format).
    status : list of str
        Per model: ``"completed"``, ``"early_stopped"``, ``"diverged"`` or the reason an
        ``on_epoch_end`` hook gave.
    errors : list of str or None
        Per model, why it stopped when it diverged (one line, like ``NonFiniteLossError``).
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        optimizers: Sequence[Optimizer],
        task: str = "classification",
        schedules: Sequence[Callable[[int], float] | None] | None = None,
        rng_states: Sequence[torch.Tensor] | None = None,
        early_stopping: EarlyStopping | Sequence[EarlyStopping | None] | None = None,
        monitor: str | None = None,
        device: str | torch.device = "auto",
    ):
        if task not in TASK_METRICS:
            raise ValueError(f"task must be one of {', '.join(TASK_METRICS)}; got {task!r}")
        self.models = list(models)
        k = len(self.models)
        if len(optimizers) != k:
            raise ValueError(f"optimizers: got {len(optimizers)} for {k} models")
        self.device = resolve_device(device)
        self.task = task
        self.stack = StackedModel(self.models, rng_states, device=self.device)
        self.optimizer = StackedOptimizer(
            optimizers, schedules, self.stack.n_params, self.device, self.stack.dtype
        )
        if isinstance(early_stopping, EarlyStopping):
            es = early_stopping
            early_stopping = [
                EarlyStopping(es.tracker.metric, es.patience, es.tracker.min_delta)
                for _ in range(k)
            ]
        self.early_stopping = _per_model(early_stopping, k, "early_stopping")
        self.monitor = monitor
        self.trackers: list[_Best] = []
        self.histories: list[list[dict[str, float]]] = [[] for _ in range(k)]
        self.status: list[str | None] = [None] * k
        self.errors: list[str | None] = [None] * k
        self.rows = list(range(k))  # the models still in the stack, by index
        self.epoch = 0  # epochs completed by the models still training
        self.step = 0
        theta, buffers = self.stack.rows()
        self._best = (theta.detach().clone(), {n: b.clone() for n, b in buffers.items()})
        self._final = (theta.detach().clone(), {n: b.clone() for n, b in buffers.items()})

    # --- the loop ---------------------------------------------------------------------------
    def fit(
        self,
        train: Any,
        val: Any = None,
        epochs: int = 1,
        on_epoch_end: Callable[[int, dict], str | None] | None = None,
        progress: bool = False,
    ) -> list[list[dict[str, float]]]:
        """Train every model for ``epochs`` epochs, or until it stops.

        Parameters
        ----------
        train : loader or sequence of loaders
            One ``(x, y)`` loader for all models, or one per model; the same object given
            to several models is iterated once per epoch for all of them. Loaders of
            different models must yield batches of equal sizes in step.
        val : loader, sequence of loaders (or None), optional
            Validation data, as ``train``.
        epochs : int
        on_epoch_end : callable, optional
            ``on_epoch_end(k, logs)`` after each epoch of model k; a string it returns
            stops model k, and becomes its status (e.g. ``"pruned"``).
        progress : bool
            A tqdm bar over epochs.

        Returns
        -------
        list of list of dict
            :attr:`histories`.
        """
        k_all = len(self.models)
        feed = _Feed(_per_model(train, k_all, "train"), "train")
        vals = _per_model(val, k_all, "val")
        val_feed = None if all(v is None for v in vals) else _Feed(vals, "val")
        if val_feed is not None and any(v is None for v in vals):
            raise ValueError("val: give validation data for every model or for none")
        monitor = self.monitor or ("val_loss" if val_feed is not None else "train_loss")
        self.trackers = [_Best(monitor) for _ in range(k_all)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, initial=self.epoch, unit="epoch", leave=False)
        while self.epoch < epochs and self.rows:
            started = time.perf_counter()
            rows = self.rows
            feed.set_epoch(self.epoch, rows)
            self.stack.train()
            totals = _Totals(self.task, len(rows), self.device)
            seen = torch.zeros(len(rows), dtype=torch.bool, device=self.device)
            bad_loss = torch.zeros(len(rows), device=self.device)
            bad_step = torch.zeros(len(rows), dtype=torch.int64, device=self.device)
            for x, y, per_model in feed.batches(rows, self.device):
                out = self.stack(x, per_model)
                loss = self._loss(out, y, per_model)
                grads = torch.autograd.grad(loss.sum(), list(self.stack.params.values()))
                flat = torch.cat([g.reshape(len(rows), -1) for g in grads], dim=1)
                self.optimizer.step(self.stack.theta, flat)
                self.step += 1
                loss = loss.detach()
                totals.update(out.detach(), y, loss, per_model)
                new = ~torch.isfinite(loss) & ~seen
                bad_loss = torch.where(new, loss, bad_loss)
                bad_step = torch.where(new, self.step, bad_step)
                seen |= new
            train_logs = totals.results()
            val_logs = self._evaluate(self.stack, val_feed, rows) if val_feed else None
            lrs = self.optimizer.lrs()
            seconds = (time.perf_counter() - started) / len(rows)
            self.epoch += 1
            stopped, improved = [], []
            seen_l, bad_loss_l, bad_step_l = seen.tolist(), bad_loss.tolist(), bad_step.tolist()
            for i, k in enumerate(rows):
                if seen_l[i]:
                    self._diverged(k, bad_loss_l[i], bad_step_l[i])
                    stopped.append(i)
                    continue
                logs: dict[str, float] = {"epoch": self.epoch}
                logs.update({f"train_{m}": v for m, v in train_logs[i].items()})
                if val_logs is not None:
                    logs.update({f"val_{m}": v for m, v in val_logs[i].items()})
                logs["lr"] = lrs[i]
                logs["seconds"] = seconds
                self.histories[k].append(logs)
                if self.trackers[k].improved(logs):
                    improved.append(i)
                reason = self._early_stop(k, logs)
                if on_epoch_end is not None:
                    reason = on_epoch_end(k, logs) or reason
                if reason:
                    self.status[k] = reason
                    stopped.append(i)
            self._keep(self._best, improved)
            if stopped:
                self._keep(self._final, stopped)
                self._write_back([rows[i] for i in stopped])
                keep = [i for i in range(len(rows)) if i not in set(stopped)]
                self.rows = [rows[i] for i in keep]
                if self.rows:
                    self.stack.select(keep)
                    self.optimizer.select(keep)
            if bar is not None:
                bar.update(1)
        if self.rows:  # the models that ran every epoch
            self._keep(self._final, list(range(len(self.rows))))
            self._write_back(self.rows)
            for k in self.rows:
                self.status[k] = self.status[k] or "completed"
            self.rows = []
        never = [k for k, t in enumerate(self.trackers) if t.best is None]
        if never:  # no epoch with a usable metric: the final weights stand for the best
            idx = torch.tensor(never, device=self.device)
            self._best[0].index_copy_(0, idx, self._final[0].index_select(0, idx))
            for n, b in self._best[1].items():
                b.index_copy_(0, idx, self._final[1][n].index_select(0, idx))
        if bar is not None:
            bar.close()
        return self.histories

    def _loss(self, out: torch.Tensor, y: torch.Tensor, per_model: bool) -> torch.Tensor:
        """Each model's loss on its batch, [K]: the Trainer's default loss (mean
        cross-entropy, or mean squared error) with the models as the first dimension."""
        k = out.shape[0]
        y = y if per_model else y.expand(k, *y.shape)
        if self.task == "classification":  # classes as dim 1: [K, C, B] against [K, B]
            per_sample = F.cross_entropy(out.transpose(1, 2), y, reduction="none")
        else:
            per_sample = F.mse_loss(out.reshape(y.shape), y, reduction="none")
        return per_sample.view(k, -1).mean(1)

    def _early_stop(self, k: int, logs: dict) -> str | None:
        es = self.early_stopping[k]
        if es is None:
            return None
        proxy = SimpleNamespace(epoch=self.epoch, stop=False)
        es.on_epoch_end(proxy, logs)
        return "early_stopped" if proxy.stop else None

    def _diverged(self, k: int, loss: float, step: int) -> None:
        """As the Trainer does on a non-finite loss: log the failed epoch, stop."""
        lr = self.optimizer.lrs(step - 1)[self.rows.index(k)]
        self.histories[k].append({"epoch": self.epoch, "train_loss": loss, "lr": lr})
        self.status[k] = "diverged"
        self.errors[k] = (
            f"the training loss became {loss} at epoch {self.epoch}, step {step} (lr {lr:g}): "
            "the learning rate is probably too high"
        )

    def _keep(self, store: tuple, positions: list[int]) -> None:
        """Copy the current rows at ``positions`` of the stack into ``store`` (by model)."""
        if not positions:
            return
        pos = torch.tensor(positions, device=self.device)
        models = torch.tensor([self.rows[i] for i in positions], device=self.device)
        theta, buffers = self.stack.rows()
        with torch.no_grad():
            store[0].index_copy_(0, models, theta.index_select(0, pos))
            for n, b in buffers.items():
                store[1][n].index_copy_(0, models, b.index_select(0, pos))

    def _write_back(self, models: list[int]) -> None:
        for k in models:
            self.models[k].load_state_dict(self.state_dict(k, "final"))

    # --- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def _evaluate(self, stack: StackedModel, feed: _Feed, rows: list[int]) -> list[dict]:
        was = stack.training
        stack.eval()
        totals = _Totals(self.task, len(rows), self.device)
        try:
            for x, y, per_model in feed.batches(rows, self.device):
                out = stack(x, per_model)
                totals.update(out, y, self._loss(out, y, per_model), per_model)
        finally:
            stack.train(was)
        return totals.results()

    def evaluate(self, data: Any, weights: str = "best") -> list[dict[str, float]]:
        """Each model's metrics in eval mode over ``data`` (one loader, or one per model),
        with its ``"best"`` epoch's or its ``"final"`` weights."""
        if weights not in ("best", "final"):
            raise ValueError(f"weights must be 'best' or 'final'; got {weights!r}")
        k_all = len(self.models)
        stack = StackedModel(self.models, device=self.device)
        theta, buffers = self._best if weights == "best" else self._final
        stack.load_rows(theta, buffers)
        feed = _Feed(_per_model(data, k_all, "data"), "data")
        return self._evaluate(stack, feed, list(range(k_all)))

    def state_dict(self, k: int, weights: str = "best") -> dict[str, torch.Tensor]:
        """Model k's ``state_dict`` with its best epoch's (or its final) weights."""
        theta, buffers = self._best if weights == "best" else self._final
        state, offset = {}, 0
        for name, shape in zip(self.stack.names, self.stack.shapes):
            n = math.prod(shape)
            state[name] = theta[k, offset : offset + n].view(shape).clone()
            offset += n
        state.update({n: b[k].clone() for n, b in buffers.items()})
        return state

    def best_epoch(self, k: int) -> int | None:
        """Model k's best epoch by the monitored metric (None before any epoch)."""
        if not self.trackers or self.trackers[k].best is None:
            return None
        return self.trackers[k].best_epoch
