"""trainlab's figures: the one figure set-up, the one PNG writer, and the report's plots.

:func:`figure` makes a :class:`~matplotlib.figure.Figure` on its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (no pyplot, so no global backend
and nothing left open; constrained layout); :func:`save` writes it as a PNG file and
:func:`encode` as a ``data:`` URI, both reproducible byte for byte (no software tag, no
date). Every module that draws (reports, compare, the lecture, the LR finder) goes through
these three. The ``*_figure`` functions draw the report's plots and return the URI, ready
for an ``<img src>``. Non-finite values (NaN, inf) are drawn as gaps.

It imports only :mod:`trainlab.atomic` from trainlab (a PNG is written whole or not at all).
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.atomic import replace_atomically

__all__ = [
    "DPI",
    "figure",
    "save",
    "encode",
    "png_uri",
    "curves_figure",
    "overlay_figure",
    "lr_find_plot",
    "lr_find_figure",
    "trials_figure",
    "importances_figure",
]

#: Resolution of every figure: small PNGs, sharp enough on a screen.
DPI = 100
#: A loss axis becomes logarithmic when its finite positive values span more than this
#: many decades.
LOG_DECADES = 2.0


def png_uri(data: bytes) -> str:
    """A ``data:image/png;base64,…`` URI for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(
    width: float = 6.4, height: float = 3.6, ncols: int = 1, nrows: int = 1
) -> tuple[Any, Any]:
    """A new figure and its axes, as ``pyplot.subplots`` returns them, without pyplot.

    Parameters
    ----------
    width, height : float
        Size in inches (at :data:`DPI`, 640 × 360 pixels by default).
    ncols, nrows : int
        The grid of axes.

    Returns
    -------
    (matplotlib.figure.Figure, axes)
        ``axes`` is one :class:`~matplotlib.axes.Axes` for a 1 × 1 grid, a 1-d numpy array
        of them for one row or one column, a 2-d array (``nrows`` × ``ncols``) otherwise.
        The figure has constrained layout and its own Agg canvas.
    """
    # Imported here: matplotlib is slow to import and only plotting needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=True)


def _png(fig, target, dpi: float) -> None:
    # No "Software" tag (it names the matplotlib version) and no date: same figure, same bytes.
    fig.savefig(target, format="png", dpi=dpi, metadata={"Software": None})


def save(fig, path: str | Path, dpi: float = DPI) -> Path:
    """Write ``fig`` as a PNG file at ``path`` atomically (its folders are made); returns
    the path.

    The bytes depend only on the drawing: saving the same figure twice gives the same file.
    """
    return replace_atomically(path, lambda f: _png(fig, f, dpi))


def encode(fig, dpi: float = DPI) -> str:
    """``fig`` as a PNG ``data:`` URI (see :func:`png_uri`), for an ``<img src>``."""
    buffer = io.BytesIO()
    _png(fig, buffer, dpi)
    return png_uri(buffer.getvalue())


