"""A study's section of a report: the result first, then the trials, the importances, every
trial, the final run, and the study's config collapsed last."""

from __future__ import annotations

import csv
from pathlib import Path

from trainlab import figures, pages
from trainlab.train.rundir import RunDir

from .run import read_config, run_section

__all__ = ["TRIALS", "is_study", "study_name", "study_section"]

#: The table of trials ``trainlab tune`` writes in a study directory.
TRIALS = "trials.csv"


def is_study(d: Path) -> bool:
    """A study directory has ``trials.csv``, or a ``summary.json`` with ``best_params``."""
    if (d / TRIALS).is_file():
        return True
    summary, _ = RunDir(d).read_json(RunDir.SUMMARY)
    return summary is not None and "best_params" in summary


def study_name(d: Path) -> str:
    summary = RunDir(d).read_json(RunDir.SUMMARY)[0] or {}
    return str(summary.get("study") or read_config(d)[1].get("name") or d.name)


def _read_trials(path: Path) -> list[dict] | None:
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def study_section(d: Path, label: str | None = None) -> str:
    """The section of one study directory (its final run nested in it)."""
    summary, problem = RunDir(d).read_json(RunDir.SUMMARY)
    summary = summary or {}
    trials = _read_trials(d / TRIALS)
    metric = str(summary.get("metric", "value"))
    maximize = summary.get("direction", "minimize") == "maximize"

    heading = f"study {pages.escape(study_name(d))} <small>{pages.escape(label or str(d))}</small>"
    out = [f'<section class="study">\n<h2>{heading}</h2>\n', "<h3>Result</h3>\n"]
    if problem:
        out.append(pages.missing(f"{problem}: the study did not finish"))
    else:
        params = summary.get("best_params") or {}
        out.append(
            pages.table(
                ["parameter", "best value"],
                [[pages.escape(k), pages.number(v)] for k, v in params.items()],
            )
            if params
            else pages.missing("no best parameters")
        )
        counts = summary.get("trials") or {}
        test = summary.get("test") or {}
        n = pages.number
        lines = [
            f"best validation {pages.escape(metric)} ({'max' if maximize else 'min'}imized): "
            f"<b>{n(summary.get('best_value'))}</b> (trial {n(summary.get('best_trial'))})"
            f" vs the defaults trial: {n(summary.get('default_value'))}",
            f"test (once, after retraining on {pages.escape(summary.get('final', '?'))}): "
            + (", ".join(f"{pages.escape(k)} {n(v)}" for k, v in test.items()) or "—"),
            "trials: " + (", ".join(f"{n(v)} {pages.escape(k)}" for k, v in counts.items()) or "—"),
        ]
        out.append("<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>\n")

    out.append("<h3>Trials</h3>\n")
    if trials is None:
        out.append(pages.missing(f"no {TRIALS}"))
    elif not trials:
        out.append(pages.missing(f"{TRIALS} has no trials"))
    else:
        out.append(pages.img(figures.trials_figure(trials, maximize, metric), "trial values"))

    out.append("<h3>Parameter importances</h3>\n")
    importances = summary.get("importances") or {}
    out.append(
        pages.img(figures.importances_figure(importances), "parameter importances")
        if importances
        else pages.missing("no importances (they need at least 3 complete trials)")
    )

    if trials:
        header = list(trials[0].keys())
        best = str(summary.get("best_trial"))
        best_row = next((i for i, r in enumerate(trials) if str(r.get("number")) == best), None)
        out.append("<h3>All trials</h3>\n")
        out.append(
            pages.table(
                [pages.escape(h) for h in header],
                [[pages.number(r.get(h)) for h in header] for r in trials],
                best=best_row,
            )
        )

    out.append("<h3>Final run</h3>\n")
    final = RunDir(d / "final")
    if final.is_run():
        out.append(run_section(final.path, label=f"{label or d}/final", level=3))
    else:
        out.append(pages.missing(f"no final run (final/{RunDir.METRICS} is missing)"))

    config_text = read_config(d)[0]
    if config_text:
        out.append(pages.details(RunDir.CONFIG, f"<pre>{pages.escape(config_text)}</pre>\n"))
    out.append("</section>\n")
    return "".join(out)
