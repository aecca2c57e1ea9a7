"""Compare variants of a config fairly: the same tuning budget, several seeds, failures counted.

``compare(config, vary=["optimizer.name=sgd,adam"], seeds=3, tune_lr=5)`` trains every
variant (the cartesian product of the ``vary`` lists, each a list of ``--set``
overrides) the way optimizer benchmarks (DeepOBS) do it:

1. with ``tune_lr=K``, K learning rates, log-spaced over :data:`LR_DECADES` decades
   centered on the variant's optimizer default (1e-2 for the SGD family), are trained with
   seed 0; the one with the best *validation* metric wins (the test split is never used
   to choose);
2. the winner (or, without ``tune_lr``, the variant's config as it is) is trained with
   seeds 0 … N−1 (seed 0 of the winner is the grid's run, not trained twice).

A run that diverges (``NonFiniteLossError``, or a non-finite validation metric) is a
failure: it is recorded and counted, and its metrics count as the worst value (accuracy
0, loss inf) in the means; it is never dropped.

The output directory holds one run directory per (variant, lr, seed), e.g.
``optimizer.name=adam/lr=0.001/seed0``, and ``compare.json``, ``compare.csv``,
``curves.png`` and ``report.html``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.config import ConfigError, load_config, parse_overrides

__all__ = ["compare", "parse_vary", "format_comparison", "lr_grid", "LR_DECADES"]

#: How many decades the learning-rate grid of ``tune_lr`` spans, centered on the default.
LR_DECADES = 3.0
#: The center of the grid for optimizers without a default learning rate (SGD family).
SGD_CENTER = 1e-2


# --------------------------------------------------------------------------- parsing


def _split_values(text: str) -> list[str]:
    """Split at the commas that are not inside brackets, braces or quotes."""
    parts, depth, quote, current = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_vary(items: list[str]) -> dict[str, list]:
    """``["optimizer.name=sgd,momentum", "model.dropout=0,0.5"]`` → ``{"optimizer.name":
    ["sgd", "momentum"], "model.dropout": [0, 0.5]}``.

    Values are read as YAML, as ``--set`` reads them (``1e-3`` is a number); commas inside
    brackets do not split (``model.hidden=[64,64],[128]`` is two values).

    Raises
    ------
    ValueError
        For an item that is not ``KEY=V1,V2,…``, has an empty value, repeats a value, or
        repeats a key of another item; the message names the item.
    """
    return {key: [value for _, value in pairs] for key, pairs in _parse_vary(items).items()}


def _parse_vary(items: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """key → [(the value as the user wrote it, the typed value)]."""
    out: dict[str, list[tuple[str, Any]]] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(
                f"--vary {item!r}: expected KEY=V1,V2,… with a dotted key, "
                "e.g. optimizer.name=sgd,adam"
            )
        texts = _split_values(text)
        if not text.strip() or any(not t for t in texts):
            raise ValueError(f"--vary {item!r}: empty value; give values as KEY=V1,V2,…")
        if key in out:
            raise ValueError(f"--vary {item!r}: {key} is already varied by another --vary")
        try:
            values = [parse_overrides([f"v={t}"])["v"] for t in texts]
        except ConfigError as err:
            raise ValueError(f"--vary {item!r}: {err}") from None
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ValueError(f"--vary {item!r}: a value is repeated")
        out[key] = list(zip(texts, values))
    return out


def _text(value: Any) -> str:
    """A value as ``--set`` text that reads back as the same value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int,)):
        return str(value)
    return json.dumps(value)


def _safe(name: str) -> str:
    """A path component: no separators, no spaces or odd characters."""
    return re.sub(r"[^A-Za-z0-9._=,+\-\[\]]", "_", name) or "_"


def lr_grid(center: float, k: int, decades: float = LR_DECADES) -> list[float]:
    """``k`` learning rates, log-spaced over ``decades`` decades centered on ``center``,
    each rounded to 3 significant digits (so a run directory's name is its value)."""
    half = decades / 2
    exps = np.linspace(math.log10(center) - half, math.log10(center) + half, k)
    return [float(f"{10**e:.3g}") for e in exps]


def _default_lr(config) -> float:
    """The optimizer's default learning rate (with its convention), 1e-2 for SGD."""
    import torch

    from trainlab import optim

    hyper = config.optimizer.hyperparameters()
    hyper.pop("lr", None)
    if optim.CLASSES[config.optimizer.name] is optim.SGD:
        return SGD_CENTER
    opt = optim.create(config.optimizer.name, [torch.zeros(1, requires_grad=True)], **hyper)
    return float(opt.param_groups[0]["lr"])


# --------------------------------------------------------------------------- one run


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    history = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                history.append(entry)
    return history


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _reaches(value: float, target: float, maximize: bool) -> bool:
    return value >= target if maximize else value <= target


