"""A study's workers: the objective, the loop that runs trials, and worker processes.

A trial trains one sampled configuration on the training split, built by
:func:`trainlab.train.build.build` like any run (its schedule and early stopping included),
and reports its validation metric every epoch so that the pruner can stop it
(:func:`objective_for`). A worker runs trials until the study has enough
(:func:`work`); with ``batch`` > 1 it trains that many trials together
(:func:`trainlab.sweep.run.train_together`). Every trial records which process runs it, so
that the trials of a worker that died are marked failed and run again
(:func:`_retry_orphans`); the coordinator starts and watches local worker processes
(:func:`_run_workers`).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from trainlab import optim
from trainlab.config import Config, ConfigError, apply_overrides, config_dict
from trainlab.space import parse_space, sample
from trainlab.sweep.run import VARIABLE, SweepError, train_together, variable
from trainlab.train.build import build, load_dataset
from trainlab.train.metrics import default_monitor, minimize
from trainlab.train.trainer import Trainer

from .storage import RETRIES, TuneError

__all__ = ["MIN_FAILURES_TO_STOP", "check_batchable", "objective_for", "work"]

#: A worker stops once this many trials (or ``trials``, if more) have failed.
MIN_FAILURES_TO_STOP = 10


def _accepts(name: str, hyper: str) -> bool:
    return hyper in optim.CLASSES[name].DEFAULTS


def _sampler(tune_cfg: Any, seed: int) -> optuna.samplers.BaseSampler:
    if tune_cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune_cfg.sampler == "grid":
        space = parse_space(tune_cfg.space)
        grid = {k: [d.encode(c) for c in d.choices] for k, d in space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(tune_cfg: Any, epochs: int) -> optuna.pruners.BasePruner:
    if tune_cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    if tune_cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


def _metric(config: Config, task: str) -> tuple[str, str]:
    metric = config.tune.metric or default_monitor(task, True)
    direction = config.tune.direction or ("minimize" if minimize(metric) else "maximize")
    return metric, direction


def _best(history: list[dict], metric: str) -> float | None:
    """A trial's value: the best finite ``metric`` over its epochs (None: never finite)."""
    values = [h[metric] for h in history if math.isfinite(h.get(metric, math.nan))]
    if not values:
        return None
    return min(values) if minimize(metric) else max(values)


