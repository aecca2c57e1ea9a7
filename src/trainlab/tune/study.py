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
   parameter importances) and ``trials.csv`` are written, ``summary.json`` once.

This module is the driver (the coordinator); the storages are in
:mod:`trainlab.tune.storage`, the objective and the workers in :mod:`trainlab.tune.workers`.
Rendering ``report.html`` is left to the CLI.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from trainlab import data as tl_data
from trainlab.config import Config, ConfigError, config_dict, load_config, save_config
from trainlab.run import prepare, summarize
from trainlab.space import decode_params, default_params, parse_space
from trainlab.train.build import load_dataset
from trainlab.train.rundir import RunDir, RunError
from trainlab.variants import flat

from .storage import STORAGE_FILE, TuneError, open_storage
from .workers import (
    _accepts,
    _counts,
    _metric,
    _of_a_dead_local_worker,
    _pruner,
    _retry_orphans,
    _run_workers,
    _sampler,
    _trial_config,
    check_batchable,
    work,
)

__all__ = ["TuneError", "format_tune_summary", "tune"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


#: The table of a study's trials in its directory, one row per trial.
TRIALS_FILE = "trials.csv"


def _write_trials_csv(study: optuna.Study, study_dir: RunDir) -> None:
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    text = io.StringIO(newline="")
    writer = csv.writer(text)
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
    study_dir.write_text(TRIALS_FILE, text.getvalue())


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
    study_dir = RunDir(run_dir)
    split_path = study_dir.split

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
    dataset = load_dataset(config)
    if split_path.is_file():
        split = tl_data.Split.load(split_path)
        _check_same_study(config, study_dir.config)
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
    save_config(config, study_dir.config)
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
        base = flat(config_dict(config))
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

    return _finish(config, study, split, study_dir, metric, direction, quiet, echo)


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


def _finish(
    config: Config,
    study: optuna.Study,
    split: Any,
    study_dir: RunDir,
    metric: str,
    direction: str,
    quiet: bool,
    echo: Callable[[str], None],
) -> dict:
    """Retrain the winner, evaluate the test split once, write ``summary.json`` once."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    _write_trials_csv(study, study_dir)
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
    final_dir = study_dir.file("final")
    if final_dir.exists():  # a resumed study retrains its (possibly new) winner
        shutil.rmtree(final_dir)
    run = prepare(  # writes the final run's config.yaml and split.json
        final_config, final_dir, resuming=False, quiet=quiet, echo=echo, split=final_split
    )
    started = time.perf_counter()
    run.trainer.fit(run.loaders["train"], run.loaders.get("val"), epochs=final_config.train.epochs)
    final = summarize(run, time.perf_counter() - started)  # the one test evaluation
    RunDir(final_dir).write_summary(final)

    default = next(
        (
            t
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("default") and t.state == TrialState.COMPLETE
        ),
        None,
    )
    summary = {
        "run_dir": str(study_dir),
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
    _write_trials_csv(study, study_dir)
    study_dir.write_summary(summary)  # once, when the study is done
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
