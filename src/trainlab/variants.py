"""Variants of a config, as ``trainlab compare`` and ``trainlab sweep`` read and show them.

One home for what both commands share:

- the ``--vary`` grammar: ``KEY=SPEC``, where SPEC is ``v1,v2,…`` (values read as YAML,
  as ``--set`` reads them; commas inside brackets or quotes do not split), a YAML list
  ``[v1,v2,…]``, ``logspace(a,b,n)`` or ``linspace(a,b,n)`` (n values from a to b, each
  rounded to :data:`SPACED_DIGITS` significant digits); a bad item raises
  :class:`VaryError` naming it and what is allowed;
- the variants: the cartesian product of the ``--vary`` values, each with its name, its
  directory name and its ``--set`` overrides (:func:`combine`);
- mean ± std over seeds (:func:`stats`, :func:`pm`), numbers as a table shows them
  (:func:`number`), the plain-text table the CLI prints (:func:`text_table`), a CSV file
  (:func:`write_csv`) and a config as flat dotted keys (:func:`flat`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trainlab.atomic import write_atomic
from trainlab.config import ConfigError, parse_overrides
from trainlab.errors import UserError

__all__ = [
    "SPACED_DIGITS",
    "Variant",
    "VaryError",
    "combine",
    "flat",
    "number",
    "parse_vary",
    "parse_vary_items",
    "pm",
    "safe_name",
    "stats",
    "text_table",
    "value_text",
    "write_csv",
]

#: Values of ``logspace``/``linspace`` are rounded to this many significant digits, so a
#: run directory's name reads as its value.
SPACED_DIGITS = 4

#: What a ``--vary`` item may be, for error messages.
_ALLOWED = (
    "KEY=SPEC with a dotted KEY and SPEC one of v1,v2,…, [v1,v2,…], logspace(a,b,n) or "
    "linspace(a,b,n), e.g. optimizer.name=sgd,adam or optimizer.lr=logspace(1e-4,1e-1,4)"
)

_SPACE = re.compile(
    r"^(?P<kind>logspace|linspace)\(\s*(?P<a>[^,]+?)\s*,\s*(?P<b>[^,]+?)\s*,\s*(?P<n>[^,]+?)\s*\)$"
)


class VaryError(UserError, ValueError):
    """A malformed ``--vary`` item; ``str(err)`` names the item and what is allowed."""


# --------------------------------------------------------------------------- --vary


def parse_vary(items: Iterable[str]) -> dict[str, list]:
    """``["optimizer.lr=logspace(1e-4,1e-1,4)", "optimizer.name=sgd,adam"]`` →
    ``{"optimizer.lr": [0.0001, 0.001, 0.01, 0.1], "optimizer.name": ["sgd", "adam"]}``.

    Raises
    ------
    VaryError
        For an item that is not ``KEY=SPEC`` (see the module docstring), has an empty
        value, repeats a value, or repeats a key of another item; the message names it.
    """
    return {key: [value for _, value in pairs] for key, pairs in parse_vary_items(items).items()}


def parse_vary_items(items: Iterable[str]) -> dict[str, list[tuple[str, Any]]]:
    """Like :func:`parse_vary`, each value with its text: as the user wrote it in
    ``v1,v2,…``, else :func:`value_text` of the value. The text is ``--set`` text that
    reads back as the value.

    Raises
    ------
    VaryError
        As :func:`parse_vary`.
    """
    out: dict[str, list[tuple[str, Any]]] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise VaryError(f"--vary {item!r}: expected {_ALLOWED}")
        if not text:
            raise VaryError(f"--vary {item!r}: no value; expected {_ALLOWED}")
        if key in out:
            raise VaryError(f"--vary {item!r}: {key} is already varied by another --vary")
        pairs = _values(str(item), text)
        if len({json.dumps(v, sort_keys=True) for _, v in pairs}) != len(pairs):
            raise VaryError(f"--vary {item!r}: a value is repeated")
        out[key] = pairs
    return out


def _values(item: str, text: str) -> list[tuple[str, Any]]:
    """The (text, value) pairs of one SPEC."""
    spaced = _SPACE.match(text)
    if spaced:
        return [(value_text(v), v) for v in _spaced(item, *spaced.group("kind", "a", "b", "n"))]
    if text.startswith(("logspace", "linspace")):
        kind = text.partition("(")[0]
        raise VaryError(f"--vary {item!r}: write {kind}(a,b,n): from a to b, n values")
    if text.startswith("[") and text.endswith("]"):
        try:
            listed = yaml.safe_load(text)
        except yaml.YAMLError:  # e.g. [64,64],[128]: the comma form below
            listed = None
        if isinstance(listed, list) and listed:
            texts = [json.dumps(v) for v in listed]  # JSON is YAML: read as --set reads it
            return [(value_text(v), v) for v in (_read(item, t) for t in texts)]
    texts = _split_values(text)
    if any(not t for t in texts):
        raise VaryError(f"--vary {item!r}: an empty value; expected {_ALLOWED}")
    return [(t, _read(item, t)) for t in texts]


def _read(item: str, text: str) -> Any:
    """One value, read as ``--set`` reads it."""
    try:
        return parse_overrides([f"v={text}"])["v"]
    except ConfigError as err:
        raise VaryError(f"--vary {item!r}: {err}") from None


def _spaced(item: str, kind: str, a_text: str, b_text: str, n_text: str) -> list[float]:
    """``n`` values from ``a`` to ``b``, log- or evenly spaced, rounded."""
    try:
        a, b = float(a_text), float(b_text)
    except ValueError:
        raise VaryError(f"--vary {item!r}: {kind}(a, b, n) takes two numbers a, b") from None
    if not n_text.isdigit() or int(n_text) < 1:
        raise VaryError(f"--vary {item!r}: the count n must be an integer ≥ 1, got {n_text}")
    n = int(n_text)
    if kind == "logspace":
        if a <= 0 or b <= 0:
            raise VaryError(f"--vary {item!r}: logspace needs a, b > 0")
        values = np.logspace(math.log10(a), math.log10(b), n)
    else:
        values = np.linspace(a, b, n)
    out = [float(f"{float(v):.{SPACED_DIGITS}g}") for v in values]
    if len(set(out)) != len(out):
        raise VaryError(f"--vary {item!r}: {n} values are too close to tell apart")
    return out


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


# --------------------------------------------------------------------------- naming


def value_text(value: Any) -> str:
    """A value as ``--set`` text that reads back as the same value (``0.001``, ``true``,
    ``null``, ``[64, 64]``); a string YAML would read as something else is quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value and parse_overrides([f"v={value}"])["v"] == value:
        return value
    return json.dumps(value)


