"""Compare variants of a config fairly: the same tuning budget, several seeds, failures counted.

``compare(config, vary=["optimizer.name=sgd,adam"], seeds=3, tune_lr=5)`` trains every
variant (the cartesian product of the ``vary`` lists, read by :mod:`trainlab.variants`,
each variant a list of ``--set`` overrides) the way optimizer benchmarks (DeepOBS) do it:

1. with ``tune_lr=K``, K learning rates, log-spaced over :data:`LR_DECADES` decades
   centered on the variant's optimizer default (1e-2 for the SGD family), are trained with
   seed 0; the one with the best *validation* metric wins (the test split is never used
   to choose);
2. the winner (or, without ``tune_lr``, the variant's config as it is) is trained with
   seeds 0 … N−1 (seed 0 of the winner is the grid's run, not trained twice).

A run that diverges (``NonFiniteLossError``, or a non-finite validation metric) is a
failure: it is recorded and counted, and its metrics count as the worst value (accuracy
0, loss inf) in the means; it is never dropped.

The phases, each a function: :func:`plan_comparison` (check every variant, pick the
directory), :func:`train_runs` (batched through :mod:`trainlab.sweep` when the runs can
be, else one :func:`~trainlab.run.fit` after another), :func:`measure` (each run's numbers
from its ``metrics.jsonl``), :func:`choose_lr` (each variant's grid winner),
:func:`summarize` (mean ± std per variant) and :func:`write_outputs`.

The output directory holds one run directory per (variant, lr, seed), e.g.
``optimizer.name=adam/lr=0.001/seed0``, and ``compare.json``, ``compare.csv`` and
``curves.png``; the result names the runs of the comparison page (``report_runs``), which
the CLI renders as ``report.html``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab import figures, optim
from trainlab.atomic import write_atomic
from trainlab.config import Config, load_config
from trainlab.errors import UserError
from trainlab.run import fit
from trainlab.sweep.run import SweepError, fit_many
from trainlab.train import NonFiniteLossError
from trainlab.train.build import load_dataset
from trainlab.train.rundir import RunDir, dumps, finite, require_empty
from trainlab.variants import (
    combine,
    parse_vary_items,
    pm,
    stats,
    text_table,
    value_text,
    write_csv,
)

__all__ = [
    "CompareError",
    "LR_DECADES",
    "Plan",
    "Progress",
    "choose_lr",
    "compare",
    "format_comparison",
    "lr_grid",
    "measure",
    "plan_comparison",
    "summarize",
    "train_runs",
    "write_outputs",
]

#: How many decades the learning-rate grid of ``tune_lr`` spans, centered on the default.
LR_DECADES = 3.0
#: The center of the grid for optimizers without a default learning rate (SGD family).
SGD_CENTER = 1e-2


class CompareError(UserError, ValueError):
    """A comparison the user can fix (its seeds, its tuning budget, a config without a
    validation split); ``str(err)`` is one line naming the culprit."""


def lr_grid(center: float, k: int, decades: float = LR_DECADES) -> list[float]:
    """``k`` learning rates, log-spaced over ``decades`` decades centered on ``center``,
    each rounded to 3 significant digits (so a run directory's name is its value)."""
    half = decades / 2
    exps = np.linspace(math.log10(center) - half, math.log10(center) + half, k)
    return [float(f"{10**e:.3g}") for e in exps]


def _default_lr(config: Config) -> float:
    """The optimizer's default learning rate (with its convention), 1e-2 for SGD."""
    hyper = config.optimizer.hyperparameters()
    hyper.pop("lr", None)
    if optim.CLASSES[config.optimizer.name] is optim.SGD:
        return SGD_CENTER
    opt = optim.create(config.optimizer.name, [torch.zeros(1, requires_grad=True)], **hyper)
    return float(opt.param_groups[0]["lr"])


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """What a comparison trains, checked before anything is: the variants (dicts that
    the phases fill: ``lr_grid``, ``lr``, ``runs``, ``summary``), the base config and the
    output directory."""

    config_path: str | Path | None
    overrides: list[str]
    varied: dict[str, list]
    variants: list[dict]
    seeds: int
    tune_lr: int
    target: float | None
    base: Config
    out: Path

    @property
    def total(self) -> int:
        """How many runs the comparison trains."""
        per_variant = (self.tune_lr + self.seeds - 1) if self.tune_lr else self.seeds
        return per_variant * len(self.variants)


def plan_comparison(
    config_path: str | Path | None,
    vary: list[str],
    seeds: int = 1,
    tune_lr: int = 0,
    out: str | Path | None = None,
    target: float | None = None,
    overrides: list[str] | None = None,
) -> Plan:
    """Check the arguments and every variant's config; pick the output directory (not
    created yet). Raises every error :func:`compare` lists, before anything trains."""
    if not isinstance(seeds, int) or seeds < 1:
        raise CompareError(f"seeds must be at least 1, got {seeds}")
    if not isinstance(tune_lr, int) or tune_lr < 0 or tune_lr == 1:
        raise CompareError(
            f"tune_lr must be 0 (no tuning) or at least 2 learning rates, got {tune_lr}"
        )
    overrides = list(overrides or [])
    axes = parse_vary_items(vary)
    if tune_lr and "optimizer.lr" in [*axes, *(o.partition("=")[0].strip() for o in overrides)]:
        raise CompareError(
            "optimizer.lr is tuned by tune_lr; do not also set or vary it "
            "(drop tune_lr to compare fixed learning rates)"
        )
    tuned = ["optimizer.lr=0.01"] if tune_lr else []  # a stand-in for the check
    variants = []
    for variant in combine(axes):
        # every variant's config is validated before anything trains
        check = load_config(config_path, overrides + variant.overrides + tuned)
        if check.data.split.val <= 0:
            raise CompareError(
                "compare picks and reports by the validation metric: data.split.val must be > 0"
            )
        variants.append(
            {
                "name": variant.name,
                "values": variant.values,
                "overrides": variant.overrides,
                "dir": variant.dir,
                "grid": lr_grid(_default_lr(check), tune_lr) if tune_lr else None,
                "lr": None,
                "lr_grid": None,
                "runs": [],
            }
        )
    base = load_config(config_path, overrides + tuned)
    out = Path(out) if out is not None else Path("runs") / f"{base.name}-compare"
    require_empty(out, what="output directory")
    return Plan(
        config_path=config_path,
        overrides=overrides,
        varied={key: [value for _, value in pairs] for key, pairs in axes.items()},
        variants=variants,
        seeds=seeds,
        tune_lr=tune_lr,
        target=target,
        base=base,
        out=out,
    )


# --------------------------------------------------------------------------- training


@dataclass
class Progress:
    """How the runs are trained (``batch``: together when they can be), and how far."""

    total: int
    quiet: bool = True
    echo: Callable[[str], None] = print
    batch: bool = True
    done: int = 0
    #: The task, from the first run that finished.
    task: str | None = None

    def inner_echo(self, message: str) -> None:
        """What a run says, shown unless quiet."""
        if not self.quiet:
            self.echo(message)


@dataclass
class _Job:
    what: str
    run_dir: Path
    overrides: list[str]
    record: dict[str, Any]


def _job(plan: Plan, variant: dict, lr: float | None, seed: int) -> _Job:
    """A run of ``variant`` (with learning rate ``lr`` when tuned) and ``seed``."""
    sub = plan.out / variant["dir"]
    if lr is not None:
        sub = sub / f"lr={lr:g}"
    run_dir = sub / f"seed{seed}"
    sets = plan.overrides + variant["overrides"] + [f"seed={seed}"]
    if lr is not None:
        sets.append(f"optimizer.lr={lr!r}")
    record: dict[str, Any] = {
        "variant": variant["name"],
        "lr": lr,
        "seed": seed,
        "run_dir": str(run_dir),
        "diverged": False,
        "error": None,
    }
    what = variant["name"] + ("" if lr is None else f" lr={lr:g}") + f" seed{seed}"
    return _Job(what, run_dir, sets, record)


def train_runs(
    plan: Plan, progress: Progress, runs: list[tuple[dict, float | None, int]]
) -> list[dict]:
    """Train the runs (variant, lr, seed) and return their records (measured later by
    :func:`measure`): as one batched computation (:mod:`trainlab.sweep`) when they share
    an architecture and ``progress.batch`` allows, else one after another. Runs that
    cannot be batched turn batching off for the rest of the comparison."""
    jobs = [_job(plan, *run) for run in runs]
    if progress.batch and len(jobs) > 1:
        try:
            outcomes = fit_many(
                plan.config_path,
                [job.overrides for job in jobs],
                [job.run_dir for job in jobs],
                quiet=progress.quiet,
                echo=progress.inner_echo,
            )
        except SweepError as err:
            progress.echo(f"training the runs one after another: {err}")
            progress.batch = False
        else:
            progress.echo(f"trained {len(jobs)} runs together (batched)")
            return [
                _finish(progress, job, outcome["summary"], outcome["error"])
                for job, outcome in zip(jobs, outcomes)
            ]
    return [_train_one(plan, progress, job) for job in jobs]


def _train_one(plan: Plan, progress: Progress, job: _Job) -> dict:
    try:
        summary = fit(
            plan.config_path,
            job.overrides,
            out=job.run_dir,
            quiet=progress.quiet,
            echo=progress.inner_echo,
        )
    except NonFiniteLossError as err:
        return _finish(progress, job, None, str(err))
    return _finish(progress, job, summary, None)


def _finish(progress: Progress, job: _Job, summary: dict | None, error: str | None) -> dict:
    """Record a run's outcome: its summary, or the error it diverged with."""
    progress.done += 1
    where = f"[{progress.done}/{progress.total}] {job.what}"
    record = job.record
    if summary is None:
        record.update(diverged=True, error=error)
        progress.echo(f"{where}: diverged")
        return record
    progress.task = progress.task or summary.get("task")
    record.update(
        best_epoch=summary.get("best_epoch"),
        epochs_run=summary.get("epochs_run"),
        seconds=summary.get("seconds"),
        _summary_test=summary.get("test", {}),
    )
    batched = " (its share of the batched time)" if summary.get("batched") else ""
    progress.echo(f"{where}: done in {summary.get('seconds')} s{batched}")
    return record


# --------------------------------------------------------------------------- measuring


def _reaches(value: float, target: float, maximize: bool) -> bool:
    return value >= target if maximize else value <= target


def measure(record: dict, metric: str, maximize: bool, target: float | None) -> dict:
    """Fill a run record's numbers from its ``metrics.jsonl`` (and its summary's test
    metric); a diverged run gets the worst value (0 for accuracy, inf for a loss)."""
    worst = 0.0 if maximize else math.inf
    test = record.pop("_summary_test", {}).get(metric.removeprefix("val_"))
    history = RunDir(record["run_dir"]).read_history(strict=False)
    record["curve"] = [
        [h.get("epoch", i + 1), h[metric] if finite(h.get(metric)) else None]
        for i, h in enumerate(history)
        if metric in h
    ]
    if record.get("seconds") is None:
        record["seconds"] = round(sum(h.get("seconds", 0.0) for h in history), 2)
    if record.get("epochs_run") is None:
        record["epochs_run"] = sum(1 for h in history if metric in h)
    values = [h.get(metric) for h in history if metric in h]
    if not record["diverged"] and (not values or not all(finite(v) for v in values)):
        record["diverged"] = True
        record["error"] = f"{metric} is not finite" if values else f"{metric} was never logged"
    if not record["diverged"]:
        val_losses = [h["val_loss"] for h in history if "val_loss" in h]
        if not all(finite(v) for v in val_losses):
            record["diverged"] = True
            record["error"] = "val_loss is not finite"
    if record["diverged"]:
        record.update(final_val=worst, best_val=worst, test=worst, best_epoch=None)
        record.update(epochs_to_target=None, seconds_to_target=None)
        return record
    pick = max if maximize else min
    record["final_val"] = values[-1]
    record["best_val"] = pick(values)
    record["test"] = test if finite(test) else worst
    record["epochs_to_target"] = record["seconds_to_target"] = None
    if target is not None:
        elapsed = 0.0
        for h in history:
            elapsed += h.get("seconds", 0.0)
            if finite(h.get(metric)) and _reaches(h[metric], target, maximize):
                record["epochs_to_target"] = h.get("epoch")
                record["seconds_to_target"] = round(elapsed, 3)
                break
    return record


def summarize(runs: list[dict]) -> dict:
    """Per variant: its runs, how many diverged, mean ± std of every number."""
    keys = ("final_val", "best_val", "test", "seconds", "epochs_to_target", "seconds_to_target")
    return {
        "runs": len(runs),
        "diverged": sum(r["diverged"] for r in runs),
        **{key: stats(r[key] for r in runs) for key in keys},
    }


# --------------------------------------------------------------------------- the comparison


def compare(
    config_path: str | Path | None,
    vary: list[str],
    seeds: int = 1,
    tune_lr: int = 0,
    out: str | Path | None = None,
    target: float | None = None,
    overrides: list[str] | None = None,
    quiet: bool = True,
    echo: Callable[[str], None] = print,
    batch: bool = True,
) -> dict:
    """Train every variant with the same budget and compare them; returns what
    ``compare.json`` holds (see the module docstring and ``docs/compare.md``).

    With ``batch`` (the default), the runs of each phase (the learning-rate grids; the
    seeds) are trained together as one batched computation (:mod:`trainlab.sweep`) when
    they differ only in what keeps one architecture — seeds, optimizer settings and
    schedules, dropout, init; otherwise, or with ``batch=False``, one after another.

    Raises
    ------
    VaryError
        A malformed ``vary`` item (named).
    CompareError
        ``seeds`` < 1, ``tune_lr`` 1 or negative, ``optimizer.lr`` both varied/set and
        tuned, or a config without a validation split.
    ConfigError
        An unknown key or bad value in the config or in a variant (checked for every
        variant before anything is trained).
    RunError
        The output directory exists and is not empty.
    """
    plan = plan_comparison(config_path, vary, seeds, tune_lr, out, target, overrides)
    plan.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(plan.total, quiet=quiet, echo=echo, batch=batch)
    records = train_runs(plan, progress, _first_runs(plan))
    task = progress.task or load_dataset(plan.base).task  # every run diverged: ask the data
    metric = "val_accuracy" if task == "classification" else "val_loss"
    maximize = task == "classification"
    first = _by_variant([measure(r, metric, maximize, target) for r in records])
    for variant in plan.variants:
        variant["lr_grid" if tune_lr else "runs"] = first[variant["name"]]
    if tune_lr:
        choose_lr(plan.variants, maximize)
        if seeds > 1:  # the winners' other seeds
            runs = [(v, v["lr"], s) for v in plan.variants for s in range(1, seeds)]
            more = [measure(r, metric, maximize, target) for r in train_runs(plan, progress, runs)]
            for variant in plan.variants:
                variant["runs"] += _by_variant(more)[variant["name"]]
    for variant in plan.variants:
        variant["summary"] = summarize(variant["runs"])
    return write_outputs(_result(plan, task, metric, maximize), plan.variants, plan.out)


def _first_runs(plan: Plan) -> list[tuple[dict, float | None, int]]:
    """The first phase: each variant's learning-rate grid with seed 0 (with ``tune_lr``),
    else every seed of every variant."""
    if plan.tune_lr:
        return [(v, lr, 0) for v in plan.variants for lr in v["grid"]]
    return [(v, None, seed) for v in plan.variants for seed in range(plan.seeds)]


def _by_variant(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in records:
        out.setdefault(record["variant"], []).append(record)
    return out


def choose_lr(variants: list[dict], maximize: bool) -> None:
    """Each variant's learning rate: the best of its grid by the validation metric (a
    diverged run scores the worst; a tie goes to the smaller rate). Its seed-0 run is the
    first of its runs."""
    for variant in variants:
        scores = [r["best_val"] for r in variant["lr_grid"]]
        winner = variant["lr_grid"][int(np.argmax(scores) if maximize else np.argmin(scores))]
        variant["lr"], variant["runs"] = winner["lr"], [winner]


def _result(plan: Plan, task: str, metric: str, maximize: bool) -> dict[str, Any]:
    """What ``compare.json`` holds, but for the files written next to it."""
    return {
        "config": None if plan.config_path is None else str(plan.config_path),
        "overrides": plan.overrides,
        "vary": plan.varied,
        "seeds": plan.seeds,
        "tune_lr": plan.tune_lr,
        "lr_decades": LR_DECADES if plan.tune_lr else None,
        "target": plan.target,
        "task": task,
        "metric": metric,
        "maximize": maximize,
        "test_metric": "test_" + metric.removeprefix("val_"),
        "out": str(plan.out),
        "variants": [
            {
                "name": v["name"],
                "values": v["values"],
                "overrides": v["overrides"],
                "lr": v["lr"],
                "lr_grid": (
                    None
                    if v["lr_grid"] is None
                    else [
                        {
                            "lr": r["lr"],
                            "val": r["best_val"],
                            "diverged": r["diverged"],
                            "run_dir": r["run_dir"],
                        }
                        for r in v["lr_grid"]
                    ]
                ),
                "runs": [{k: val for k, val in r.items() if k != "curve"} for r in v["runs"]],
                "summary": v["summary"],
            }
            for v in plan.variants
        ],
    }


# --------------------------------------------------------------------------- outputs


def write_outputs(result: dict, variants: list[dict], out: Path) -> dict:
    """``curves.png``, ``compare.csv`` and ``compare.json`` in ``out``; the result gets
    their paths and ``report_runs``: the runs of the comparison page (seed 0 of each
    variant's chosen config, where it logged metrics), which the CLI renders."""
    result["figure"] = str(_plot(variants, result["metric"], out / "curves.png"))
    result["csv"] = str(_comparison_csv(result, out / "compare.csv"))
    result["report_runs"] = [
        v["runs"][0]["run_dir"] for v in variants if RunDir(v["runs"][0]["run_dir"]).is_run()
    ]
    write_atomic(out / "compare.json", dumps(result))
    return result


def _plot(variants: list[dict], metric: str, path: Path) -> Path:
    """Validation curves: per variant the mean over seeds and a min–max band."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = figures.figure(7, 4)
    every = []
    for i, v in enumerate(variants):
        by_epoch: dict[int, list[float]] = {}
        for r in v["runs"]:
            for epoch, value in r.get("curve", []):
                if value is not None:
                    by_epoch.setdefault(int(epoch), []).append(value)
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        mean = [statistics.fmean(by_epoch[e]) for e in epochs]
        low = [min(by_epoch[e]) for e in epochs]
        high = [max(by_epoch[e]) for e in epochs]
        every += low + high
        color = f"C{i % 10}"
        label = v["name"] + (f" (lr {v['lr']:g})" if v.get("lr") is not None else "")
        n_div = v["summary"]["diverged"]
        if n_div:
            label += f" — {n_div} diverged"
        ax.plot(epochs, mean, color=color, marker="o", markersize=3, label=label)
        ax.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
    positive = [x for x in every if x > 0]
    if metric.endswith("loss") and positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ") + " (mean, min–max over seeds)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return figures.save(fig, path)


#: The columns of ``compare.csv`` after the variant, its values and its lr: (column,
#: summary key, field of its stats).
_CSV_COLUMNS = (
    ("final_val_mean", "final_val", "mean"),
    ("final_val_std", "final_val", "std"),
    ("best_val_mean", "best_val", "mean"),
    ("best_val_std", "best_val", "std"),
    ("test_mean", "test", "mean"),
    ("test_std", "test", "std"),
    ("seconds_mean", "seconds", "mean"),
    ("epochs_to_target_mean", "epochs_to_target", "mean"),
    ("seconds_to_target_mean", "seconds_to_target", "mean"),
)


def _comparison_csv(result: dict, path: Path) -> Path:
    """One row per variant: its values, runs, diverged, means and stds."""
    keys = list(result["vary"])
    header = ["variant", *keys, "lr", "runs", "diverged", *(c for c, _, _ in _CSV_COLUMNS)]
    rows = []
    for v in result["variants"]:
        s = v["summary"]
        rows.append(
            [
                v["name"],
                *(value_text(v["values"][k]) for k in keys),
                "" if v["lr"] is None else v["lr"],
                s["runs"],
                s["diverged"],
                *(s[key][field] for _, key, field in _CSV_COLUMNS),
                s["epochs_to_target"]["n"] if result["target"] is not None else "",
            ]
        )
    return write_csv(path, [*header, "reached_target"], rows)


def format_comparison(result: dict) -> str:
    """The table the CLI prints: one row per variant, mean ± std over seeds."""
    metric = result["metric"]
    target = result.get("target")
    tuned = bool(result.get("tune_lr"))
    header = ["variant", *(["lr"] if tuned else [])]
    header += ["runs", "diverged", f"final {metric}", f"best {metric}", result["test_metric"]]
    header.append("seconds")
    if target is not None:
        header += [f"epochs to {target:g}", f"seconds to {target:g}"]
    rows = []
    for v in result["variants"]:
        s = v["summary"]
        row = [v["name"], *([f"{v['lr']:g}"] if tuned else [])]
        row += [str(s["runs"]), str(s["diverged"])]
        row += [pm(s["final_val"]), pm(s["best_val"]), pm(s["test"]), pm(s["seconds"], 3)]
        if target is not None:
            reached = s["epochs_to_target"]["n"]
            if reached:
                row.append(f"{pm(s['epochs_to_target'], 3)} ({reached}/{s['runs']})")
                row.append(pm(s["seconds_to_target"], 3))
            else:
                row += ["never", "—"]
        rows.append(row)
    seeds = result["seeds"]
    note = f"mean ± std over {seeds} seed{'s' if seeds > 1 else ''}"
    if tuned:
        note += f"; lr chosen by validation from a grid of {result['tune_lr']} per variant"
    note += "; a diverged run counts as the worst value"
    return text_table(header, rows, right=True) + "\n" + note
