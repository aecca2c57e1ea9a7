"""User tables: CSV files and ``.npz`` archives, with every bad value reported where it is.

CSV rules. The first non-blank line is the header, and every column needs a unique name.
``target`` names the target column (default: the last one); every other column is a
numeric feature. Fields are separated by commas (quoting as in Python's :mod:`csv`),
surrounding spaces are ignored, blank lines are skipped. Errors name the file, the line
(as an editor counts it: the header is line 1) and the column.

The task rule (``task="auto"``) for a target column, and for ``y`` of an ``.npz``:

- every value an integer (``3`` or ``3.0``) and at most :data:`AUTO_MAX_CLASSES` distinct
  values → classification; the sorted distinct values become labels 0..C−1 and their
  names (``"3"``) the class names;
- every value text → classification with the sorted distinct texts as class names (more
  than :data:`AUTO_MAX_CLASSES` of them is an error: pass ``task="classification"``);
- any other numbers → regression (float32).

``task="classification"`` accepts any number of classes but no fractional labels, and
reads a column that mixes numbers and text as class names; ``task="regression"`` needs
every value to be a number. Classification needs at least two classes.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from trainlab.data.dataset import TASKS, DataError, Dataset

__all__ = ["AUTO_MAX_CLASSES", "load_csv", "load_npz"]

AUTO_MAX_CLASSES = 50
"""Under ``task="auto"``, an integer or text target with at most this many distinct values
is a classification target."""

_TASK_CHOICES = ("auto", *TASKS)


# --------------------------------------------------------------------------- CSV


def load_csv(
    path: str | Path, target: str | None = None, task: str = "auto", name: str | None = None
) -> Dataset:
    """Read a CSV file with a header row into a :class:`Dataset`.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    target : str, optional
        Name of the target column; default: the last column.
    task : {"auto", "classification", "regression"}
        How to read the target column; ``"auto"`` follows the rule in the module docstring.
    name : str, optional
        The dataset's name (default: ``path`` as given); also how errors name the file.

    Returns
    -------
    Dataset
        X float32 N×D (every other column, in file order), y as the task requires.

    Raises
    ------
    DataError
        Naming the file, line and column: an empty file, a header without data rows, a
        nameless or repeated column name, an unknown target column, a row with the wrong
        number of fields, a missing, non-numeric, NaN, infinite or (for float32) too large
        feature value, or a target that does not fit the task.
    """
    label = str(path) if name is None else name
    _check_task(task)
    header, rows = _read_rows(Path(path), label)
    columns = _check_header(header, label)
    if target is None:
        target = columns[-1]
    elif target not in columns:
        raise DataError(
            f"{label}: unknown target column {target!r}; the columns are: {', '.join(columns)}"
        )
    if not rows:
        raise DataError(f"{label}: has a header (line 1) but no data rows")
    for line, fields in rows:
        if len(fields) != len(columns):
            raise DataError(
                f"{label}, line {line}: {len(fields)} fields, but the header has "
                f"{len(columns)} columns"
            )
    lines = [line for line, _ in rows]
    j_target = columns.index(target)
    feature_cols = [j for j in range(len(columns)) if j != j_target]
    X = _parse_features(rows, feature_cols, columns, lines, label)

    raw = [fields[j_target] for _, fields in rows]

    def where(i: int) -> str:
        return f"{label}, line {lines[i]}, column {target!r}"

    for i, s in enumerate(raw):
        if s == "":
            raise DataError(f"{where(i)}: missing value")
    values, numeric = _parse_numbers(raw)
    y, task, classes = _encode_target(
        raw, values, numeric, task, where, f"{label}: column {target!r}"
    )
    return Dataset(
        name=label,
        X=torch.from_numpy(X),
        y=torch.from_numpy(y),
        task=task,
        classes=classes,
        feature_names=[columns[j] for j in feature_cols],
        metadata={
            "source": "csv",
            "path": str(path),
            "target": target,
        },
    )


def _read_rows(path: Path, label: str) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """The header and the (line number, stripped fields) of every non-blank data row."""
    header, rows = None, []
    try:
        # utf-8-sig: spreadsheet programs often start a UTF-8 CSV with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line
                fields = [s.strip() for s in fields]
                if header is None:
                    header = fields
                else:
                    rows.append((reader.line_num, fields))
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{label}, line {reader.line_num}: not valid CSV ({e})") from None
    except OSError as e:
        raise DataError(f"{label}: cannot read ({e.strerror or e})") from None
    return header, rows


def _check_header(header: list[str] | None, label: str) -> list[str]:
    if header is None:
        raise DataError(f"{label}: the file is empty; a CSV needs a header row and data rows")
    for j, column in enumerate(header):
        if column == "":
            raise DataError(
                f"{label}, line 1: column {j + 1} has no name; every column needs one "
                f"(an unnamed index column? write the CSV without the index)"
            )
        if column in header[:j]:
            raise DataError(f"{label}, line 1: column name {column!r} appears twice")
    if len(header) < 2:
        hint = ""
        for sep, sep_name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in header[0]:
                hint = f"; it seems separated by {sep_name}, but fields must be comma-separated"
        raise DataError(
            f"{label}, line 1: the header has one column; a CSV needs feature columns and "
            f"a target column{hint}"
        )
    return header


def _parse_features(
    rows: list[tuple[int, list[str]]],
    feature_cols: list[int],
    columns: list[str],
    lines: list[int],
    label: str,
) -> np.ndarray:
    """The feature columns as float32 N×D; the first bad cell in file order is the error."""
    X = np.empty((len(rows), len(feature_cols)), dtype=np.float64)
    try:
        for k, j in enumerate(feature_cols):
            # NumPy parses a list of strings in C, with the same grammar as float().
            X[:, k] = np.array([fields[j] for _, fields in rows], dtype=np.float64)
    except ValueError:
        # Some cell is bad: find the first one in file order, and say what is wrong with it.
        for line, fields in rows:
            for j in feature_cols:
                problem = _number_problem(fields[j])
                if problem:
                    raise DataError(
                        f"{label}, line {line}, column {columns[j]!r}: {problem}"
                    ) from None
        raise  # unreachable: NumPy and float() accept the same strings
    _check_finite(X, lambda i, k: f"{label}, line {lines[i]}, column {columns[feature_cols[k]]!r}")
    return X.astype(np.float32)


def _number_problem(s: str) -> str | None:
    """Why ``s`` is not a usable number, or ``None`` if it is one."""
    if s == "":
        return "missing value"
    try:
        float(s)
    except ValueError:
        return f"{s!r} is not a number"
    return None


def _parse_numbers(raw: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
    """float64 values of the strings that are numbers, and which ones are."""
    try:
        return np.array(raw, dtype=np.float64), np.ones(len(raw), dtype=bool)
    except ValueError:
        numeric = np.array([_number_problem(s) is None for s in raw], dtype=bool)
        return None, numeric


# --------------------------------------------------------------------------- npz


def load_npz(path: str | Path, task: str = "auto", name: str | None = None) -> Dataset:
    """Read a NumPy ``.npz`` archive with arrays ``X`` and ``y`` into a :class:`Dataset`.

    Parameters
    ----------
    path : str or Path
        The archive (``np.savez(path, X=..., y=...)``). Optional arrays: ``feature_names``
        (D strings, for an N×D ``X``) and ``classes`` (C strings; then ``y`` must hold the
        labels 0..C−1). Other arrays are ignored.
    task : {"auto", "classification", "regression"}
        How to read ``y``; ``"auto"`` follows the rule in the module docstring.
    name : str, optional
        The dataset's name (default: ``path`` as given); also how errors name the file.

    Returns
    -------
    Dataset
        X as float32 with the archive's shape (N×D, N×L or N×C×H×W), y as the task requires.

    Raises
    ------
    DataError
        If the file is not a readable ``.npz``, lacks ``X`` or ``y`` (the message lists the
        arrays found), or holds values that do not fit (shapes, NaN/Inf, labels).
    """
    label = str(path) if name is None else name
    _check_task(task)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            missing = [k for k in ("X", "y") if k not in keys]
            if not missing:
                arrays = {
                    k: archive[k] for k in ("X", "y", "feature_names", "classes") if k in keys
                }
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{label}: not a readable .npz archive ({e})") from None
    if missing:
        found = ", ".join(keys) if keys else "none"
        raise DataError(
            f"{label}: missing array {' and '.join(repr(k) for k in missing)}; "
            f"a .npz needs arrays 'X' and 'y' (found: {found})"
        )
    X, y = arrays["X"], arrays["y"]
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DataError(f"{label}: X must be numeric, got dtype {X.dtype}")
    if X.ndim < 2:
        raise DataError(
            f"{label}: X has shape {X.shape}; it needs a sample axis and at least one "
            f"feature axis (N×D, N×L or N×C×H×W); reshape a single feature to (N, 1)"
        )
    if y.shape != (len(X),):
        raise DataError(f"{label}: y has shape {y.shape}, expected ({len(X)},) to match X")
    X64 = X.astype(np.float64)
    _check_finite(X64, lambda *idx: f"{label}, X[{', '.join(str(int(i)) for i in idx)}]")

    def where(i: int) -> str:
        return f"{label}, y[{i}]"

    column = f"{label}: y"
    if y.dtype.kind in "US":
        raw = [v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()]
        values, numeric = None, np.zeros(len(raw), dtype=bool)
    elif np.issubdtype(y.dtype, np.number) or y.dtype == bool:
        values = y.astype(np.float64)
        _check_finite(values, where)
        raw, numeric = None, np.ones(len(y), dtype=bool)
    else:
        raise DataError(f"{label}: y must hold numbers or strings, got dtype {y.dtype}")

    if "classes" in arrays:
        y_enc, task, classes = _named_labels(arrays["classes"], values, task, where, label)
    else:
        y_enc, task, classes = _encode_target(raw, values, numeric, task, where, column)
    feature_names = None
    if "feature_names" in arrays:
        names = [str(s) for s in arrays["feature_names"].tolist()]
        if X.ndim != 2 or len(names) != X.shape[1]:
            raise DataError(
                f"{label}: feature_names has {len(names)} names, but X has shape {X.shape}"
            )
        feature_names = names
    return Dataset(
        name=label,
        X=torch.from_numpy(X64.astype(np.float32)),
        y=torch.from_numpy(y_enc),
        task=task,
        classes=classes,
        feature_names=feature_names,
        metadata={"source": "npz", "path": str(path), "arrays": keys},
    )


def _named_labels(
    names: np.ndarray,
    values: np.ndarray | None,
    task: str,
    where: Callable[[int], str],
    label: str,
) -> tuple[np.ndarray, str, list[str]]:
    """Labels 0..C−1 in ``y`` with their names in the archive's ``classes`` array."""
    classes = [str(s) for s in names.tolist()]
    if task == "regression":
        raise DataError(
            f"{label}: holds class names ('classes'), so task='regression' does not apply"
        )
    if values is None:
        raise DataError(
            f"{label}: with a 'classes' array, y must hold the labels 0..{len(classes) - 1}"
        )
    bad = np.flatnonzero((values != np.round(values)) | (values < 0) | (values >= len(classes)))
    if len(bad):
        raise DataError(
            f"{where(bad[0])}: {values[bad[0]]:g} is not a label in 0..{len(classes) - 1} "
            f"(one per name in 'classes')"
        )
    if len(classes) < 2:
        raise DataError(f"{label}: a single class; classification needs at least 2")
    return values.astype(np.int64), "classification", classes


