"""The report's figures: matplotlib on the Agg canvas, returned as ``data:`` URIs.

Every function draws on its own :class:`~matplotlib.figure.Figure` with a
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (no pyplot, so no global backend
and nothing left open) and returns the PNG, base64-encoded, ready for an ``<img src>``.
Non-finite values (NaN, inf) are drawn as gaps.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

__all__ = [
    "DPI",
    "png_uri",
    "curves_figure",
    "overlay_figure",
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


def _figure(width: float = 6.4, height: float = 3.6):
    # Imported here: matplotlib is slow to import and only plotting needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _integer_x(ax) -> None:
    """Epochs and trial numbers are whole: no 1.25 on the axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _encode(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return png_uri(buffer.getvalue())


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
    fig = _figure()
    ax = fig.add_subplot()
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
    return _encode(fig)


def overlay_figure(histories: dict[str, Sequence[dict]], key: str) -> str | None:
    """One curve of ``key`` (e.g. ``val_loss``) per run, against the epoch."""
    drawn = {n: h for n, h in histories.items() if any(key in e for e in h)}
    if not drawn:
        return None
    fig = _figure()
    ax = fig.add_subplot()
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
    return _encode(fig)


def lr_find_figure(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    suggestion: float | None,
) -> str | None:
    """The LR range test from ``lr_find.json``: raw and smoothed loss on a log-lr axis."""
    x = _finite(lrs)
    if not any(v > 0 for v in x):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    if losses:
        ax.plot(x, _finite(losses), alpha=0.3, label="loss")
    if smoothed:
        ax.plot(x, _finite(smoothed), linewidth=2, label="smoothed")
    if suggestion is not None:
        ax.axvline(suggestion, color="red", linestyle="--", label=f"suggestion {suggestion:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _encode(fig)


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
    fig = _figure()
    ax = fig.add_subplot()
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
    return _encode(fig)


def importances_figure(importances: dict[str, float]) -> str | None:
    """A horizontal bar per parameter, the most important on top."""
    if not importances:
        return None
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = _figure(height=max(1.6, 0.45 * len(items) + 0.9))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], _finite([v for _, v in items]))
    ax.set_xlabel("importance")
    ax.set_xlim(0, max([1.0, *(v for _, v in items if math.isfinite(v))]))
    ax.grid(alpha=0.3, axis="x")
    return _encode(fig)
