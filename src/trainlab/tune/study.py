"""Hyperparameter tuning done right, on Optuna.

The lecture's procedure: split the data once into training, validation and test sets;
try the defaults first; search on the validation set; evaluate on the test set once, at
the end. Concretely:

1. one seeded split, saved as ``split.json`` in the study's directory;
2. the study lives in a storage: an Optuna journal file in the directory (default — the
   same command again resumes it; safe for several local worker processes) or PostgreSQL
   (``--storage postgresql://…``, for workers on many machines, with heartbeats);
3. the coordinator alone enqueues the defaults trial, once, before any worker starts;
4. every trial trains on the training split and reports its validation metric each
   epoch, so the pruner can stop hopeless trials; test samples are not even loaded;
5. the best configuration is retrained (on train, or train+val) as an ordinary run in
   ``final/`` and evaluated on the test split — once;
6. ``summary.json`` (best parameters, validation and test metric, trial counts,
   parameter importances) and ``trials.csv`` are written.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from trainlab import data as tl_data
from trainlab import optim
from trainlab.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_dict,
    load_config,
    save_config,
)
from trainlab.errors import UserError
from trainlab.run import RunError, build, prepare, summarize
from trainlab.space import decode_params, default_params, parse_space, sample
from trainlab.train import EarlyStopping, Trainer
from trainlab.train.metrics import default_monitor, minimize

__all__ = ["TuneError", "tune", "objective_for", "open_storage", "STORAGE_FILE"]

#: The journal file of a study in its directory.
STORAGE_FILE = "study.journal"
#: Heartbeat settings on PostgreSQL: a worker silent for GRACE seconds is dead; its trial
#: is marked failed and retried (up to RETRIES times).
HEARTBEAT_INTERVAL, GRACE, RETRIES = 5, 20, 3
#: A worker stops once this many trials (or ``trials``, if more) have failed.
MIN_FAILURES_TO_STOP = 10
#: How long a call waits for the database to come back (a restart, a failover) before
#: the worker gives up with a clear error; the study itself is safe in the database.
RECONNECT_SECONDS = 60.0

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TuneError(UserError, ValueError):
    """A tuning problem the user can fix (storage, study, workers)."""


def _accepts(name: str, hyper: str) -> bool:
    return hyper in optim.CLASSES[name].DEFAULTS


def open_storage(spec: str, workers: int = 1) -> Any:
    """An Optuna storage from a journal-file path or a database URL."""
    if spec.startswith("sqlite"):
        if workers > 1:
            raise TuneError(
                f"--storage {spec}: SQLite loses and duplicates trials under concurrent "
                "workers; use the default journal file (leave --storage out) or PostgreSQL"
            )
        return optuna.storages.RDBStorage(spec)
    if "://" in spec:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _ReconnectingRDBStorage(
                    spec,
                    engine_kwargs={"pool_pre_ping": True},  # a restart leaves dead connections
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=RETRIES
                    ),
                )
        except Exception as err:  # noqa: BLE001 — any connection problem is the user's to fix
            first = _shown(spec, _first_line(err))
            raise TuneError(
                f"--storage {_shown(spec)}: cannot open the database: {first}"
            ) from None
    backend = optuna.storages.journal.JournalFileBackend(str(spec))
    return optuna.storages.JournalStorage(backend)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _shown(url: str, text: str | None = None) -> str:
    """``text`` (default: the URL itself) with the URL's password masked."""
    masked = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
    return masked if text is None else text.replace(url, masked)


def _connection_lost(err: BaseException) -> bool:
    """Whether ``err`` says the database could not be reached (not that a query was bad)."""
    import sqlalchemy.exc as sa

    cause = err.__cause__ if isinstance(err, optuna.exceptions.StorageInternalError) else err
    return isinstance(cause, (sa.OperationalError, sa.InterfaceError)) or (
        isinstance(cause, sa.DBAPIError) and cause.connection_invalidated
    )


