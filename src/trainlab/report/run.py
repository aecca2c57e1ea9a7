"""A run's section of a report: results first, then curves, diagnosis, LR finder, config.

Everything is read through :class:`~trainlab.train.rundir.RunDir`, tolerantly: a missing or
damaged file is said where it would have been shown, never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from trainlab import figures, pages
from trainlab.diagnose import diagnose
from trainlab.train.metrics import TASK_METRICS, default_monitor, history_best
from trainlab.train.rundir import RunDir, finite

__all__ = ["RunFiles", "read_config", "run_section"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_config(d: Path) -> tuple[str | None, dict]:
    """The text of ``config.yaml`` in ``d`` and its parsed mapping ({} when unreadable)."""
    path = RunDir(d).config
    if not path.is_file():
        return None, {}
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    return text, parsed if isinstance(parsed, dict) else {}


@dataclass
class RunFiles:
    """What a page shows of one run directory, read once and tolerantly."""

    rd: RunDir
    summary: dict
    summary_problem: str | None
    config_text: str | None
    config: dict
    history: list[dict]
    bad_lines: list[int]
    task: str
    name: str
    best_epoch: int | None

    @classmethod
    def read(cls, d: Path) -> RunFiles:
        rd = RunDir(d)
        summary, problem = rd.read_json(RunDir.SUMMARY)
        summary = summary or {}
        config_text, config = read_config(d)
        history = rd.read_history(strict=False)
        task = rd.task(history)[0]
        if task not in TASK_METRICS:  # a history of losses only, and no summary
            configured = (config.get("data") or {}).get("task")
            task = configured if configured in TASK_METRICS else "regression"
        name = summary.get("name") or config.get("name") or rd.path.name
        return cls(
            rd,
            summary,
            problem,
            config_text,
            config,
            history,
            rd.unreadable_lines(),
            task,
            str(name),
            _best_epoch(summary, config, history, task),
        )


def _best_epoch(summary: dict, config: dict, history: list[dict], task: str) -> int | None:
    """``summary.json``'s best epoch; without one, the best so far by the run's monitor."""
    if summary.get("best_epoch") is not None:
        return summary["best_epoch"]
    has_val = any("val_loss" in h for h in history)
    monitor = (config.get("train") or {}).get("monitor") or default_monitor(task, has_val)
    logged = [h for h in history if "epoch" in h and finite(h.get(monitor))]
    best = history_best(logged, monitor)
    return best[0] if best else None


def findings_html(findings: list) -> str:
    """The curve doctor's findings, one box each, coloured by severity."""
    if not findings:
        return "<p>No findings.</p>\n"
    out = []
    for f in findings:
        if not isinstance(f, dict):
            continue
        severity = str(f.get("severity", "info"))
        css = severity if severity in ("error", "warning", "info") else "info"
        evidence = " ".join(
            f"{pages.escape(k)}={pages.escape(v) if isinstance(v, str) else pages.number(v)}"
            for k, v in (f.get("evidence") or {}).items()
        )
        out.append(
            f'<div class="finding {css}"><b>[{pages.escape(severity)}] '
            f"{pages.escape(f.get('kind', ''))}</b> {pages.escape(f.get('message', ''))}"
            + (f'<div class="evidence">evidence: {evidence}</div>' if evidence else "")
            + (f"<div>advice: {pages.escape(f['advice'])}</div>" if f.get("advice") else "")
            + "</div>\n"
        )
    return "".join(out)


def run_section(d: Path, label: str | None = None, level: int = 2) -> str:
    """The section of one run: heading, results, curves, diagnosis, LR finder, then the
    config collapsed. ``level`` is the heading level (3 for a run nested in a study)."""
    run = RunFiles.read(d)
    h, sub = f"h{level}", f"h{level + 1}"
    heading = (
        f"{pages.escape(run.name)} <small>{pages.escape(run.task)} · "
        f"{pages.escape(label or str(d))}</small>"
    )
    css = "run" if level == 2 else "run nested"
    return "".join(
        [
            f'<section class="{css}">\n<{h}>{heading}</{h}>\n',
            f"<{sub}>Results</{sub}>\n",
            _results(run),
            f"<{sub}>Curves</{sub}>\n",
            _curves(run),
            f"<{sub}>Diagnosis</{sub}>\n",
            _diagnosis(run),
            _lr_find(run.rd, sub),
            pages.details(RunDir.CONFIG, f"<pre>{pages.escape(run.config_text)}</pre>\n")
            if run.config_text
            else pages.missing(f"no {RunDir.CONFIG}"),
            "</section>\n",
        ]
    )


