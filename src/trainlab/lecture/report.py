"""Run the lecture's experiments and write ``lecture.json`` and ``lecture.html``."""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .claims import EXPERIMENTS, ClaimResult

__all__ = ["run_lecture", "write_lecture_report"]

_COLOURS = {"held": "#1a7f37", "did not hold": "#cf222e", "inconclusive": "#9a6700"}


def _load_experiments() -> None:
    # importing registers them (claims.register); kept here so the CLI imports nothing heavy
    from . import optimizers, techniques  # noqa: F401


def _order(claim: str) -> tuple[int, str]:
    digits = "".join(ch for ch in claim if ch.isdigit())
    return (int(digits) if digits else 0, claim)


def run_lecture(
    out_dir: str | Path,
    quick: bool = False,
    only: Iterable[str] | None = None,
    echo: Callable[[str], None] = print,
) -> list[ClaimResult]:
    """Run every claim's experiment (or ``only`` those), one after another."""
    _load_experiments()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = sorted(EXPERIMENTS if only is None else only, key=_order)
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


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}" '
        'style="max-width:100%">'
    )


def write_lecture_report(results: list[ClaimResult], out_dir: str | Path) -> Path:
    """``lecture.json`` (every number) and a self-contained ``lecture.html``."""
    out = Path(out_dir)
    (out / "lecture.json").write_text(
        json.dumps([r.to_dict() for r in results], indent=2) + "\n", encoding="utf-8"
    )
    counts = {v: sum(r.verdict == v for r in results) for v in _COLOURS}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>trainlab: the lecture's "
        "claims</title><style>body{font-family:sans-serif;max-width:960px;margin:2em auto;"
        "line-height:1.45}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:left}.v{color:#fff;padding:1px 8px;border-radius:4px}"
        "</style></head><body>",
        "<h1>The lecture's claims, measured</h1>",
        "<p>" + ", ".join(f"{n} {html.escape(v)}" for v, n in counts.items()) + "</p>",
        "<table><tr><th>claim</th><th>verdict</th><th>what</th><th>seconds</th></tr>",
    ]
    for r in results:
        parts.append(
            f"<tr><td><a href='#{r.claim}'>{html.escape(r.claim)}</a></td><td><span class='v' "
            f"style='background:{_COLOURS[r.verdict]}'>{html.escape(r.verdict)}</span></td>"
            f"<td>{html.escape(r.title)}</td><td>{r.seconds:.1f}</td></tr>"
        )
    parts.append("</table>")
    for r in results:
        parts.append(
            f"<h2 id='{r.claim}'>{html.escape(r.claim)}: {html.escape(r.title)} "
            f"<span class='v' style='background:{_COLOURS[r.verdict]}'>"
            f"{html.escape(r.verdict)}</span></h2><p>{html.escape(r.summary)}</p>"
        )
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v))}</td></tr>"
            for k, v in r.to_dict()["numbers"].items()
        )
        if rows:
            parts.append(f"<table>{rows}</table>")
        for name in r.figures:
            path = out / name
            if path.is_file():
                parts.append(f"<p>{_img(path)}</p>")
            else:
                parts.append(f"<p><em>figure {html.escape(name)} is missing</em></p>")
    parts.append("</body></html>")
    path = out / "lecture.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
