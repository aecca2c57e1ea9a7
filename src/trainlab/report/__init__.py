"""Reports: one self-contained HTML page per run, study or comparison of runs.

:func:`write_report` reads what a run directory (``metrics.jsonl``, ``summary.json``,
``config.yaml``, ``lr_find.json`` / ``lr_find.png``) or a study directory (``trials.csv``,
``summary.json``, ``final/``) holds and writes one HTML file: the figures are PNGs
embedded as ``data:`` URIs, the style is inline, there is no script and no reference to
anything outside the file, so it can be mailed or archived as it is.

A report never fails on a partial directory: what is missing is said where it would have
been shown (a run killed before ``summary.json`` still gets its curves and a diagnosis
computed from ``metrics.jsonl``). Every text read from a file is HTML-escaped.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from trainlab import figures

__all__ = ["write_report", "REPORT_NAME"]

#: The file a report of one directory is written to, inside that directory.
REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1000px;
padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #ccc}h2{border-bottom:1px solid #ddd;margin-top:2em}
small{color:#777;font-weight:normal}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}td.text,th.text{text-align:left}
tr.best td{background:#eef8ee;font-weight:bold}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:90%}
img{max-width:100%;display:block;margin:.5em 0}
.missing{color:#8a6d3b;background:#fcf8e3;padding:.3em .6em;border-left:4px solid #e0c36a}
.finding{padding:.5em .8em;margin:.5em 0;border-left:6px solid}
.finding.error{background:#fdecea;border-color:#d93025}
.finding.warning{background:#fff4e5;border-color:#f29900}
.finding.info{background:#e8f0fe;border-color:#1a73e8}
.evidence{font-family:monospace;font-size:90%;color:#444}
section.nested{margin-left:1em;padding-left:1em;border-left:3px solid #eee}
"""


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
    ValueError
        When no directory is given, or a path is neither a run nor a study directory (the
        message names it).
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("report: give at least one run or study directory")
    kinds = [_kind(d) for d in dirs]

    if len(dirs) == 1:
        d, kind = dirs[0], kinds[0]
        body = _study_section(d) if kind == "study" else _run_section(d)
        title = f"{_title_name(d, kind)} — trainlab report"
        default_out = d / REPORT_NAME
    else:
        labels = _labels(dirs)
        body = _comparison(dirs, kinds, labels)
        for d, kind, label in zip(dirs, kinds, labels):
            section = _study_section if kind == "study" else _run_section
            body += section(d, label=label)
        title = f"comparison of {len(dirs)} runs — trainlab report"
        default_out = Path(os.path.commonpath([d.resolve() for d in dirs])) / REPORT_NAME

    out = Path(out) if out is not None else default_out
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n{body}</body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


# --------------------------------------------------------------------------- reading


