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
by :func:`fit_many`, then a table (``sweep.csv``, ``sweep.md``), ``sweep.json`` and a report.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from trainlab import data as tl_data
from trainlab.config import Config, ConfigError, config_dict, load_config, save_config
from trainlab.errors import UserError
from trainlab.run import RunError, build
from trainlab.train import EarlyStopping, save_checkpoint
from trainlab.train.metrics import TASK_METRICS, default_monitor, history_best, minimize

from .stack import ArchitectureError
from .trainer import SweepTrainer

__all__ = [
    "SweepError",
    "VARIABLE",
    "variable",
    "check_together",
    "parse_vary",
    "fit_many",
    "train_together",
    "sweep",
    "format_sweep",
]


class SweepError(UserError, ValueError):
    """A sweep the user can fix (a --vary item, or runs that cannot be trained together);
    ``str(err)`` is one line naming the culprit."""


#: The config keys that may differ between the runs of one batched sweep: they change
#: neither the architecture nor the steps of training. ``optimizer.*`` and ``schedule.*``
#: are every key of those sections.
VARIABLE = ("seed", "model.dropout", "model.init", "optimizer.*", "schedule.*")


def variable(key: str) -> bool:
    """Whether runs that differ in config ``key`` can be trained together."""
    return any(key == v or (v.endswith(".*") and key.startswith(v[:-1])) for v in VARIABLE)


# --------------------------------------------------------------------------- --vary

_SPACE = re.compile(
    r"^(?P<kind>logspace|linspace)\(\s*(?P<a>[^,]+?)\s*,\s*(?P<b>[^,]+?)\s*,\s*(?P<n>[^,]+?)\s*\)$"
)


def _round(x: float) -> float:
    """4 significant digits: a value reads as it is written in a directory name."""
    return float(f"{x:.4g}")


def _spaced(item: str, kind: str, a_text: str, b_text: str, n_text: str) -> list[float]:
    try:
        a, b = float(a_text), float(b_text)
    except ValueError:
        raise SweepError(f"--vary {item!r}: {kind}(a, b, n) takes two numbers a, b") from None
    if not n_text.isdigit() or int(n_text) < 1:
        raise SweepError(f"--vary {item!r}: the count n must be an integer ≥ 1, got {n_text}")
    n = int(n_text)
    if kind == "logspace":
        if a <= 0 or b <= 0:
            raise SweepError(f"--vary {item!r}: logspace needs a, b > 0")
        values = np.logspace(math.log10(a), math.log10(b), n)
    else:
        values = np.linspace(a, b, n)
    out = [_round(float(v)) for v in values]
    if len(set(out)) != len(out):
        raise SweepError(f"--vary {item!r}: {n} values are too close to tell apart")
    return out


def parse_vary(items: Sequence[str]) -> dict[str, list]:
    """``["optimizer.lr=logspace(1e-4,1e-1,4)", "model.dropout=[0,0.3]"]`` →
    ``{"optimizer.lr": [0.0001, 0.001, 0.01, 0.1], "model.dropout": [0, 0.3]}``.

    A value spec is ``logspace(a,b,n)`` (n values log-spaced from a to b), ``linspace(a,b,n)``,
    a YAML list ``[v1,v2,…]``, or ``v1,v2,…`` as ``trainlab compare`` reads it. Spaced
    values are rounded to 4 significant digits.

    Raises
    ------
    SweepError
        For a malformed item, naming it.
    """
    from trainlab.compare import parse_vary as parse_values

    out: dict[str, list] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise SweepError(
                f"--vary {item!r}: expected KEY=SPEC, e.g. optimizer.lr=logspace(1e-4,1e-1,16)"
            )
        if key in out:
            raise SweepError(f"--vary {item!r}: {key} is already varied by another --vary")
        spaced = _SPACE.match(text)
        if spaced:
            out[key] = _spaced(item, *spaced.group("kind", "a", "b", "n"))
            continue
        if text.startswith(("logspace", "linspace")):
            raise SweepError(
                f"--vary {item!r}: write {text.partition('(')[0]}(a,b,n): from a to b, n values"
            )
        if text.startswith("[") and text.endswith("]"):
            try:
                listed = yaml.safe_load(text)
            except yaml.YAMLError:
                listed = None
            if isinstance(listed, list) and listed and not isinstance(listed[0], list):
                text = ",".join(json.dumps(v) for v in listed)  # the comma form below
        try:
            out.update(parse_values([f"{key}={text}"]))
        except ValueError as err:
            raise SweepError(str(err).replace(f"{key}={text}", str(item))) from None
    return out