def _reconnecting(method: Callable[..., Any]) -> Callable[..., Any]:
    """Retry ``method`` with backoff while the database cannot be reached, for at most
    :data:`RECONNECT_SECONDS`; then raise a :class:`TuneError` that says so."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        deadline, pause = time.monotonic() + RECONNECT_SECONDS, 0.1
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as err:
                if not _connection_lost(err):
                    raise
                if time.monotonic() >= deadline:
                    cause = _first_line(err.__cause__ or err)
                    self.lost = TuneError(
                        f"the study's database {_shown(str(self.url))} has not answered for "
                        f"{RECONNECT_SECONDS:g} s ({_shown(str(self.url), cause)}); the study "
                        "is safe in it: run the same command again once it is back"
                    )
                    raise self.lost from None
                time.sleep(pause)
                pause = min(2 * pause, 2.0)

    return call


class _ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage that rides out a database restart: a pooled connection the
    restart killed is replaced before use (``pool_pre_ping``), and every call that finds
    the server away is retried (:func:`_reconnecting`). A retried call had not reached
    the database, or its transaction was rolled back with the connection: nothing is
    recorded twice. ``lost`` is the error it gave up with, if it did."""

    lost: TuneError | None = None


# the methods that talk to the database (each opens one session, one transaction)
for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "_create_new_trial",
    "_set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "_get_trials",
    "_get_best_trial_id",
    "record_heartbeat",
    "_get_stale_trial_ids",
):
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(
            _ReconnectingRDBStorage,
            _name,
            _reconnecting(getattr(optuna.storages.RDBStorage, _name)),
        )


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
        total = trial_config.train.epochs * len(pieces.loaders["train"])
        scheduler = optim.schedule.scheduler(pieces.optimizer, trial_config.schedule.build(total))
        trainer = Trainer(
            pieces.model,
            pieces.optimizer,
            task=pieces.dataset.task,
            scheduler=scheduler,
            callbacks=[_Report(trial, metric)] + _early_stopping(trial_config),
            device=pieces.device,
        )
        history = trainer.fit(
            pieces.loaders["train"], pieces.loaders["val"], epochs=trial_config.train.epochs
        )
        values = [h[metric] for h in history if math.isfinite(h.get(metric, math.nan))]
        if not values:
            raise optuna.TrialPruned(f"{metric} was never finite")
        return min(values) if minimize(metric) else max(values)

    return objective