def _results(run: RunFiles) -> str:
    """The best epoch's weights on train, val and test, and the run's counters."""
    summary = run.summary
    if run.summary_problem:
        out = [
            pages.missing(
                f"{run.summary_problem}: the run did not finish (or its summary was removed); "
                f"the curves below come from {RunDir.METRICS}"
            )
        ]
        if run.best_epoch is not None:
            out.append(
                f"<p>best epoch so far (from {RunDir.METRICS}): "
                f"{pages.number(run.best_epoch)} of {len(run.history)}</p>\n"
            )
        return "".join(out)
    metrics = TASK_METRICS[run.task]
    rows = [
        [split, *(pages.number((summary.get(split) or {}).get(m)) for m in metrics)]
        for split in ("train", "val", "test")
        if summary.get(split)
    ]
    facts = [
        f"best epoch <b>{pages.number(summary.get('best_epoch'))}</b> "
        f"of {pages.number(summary.get('epochs_run'))}",
        f"{pages.number(summary.get('steps'))} steps",
        f"{pages.number(summary.get('seconds'))} s",
    ]
    return (
        pages.table(["split", *metrics], rows) if rows else pages.missing("no metrics in summary")
    ) + f"<p>{' · '.join(facts)}</p>\n"


def _curves(run: RunFiles) -> str:
    out = []
    if run.bad_lines:
        out.append(
            pages.missing(
                f"{RunDir.METRICS}: lines {run.bad_lines} could not be read and are left out"
            )
        )
    if not run.history:
        out.append(pages.missing(f"{RunDir.METRICS} has no epoch yet"))
        return "".join(out)
    nonfinite = sorted(
        {
            h.get("epoch", i + 1)
            for i, h in enumerate(run.history)
            for v in h.values()
            if isinstance(v, float) and not math.isfinite(v)
        }
    )
    if nonfinite:
        text = f"non-finite values (NaN/inf) at epochs {nonfinite}: drawn as gaps"
        out.append(pages.missing(text))
    for metric in ("loss", "accuracy" if run.task == "classification" else "r2"):
        uri = figures.curves_figure(run.history, metric, run.best_epoch)
        out.append(pages.img(uri, f"{metric} curves"))
    return "".join(out)


def _diagnosis(run: RunFiles) -> str:
    if "diagnosis" in run.summary:
        return findings_html(run.summary["diagnosis"])
    if not run.history:
        return pages.missing("no diagnosis: no epochs")
    out = [pages.missing(f"no diagnosis in {RunDir.SUMMARY}: computed here from {RunDir.METRICS}")]
    try:
        findings = diagnose(run.history, task=run.task, n_classes=run.summary.get("n_classes"))
        out.append(findings_html([f.to_dict() for f in findings]))
    except Exception as err:  # a report never fails on a diagnosis
        out.append(pages.missing(f"the diagnosis failed: {err}"))
    return "".join(out)


def _lr_find(rd: RunDir, sub: str) -> str:
    """The LR range test, when ``optimizer.lr: auto`` ran one: its PNG, or the same drawing
    made again from ``lr_find.json``."""
    png, data = rd.file(RunDir.LR_FIND_PLOT), rd.file(RunDir.LR_FIND)
    if not png.is_file() and not data.is_file():
        return ""  # the run gave its learning rate: nothing to show
    out = [f"<{sub}>Learning-rate finder</{sub}>\n"]
    result, problem = rd.read_json(RunDir.LR_FIND)
    if result is not None and result.get("message"):
        out.append(f"<p>{pages.escape(result['message'])}</p>\n")
    if png.is_file() and png.read_bytes()[:8] == _PNG_MAGIC:
        out.append(pages.img(figures.png_uri(png.read_bytes()), "learning-rate finder"))
    elif result is not None:
        uri = figures.lr_find_figure(
            result.get("lrs") or [],
            result.get("losses") or [],
            result.get("smoothed") or [],
            result.get("suggestion"),
            rule=result.get("rule"),
            message=result.get("message"),
            stopped_early=bool(result.get("stopped_early")),
        )
        alt = "learning-rate finder"
        out.append(pages.img(uri, alt) or pages.missing(f"{RunDir.LR_FIND} has no curve"))
    else:
        out.append(pages.missing(f"{problem}; {RunDir.LR_FIND_PLOT} is missing or not a PNG"))
    return "".join(out)