def _measure(record: dict, metric: str, maximize: bool, target: float | None) -> None:
    """Fill a run record's numbers from its metrics.jsonl (and summary); a diverged run
    gets the worst value."""
    worst = 0.0 if maximize else math.inf
    test = record.pop("_test", None)
    history = _read_history(Path(record["run_dir"]) / "metrics.jsonl")
    record["curve"] = [
        [h.get("epoch", i + 1), h[metric] if _finite(h.get(metric)) else None]
        for i, h in enumerate(history)
        if metric in h
    ]
    if record.get("seconds") is None:
        record["seconds"] = round(sum(h.get("seconds", 0.0) for h in history), 2)
    if record.get("epochs_run") is None:
        record["epochs_run"] = sum(1 for h in history if metric in h)
    values = [h.get(metric) for h in history if metric in h]
    if not record["diverged"] and (not values or not all(_finite(v) for v in values)):
        record["diverged"] = True
        record["error"] = f"{metric} is not finite" if values else f"{metric} was never logged"
    if not record["diverged"]:
        val_losses = [h["val_loss"] for h in history if "val_loss" in h]
        if not all(_finite(v) for v in val_losses):
            record["diverged"] = True
            record["error"] = "val_loss is not finite"
    if record["diverged"]:
        record.update(final_val=worst, best_val=worst, test=worst, best_epoch=None)
        record.update(epochs_to_target=None, seconds_to_target=None)
        return
    pick = max if maximize else min
    record["final_val"] = values[-1]
    record["best_val"] = pick(values)
    record["test"] = test if _finite(test) else worst
    record["epochs_to_target"] = record["seconds_to_target"] = None
    if target is not None:
        elapsed = 0.0
        for h in history:
            elapsed += h.get("seconds", 0.0)
            if _finite(h.get(metric)) and _reaches(h[metric], target, maximize):
                record["epochs_to_target"] = h.get("epoch")
                record["seconds_to_target"] = round(elapsed, 3)
                break


# --------------------------------------------------------------------------- statistics


