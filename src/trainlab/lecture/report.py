"""Run the lecture's experiments and write ``lecture.json`` and ``lecture.html``.

``lecture.json`` keeps every number at full precision; the page shows them as tables of
numbers rounded to 4 significant digits, built on the one page skeleton
(:mod:`trainlab.pages`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from trainlab.atomic import write_atomic
from trainlab.figures import png_uri
from trainlab.pages import escape, img, missing, number, table, write_page

from . import optimizers, techniques  # noqa: F401 — importing registers their claims
from .claims import EXPERIMENTS, ClaimResult

__all__ = ["run_lecture", "write_lecture_report", "numbers_html"]

_COLOURS = {"held": "#1a7f37", "did not hold": "#cf222e", "inconclusive": "#9a6700"}
#: A list of numbers longer than this shows as "first → last (n values)".
_LIST_SHOWN = 6


def _order(claim: str) -> tuple[int, str]:
    digits = "".join(ch for ch in claim if ch.isdigit())
    return (int(digits) if digits else 0, claim)


def run_lecture(
    out_dir: str | Path,
    quick: bool = False,
    only: Iterable[str] | None = None,
    echo: Callable[[str], None] = print,
) -> list[ClaimResult]:
    """Run every claim's experiment (or ``only`` those), one after another; each result's
    ``seconds`` is the experiment's wall time, measured here."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = sorted(EXPERIMENTS if only is None else set(only), key=_order)
    unknown = [c for c in wanted if c not in EXPERIMENTS]
    if unknown:
        raise ValueError(
            f"unknown claim(s) {', '.join(unknown)}; the claims are "
            f"{', '.join(sorted(EXPERIMENTS, key=_order))}"
        )
    results = []
    for claim in wanted:
        started = time.perf_counter()
        result = EXPERIMENTS[claim](out, quick)
        result.seconds = round(time.perf_counter() - started, 2)
        echo(f"{claim:4} {result.verdict:13} {result.seconds:6.1f} s  {result.title}")
        results.append(result)
    return results


# --------------------------------------------------------------------------- numbers


def _plain(key: Any) -> str:
    """A field name as words: ``final_train_loss`` → ``final train loss``; a label that is
    not a Python name (``fan_in, 4 layers``, ``tol=1e-06``) stays as it is."""
    key = str(key)
    return key.replace("_", " ") if key.isidentifier() else key


def _label(key: Any) -> str:
    """:func:`_plain`, escaped."""
    return escape(_plain(key))


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _is_leaf(v: Any) -> bool:
    """A value one table cell shows: a scalar or a list of scalars."""
    return _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v))


def _cell(v: Any) -> str:
    """One value, rounded to 4 significant digits and escaped."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _is_scalar(v):
        return number(v)
    if isinstance(v, list) and all(_is_scalar(x) for x in v):
        if not v:
            return "—"
        if len(v) > _LIST_SHOWN:
            return f"{_cell(v[0])} → {_cell(v[-1])} ({len(v)} values)"
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, dict):  # a nested record where a cell was expected
        return "; ".join(f"{_label(k)}: {_cell(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "; ".join(_cell(x) for x in v)
    return escape(v)


def _flatten(record: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level, the names as words: ``{"tol=1e-3": {"best_lr": 0.1}}`` →
    ``{"tol=1e-3 best lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for k, v in record.items():
        name = f"{prefix}{_plain(k)}"
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, name + " "))
        else:
            flat[name] = v
    return flat


def _rows_table(rows: list[tuple[str, dict]]) -> str:
    """One row per (label, record), the label given as HTML; the columns are the union of
    the records' keys."""
    flat = [(label, _flatten(r)) for label, r in rows]
    columns = list(dict.fromkeys(k for _, r in flat for k in r))
    return table(
        ["", *(escape(c) for c in columns)],
        [[label, *(_cell(r.get(c)) for c in columns)] for label, r in flat],
    )


def numbers_html(numbers: dict[str, Any]) -> str:
    """A claim's numbers as tables a person reads: the single values in one table
    (quantity, value); records with the same fields (per optimizer, per depth, …) as one
    table with a row each; a dict of records as a table titled by its key. Every number is
    rounded to 4 significant digits."""
    single: list[list[str]] = []
    groups: dict[tuple[str, ...], list[tuple[str, dict]]] = {}  # same fields → one table
    titled: list[tuple[str, list[tuple[str, dict]]]] = []
    for key, value in numbers.items():
        if _is_leaf(value):
            single.append([_label(key), _cell(value)])
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            titled.append((key, [(escape(k), v) for k, v in value.items()]))
        elif (
            isinstance(value, dict)
            and value
            and all(
                isinstance(v, list) and all(isinstance(x, dict) for x in v) for v in value.values()
            )
        ):
            titled.append((key, [(escape(k), r) for k, runs in value.items() for r in runs]))
        elif isinstance(value, dict) and value:
            record = _flatten(value)
            groups.setdefault(tuple(record), []).append((_label(key), record))
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            titled.append((key, [(str(k + 1), r) for k, r in enumerate(value)]))
        else:
            single.append([_label(key), _cell(value)])
    parts = []
    if single:
        parts.append(table(["quantity", "value"], single))
    for rows in groups.values():
        parts.append(_rows_table(rows))
    for key, rows in titled:
        parts.append(f"<h3>{_label(key)}</h3>\n" + _rows_table(rows))
    return "".join(parts)


# --------------------------------------------------------------------------- the page


def _verdict(verdict: str) -> str:
    return f'<span class="verdict" style="background:{_COLOURS[verdict]}">{escape(verdict)}</span>'


def write_lecture_report(results: list[ClaimResult], out_dir: str | Path) -> Path:
    """``lecture.json`` (every number, full precision) and a self-contained
    ``lecture.html`` (figures embedded, numbers rounded)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "lecture.json", json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    counts = {v: sum(r.verdict == v for r in results) for v in _COLOURS}
    body = [
        "<p>"
        + ", ".join(f"{n} {escape(v)}" for v, n in counts.items())
        + ". Every number at full precision is in <code>lecture.json</code>.</p>\n",
        table(
            ["claim", "verdict", "seconds"],
            [
                [
                    f'<a href="#{escape(r.claim)}">{escape(r.claim)}</a> {escape(r.title)}',
                    _verdict(r.verdict),
                    f"{r.seconds:.1f}",
                ]
                for r in results
            ],
        ),
    ]
    for r in results:
        body.append(
            f'<h2 id="{escape(r.claim)}">{escape(r.claim)}: {escape(r.title)} '
            f"{_verdict(r.verdict)}</h2>\n<p>{escape(r.summary)}</p>\n"
        )
        body.append(numbers_html(r.to_dict()["numbers"]))
        for name in r.figures:
            path = out / name
            if path.is_file():
                body.append(img(png_uri(path.read_bytes()), name))
            else:
                body.append(missing(f"figure {name} is missing"))
    return write_page(out / "lecture.html", "The lecture's claims, measured", "".join(body))
