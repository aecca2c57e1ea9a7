"""Sweeps from a config: K variants of one run trained together, each written as its run.

:func:`fit_many` takes a config and K lists of ``--set`` overrides and trains the K runs
as one batched computation; each run's directory gets what ``trainlab fit`` writes for it
(``config.yaml``, ``split.json``, ``metrics.jsonl``, ``summary.json``,
``checkpoints/best.pt``; a run that diverges gets no ``summary.json``, as with ``fit``).
Model k is the run ``trainlab fit CONFIG --set <its overrides>`` makes, to float rounding:
its own seed (weights, dropout, batch order, split), hyperparameters, early stopping and
best epoch. What the K runs may differ in is what keeps one architecture and one
schedule of steps: :data:`VARIABLE`.

:func:`sweep` is ``trainlab sweep``: the grid of ``--vary`` values × ``--seeds``, trained
by :func:`fit_many`, then a table (``sweep.csv``, ``sweep.md``) and ``sweep.json``; the
result names the best runs (``report_runs``), whose page the CLI renders. The ``--vary``
grammar, run naming, mean ± std and the text table are :mod:`trainlab.variants`'.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from trainlab.atomic import write_atomic
from trainlab.config import Config, config_dict, load_config, save_config
from trainlab.diagnose import diagnose
from trainlab.errors import UserError
from trainlab.train import save_checkpoint
from trainlab.train.build import build, check_metrics, early_stopping, eval_loader, load_dataset
from trainlab.train.metrics import default_monitor, history_best, minimize
from trainlab.train.rundir import RunDir, dumps, make_summary, require_empty
from trainlab.variants import (
    combine,
    flat,
    number,
    parse_vary,
    pm,
    stats,
    text_table,
    value_text,
    write_csv,
)

from .stack import ArchitectureError
from .trainer import SweepTrainer

__all__ = [
    "SweepError",
    "VARIABLE",
    "variable",
    "check_together",
    "fit_many",
    "train_together",
    "sweep",
    "format_sweep",
    "REPORT_RUNS",
]


class SweepError(UserError, ValueError):
    """A sweep the user can fix (a key that cannot vary, runs that cannot be trained
    together); ``str(err)`` is one line naming the culprit."""


#: The config keys that may differ between the runs of one batched sweep: they change
#: neither the architecture nor the steps of training. ``optimizer.*`` and ``schedule.*``
#: are every key of those sections.
VARIABLE = ("seed", "model.dropout", "model.init", "optimizer.*", "schedule.*")


def variable(key: str) -> bool:
    """Whether runs that differ in config ``key`` can be trained together."""
    return any(key == v or (v.endswith(".*") and key.startswith(v[:-1])) for v in VARIABLE)


# --------------------------------------------------------------------------- fit_many


def _differences(configs: Sequence[Config]) -> list[str]:
    """The keys in which the configs differ (dotted, leaves)."""
    flats = [flat(config_dict(c)) for c in configs]
    keys = sorted(set().union(*flats))
    return [k for k in keys if any(f.get(k) != flats[0].get(k) for f in flats[1:])]


def check_together(configs: Sequence[Config]) -> None:
    """Raise :class:`SweepError` unless the configs' runs can be trained together: they
    differ only in :data:`VARIABLE` keys, and none asks for ``optimizer.lr: auto``."""
    fixed = [k for k in _differences(configs) if not variable(k)]
    if fixed:
        raise SweepError(
            f"runs that differ in {', '.join(fixed)} cannot be trained together (that "
            f"changes the architecture or the steps); they may differ in "
            f"{', '.join(VARIABLE)}"
        )
    if any(c.optimizer.lr == "auto" for c in configs):
        raise SweepError(
            "optimizer.lr=auto runs the LR finder for each run: give learning rates to "
            "train runs together"
        )
    if any(c.train.device.startswith("cuda") and "," in c.train.device for c in configs):
        raise SweepError("train.device: one device for all runs")


def fit_many(
    config_path: str | Path | None,
    overrides: Sequence[Sequence[str]],
    run_dirs: Sequence[str | Path],
    quiet: bool = True,
    echo: Callable[[str], None] = print,
) -> list[dict]:
    """Train the runs ``trainlab fit CONFIG --set <overrides[k]>`` together and write
    each to ``run_dirs[k]`` (see :func:`train_together`, which this calls with the configs).

    Raises
    ------
    ConfigError
        A run's config is invalid (checked for all before anything trains).
    SweepError
        The runs cannot be trained together; nothing was written.
    RunError
        A run directory exists and is not empty.
    """
    configs = [load_config(config_path, list(o)) for o in overrides]
    return train_together(configs, run_dirs, quiet=quiet, echo=echo)


def train_together(
    configs: Sequence[Config],
    run_dirs: Sequence[str | Path] = (),
    split: Any = None,
    parts: tuple[str, ...] = ("train", "val", "test"),
    on_epoch_end: Callable[[int, dict], str | None] | None = None,
    quiet: bool = True,
    echo: Callable[[str], None] = print,
) -> list[dict]:
    """Train the run of each config together, as one batched computation; write run k
    to ``run_dirs[k]`` (or nowhere, where ``run_dirs`` is empty).

    Run k is the run ``trainlab fit`` makes of ``configs[k]``, to float rounding.

    Parameters
    ----------
    configs : sequence of Config
        They may differ only in :data:`VARIABLE` keys.
    run_dirs : sequence of paths, optional
        Where each run is written; each must not exist or be empty.
    split : trainlab.data.Split, optional
        One split for every run (tuning's); by default each run draws its own from its
        seed, as ``fit`` does.
    parts : tuple of str
        The splits to load (a tuning trial leaves out "test").
    on_epoch_end : callable, optional
        ``on_epoch_end(k, logs)`` after each epoch of run k; a string it returns stops run
        k with that status (see :class:`~trainlab.sweep.SweepTrainer`).
    quiet : bool
        No progress bar.

    Returns
    -------
    list of dict
        Per run: ``run_dir``, ``status`` (``completed``, ``early_stopped``, ``diverged``
        or the hook's), ``error`` (why it diverged, else None), ``history``, and
        ``summary`` (what ``summary.json`` holds; None for a diverged run).

    Raises
    ------
    SweepError
        The runs cannot be trained together (:func:`check_together`, models of different
        architectures, or training sets of different sizes); nothing was written.
    RunError
        A run directory exists and is not empty.
    ConfigError
        The monitored metric is not logged.
    """
    configs = list(configs)
    if not configs:
        raise SweepError("no runs to train")
    check_together(configs)
    run_dirs = [Path(d) for d in run_dirs]
    if run_dirs and len(run_dirs) != len(configs):
        raise ValueError(f"run_dirs: got {len(run_dirs)} for {len(configs)} runs")
    for d in run_dirs:
        require_empty(d)

    # Each run's pieces exactly as `fit` builds them; the random state right after is
    # where its sequential run starts training (its dropout masks come from there).
    pieces, states, groups = [], [], {}
    for config in configs:
        p = build(config, split=split, parts=parts)
        states.append(torch.get_rng_state())
        # runs with one seed and one data section see the same batches: one loader
        key = json.dumps([config.seed, config_dict(config)["data"]], sort_keys=True)
        if key in groups:
            p.loaders = groups[key].loaders
            p.split, p.dataset, p.preprocessor = (
                groups[key].split,
                groups[key].dataset,
                groups[key].preprocessor,
            )
        else:
            groups[key] = p
        pieces.append(p)
    first = configs[0]
    task = pieces[0].dataset.task
    has_val = "val" in pieces[0].loaders
    monitor = check_metrics(first, task, has_val)
    steps_per_epoch = len(pieces[0].loaders["train"])
    total = first.train.epochs * steps_per_epoch
    try:
        trainer = SweepTrainer(
            [p.model for p in pieces],
            [p.optimizer for p in pieces],
            task=task,
            schedules=[c.schedule.build(total) for c in configs],
            rng_states=states,
            early_stopping=[early_stopping(c) for c in configs],
            monitor=monitor,
            device=pieces[0].device,
        )
    except ArchitectureError as err:
        raise SweepError(f"these runs cannot be trained together: {err}") from None
    for d in run_dirs:
        d.mkdir(parents=True, exist_ok=True)
    echo(f"training {len(configs)} runs together ({len(groups)} distinct data orders)")
    started = time.perf_counter()
    try:
        trainer.fit(
            [p.loaders["train"] for p in pieces],
            [p.loaders.get("val") for p in pieces] if has_val else None,
            epochs=first.train.epochs,
            on_epoch_end=on_epoch_end,
            progress=not quiet,
        )
    except ValueError as err:  # loaders of different lengths: splits of different sizes
        raise SweepError(f"these runs cannot be trained together: {err}") from None
    seconds = time.perf_counter() - started

    summaries = _summaries(trainer, pieces, configs, run_dirs, task, steps_per_epoch)
    outcomes = []
    for k, config in enumerate(configs):
        run_dir = run_dirs[k] if run_dirs else None
        outcome = {
            "run_dir": str(run_dir) if run_dir else None,
            "status": trainer.status[k],
            "error": trainer.errors[k],
            "history": trainer.histories[k],
            "summary": summaries[k],
        }
        outcomes.append(outcome)
        if run_dir is not None:
            _write_run(run_dir, config, pieces[k], trainer, k, summaries[k])
    echo(f"{len(configs)} runs trained together in {seconds:.1f} s")
    return outcomes


def _summaries(
    trainer: SweepTrainer,
    pieces: list,
    configs: list[Config],
    run_dirs: list[Path],
    task: str,
    steps_per_epoch: int,
) -> list[dict | None]:
    """What ``summarize`` writes for each run: its best epoch's weights evaluated on
    train (in eval mode, in order), val and test — the test split only here, once."""
    evaluated: dict[str, list[dict]] = {}
    loaders = [p.loaders for p in pieces]
    for name in ("train", "val", "test"):
        if name not in loaders[0]:
            continue
        if name == "train":  # one in-order loader per distinct training set
            seen: dict[int, Any] = {}
            for ld in loaders:
                if id(ld["train"]) not in seen:
                    seen[id(ld["train"])] = eval_loader(ld["train"])
            data = [seen[id(ld["train"])] for ld in loaders]
        else:
            data = [ld[name] for ld in loaders]
        evaluated[name] = trainer.evaluate(data, weights="best")
    out: list[dict | None] = []
    for k, (p, config) in enumerate(zip(pieces, configs)):
        if trainer.status[k] == "diverged":
            out.append(None)
            continue
        history = trainer.histories[k]
        findings = diagnose(history, task=task, n_classes=p.dataset.n_classes)
        out.append(
            make_summary(
                run_dir=run_dirs[k] if run_dirs else None,
                name=config.name,
                task=task,
                n_classes=p.dataset.n_classes,
                history=history,
                monitor=trainer.monitor,
                steps=len(history) * steps_per_epoch,
                seconds=sum(h.get("seconds", 0.0) for h in history),
                evaluated={name: evaluated[name][k] for name in evaluated},
                diagnosis=[f.to_dict() for f in findings],
                batched=True,
            )
        )
    return out


def _write_run(
    run_dir: Path, config: Config, p: Any, trainer: SweepTrainer, k: int, summary: dict | None
) -> None:
    """A run directory as ``trainlab fit`` leaves it (no last.pt: a sweep does not resume)."""
    run = RunDir(run_dir)
    save_config(config, run.config)
    p.split.save(run.split)
    run.write_history(trainer.histories[k])
    if summary is None:
        return
    save_checkpoint(
        {
            "model": trainer.state_dict(k, "best"),
            "epoch": summary["best_epoch"],
            "preprocess": p.preprocessor.state_dict() if p.preprocessor else None,
            "config": config_dict(config),
        },
        run.best,
    )
    run.write_summary(summary)


# --------------------------------------------------------------------------- sweep

#: The report shows the runs with the best validation metric, at most this many.
REPORT_RUNS = 8


def sweep(
    config_path: str | Path | None,
    vary: Sequence[str],
    seeds: int = 1,
    overrides: Sequence[str] | None = None,
    out: str | Path | None = None,
    quiet: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """``trainlab sweep``: every combination of the ``vary`` values, each with ``seeds``
    seeds (the config's seed, +1, …), trained together; returns what ``sweep.json`` holds,
    whose ``report_runs`` are the :data:`REPORT_RUNS` best runs by the validation metric
    (the CLI renders their page as ``report.html``).

    Raises
    ------
    VaryError
        A malformed ``--vary`` item (named).
    SweepError
        A key that cannot vary in a batched sweep (the message lists :data:`VARIABLE`),
        ``seeds`` < 1, or ``seed`` both varied and given by ``seeds``.
    ConfigError
        An invalid config or value (every run's config is checked before training).
    RunError
        The output directory exists and is not empty.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise SweepError(f"--seeds must be at least 1, got {seeds}")
    varied = parse_vary(vary)
    for key in varied:
        if not variable(key):
            raise SweepError(
                f"--vary {key}: a batched sweep trains models of one architecture with one "
                f"schedule of steps, and {key} would change that; keys that can vary: "
                f"{', '.join(VARIABLE)}"
            )
    if "seed" in varied and seeds > 1:
        raise SweepError("--seeds with --vary seed=…: give the seeds one way")
    overrides = list(overrides or [])
    base = load_config(config_path, overrides)
    seed_list = varied.pop("seed", None) or [base.seed + i for i in range(seeds)]
    out = require_empty(
        Path(out) if out is not None else Path("runs") / f"{base.name}-sweep", "sweep directory"
    )

    runs = []
    axes = {key: [(value_text(v), v) for v in values] for key, values in varied.items()}
    for variant in combine(axes):
        for seed in seed_list:
            runs.append(
                {
                    "variant": variant.name,
                    "values": variant.values,
                    "seed": seed,
                    "overrides": overrides + variant.overrides + [f"seed={seed}"],
                    "run_dir": str(out / variant.dir / f"seed{seed}"),
                }
            )
    configs = [load_config(config_path, r["overrides"]) for r in runs]  # all, first
    check_together(configs)
    echo(f"sweep directory: {out}")
    started = time.perf_counter()
    outcomes = train_together(configs, [r["run_dir"] for r in runs], quiet=quiet, echo=echo)
    seconds = time.perf_counter() - started
    task = next((o["summary"]["task"] for o in outcomes if o["summary"]), None)
    if task is None:  # every run diverged: ask the data
        task = load_dataset(base).task
    metric = base.train.monitor or default_monitor(task, base.data.split.val > 0)
    for r, o in zip(runs, outcomes):
        r.update(_measure(o, metric))
    result = {
        "config": None if config_path is None else str(config_path),
        "overrides": overrides,
        "vary": {k: list(v) for k, v in varied.items()},
        "seeds": seed_list,
        "task": task,
        "metric": metric,
        "out": str(out),
        "seconds": round(seconds, 2),
        "runs": runs,
        "variants": _variants(runs),
        "report_runs": _best_runs(runs, metric),
    }
    save_config(base, out / RunDir.CONFIG)
    result["csv"] = str(_write_csv(result, out / "sweep.csv"))
    result["markdown"] = str(_write_markdown(result, out / "sweep.md"))
    write_atomic(out / "sweep.json", dumps(result))
    return result


def _measure(outcome: dict, metric: str) -> dict:
    """A run's row: its status and its numbers (None where it diverged)."""
    summary = outcome["summary"] or {}
    history = outcome["history"]
    best = history_best(history, metric)
    test_key = metric.removeprefix("val_").removeprefix("train_")
    return {
        "status": outcome["status"],
        "error": outcome["error"],
        "epochs_run": len(history),
        "best_epoch": summary.get("best_epoch"),
        "best": best[1] if best and summary else None,
        "final": history[-1].get(metric) if history and summary else None,
        "test": (summary.get("test") or {}).get(test_key),
        "seconds": summary.get("seconds"),
    }


def _best_runs(runs: list[dict], metric: str) -> list[str]:
    """The directories of the :data:`REPORT_RUNS` runs best by ``metric``."""
    done = [r for r in runs if r["best"] is not None]
    done.sort(key=lambda r: r["best"], reverse=not minimize(metric))
    return [r["run_dir"] for r in done[:REPORT_RUNS]]


def _variants(runs: list[dict]) -> list[dict]:
    """Per variant: its runs (seeds), how many diverged, mean ± std of best and test."""
    by_variant: dict[str, list[dict]] = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
    rows = []
    for name, rs in by_variant.items():
        best, test = stats(r["best"] for r in rs), stats(r["test"] for r in rs)
        rows.append(
            {
                "variant": name,
                "values": rs[0]["values"],
                "runs": len(rs),
                "diverged": sum(r["status"] == "diverged" for r in rs),
                "best_mean": best["mean"],
                "best_std": best["std"],
                "test_mean": test["mean"],
                "test_std": test["std"],
            }
        )
    return rows


def _table(result: dict) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(variant header, variant rows, run header, run rows) as text cells."""
    metric, keys = result["metric"], list(result["vary"])
    test = "test_" + metric.removeprefix("val_").removeprefix("train_")
    vh = ["variant", "runs", "diverged", f"best {metric}", test]
    vrows = [
        [
            v["variant"],
            str(v["runs"]),
            str(v["diverged"]),
            pm({"mean": v["best_mean"], "std": v["best_std"]}),
            pm({"mean": v["test_mean"], "std": v["test_std"]}),
        ]
        for v in result["variants"]
    ]
    rh = [*keys, "seed", "status", "epochs", "best epoch", f"best {metric}", f"final {metric}"]
    rh.append(test)
    rrows = [
        [
            *(value_text(r["values"][k]) for k in keys),
            str(r["seed"]),
            r["status"],
            str(r["epochs_run"]),
            number(r["best_epoch"]),
            number(r["best"]),
            number(r["final"]),
            number(r["test"]),
        ]
        for r in result["runs"]
    ]
    return vh, vrows, rh, rrows


def _write_csv(result: dict, path: Path) -> Path:
    """One row per run."""
    keys = list(result["vary"])
    columns = ["status", "epochs_run", "best_epoch", "best", "final", "test", "seconds"]
    rows = [
        [
            *(value_text(r["values"][k]) for k in keys),
            r["seed"],
            *("" if r[c] is None else r[c] for c in columns),
            r["run_dir"],
        ]
        for r in result["runs"]
    ]
    return write_csv(path, [*keys, "seed", *columns, "run_dir"], rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write_markdown(result: dict, path: Path) -> Path:
    vh, vrows, rh, rrows = _table(result)
    seeds = len(result["seeds"])
    text = f"# Sweep: {len(result['runs'])} runs trained together in {result['seconds']} s\n\n"
    text += f"Metric: `{result['metric']}`; mean ± std over {seeds} seed(s) per variant.\n\n"
    text += "## Variants\n\n" + _markdown(vh, vrows) + "\n## Runs\n\n" + _markdown(rh, rrows)
    return write_atomic(path, text)


def format_sweep(result: dict) -> str:
    """The table ``trainlab sweep`` prints: one row per variant (mean ± std over seeds),
    or per run with one seed; then where the results are, and the report when the
    result has one (``result["report"]``, set by whoever rendered it)."""
    vh, vrows, rh, rrows = _table(result)
    header, rows = (vh, vrows) if len(result["seeds"]) > 1 else (rh, rrows)
    n = len(result["runs"])
    lines = [
        text_table(header, rows),
        f"{n} runs trained together in {result['seconds']} s; results in {result['out']} "
        f"(sweep.csv, sweep.md)",
    ]
    if result.get("report"):
        shown = len(result.get("report_runs") or []) or min(n, REPORT_RUNS)
        lines.append(f"report ({shown} best of {n} runs): {result['report']}")
    return "\n".join(lines)
