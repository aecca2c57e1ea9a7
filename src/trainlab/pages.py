"""The one page skeleton of trainlab's HTML: every report, comparison and lecture page is
a :func:`page` of sections built from these few helpers.

A page is self-contained: the style is inline, figures are ``data:`` URIs, there is no
script and no reference outside the file. Every text is HTML-escaped where it enters.
It imports only :mod:`trainlab.atomic` (a page is written whole or not at all).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from trainlab.atomic import write_atomic

__all__ = ["page", "write_page", "escape", "number", "missing", "img", "table", "details", "CSS"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1000px;
padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #ccc}h2{border-bottom:1px solid #ddd;margin-top:2em}
small{color:#777;font-weight:normal}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.text,th.text{text-align:left;white-space:normal}
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
.verdict{color:#fff;padding:1px 8px;border-radius:4px}
details{margin:1em 0}summary{cursor:pointer;font-weight:bold}
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: Any) -> str:
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
            return number(int(value))
        except ValueError:
            pass
        try:
            return number(float(value))
        except ValueError:
            return escape(value)
    return escape(value)


def missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>\n'


def img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">\n' if uri else ""


def table(header: list[str], rows: list[list[str]], best: int | None = None) -> str:
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


def details(summary: str, body: str) -> str:
    """A collapsed block (``<details>``): ``summary`` is plain text, ``body`` HTML."""
    return f"<details><summary>{escape(summary)}</summary>\n{body}</details>\n"


def page(title: str, body: str) -> str:
    """The whole HTML document: ``title`` (plain text) as its title and first heading."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{body}</body></html>\n"
    )


def write_page(path: str | Path, title: str, body: str) -> Path:
    """Write :func:`page` to ``path`` atomically (its directory is made); returns the path."""
    return write_atomic(path, page(title, body))
