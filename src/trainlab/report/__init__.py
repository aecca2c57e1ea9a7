"""Reports: one self-contained HTML page per run, study or comparison of runs.

:func:`write_report` reads what a run directory (``metrics.jsonl``, ``summary.json``,
``config.yaml``, ``lr_find.json`` / ``lr_find.png``) or a study directory (``trials.csv``,
``summary.json``, ``final/``) holds and writes one :func:`trainlab.pages.page`: the figures
are PNGs embedded as ``data:`` URIs, the style is inline, there is no script and no
reference to anything outside the file, so it can be mailed or archived as it is.

A page reads results first: a run's section is its results table (train, val, test) and
best epoch, its curves, its diagnosis, its LR finder, and last its config, collapsed
(:mod:`trainlab.report.run`); a study's is its best parameters, its trials, its final run
and its config, collapsed (:mod:`trainlab.report.study`). Several directories get a
comparison table and overlaid validation curves first.

A report never fails on a partial directory: what is missing is said where it would have
been shown (a run killed before ``summary.json`` still gets its curves and a diagnosis
computed from ``metrics.jsonl``). Every text read from a file is HTML-escaped.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainlab import figures, pages
from trainlab.train.metrics import TASK_METRICS
from trainlab.train.rundir import RunDir, RunError

from .run import RunFiles, run_section
from .study import is_study, study_name, study_section

__all__ = ["write_report", "REPORT_NAME"]

#: The file a report of one directory is written to, inside that directory.
REPORT_NAME = RunDir.REPORT


def write_report(run_dirs: list[Path] | Path | str, out: Path | str | None = None) -> Path:
    """Write an HTML report of one or more run or study directories.

    Parameters
    ----------
    run_dirs : path or list of paths
        A run directory (it has ``metrics.jsonl``), a study directory (it has
        ``trials.csv``, or a ``summary.json`` with ``best_params``), or several: several
        get a comparison table and overlaid validation curves before each one's section.
    out : path, optional
        The HTML file to write. Default: ``DIR/report.html`` for one directory; for
        several, ``report.html`` in the directory that contains them all.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    trainlab.train.rundir.RunError
        (a ``ValueError``) When no directory is given, or a path is neither a run nor a
        study directory (the message names it).
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise RunError("report: give at least one run or study directory")
    kinds = [_kind(d) for d in dirs]

    if len(dirs) == 1:
        d, kind = dirs[0], kinds[0]
        if kind == "study":
            title, body = study_name(d), study_section(d)
        else:
            title, body = RunFiles.read(d).name, run_section(d)
        title += " — trainlab report"
        default_out = d / REPORT_NAME
    else:
        labels = _labels(dirs)
        body = _comparison(dirs, kinds, labels)
        for d, kind, label in zip(dirs, kinds, labels):
            body += study_section(d, label) if kind == "study" else run_section(d, label)
        title = f"comparison of {len(dirs)} runs — trainlab report"
        default_out = Path(os.path.commonpath([d.resolve() for d in dirs])) / REPORT_NAME

    return pages.write_page(out if out is not None else default_out, title, body)


def _kind(d: Path) -> str:
    if not d.is_dir():
        raise RunError(f"report: {d} is not a directory")
    if is_study(d):
        return "study"
    if RunDir(d).is_run():
        return "run"
    raise RunError(
        f"report: {d} is neither a run directory (no {RunDir.METRICS}) nor a study "
        "directory (no trials.csv)"
    )


def _labels(dirs: list[Path]) -> list[str]:
    """Directory names; where two share a name (a sweep's ``…/seed0``), the path below the
    directory that contains them all (``optimizer.lr=0.1/seed0``)."""
    names = [d.name or str(d) for d in dirs]
    if len(set(names)) == len(names):
        return names
    resolved = [d.resolve() for d in dirs]
    common = Path(os.path.commonpath(resolved))
    below = [str(r.relative_to(common)) for r in resolved]
    if all(below) and len(set(below)) == len(below):
        return [b if names.count(n) > 1 else n for b, n in zip(below, names)]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, dirs)]


def _comparison(dirs: list[Path], kinds: list[str], labels: list[str]) -> str:
    """One row per directory (a study by its final run) and overlaid validation curves."""
    runs = [RunFiles.read(d / "final" if kind == "study" else d) for d, kind in zip(dirs, kinds)]
    metrics: list[str] = []
    for run in runs:
        metrics += [m for m in TASK_METRICS[run.task] if m not in metrics]

    header = ["run", "name", "task", "best epoch", "epochs"]
    header += [f"val {m}" for m in metrics] + [f"test {m}" for m in metrics]
    rows = []
    for run, kind, label in zip(runs, kinds, labels):
        val, test = run.summary.get("val") or {}, run.summary.get("test") or {}
        study = " <small>(study: final run)</small>" if kind == "study" else ""
        name = run.summary.get("name") or run.config.get("name") or ""
        rows.append(
            [
                pages.escape(label) + study,
                pages.escape(name),
                pages.escape(run.task),
                pages.number(run.best_epoch),
                pages.number(run.summary.get("epochs_run", len(run.history))),
                *(pages.number(val.get(m)) for m in metrics),
                *(pages.number(test.get(m)) for m in metrics),
            ]
        )
    out = ["<section><h2>Comparison</h2>\n", pages.table([pages.escape(h) for h in header], rows)]
    if any(not run.summary for run in runs):
        out.append(pages.missing("a run without summary.json shows no val/test metrics ('—')"))
    histories = {label: run.history for run, label in zip(runs, labels)}
    for key in ("val_loss", "val_accuracy", "val_r2"):
        out.append(pages.img(figures.overlay_figure(histories, key), key))
    out.append("</section>\n")
    return "".join(out)