def _stats(values: list) -> dict:
    """mean and sample std (None for one value) of the values that are not None."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    if any(math.isinf(x) for x in xs):  # a diverged run's loss: the mean is inf, no std
        return {"mean": math.inf, "std": None, "n": len(xs)}
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else None,
        "n": len(xs),
    }


def _summarize(runs: list[dict]) -> dict:
    return {
        "runs": len(runs),
        "diverged": sum(r["diverged"] for r in runs),
        "final_val": _stats([r["final_val"] for r in runs]),
        "best_val": _stats([r["best_val"] for r in runs]),
        "test": _stats([r["test"] for r in runs]),
        "seconds": _stats([r["seconds"] for r in runs]),
        "epochs_to_target": _stats([r["epochs_to_target"] for r in runs]),
        "seconds_to_target": _stats([r["seconds_to_target"] for r in runs]),
    }


def _pm(stat: dict, digits: int = 4) -> str:
    mean, std = stat.get("mean"), stat.get("std")
    if mean is None:
        return "—"
    text = f"{mean:.{digits}g}" if math.isfinite(mean) else str(mean)
    if std is not None:
        text += f" ± {std:.2g}" if math.isfinite(std) else " ± nan"
    return text


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
    ValueError
        A malformed ``vary`` item (named), ``seeds`` < 1, ``tune_lr`` 1 or negative,
        ``optimizer.lr`` both varied/set and tuned, or a config without a validation split.
    ConfigError
        An unknown key or bad value in the config or in a variant (checked for every
        variant before anything is trained).
    RunError
        The output directory exists and is not empty.
    """
    from trainlab import data as tl_data
    from trainlab.run import RunError, fit
    from trainlab.train import NonFiniteLossError

    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    if not isinstance(tune_lr, int) or tune_lr < 0 or tune_lr == 1:
        raise ValueError(
            f"tune_lr must be 0 (no tuning) or at least 2 learning rates, got {tune_lr}"
        )
    overrides = list(overrides or [])
    parsed = _parse_vary(vary)
    varied = {key: [value for _, value in pairs] for key, pairs in parsed.items()}
    if tune_lr:
        for key in list(varied) + [o.partition("=")[0].strip() for o in overrides]:
            if key == "optimizer.lr":
                raise ValueError(
                    "optimizer.lr is tuned by tune_lr; do not also set or vary it "
                    "(drop tune_lr to compare fixed learning rates)"
                )

    keys = list(varied)
    variants = []
    for picked in itertools.product(*parsed.values()):
        sets = [f"{k}={text}" for k, (text, _) in zip(keys, picked)]
        combo = [value for _, value in picked]
        name = " ".join(sets) if sets else "config"
        # every variant's config is validated before anything trains
        check = load_config(
            config_path, overrides + sets + (["optimizer.lr=0.01"] if tune_lr else [])
        )
        if check.data.split.val <= 0:
            raise ValueError(
                "compare picks and reports by the validation metric: data.split.val must be > 0"
            )
        grid = lr_grid(_default_lr(check), tune_lr) if tune_lr else None
        variants.append(
            {
                "name": name,
                "values": dict(zip(keys, combo)),
                "overrides": sets,
                "dir": _safe("+".join(sets) if sets else "config"),
                "grid": grid,
            }
        )
    base = load_config(config_path, overrides + (["optimizer.lr=0.01"] if tune_lr else []))

    out = Path(out) if out is not None else Path("runs") / f"{base.name}-compare"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"output directory {out} already exists and is not empty; choose another")
    out.mkdir(parents=True, exist_ok=True)

    total = sum((tune_lr + seeds - 1) if tune_lr else seeds for _ in variants)
    done = 0
    task: str | None = None
    pending: list[dict] = []  # run records, measured once the metric is known
    inner_echo = echo if not quiet else (lambda _msg: None)

    def job(variant: dict, lr: float | None, seed: int) -> tuple[str, Path, list[str], dict]:
        what = variant["name"] + ("" if lr is None else f" lr={lr:g}") + f" seed{seed}"
        sub = out / variant["dir"]
        if lr is not None:
            sub = sub / f"lr={lr:g}"
        run_dir = sub / f"seed{seed}"
        sets = overrides + variant["overrides"] + [f"seed={seed}"]
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
        return what, run_dir, sets, record

    def finish(what: str, record: dict, summary: dict | None, error: str | None) -> dict:
        """Record a run's outcome: its summary, or the error it diverged with."""
        nonlocal done, task
        done += 1
        if summary is None:
            record.update(diverged=True, error=error)
            echo(f"[{done}/{total}] {what}: diverged")
        else:
            task = task or summary.get("task")
            record.update(
                best_epoch=summary.get("best_epoch"),
                epochs_run=summary.get("epochs_run"),
                seconds=summary.get("seconds"),
                _summary_test=summary.get("test", {}),
            )
            batched = " (its share of the batched time)" if summary.get("batched") else ""
            echo(f"[{done}/{total}] {what}: done in {summary.get('seconds')} s{batched}")
        pending.append(record)
        return record

    def train(variant: dict, lr: float | None, seed: int) -> dict:
        what, run_dir, sets, record = job(variant, lr, seed)
        try:
            summary = fit(config_path, sets, out=run_dir, quiet=quiet, echo=inner_echo)
        except NonFiniteLossError as err:
            return finish(what, record, None, str(err))
        return finish(what, record, summary, None)

    def train_all(jobs: list[tuple[dict, float | None, int]]) -> list[dict]:
        """The runs of ``jobs`` as one batched computation (trainlab.sweep) when they
        share an architecture, else one after another."""
        nonlocal batch
        if not batch or len(jobs) < 2:
            return [train(*j) for j in jobs]
        from trainlab.sweep.run import SweepError, fit_many

        specs = [job(*j) for j in jobs]
        try:
            outcomes = fit_many(
                config_path,
                [sets for _, _, sets, _ in specs],
                [run_dir for _, run_dir, _, _ in specs],
                quiet=quiet,
                echo=inner_echo,
            )
        except SweepError as err:
            echo(f"training the runs one after another: {err}")
            batch = False
            return [train(*j) for j in jobs]
        echo(f"trained {len(jobs)} runs together (batched)")
        return [
            finish(what, record, outcome["summary"], outcome["error"])
            for (what, _, _, record), outcome in zip(specs, outcomes)
        ]

    if tune_lr:
        grid = iter(train_all([(v, lr, 0) for v in variants for lr in v["grid"]]))
        for variant in variants:
            variant["lr_grid"] = [next(grid) for _ in variant["grid"]]
    else:
        runs = iter(train_all([(v, None, s) for v in variants for s in range(seeds)]))
        for variant in variants:
            variant["lr_grid"] = None
            variant["runs"] = [next(runs) for _ in range(seeds)]

    if task is None:  # every run diverged: ask the data
        c = base.data
        task = tl_data.load(c.dataset, target=c.target, task=c.task).task
    metric = "val_accuracy" if task == "classification" else "val_loss"
    maximize = task == "classification"
    test_key = metric.removeprefix("val_")

    def measure(record: dict) -> dict:
        if "_summary_test" in record:
            record["_test"] = record.pop("_summary_test").get(test_key)
        _measure(record, metric, maximize, target)
        return record

    for record in pending:
        measure(record)

    for variant in variants:
        variant["lr"] = None
        if tune_lr:
            grid_runs = variant["lr_grid"]
            scores = [r["best_val"] for r in grid_runs]
            pick = int(np.argmax(scores) if maximize else np.argmin(scores))
            variant["lr"] = grid_runs[pick]["lr"]
            variant["runs"] = [grid_runs[pick]]
    if tune_lr and seeds > 1:  # the winners' other seeds
        more = iter(train_all([(v, v["lr"], s) for v in variants for s in range(1, seeds)]))
        for variant in variants:
            variant["runs"] += [measure(next(more)) for _ in range(1, seeds)]
    for variant in variants:
        variant["summary"] = _summarize(variant["runs"])

    result: dict[str, Any] = {
        "config": None if config_path is None else str(config_path),
        "overrides": overrides,
        "vary": varied,
        "seeds": seeds,
        "tune_lr": tune_lr,
        "lr_decades": LR_DECADES if tune_lr else None,
        "target": target,
        "task": task,
        "metric": metric,
        "maximize": maximize,
        "test_metric": f"test_{test_key}",
        "out": str(out),
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
            for v in variants
        ],
    }
    result["figure"] = str(_plot(variants, metric, out / "curves.png"))
    result["csv"] = str(_write_csv(result, out / "compare.csv"))
    result["report"] = _report(variants, out / "report.html")
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