# --------------------------------------------------------------------------- shared


def _check_task(task: str) -> None:
    if task not in _TASK_CHOICES:
        raise DataError(f"task must be one of {', '.join(map(repr, _TASK_CHOICES))}, got {task!r}")


def _check_finite(values: np.ndarray, where: Callable[..., str]) -> None:
    """NaN, ±Inf and values that overflow float32 are errors, named by ``where(*index)``."""
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        raise DataError(
            f"{where(*bad[0])}: {values[tuple(bad[0])]} is not a finite number "
            f"(NaN and ±Inf are not allowed)"
        )
    big = np.argwhere(np.abs(values) > np.finfo(np.float32).max)
    if len(big):
        raise DataError(f"{where(*big[0])}: {values[tuple(big[0])]:g} is too large for float32")


def _encode_target(
    raw: Sequence[str] | None,
    values: np.ndarray | None,
    numeric: np.ndarray,
    task: str,
    where: Callable[[int], str],
    column: str,
) -> tuple[np.ndarray, str, list[str] | None]:
    """Targets as (y, task, classes) by the task rule of the module docstring.

    ``raw`` holds the values as text (CSV, or string arrays), ``values`` their float64
    numbers if every one is a number, ``numeric`` which ones are numbers.
    """
    if values is not None:
        _check_finite(values, where)  # also rejects values that overflow float32
    if task == "regression":
        if values is None:
            i = int(np.flatnonzero(~numeric)[0])
            raise DataError(f"{where(i)}: {raw[i]!r} is not a number; regression needs numbers")
        return values.astype(np.float32), "regression", None

    if values is not None:
        integral = values == np.round(values)
        distinct = np.unique(values)
        if task == "auto" and (not integral.all() or len(distinct) > AUTO_MAX_CLASSES):
            return values.astype(np.float32), "regression", None
        if not integral.all():
            i = int(np.flatnonzero(~integral)[0])
            text = raw[i] if raw is not None else f"{values[i]:g}"
            raise DataError(
                f"{where(i)}: {text!r} is not an integer class label (task='classification')"
            )
        y = np.searchsorted(distinct, values).astype(np.int64)
        classes = [str(int(v)) for v in distinct]
    else:
        if task == "auto" and numeric.any():
            i = int(np.flatnonzero(~numeric)[0])
            raise DataError(
                f"{where(i)}: {raw[i]!r} is text, but other values are numbers; make the "
                f"column all numbers, or pass task='classification' to read every value as a "
                f"class name"
            )
        classes = sorted(set(raw))
        if task == "auto" and len(classes) > AUTO_MAX_CLASSES:
            raise DataError(
                f"{column} has {len(classes)} distinct text values, more than "
                f"{AUTO_MAX_CLASSES} for task='auto'; pass task='classification' to use them "
                f"all as class names"
            )
        index = {c: k for k, c in enumerate(classes)}
        y = np.array([index[s] for s in raw], dtype=np.int64)
    if len(classes) < 2:
        raise DataError(
            f"{column} holds a single class ({classes[0]!r}); classification needs at least 2"
        )
    return y, "classification", classes