def _text(value: Any) -> str:
    """A value as ``--set`` text that reads back as itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+\-\[\]]", "_", name) or "_"


# --------------------------------------------------------------------------- fit_many


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key not in ("space",):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(configs: Sequence[Config]) -> list[str]:
    """The keys in which the configs differ (dotted, leaves)."""
    flats = [_flat(config_dict(c)) for c in configs]
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


def _check_metrics(config: Config, task: str, has_val: bool) -> str:
    """The monitored metric; ConfigError if it, or early stopping's, is not logged (as
    ``trainlab fit`` checks)."""
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


def _empty_dir(run_dir: Path) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise RunError(f"run directory {run_dir} already exists and is not empty; choose another")


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
        _empty_dir(d)

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
    monitor = _check_metrics(first, task, has_val)
    steps_per_epoch = len(pieces[0].loaders["train"])
    total = first.train.epochs * steps_per_epoch
    es = first.train.early_stopping
    try:
        trainer = SweepTrainer(
            [p.model for p in pieces],
            [p.optimizer for p in pieces],
            task=task,
            schedules=[c.schedule.build(total) for c in configs],
            rng_states=states,
            early_stopping=[
                EarlyStopping(es.metric, es.patience, es.min_delta) if es else None for _ in configs
            ],
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
    from trainlab.diagnose import diagnose

    evaluated: dict[str, list[dict]] = {}
    loaders = [p.loaders for p in pieces]
    for name in ("train", "val", "test"):
        if name not in loaders[0]:
            continue
        if name == "train":  # one in-order loader per distinct training set
            seen: dict[int, Any] = {}
            for ld in loaders:
                t = ld["train"]
                if id(t) not in seen:
                    seen[id(t)] = tl_data.TensorLoader(t.X, t.y, batch_size=1000, shuffle=False)
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
        best = history_best(history, trainer.monitor)
        summary: dict[str, Any] = {
            "run_dir": str(run_dirs[k]) if run_dirs else None,
            "name": config.name,
            "task": task,
            "n_classes": p.dataset.n_classes,
            "best_epoch": best[0] if best else None,
            "epochs_run": len(history),
            "steps": len(history) * steps_per_epoch,
            "seconds": round(sum(h.get("seconds", 0.0) for h in history), 2),
        }
        for name in ("train", "val", "test"):
            summary[name] = evaluated[name][k] if name in evaluated else {}
        summary["diagnosis"] = [
            f.to_dict() for f in diagnose(history, task=task, n_classes=p.dataset.n_classes)
        ]
        summary["batched"] = True
        out.append(summary)
    return out


def _write_run(
    run_dir: Path, config: Config, p: Any, trainer: SweepTrainer, k: int, summary: dict | None
) -> None:
    """A run directory as ``trainlab fit`` leaves it (no last.pt: a sweep does not resume)."""
    save_config(config, run_dir / "config.yaml")
    p.split.save(run_dir / "split.json")
    lines = "".join(json.dumps(h) + "\n" for h in trainer.histories[k])
    (run_dir / "metrics.jsonl").write_text(lines, encoding="utf-8")
    if summary is None:
        return
    save_checkpoint(
        {
            "model": trainer.state_dict(k, "best"),
            "epoch": summary["best_epoch"],
            "preprocess": p.preprocessor.state_dict() if p.preprocessor else None,
            "config": config_dict(config),
        },
        run_dir / "checkpoints" / "best.pt",
    )
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- sweep


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
    seeds (the config's seed, +1, …), trained together; returns what ``sweep.json`` holds.

    Raises
    ------
    SweepError
        A malformed ``--vary`` item, a key that cannot vary in a batched sweep (the
        message lists :data:`VARIABLE`), ``seeds`` < 1, or ``seed`` both varied and
        given by ``seeds``.
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
    keys = list(varied)
    out = Path(out) if out is not None else Path("runs") / f"{base.name}-sweep"
    _empty_dir(out)

    runs = []
    for combo in itertools.product(*varied.values()):
        sets = [f"{k}={_text(v)}" for k, v in zip(keys, combo)]
        variant = " ".join(sets) or "config"
        for seed in seed_list:
            runs.append(
                {
                    "variant": variant,
                    "values": dict(zip(keys, combo)),
                    "seed": seed,
                    "overrides": overrides + sets + [f"seed={seed}"],
                    "run_dir": str(out / _safe("+".join(sets) or "config") / f"seed{seed}"),
                }
            )
    configs = [load_config(config_path, r["overrides"]) for r in runs]  # all, first
    check_together(configs)
    echo(f"sweep directory: {out}")
    started = time.perf_counter()
    outcomes = train_together(configs, [r["run_dir"] for r in runs], quiet=quiet, echo=echo)
    seconds = time.perf_counter() - started
    task = next((o["summary"]["task"] for o in outcomes if o["summary"]), None)
    if task is None:
        task = tl_data.load(base.data.dataset, target=base.data.target, task=base.data.task).task
    metric = base.train.monitor or default_monitor(task, base.data.split.val > 0)
    for r, o in zip(runs, outcomes):
        r.update(_measure(o, metric, task))
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
    }
    (out / "config.yaml").write_text(
        yaml.safe_dump(config_dict(base), sort_keys=False), encoding="utf-8"
    )
    result["csv"] = str(_write_csv(result, out / "sweep.csv"))
    result["markdown"] = str(_write_markdown(result, out / "sweep.md"))
    result["report"] = _report(result, out / "report.html")
    (out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _measure(outcome: dict, metric: str, task: str) -> dict:
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


def _stat(values: list) -> tuple[float | None, float | None]:
    xs = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _variants(runs: list[dict]) -> list[dict]:
    """Per variant: its runs (seeds), how many diverged, mean ± std of best and test."""
    out: dict[str, dict] = {}
    for r in runs:
        v = out.setdefault(
            r["variant"], {"variant": r["variant"], "values": r["values"], "runs": []}
        )
        v["runs"].append(r)
    rows = []
    for v in out.values():
        rs = v.pop("runs")
        best_mean, best_std = _stat([r["best"] for r in rs])
        test_mean, test_std = _stat([r["test"] for r in rs])
        rows.append(
            {
                **v,
                "runs": len(rs),
                "diverged": sum(r["status"] == "diverged" for r in rs),
                "best_mean": best_mean,
                "best_std": best_std,
                "test_mean": test_mean,
                "test_std": test_std,
            }
        )
    return rows


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return _num(mean) + (f" ± {std:.2g}" if std is not None else "")


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
            _pm(v["best_mean"], v["best_std"]),
            _pm(v["test_mean"], v["test_std"]),
        ]
        for v in result["variants"]
    ]
    rh = [*keys, "seed", "status", "epochs", "best epoch", f"best {metric}", f"final {metric}"]
    rh.append(test)
    rrows = [
        [
            *(_text(r["values"][k]) for k in keys),
            str(r["seed"]),
            r["status"],
            str(r["epochs_run"]),
            _num(r["best_epoch"]),
            _num(r["best"]),
            _num(r["final"]),
            _num(r["test"]),
        ]
        for r in result["runs"]
    ]
    return vh, vrows, rh, rrows


def _write_csv(result: dict, path: Path) -> Path:
    """One row per run."""
    keys = list(result["vary"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        columns = ["status", "epochs_run", "best_epoch", "best", "final", "test", "seconds"]
        writer.writerow([*keys, "seed", *columns, "run_dir"])
        for r in result["runs"]:
            writer.writerow(
                [
                    *(_text(r["values"][k]) for k in keys),
                    r["seed"],
                    *("" if r[c] is None else r[c] for c in columns),
                    r["run_dir"],
                ]
            )
    return path


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
    path.write_text(text, encoding="utf-8")
    return path


#: The report shows the runs with the best validation metric, at most this many.
REPORT_RUNS = 8


def _report(result: dict, path: Path) -> str | None:
    """The report page of the best runs (by the validation metric)."""
    from trainlab.report import write_report

    done = [r for r in result["runs"] if r["best"] is not None]
    if not done:
        return None
    maximize = not minimize(result["metric"])
    done.sort(key=lambda r: r["best"], reverse=maximize)
    dirs = [Path(r["run_dir"]) for r in done[:REPORT_RUNS]]
    return str(write_report(dirs if len(dirs) > 1 else dirs[0], out=path))


def format_sweep(result: dict) -> str:
    """The table ``trainlab sweep`` prints: one row per variant (mean ± std over seeds)."""
    vh, vrows, rh, rrows = _table(result)
    header, rows = (vh, vrows) if len(result["seeds"]) > 1 else (rh, rrows)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    lines = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    n = len(result["runs"])
    lines.append(
        f"{n} runs trained together in {result['seconds']} s; results in {result['out']} "
        f"(sweep.csv, sweep.md)"
    )
    if result.get("report"):
        shown = min(n, REPORT_RUNS)
        lines.append(f"report ({shown} best of {n} runs): {result['report']}")
    return "\n".join(lines)