def safe_name(name: str) -> str:
    """A path component: no separators, no spaces or odd characters."""
    return re.sub(r"[^A-Za-z0-9._=,+\-\[\]]", "_", name) or "_"


@dataclass
class Variant:
    """One combination of the varied values.

    ``overrides`` are its ``--set`` items (``["optimizer.name=adam", "model.dropout=0.5"]``),
    ``name`` what a table shows (``"optimizer.name=adam model.dropout=0.5"``, or
    ``"config"`` when nothing varies), ``dir`` its directory's name
    (``"optimizer.name=adam+model.dropout=0.5"``), ``values`` key → value.
    """

    overrides: list[str]
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return " ".join(self.overrides) or "config"

    @property
    def dir(self) -> str:
        return safe_name("+".join(self.overrides) or "config")


def combine(axes: Mapping[str, Sequence[tuple[str, Any]]]) -> list[Variant]:
    """Every combination of the axes' values (key → [(text, value)], as
    :func:`parse_vary_items` gives), the first key varying slowest; one variant, the
    config as it is, when there is no axis."""
    keys = list(axes)
    return [
        Variant(
            overrides=[f"{k}={text}" for k, (text, _) in zip(keys, picked)],
            values={k: value for k, (_, value) in zip(keys, picked)},
        )
        for picked in itertools.product(*axes.values())
    ]


# --------------------------------------------------------------------------- statistics


def stats(values: Iterable[Any]) -> dict[str, Any]:
    """``{"mean", "std", "n"}`` of the numbers among ``values`` (None and NaN left out):
    the sample std, None for one value; an infinite value (a diverged run's loss) makes
    the mean infinite, with no std."""
    xs = [float(v) for v in values if _real(v) and not math.isnan(v)]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    if any(math.isinf(x) for x in xs):
        return {"mean": sum(xs) / len(xs), "std": None, "n": len(xs)}
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else None,
        "n": len(xs),
    }


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: Any, digits: int = 4) -> str:
    """A value as a text table shows it: a float to ``digits`` significant digits, ``—``
    for None, anything else as ``str``."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def pm(stat: Mapping[str, Any], digits: int = 4) -> str:
    """``"0.5578 ± 0.0076"`` from a :func:`stats` dict (the std to 2 digits; no ``±``
    without a std; ``—`` without a mean)."""
    mean, std = stat.get("mean"), stat.get("std")
    if mean is None:
        return "—"
    return number(float(mean), digits) + ("" if std is None else f" ± {std:.2g}")


# --------------------------------------------------------------------------- output


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: bool = False) -> str:
    """A plain-text table: the header, a rule of dashes, the rows; columns two spaces
    apart. With ``right``, every column but the first is right-aligned (numbers)."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if right and i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (a header row, then ``rows``) atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())


def flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as dotted keys: ``{"optimizer": {"lr": 0.1}}`` →
    ``{"optimizer.lr": 0.1}``. An empty dict, and a ``space`` section (a search space's
    keys are themselves dotted), are values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value and key != "space":
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