class _Report:
    """Reports the validation metric to the trial every epoch; prunes when told to."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        value = logs.get(self.metric)
        if value is None or not math.isfinite(value):
            raise optuna.TrialPruned(f"{self.metric} is {value} at epoch {logs['epoch']}")
        self.trial.report(value, step=int(logs["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {logs['epoch']}")


def _trial_config(base: dict, params: dict[str, Any]) -> Config:
    tree: dict = {}
    for key, value in params.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    raw = apply_overrides(base, tree)
    raw["tune"] = None
    return Config.model_validate(raw)


def objective_for(config: Config, split: Any) -> Callable[[optuna.Trial], float]:
    """The objective of a study: train one sampled configuration on the training split
    and return the best validation metric over its epochs."""
    space = parse_space(config.tune.space)
    base = config_dict(config)

    def objective(trial: optuna.Trial) -> float:
        _mark_worker(trial)
        params = sample(trial, space, _accepts, config.optimizer.name)
        trial_config = _trial_config(base, params)
        pieces = build(trial_config, split=split, parts=("train", "val"))
        metric, _ = _metric(config, pieces.dataset.task)
        trainer = pieces.trainer([_Report(trial, metric)])
        history = trainer.fit(
            pieces.loaders["train"], pieces.loaders["val"], epochs=trial_config.train.epochs
        )
        value = _best(history, metric)
        if value is None:
            raise optuna.TrialPruned(f"{metric} was never finite")
        return value

    return objective


def _counts(study: optuna.Study) -> dict[str, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "running": states.count(TrialState.RUNNING),
    }


def _done(study: optuna.Study, trials: int) -> bool:
    counts = _counts(study)
    return counts["complete"] + counts["pruned"] >= trials


def _too_many_failures(study: optuna.Study, trials: int) -> bool:
    """Whether the study has failed so often that a worker stops (a space whose every
    point fails must not loop forever)."""
    return _counts(study)["failed"] >= max(trials, MIN_FAILURES_TO_STOP)


def work(
    config: Config,
    split: Any,
    storage: Any,
    study_name: str,
    trials: int,
    timeout: float | None = None,
    progress: bool = False,
    joined: bool = False,
    batch: int = 1,
) -> None:
    """A worker: run trials of the study until ``trials`` are complete or pruned (or as
    many have failed: :func:`_too_many_failures`). With ``batch`` > 1 it asks for that
    many trials at a time and trains them together (:func:`_work_batched`)."""
    seed = config.tune.seed if config.tune.seed is not None else config.seed
    if os.environ.get("TRAINLAB_WORKER"):
        torch.set_num_threads(1)  # N local workers share the machine's cores
    if joined:
        # workers with one seed would sample the same points; NumPy seeds are < 2**32
        seed = (seed + os.getpid()) % 2**32
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=_sampler(config.tune, seed),
        pruner=_pruner(config.tune, config.train.epochs),
    )
    if _done(study, trials):
        return  # a resumed study that has its trials already
    existing = len(study.get_trials(deepcopy=False))
    if existing:  # resumed: with the first seed it would draw the points it drew before
        study.sampler = _sampler(config.tune, (seed + existing) % 2**32)
    if batch > 1:
        _work_batched(config, split, study, trials, timeout, batch)
        return
    stop = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))

    def stop_failing(study: optuna.Study, trial: Any) -> None:
        if _too_many_failures(study, trials):
            study.stop()

    try:
        study.optimize(
            objective_for(config, split),
            callbacks=[stop, stop_failing],
            timeout=timeout,
            catch=(ConfigError, ValueError, RuntimeError),
            gc_after_trial=False,
            show_progress_bar=progress,
        )
    except Exception:
        # Optuna may turn the storage's error into another one as it tries to record the
        # trial (an UnboundLocalError in Optuna 5.0): say what happened
        lost = getattr(storage, "lost", None)
        if lost is not None:
            raise lost from None
        raise


def check_batchable(space: dict[str, Any]) -> None:
    """Raise :class:`TuneError` unless every key of the search space can differ between
    trials trained together (``tune --batch``): none may change the architecture."""
    fixed = [key for key in space if not variable(key)]
    if fixed:
        raise TuneError(
            f"--batch trains the trials of a batch together as one model architecture, and "
            f"tune.space varies {', '.join(fixed)}, which changes it: search only "
            f"{', '.join(VARIABLE)} with --batch, or leave --batch out"
        )


def _work_batched(
    config: Config, split: Any, study: optuna.Study, trials: int, timeout: float | None, batch: int
) -> None:
    """Ask the study for ``batch`` trials at a time, train them together
    (:func:`trainlab.sweep.run.train_together`) and tell it each one's result: each
    epoch's validation metric is reported per trial, a trial the pruner stops leaves the
    batch, one whose loss diverges fails — as :func:`objective_for` does one at a time."""
    space = parse_space(config.tune.space)
    base = config_dict(config)
    metric, _ = _metric(config, load_dataset(config).task)
    started = time.monotonic()
    while not _done(study, trials):
        if _too_many_failures(study, trials):
            return
        if timeout is not None and time.monotonic() - started > timeout:
            return
        counts = _counts(study)
        asked, configs = [], []
        for _ in range(max(1, min(batch, trials - counts["complete"] - counts["pruned"]))):
            trial = study.ask()
            _mark_worker(trial)
            try:
                configs.append(
                    _trial_config(base, sample(trial, space, _accepts, config.optimizer.name))
                )
            except (ConfigError, ValueError) as err:
                trial.set_user_attr("error", str(err))
                study.tell(trial, state=TrialState.FAIL)
            else:
                asked.append(trial)
        if not asked:
            continue

        def on_epoch_end(k: int, logs: dict, asked: list = asked) -> str | None:
            value = logs.get(metric)
            if value is None or not math.isfinite(value):
                return "pruned"
            asked[k].report(value, step=int(logs["epoch"]))
            return "pruned" if asked[k].should_prune() else None

        try:
            outcomes = train_together(
                configs, split=split, parts=("train", "val"), on_epoch_end=on_epoch_end, echo=_quiet
            )
        except SweepError as err:
            for trial in asked:
                study.tell(trial, state=TrialState.FAIL)
            raise TuneError(f"--batch: {err}") from None
        for trial, outcome in zip(asked, outcomes):
            value = _best(outcome["history"], metric)
            if outcome["status"] == "diverged":
                trial.set_user_attr("error", outcome["error"])
                study.tell(trial, state=TrialState.FAIL)
            elif outcome["status"] == "pruned" or value is None:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, value)


def _quiet(message: str) -> None:
    """The echo of a batch of trials: nothing."""


def _mark_worker(trial: optuna.Trial) -> None:
    """Record which process runs ``trial``, so that its death can be noticed."""
    trial.set_user_attr("worker_pid", os.getpid())
    trial.set_user_attr("worker_host", socket.gethostname())


def _of_a_dead_local_worker(trial: Any) -> bool:
    """Whether a running trial's worker ran on this machine and is gone (a study resumed
    after all its workers died: no coordinator saw them die, and the journal file has no
    heartbeats)."""
    pid = trial.user_attrs.get("worker_pid")
    if trial.user_attrs.get("worker_host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _retry_orphans(study: optuna.Study, orphan: Callable[[Any], bool]) -> int:
    """Mark the running trials that ``orphan`` says lost their worker failed and enqueue
    them again (with ``retry_of``; up to RETRIES times)."""
    retried = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if orphan(t):
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            retries = int(t.user_attrs.get("retries", 0))
            if retries >= RETRIES:
                continue  # it killed its worker RETRIES times: leave it failed
            study.enqueue_trial(
                t.params,
                user_attrs={
                    "retry_of": t.number,
                    "retries": retries + 1,
                    **({"default": True} if t.user_attrs.get("default") else {}),
                },
            )
            retried += 1
    return retried


def _run_workers(
    args: list[str],
    n: int,
    study: optuna.Study,
    trials: int,
    echo: Callable[[str], None],
    progress: bool = False,
) -> None:
    """Run ``n`` local worker processes (``trainlab ARGS``, one torch thread each) until
    they are done; a worker that dies has its trials retried and is replaced while the
    study lacks trials."""
    env = {**os.environ, "TRAINLAB_WORKER": "1", "OMP_NUM_THREADS": "1"}
    procs = {}
    for _ in range(n):
        p = subprocess.Popen([sys.executable, "-m", "trainlab", *args], env=env)
        procs[p.pid] = p
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=trials, unit="trial", file=sys.stderr, leave=False)
    while procs:
        time.sleep(0.5)
        if bar is not None:
            counts = _counts(study)
            bar.n = min(trials, counts["complete"] + counts["pruned"])
            bar.refresh()
        for pid, p in list(procs.items()):
            code = p.poll()
            if code is None:
                continue
            del procs[pid]
            if code != 0:
                retried = _retry_orphans(
                    study, lambda t, pid=pid: t.user_attrs.get("worker_pid") == pid
                )
                echo(f"worker {pid} died (exit {code}); {retried} trial(s) retried")
                if not _done(study, trials):
                    q = subprocess.Popen([sys.executable, "-m", "trainlab", *args], env=env)
                    procs[q.pid] = q
    if bar is not None:
        bar.close()