def _kind(d: Path) -> str:
    if not d.is_dir():
        raise ValueError(f"report: {d} is not a directory")
    if (d / "trials.csv").is_file():
        return "study"
    summary, _ = _read_json(d / "summary.json")
    if summary is not None and "best_params" in summary:
        return "study"
    if (d / "metrics.jsonl").is_file():
        return "run"
    raise ValueError(
        f"report: {d} is neither a run directory (no metrics.jsonl) nor a study "
        "directory (no trials.csv)"
    )


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    """(the object, None) or (None, why it is missing)."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path.name} cannot be read ({err})"
    if not isinstance(value, dict):
        return None, f"{path.name} is not a JSON object"
    return value, None


def _read_history(path: Path) -> tuple[list[dict], list[int]]:
    """The epochs of ``metrics.jsonl`` (NaN and Infinity as Python's json writes them)
    and the numbers of the lines that could not be read (e.g. a half-written last line)."""
    history, bad = [], []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(entry, dict):
            history.append(entry)
        else:
            bad.append(number)
    return history, bad


def _read_config(d: Path) -> tuple[str | None, dict]:
    """The text of ``config.yaml`` and its parsed mapping ({} when unreadable)."""
    path = d / "config.yaml"
    if not path.is_file():
        return None, {}
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    return text, parsed if isinstance(parsed, dict) else {}


def _read_trials(path: Path) -> list[dict] | None:
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def _title_name(d: Path, kind: str) -> str:
    summary, _ = _read_json(d / "summary.json")
    summary = summary or {}
    _, config = _read_config(d)
    name = summary.get("study" if kind == "study" else "name") or config.get("name")
    return str(name) if name else d.name


def _labels(dirs: list[Path]) -> list[str]:
    """Directory names; full paths where two directories share a name."""
    names = [d.name or str(d) for d in dirs]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, dirs)]


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    """A number as a table shows it (4 significant digits), escaped text otherwise."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        try:
            return _num(int(value))
        except ValueError:
            pass
        try:
            return _num(float(value))
        except ValueError:
            return _e(value)
    return _e(value)


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>\n'


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">\n' if uri else ""


def _table(header: list[str], rows: list[list[str]], best: int | None = None) -> str:
    """An HTML table; cells are given already formatted (escaped)."""
    out = ["<table><tr>"]
    out += [
        f'<th class="text">{h}</th>' if i == 0 else f"<th>{h}</th>" for i, h in enumerate(header)
    ]
    out.append("</tr>\n")
    for i, row in enumerate(rows):
        out.append('<tr class="best">' if i == best else "<tr>")
        out += [
            f'<td class="text">{c}</td>' if j == 0 else f"<td>{c}</td>" for j, c in enumerate(row)
        ]
        out.append("</tr>\n")
    out.append("</table>\n")
    return "".join(out)


def _findings(findings: list) -> str:
    if not findings:
        return "<p>No findings.</p>\n"
    out = []
    for f in findings:
        if not isinstance(f, dict):
            continue
        severity = str(f.get("severity", "info"))
        css = severity if severity in ("error", "warning", "info") else "info"
        evidence = " ".join(
            f"{_e(k)}={_num(v) if not isinstance(v, str) else _e(v)}"
            for k, v in (f.get("evidence") or {}).items()
        )
        out.append(
            f'<div class="finding {css}"><b>[{_e(severity)}] {_e(f.get("kind", ""))}</b> '
            f"{_e(f.get('message', ''))}"
            + (f'<div class="evidence">evidence: {evidence}</div>' if evidence else "")
            + (f"<div>advice: {_e(f['advice'])}</div>" if f.get("advice") else "")
            + "</div>\n"
        )
    return "".join(out)


# --------------------------------------------------------------------------- a run


def _task(summary: dict, config: dict, history: list[dict]) -> str:
    task = summary.get("task") or (config.get("data") or {}).get("task")
    if task in ("classification", "regression"):
        return task
    return "classification" if any("train_accuracy" in h for h in history) else "regression"


def _best_epoch(summary: dict, config: dict, history: list[dict], task: str) -> int | None:
    if summary.get("best_epoch") is not None:
        return summary["best_epoch"]
    from trainlab.train.metrics import default_monitor, history_best

    monitor = (config.get("train") or {}).get("monitor") or default_monitor(
        task, any("val_loss" in h for h in history)
    )
    best = history_best([h for h in history if isinstance(h.get(monitor), float | int)], monitor)
    return best[0] if best else None


def _run_section(d: Path, label: str | None = None, level: int = 2) -> str:
    from trainlab.train.metrics import TASK_METRICS

    h, sub = f"h{level}", f"h{level + 1}"
    summary, summary_problem = _read_json(d / "summary.json")
    config_text, config = _read_config(d)
    history, bad_lines = _read_history(d / "metrics.jsonl")
    summary = summary or {}
    task = _task(summary, config, history)
    metrics = TASK_METRICS[task]
    name = summary.get("name") or config.get("name") or d.name
    best = _best_epoch(summary, config, history, task)

    heading = f"{_e(name)} <small>{_e(task)} · {_e(label or str(d))}</small>"
    out = [f'<section class="{"run" if level == 2 else "run nested"}">\n<{h}>{heading}</{h}>\n']

    out.append(f"<{sub}>Config</{sub}>\n")
    out.append(f"<pre>{_e(config_text)}</pre>\n" if config_text else _missing("no config.yaml"))

    out.append(f"<{sub}>Summary</{sub}>\n")
    if summary_problem:
        out.append(
            _missing(
                f"{summary_problem}: the run did not finish (or its summary was removed); "
                "the curves below come from metrics.jsonl"
            )
        )
    else:
        rows = [
            [name_, *(_num((summary.get(name_) or {}).get(m)) for m in metrics)]
            for name_ in ("train", "val", "test")
            if summary.get(name_)
        ]
        out.append(_table(["split", *metrics], rows) if rows else _missing("no metrics in summary"))
        facts = [
            f"best epoch {_num(summary.get('best_epoch'))} of {_num(summary.get('epochs_run'))}",
            f"{_num(summary.get('steps'))} steps",
            f"{_num(summary.get('seconds'))} s",
        ]
        out.append(f"<p>{' · '.join(facts)}</p>\n")

    out.append(f"<{sub}>Curves</{sub}>\n")
    if bad_lines:
        out.append(_missing(f"metrics.jsonl: lines {bad_lines} could not be read and are left out"))
    if not history:
        out.append(_missing("metrics.jsonl has no epoch yet"))
    else:
        nonfinite = sorted(
            {
                h_.get("epoch", i + 1)
                for i, h_ in enumerate(history)
                for v in h_.values()
                if isinstance(v, float) and not math.isfinite(v)
            }
        )
        if nonfinite:
            out.append(
                _missing(f"non-finite values (NaN/inf) at epochs {nonfinite}: drawn as gaps")
            )
        if best is not None and summary_problem:
            out.append(f"<p>best epoch so far (from metrics.jsonl): {_num(best)}</p>\n")
        for metric in ("loss", "accuracy" if task == "classification" else "r2"):
            out.append(_img(figures.curves_figure(history, metric, best), f"{metric} curves"))

    out.append(f"<{sub}>Diagnosis</{sub}>\n")
    if "diagnosis" in summary:
        out.append(_findings(summary["diagnosis"]))
    elif history:
        out.append(_missing("no diagnosis in summary.json: computed here from metrics.jsonl"))
        try:
            from trainlab.diagnose import diagnose

            findings = diagnose(history, task=task, n_classes=summary.get("n_classes"))
            out.append(_findings([f.to_dict() for f in findings]))
        except Exception as err:  # a report never fails on a diagnosis
            out.append(_missing(f"the diagnosis failed: {err}"))
    else:
        out.append(_missing("no diagnosis: no epochs"))

    out.append(_lr_find_section(d, sub))
    out.append("</section>\n")
    return "".join(out)


def _lr_find_section(d: Path, sub: str) -> str:
    png, data = d / "lr_find.png", d / "lr_find.json"
    if not png.is_file() and not data.is_file():
        return ""  # the run gave its learning rate: nothing to show
    out = [f"<{sub}>Learning-rate finder</{sub}>\n"]
    result, problem = _read_json(data)
    if result is not None and result.get("message"):
        out.append(f"<p>{_e(result['message'])}</p>\n")
    if png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n":
        out.append(_img(figures.png_uri(png.read_bytes()), "learning-rate finder"))
    elif result is not None:
        uri = figures.lr_find_figure(
            result.get("lrs") or [],
            result.get("losses") or [],
            result.get("smoothed") or [],
            result.get("suggestion"),
        )
        out.append(_img(uri, "learning-rate finder") or _missing("lr_find.json has no curve"))
    else:
        out.append(_missing(f"{problem}; lr_find.png is missing or not a PNG"))
    return "".join(out)


# --------------------------------------------------------------------------- a study


def _study_section(d: Path, label: str | None = None) -> str:
    summary, problem = _read_json(d / "summary.json")
    summary = summary or {}
    trials = _read_trials(d / "trials.csv")
    name = summary.get("study") or _read_config(d)[1].get("name") or d.name
    metric = str(summary.get("metric", "value"))
    maximize = summary.get("direction", "minimize") == "maximize"

    out = [
        f'<section class="study">\n<h2>study {_e(name)} <small>{_e(label or str(d))}</small></h2>\n'
    ]
    out.append("<h3>Result</h3>\n")
    if problem:
        out.append(_missing(f"{problem}: the study did not finish"))
    else:
        params = summary.get("best_params") or {}
        out.append(
            _table(["parameter", "best value"], [[_e(k), _num(v)] for k, v in params.items()])
            if params
            else _missing("no best parameters")
        )
        counts = summary.get("trials") or {}
        test = summary.get("test") or {}
        lines = [
            f"best validation {_e(metric)} ({'max' if maximize else 'min'}imized): "
            f"<b>{_num(summary.get('best_value'))}</b> (trial {_num(summary.get('best_trial'))})"
            f" vs the defaults trial: {_num(summary.get('default_value'))}",
            f"test (once, after retraining on {_e(summary.get('final', '?'))}): "
            + (", ".join(f"{_e(k)} {_num(v)}" for k, v in test.items()) or "—"),
            "trials: " + (", ".join(f"{_num(v)} {_e(k)}" for k, v in counts.items()) or "—"),
        ]
        out.append("<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>\n")

    out.append("<h3>Trials</h3>\n")
    if trials is None:
        out.append(_missing("no trials.csv"))
    elif not trials:
        out.append(_missing("trials.csv has no trials"))
    else:
        out.append(_img(figures.trials_figure(trials, maximize, metric), "trial values"))

    out.append("<h3>Parameter importances</h3>\n")
    importances = summary.get("importances") or {}
    out.append(
        _img(figures.importances_figure(importances), "parameter importances")
        if importances
        else _missing("no importances (they need at least 3 complete trials)")
    )

    if trials:
        header = list(trials[0].keys())
        best_row = next(
            (
                i
                for i, r in enumerate(trials)
                if str(r.get("number")) == str(summary.get("best_trial"))
            ),
            None,
        )
        out.append("<h3>All trials</h3>\n")
        out.append(
            _table(
                [_e(h) for h in header],
                [[_num(r.get(h)) for h in header] for r in trials],
                best=best_row,
            )
        )

    out.append("<h3>Final run</h3>\n")
    final = d / "final"
    if (final / "metrics.jsonl").is_file():
        out.append(_run_section(final, label=f"{label or d}/final", level=3))
    else:
        out.append(_missing("no final run (final/metrics.jsonl is missing)"))
    out.append("</section>\n")
    return "".join(out)


# --------------------------------------------------------------------------- several


def _comparison(dirs: list[Path], kinds: list[str], labels: list[str]) -> str:
    """One row per directory (a study by its final run) and overlaid validation curves."""
    from trainlab.train.metrics import TASK_METRICS

    rows, histories, metric_names = [], {}, []
    for d, kind, label in zip(dirs, kinds, labels):
        run = d / "final" if kind == "study" else d
        summary = _read_json(run / "summary.json")[0] or {}
        config = _read_config(run)[1]
        history = _read_history(run / "metrics.jsonl")[0]
        task = _task(summary, config, history)
        for m in TASK_METRICS[task]:
            if m not in metric_names:
                metric_names.append(m)
        histories[label] = history
        rows.append((label, kind, summary, config, history, task))

    header = ["run", "name", "task", "best epoch", "epochs"]
    header += [f"val {m}" for m in metric_names] + [f"test {m}" for m in metric_names]
    cells = []
    for label, kind, summary, config, history, task in rows:
        name = summary.get("name") or config.get("name") or ""
        val, test = summary.get("val") or {}, summary.get("test") or {}
        cells.append(
            [
                _e(label) + (" <small>(study: final run)</small>" if kind == "study" else ""),
                _e(name),
                _e(task),
                _num(_best_epoch(summary, config, history, task)),
                _num(summary.get("epochs_run", len(history))),
                *(_num(val.get(m)) for m in metric_names),
                *(_num(test.get(m)) for m in metric_names),
            ]
        )
    out = ["<section><h2>Comparison</h2>\n", _table([_e(h) for h in header], cells)]
    if any(not r[2] for r in rows):
        out.append(_missing("a run without summary.json shows no val/test metrics ('—')"))
    for key in ("val_loss", "val_accuracy", "val_r2"):
        out.append(_img(figures.overlay_figure(histories, key), key))
    out.append("</section>\n")
    return "".join(out)