# --------------------------------------------------------------------------- outputs


def _plot(variants: list[dict], metric: str, path: Path) -> Path:
    """Validation curves: per variant the mean over seeds and a min–max band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
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
    fig.savefig(path, dpi=100, metadata={"Software": None})
    return path


_CSV_COLUMNS = (
    "runs",
    "diverged",
    "final_val_mean",
    "final_val_std",
    "best_val_mean",
    "best_val_std",
    "test_mean",
    "test_std",
    "seconds_mean",
    "epochs_to_target_mean",
    "seconds_to_target_mean",
    "reached_target",
)


def _write_csv(result: dict, path: Path) -> Path:
    keys = list(result["vary"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", *keys, "lr", *_CSV_COLUMNS])
        for v in result["variants"]:
            s = v["summary"]
            writer.writerow(
                [
                    v["name"],
                    *[_text(v["values"][k]) for k in keys],
                    "" if v["lr"] is None else v["lr"],
                    s["runs"],
                    s["diverged"],
                    s["final_val"]["mean"],
                    s["final_val"]["std"],
                    s["best_val"]["mean"],
                    s["best_val"]["std"],
                    s["test"]["mean"],
                    s["test"]["std"],
                    s["seconds"]["mean"],
                    s["epochs_to_target"]["mean"],
                    s["seconds_to_target"]["mean"],
                    s["epochs_to_target"]["n"] if result["target"] is not None else "",
                ]
            )
    return path


def _report(variants: list[dict], path: Path) -> str | None:
    """The comparison page of the winners (seed 0 of each variant's chosen config)."""
    from trainlab.report import write_report

    dirs = [
        Path(v["runs"][0]["run_dir"])
        for v in variants
        if (Path(v["runs"][0]["run_dir"]) / "metrics.jsonl").is_file()
    ]
    if not dirs:
        return None
    return str(write_report(dirs, out=path))


def format_comparison(result: dict) -> str:
    """The table the CLI prints: one row per variant, mean ± std over seeds."""
    metric = result["metric"]
    target = result.get("target")
    header = ["variant"]
    if result.get("tune_lr"):
        header.append("lr")
    header += [
        "runs",
        "diverged",
        f"final {metric}",
        f"best {metric}",
        result["test_metric"],
        "seconds",
    ]
    if target is not None:
        header += [f"epochs to {target:g}", f"seconds to {target:g}"]
    rows = []
    for v in result["variants"]:
        s = v["summary"]
        row = [v["name"]]
        if result.get("tune_lr"):
            row.append(f"{v['lr']:g}")
        row += [
            str(s["runs"]),
            str(s["diverged"]),
            _pm(s["final_val"]),
            _pm(s["best_val"]),
            _pm(s["test"]),
            _pm(s["seconds"], 3),
        ]
        if target is not None:
            reached = s["epochs_to_target"]["n"]
            if reached:
                row += [
                    f"{_pm(s['epochs_to_target'], 3)} ({reached}/{s['runs']})",
                    _pm(s["seconds_to_target"], 3),
                ]
            else:
                row += ["never", "—"]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    lines = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    seeds = result["seeds"]
    note = f"mean ± std over {seeds} seed{'s' if seeds > 1 else ''}"
    if result.get("tune_lr"):
        note += f"; lr chosen by validation from a grid of {result['tune_lr']} per variant"
    note += "; a diverged run counts as the worst value"
    return "\n".join(lines + [note])