def _early_stopping(config: Config) -> list:
    es = config.train.early_stopping
    return [] if es is None else [EarlyStopping(es.metric, es.patience, es.min_delta)]


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
    many have failed: a space whose every point fails must not loop forever). With
    ``batch`` > 1 it asks for that many trials at a time and trains them together
    (:func:`_work_batched`)."""
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

    def too_many_failures(study: optuna.Study, trial: Any) -> None:
        if _counts(study)["failed"] >= max(trials, MIN_FAILURES_TO_STOP):
            study.stop()

    try:
        study.optimize(
            objective_for(config, split),
            callbacks=[stop, too_many_failures],
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
    from trainlab.sweep.run import VARIABLE, variable

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
    from trainlab.sweep.run import SweepError, train_together

    space = parse_space(config.tune.space)
    base = config_dict(config)
    data = config.data
    metric, _ = _metric(config, tl_data.load(data.dataset, target=data.target, task=data.task).task)
    started = time.monotonic()
    while not _done(study, trials):
        counts = _counts(study)
        if counts["failed"] >= max(trials, MIN_FAILURES_TO_STOP):
            return
        if timeout is not None and time.monotonic() - started > timeout:
            return
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
            history = outcome["history"]
            values = [h[metric] for h in history if math.isfinite(h.get(metric, math.nan))]
            if outcome["status"] == "diverged":
                trial.set_user_attr("error", outcome["error"])
                study.tell(trial, state=TrialState.FAIL)
            elif outcome["status"] == "pruned" or not values:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, min(values) if minimize(metric) else max(values))


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


def _write_trials_csv(study: optuna.Study, path: Path) -> None:
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", "default", *keys, "seconds"])
        for t in trials:
            seconds = (
                (t.datetime_complete - t.datetime_start).total_seconds()
                if (t.datetime_complete and t.datetime_start)
                else ""
            )
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    bool(t.user_attrs.get("default")),
                    *[t.params.get(k, "") for k in keys],
                    seconds,
                ]
            )


def _importances(study: optuna.Study) -> dict[str, float]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return {}
    try:
        return {
            k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()
        }
    except (RuntimeError, ValueError):  # e.g. a single value for every parameter
        return {}


def tune(
    config_path: str | Path,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    join: bool = False,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
    batch: int = 1,
) -> dict | None:
    """Run (or resume, or join) a study; the coordinator finishes with the final run.

    ``batch`` > 1: every worker asks for that many trials at a time and trains them
    together as one batched computation (:mod:`trainlab.sweep`); the search space may
    then only vary what keeps one architecture (:func:`check_batchable`)."""
    config = load_config(config_path, overrides)
    if config.tune is None:
        raise ConfigError(
            f"{config_path}: no tune section: add 'tune:' with a 'space:' mapping, e.g. "
            "'optimizer.lr: loguniform(1e-4, 1e-1)' (docs/tuning.md)"
        )
    if workers < 1:
        raise TuneError(f"--workers must be ≥ 1, got {workers}")
    if batch < 1:
        raise TuneError(f"--batch must be ≥ 1, got {batch}")
    if batch > 1:
        check_batchable(config.tune.space)
    trials = trials or config.tune.trials
    default_dir = config.name if config.name.endswith("tune") else f"{config.name}-tune"
    run_dir = Path(out) if out is not None else Path("runs") / default_dir
    study_name = study_name or config.name
    storage_spec = storage or str(run_dir / STORAGE_FILE)
    split_path = run_dir / "split.json"

    if join:
        if workers != 1:
            raise TuneError(
                "--workers with --join: start one `trainlab tune … --join` per "
                "worker process (each joins the same study)"
            )
        if storage is None and not (run_dir / STORAGE_FILE).is_file():
            raise TuneError(
                f"--join: no study in {run_dir}; give --storage URL (and --study "
                "NAME) of a running study, or the --out of a local one"
            )
        store = open_storage(storage_spec, workers)
        work(
            config,
            _joined_split(store, study_name, split_path),
            store,
            study_name,
            trials,
            config.tune.timeout,
            joined=True,
            batch=batch,
        )
        return None

    if storage_spec.startswith("sqlite") and workers > 1:
        open_storage(storage_spec, workers)  # refuses, before anything is written
    dataset = tl_data.load(config.data.dataset, target=config.data.target, task=config.data.task)
    if split_path.is_file():
        split = tl_data.Split.load(split_path)
        _check_same_study(config, run_dir / "config.yaml")
        echo(f"resuming the study in {run_dir}")
    else:
        s = config.data.split
        split = tl_data.split(
            dataset, val=s.val, test=s.test, stratify=s.stratify, seed=config.seed
        )
        if len(split.val) == 0:
            raise ConfigError("data.split.val: tuning needs a validation split (> 0)")
        run_dir.mkdir(parents=True, exist_ok=True)  # every check passed
        split.save(split_path)
    save_config(config, run_dir / "config.yaml")
    echo(f"study directory: {run_dir}")

    store = open_storage(storage_spec, workers)
    metric, direction = _metric(config, dataset.task)
    study = optuna.create_study(
        study_name=study_name,
        storage=store,
        direction=direction,
        load_if_exists=True,
        sampler=_sampler(
            config.tune, config.tune.seed if config.tune.seed is not None else config.seed
        ),
        pruner=_pruner(config.tune, config.train.epochs),
    )
    if "split" not in study.user_attrs:  # so a worker on another machine trains on it too
        study.set_user_attr(
            "split", {part: getattr(split, part).tolist() for part in ("train", "val", "test")}
        )
    # trials left running by workers that died with no coordinator to see it: again
    orphans = _retry_orphans(study, _of_a_dead_local_worker)
    if orphans:
        echo(f"{orphans} trial(s) of workers that died retried")
    defaults_tried = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("default") and t.state != TrialState.FAIL
    ]
    if config.tune.defaults and not defaults_tried:
        # the coordinator alone, once, before any worker exists (again only if an
        # interrupted run left the defaults trial failed)
        base = {k: v for k, v in _flat(config_dict(config)).items()}
        params = default_params(
            parse_space(config.tune.space), base, _accepts, config.optimizer.name
        )
        study.enqueue_trial(params, user_attrs={"default": True})

    progress = not quiet and sys.stderr.isatty()
    if workers == 1:
        work(config, split, store, study_name, trials, config.tune.timeout, progress, batch=batch)
    else:
        args = [
            "tune",
            str(config_path),
            "--join",
            "--out",
            str(run_dir),
            "--storage",
            storage_spec,
            "--study",
            study_name,
            "--trials",
            str(trials),
            "--batch",
            str(batch),
        ]
        for pair in overrides or []:
            args += ["--set", pair]
        _run_workers(args, workers, study, trials, echo, progress)

    return _finish(config, study, split, run_dir, metric, direction, quiet, echo)


def _check_same_study(config: Config, saved: Path) -> None:
    """A resumed study must search the same problem: only how long it runs may change."""
    if not saved.is_file():
        return
    old = load_config(saved)

    def essence(c: Config) -> dict:
        data = config_dict(c)
        data["tune"] = {k: v for k, v in data["tune"].items() if k not in ("trials", "timeout")}
        return data

    if essence(old) != essence(config):
        raise TuneError(
            f"{saved.parent} holds a study of another config; resume it with the config it "
            "was started with (tune.trials and tune.timeout may change), or give another --out"
        )


def _joined_split(store: Any, study_name: str, split_path: Path) -> Any:
    """The study's split for a joining worker: from the study itself (the coordinator
    stores it there), or the study directory's split.json on a shared filesystem."""
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        raise TuneError(
            f"--join: no study {study_name!r} in the storage; start it first "
            "without --join (the coordinator creates it)"
        ) from None
    record = study.user_attrs.get("split")
    if record is not None:
        return tl_data.Split(
            *(np.asarray(record[p], dtype=np.int64) for p in ("train", "val", "test"))
        )
    if split_path.is_file():
        return tl_data.Split.load(split_path)
    raise TuneError(f"--join: study {study_name!r} holds no split and {split_path} is missing")


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "space":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _finish(
    config: Config,
    study: optuna.Study,
    split: Any,
    run_dir: Path,
    metric: str,
    direction: str,
    quiet: bool,
    echo: Callable[[str], None],
) -> dict:
    """Retrain the winner, evaluate the test split once, write the summary."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    _write_trials_csv(study, run_dir / "trials.csv")
    if not complete:
        raise RunError(
            f"no trial of the study completed ({_counts(study)}); nothing to "
            "retrain — look at the trials in trials.csv"
        )
    best = study.best_trial
    best_params = decode_params(parse_space(config.tune.space), best.params)
    final_config = _trial_config(config_dict(config), best_params)
    final_split = split
    if config.tune.final == "train+val":
        final_split = tl_data.Split(
            np.sort(np.concatenate([split.train, split.val])),
            np.array([], dtype=np.int64),
            split.test,
        )
        final_config = final_config.model_copy(
            update={
                "train": final_config.train.model_copy(
                    update={"early_stopping": None, "monitor": None}
                )
            }
        )
    final_dir = run_dir / "final"
    if final_dir.exists():  # a resumed study retrains its (possibly new) winner
        shutil.rmtree(final_dir)
    run = prepare(
        final_config, final_dir, resuming=False, quiet=quiet, echo=echo, split=final_split
    )
    save_config(final_config, final_dir / "config.yaml")
    started = time.perf_counter()
    run.trainer.fit(run.loaders["train"], run.loaders.get("val"), epochs=final_config.train.epochs)
    final = summarize(run, time.perf_counter() - started)  # the one test evaluation
    (final_dir / "summary.json").write_text(json.dumps(final, indent=2) + "\n")

    default = next(
        (
            t
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("default") and t.state == TrialState.COMPLETE
        ),
        None,
    )
    summary = {
        "run_dir": str(run_dir),
        "study": study.study_name,
        "metric": metric,
        "direction": direction,
        "best_params": best_params,
        "best_value": best.value,
        "best_trial": best.number,
        "default_value": default.value if default else None,
        "trials": _counts(study),
        "importances": _importances(study),
        "final": config.tune.final,
        "test": final["test"],
        "final_run": str(final_dir),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_trials_csv(study, run_dir / "trials.csv")
    from trainlab.report import write_report

    summary["report"] = str(write_report(run_dir))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_tune_summary(summary: dict) -> str:
    """The table printed at the end of ``trainlab tune``."""
    lines = ["best parameters:"]
    lines += [f"  {k} = {v}" for k, v in summary["best_params"].items()]
    c = summary["trials"]
    lines.append(
        f"validation {summary['metric']}: {summary['best_value']:.4f} (trial "
        f"{summary['best_trial']}; defaults: "
        + (f"{summary['default_value']:.4f}" if summary["default_value"] is not None else "—")
        + ")"
    )
    test = ", ".join(f"{k} {v:.4f}" for k, v in summary["test"].items())
    lines.append(f"test (once, after retraining on {summary['final']}): {test}")
    lines.append(
        f"trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} "
        f"failed; results in {summary['run_dir']}"
    )
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    if summary["importances"]:
        lines.append(
            "importances: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["importances"].items())
        )
    return "\n".join(lines)