def _integer_x(ax) -> None:
    """Epochs and trial numbers are whole: no 1.25 on the axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finite(values: Sequence) -> list[float]:
    """Floats, with None, NaN and inf as NaN (a gap in a line)."""
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(f if math.isfinite(f) else math.nan)
    return out


def spans_decades(values: Sequence[float], decades: float = LOG_DECADES) -> bool:
    """Whether the finite positive ``values`` span more than ``decades`` decades."""
    positive = [v for v in _finite(values) if v > 0]
    return bool(positive) and max(positive) / min(positive) > 10**decades


def curves_figure(
    history: Sequence[dict], metric: str, best_epoch: int | None = None
) -> str | None:
    """``train_<metric>`` and ``val_<metric>`` against the epoch, the best epoch marked.

    A loss (or mse) axis is logarithmic when the curves span more than
    :data:`LOG_DECADES` decades. Returns None when neither curve was logged.
    """
    keys = [k for k in (f"train_{metric}", f"val_{metric}") if any(k in h for h in history)]
    if not keys:
        return None
    fig, ax = figure()
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    every = []
    for key in keys:
        values = _finite([h.get(key) for h in history])
        every += values
        ax.plot(epochs, values, marker="o", markersize=3, label=key.replace("_", " "))
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
    if metric.endswith(("loss", "mse")) and spans_decades(every):
        ax.set_yscale("log")
    _integer_x(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    return encode(fig)


def overlay_figure(histories: dict[str, Sequence[dict]], key: str) -> str | None:
    """One curve of ``key`` (e.g. ``val_loss``) per run, against the epoch."""
    drawn = {n: h for n, h in histories.items() if any(key in e for e in h)}
    if not drawn:
        return None
    fig, ax = figure()
    every = []
    for name, history in drawn.items():
        values = _finite([h.get(key) for h in history])
        every += values
        epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
        ax.plot(epochs, values, marker="o", markersize=3, label=name)
    if key.endswith(("loss", "mse")) and spans_decades(every):
        ax.set_yscale("log")
    _integer_x(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return encode(fig)


def lr_find_plot(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    suggestion: float | None,
    *,
    rule: str | None = None,
    message: str | None = None,
    stopped_early: bool = False,
):
    """The one drawing of an LR range test: loss against learning rate on a log axis.

    The raw losses are drawn faint, the smoothed ones bold, and the suggestion as a dashed
    vertical line with its value (and ``rule``) in the legend; ``message`` is the subtitle.
    Non-finite points are gaps, and the vertical axis spans the smoothed curve up to the
    point that stopped the run (``stopped_early``) and the raw losses up to their 90th
    percentile, so an explosion does not flatten the rest.
    ``LRFinderResult.plot`` saves it; :func:`lr_find_figure` embeds it in a report.

    Returns
    -------
    matplotlib.figure.Figure
        Drawn on; empty axes when there is no positive learning rate.
    """
    import numpy as np

    fig, ax = figure(7.0, 4.5)
    x = np.asarray(_finite(lrs), dtype=float)
    raw = np.asarray(_finite(losses), dtype=float)
    smooth = np.asarray(_finite(smoothed), dtype=float)
    if raw.size == x.size:
        ax.plot(x, raw, color="tab:blue", alpha=0.3, linewidth=1, label="loss (per batch)")
    if smooth.size == x.size:
        ax.plot(x, smooth, color="tab:blue", linewidth=2.2, label="smoothed loss")
    if suggestion is not None:
        ax.axvline(
            suggestion,
            color="tab:red",
            linestyle="--",
            linewidth=1.5,
            label=f"{rule + ': ' if rule else 'suggestion: '}lr = {suggestion:.2g}",
        )
    if np.any(x > 0):
        ax.set_xscale("log")
    # The vertical axis leaves out the point that stopped the run and raw losses above
    # their 90th percentile (exploded batches): they would flatten the rest of the curve.
    shown = smooth[:-1] if stopped_early and smooth.size > 1 else smooth
    shown = shown[np.isfinite(shown)]
    finite_raw = raw[np.isfinite(raw)]
    if shown.size:
        low, high = shown.min(), shown.max()
        if finite_raw.size:
            low, high = min(low, finite_raw.min()), max(high, np.percentile(finite_raw, 90))
        if high > low:
            pad = 0.05 * (high - low)
            ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    fig.suptitle("LR range test" + (" (stopped early: the loss exploded)" if stopped_early else ""))
    if message:
        ax.set_title(textwrap.fill(message, 110), fontsize=7.5, loc="left", color="dimgray")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    return fig


def lr_find_figure(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    suggestion: float | None,
    *,
    rule: str | None = None,
    message: str | None = None,
    stopped_early: bool = False,
) -> str | None:
    """:func:`lr_find_plot` of ``lr_find.json``'s fields as a ``data:`` URI; None when
    there is no positive learning rate to draw."""
    if not any(v > 0 for v in _finite(lrs)):
        return None
    fig = lr_find_plot(
        lrs, losses, smoothed, suggestion, rule=rule, message=message, stopped_early=stopped_early
    )
    return encode(fig)


def trials_figure(rows: Sequence[dict], maximize: bool, metric: str) -> str | None:
    """Each trial's value in trial order, the running best as a step line; pruned trials
    as grey crosses (at their value; on the bottom axis without one), failed ones as red
    marks on the bottom axis; the defaults trial circled."""
    if not rows:
        return None
    values = _finite([r.get("value") for r in rows])
    numbers = [
        int(r["number"]) if str(r.get("number", "")).isdigit() else i for i, r in enumerate(rows)
    ]
    fig, ax = figure()
    done = [(n, v, r) for n, v, r in zip(numbers, values, rows) if r.get("state") == "COMPLETE"]
    pruned = [(n, v) for n, v, r in zip(numbers, values, rows) if r.get("state") == "PRUNED"]
    failed = [n for n, r in zip(numbers, rows) if r.get("state") in ("FAIL", "FAILED")]
    if done:
        ax.plot([n for n, _, _ in done], [v for _, v, _ in done], "o", label="complete")
        best, steps = None, []
        for _, v, _ in done:
            if math.isfinite(v) and (best is None or (v > best if maximize else v < best)):
                best = v
            steps.append(best if best is not None else math.nan)
        ax.step([n for n, _, _ in done], steps, where="post", color="black", label="running best")
        defaults = [(n, v) for n, v, r in done if str(r.get("default")) == "True"]
        if defaults:
            ax.plot(
                *zip(*defaults),
                "o",
                markersize=11,
                markerfacecolor="none",
                color="green",
                label="defaults",
            )
    on_value = [(n, v) for n, v in pruned if math.isfinite(v)]
    if on_value:
        ax.plot(*zip(*on_value), "x", color="grey", label="pruned")
    # trials without a value sit on the bottom of the axes (x in data, y in axes units)
    for numbers_, marker, colour, name in (
        ([n for n, v in pruned if not math.isfinite(v)], "x", "grey", "pruned (no value)"),
        (failed, "v", "red", "failed"),
    ):
        if numbers_:
            ax.plot(
                numbers_,
                [0] * len(numbers_),
                marker,
                color=colour,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label=name,
            )
    _integer_x(ax)
    ax.set_xlabel("trial")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return encode(fig)


def importances_figure(importances: dict[str, float]) -> str | None:
    """A horizontal bar per parameter, the most important on top."""
    if not importances:
        return None
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig, ax = figure(height=max(1.6, 0.45 * len(items) + 0.9))
    ax.barh([k for k, _ in items], _finite([v for _, v in items]))
    ax.set_xlabel("importance")
    ax.set_xlim(0, max([1.0, *(v for _, v in items if math.isfinite(v))]))
    ax.grid(alpha=0.3, axis="x")
    return encode(fig)
