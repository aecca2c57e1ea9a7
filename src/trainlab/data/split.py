"""One seeded train / validation / test split, saved with the run as ``split.json``.

Sizes: a part with fraction f of the N samples gets T = round(f·N) samples, at least one
when f > 0; training gets the rest. A stratified split rounds the table of quotas
n_c·T/N (class c, part of size T) to integers that keep both the class counts and the part
sizes, so every class is within one sample of its proportion in every part. A canonical test split
(``Dataset.test_indices``) is kept as it is; validation is then drawn from the other samples
(``val`` is still a fraction of all N, and is stratified over those samples' classes).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainlab.atomic import write_atomic
from trainlab.data.dataset import DataError, Dataset

__all__ = ["Split", "split"]


@dataclass
class Split:
    """Disjoint, sorted int64 index arrays into a dataset.

    Parameters
    ----------
    train, val, test : numpy.ndarray
        Sample indices of each part.
    seed : int, optional
        The seed that drew the split (recorded in ``split.json``).
    stratified : bool, optional
        Whether the split was stratified by class (recorded in ``split.json``).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int | None = None
    stratified: bool | None = None

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            setattr(self, part, np.sort(np.asarray(getattr(self, part), dtype=np.int64)))

    def __repr__(self) -> str:
        return (
            f"Split(train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
            f"seed={self.seed}, stratified={self.stratified})"
        )

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (``split.json`` in a run directory).

        The record is ``{"train": [...], "val": [...], "test": [...], "seed": ...,
        "stratified": ...}``. It is written to a temporary name and renamed, so a crash never
        leaves half a split behind (:func:`trainlab.atomic.write_atomic`).
        """
        path = Path(path)
        record = {
            "train": self.train.tolist(),
            "val": self.val.tolist(),
            "test": self.test.tolist(),
            "seed": self.seed,
            "stratified": self.stratified,
        }
        write_atomic(path, json.dumps(record))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a ``split.json`` written by :meth:`save`.

        Raises
        ------
        DataError
            If the file cannot be read, is not JSON, lacks a part, or its parts overlap or
            hold anything but non-negative integers.
        """
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read the split ({e})") from None
        parts = {}
        for part in ("train", "val", "test"):
            values = record.get(part) if isinstance(record, dict) else None
            if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
            ):
                raise DataError(f"{path}: {part!r} must be a list of sample indices (integers ≥ 0)")
            parts[part] = values
        result = cls(**parts, seed=record.get("seed"), stratified=record.get("stratified"))
        every = np.concatenate([result.train, result.val, result.test])
        if len(np.unique(every)) != len(every):
            raise DataError(f"{path}: the parts overlap; a sample may be in one part only")
        return result


def split(
    ds: Dataset, val: float = 0.15, test: float = 0.15, stratify: bool = True, seed: int = 0
) -> Split:
    """Split a dataset's samples into train, validation and test, reproducibly.

    Parameters
    ----------
    ds : Dataset
        The dataset. Its canonical test split (``ds.test_indices``), if any, is kept.
    val : float
        Fraction of all samples for validation, in [0, 1).
    test : float
        Fraction of all samples for testing, in [0, 1); ignored when ``ds`` has a
        canonical test split. ``val + test < 1``.
    stratify : bool
        For classification, keep every class's proportion in every part (to one sample).
        Regression is always split at random.
    seed : int
        Seed of the split; the same seed gives the same split.

    Returns
    -------
    Split
        Disjoint sorted parts that together cover every sample.

    Raises
    ------
    DataError
        If a fraction is out of range (the parameter is named), the training part would be
        empty, or a class has too few samples to stratify (the class is named).
    """
    _check_fraction("val", val)
    _check_fraction("test", test)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise DataError(f"seed must be an integer, got {seed!r}")
    n = len(ds)
    if ds.test_indices is not None:
        test_part = np.asarray(ds.test_indices, dtype=np.int64)
        if val + len(test_part) / n >= 1:
            raise DataError(
                f"val={val} leaves no training samples: {ds.name} keeps its canonical test "
                f"split of {len(test_part)}/{n} samples"
            )
        n_test = len(test_part)
    else:
        if val + test >= 1:
            raise DataError(f"val + test must be < 1 to leave training samples, got {val + test}")
        test_part = None
        n_test = _size(test, n)
    n_val = _size(val, n)
    rest = np.setdiff1d(np.arange(n), test_part) if test_part is not None else np.arange(n)
    if n_val + (n_test if test_part is None else 0) >= len(rest):
        raise DataError(
            f"{ds.name}: {n} samples are too few for val={val}, test={test}: no training "
            f"samples would be left"
        )

    rng = np.random.default_rng(seed)
    stratified = bool(stratify and ds.task == "classification")
    sizes = {"val": n_val} if test_part is not None else {"test": n_test, "val": n_val}
    if stratified:
        request = f"val={val}" if test_part is not None else f"val={val}, test={test}"
        parts = _stratified(ds, rest, sizes, rng, request)
    else:
        order = rng.permutation(rest)
        parts, start = {}, 0
        for part, size in sizes.items():
            parts[part] = order[start : start + size]
            start += size
        parts["train"] = order[start:]
    if test_part is not None:
        parts["test"] = test_part
    return Split(**parts, seed=int(seed), stratified=stratified)


def _check_fraction(name: str, value: float) -> None:
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not (0 <= value < 1)  # also False for NaN
    ):
        raise DataError(f"{name} must be a fraction in [0, 1), got {value!r}")


def _size(fraction: float, n: int) -> int:
    """round(fraction·n), half up, and at least 1 when the fraction is positive."""
    size = math.floor(fraction * n + 0.5)
    return max(size, 1) if fraction > 0 else 0


def _stratified(
    ds: Dataset,
    rest: np.ndarray,
    sizes: dict[str, int],
    rng: np.random.Generator,
    request: str,
) -> dict[str, np.ndarray]:
    """Draw each part from ``rest`` in proportion to its classes."""
    labels = ds.y.cpu().numpy()[rest]
    counts = np.bincount(labels, minlength=ds.n_classes)
    for c in np.flatnonzero(counts == 1):
        raise DataError(
            f"{ds.name}: class {ds.classes[c]!r} has a single sample, too few to stratify "
            f"{request}; pass stratify=False, or add samples of that class"
        )
    names = [*sizes, "train"]
    totals = np.array([*sizes.values(), len(rest) - sum(sizes.values())], dtype=np.int64)
    shares = _controlled_rounding(counts, totals)
    for c in np.flatnonzero((counts > 0) & (shares[:, -1] < 1)):
        raise DataError(
            f"{ds.name}: class {ds.classes[c]!r} has {counts[c]} samples, too few to "
            f"stratify {request} and keep one for training; pass stratify=False, lower the "
            f"fractions, or add samples of that class"
        )
    parts: dict[str, list[np.ndarray]] = {part: [] for part in names}
    for c in np.flatnonzero(counts):
        members = rng.permutation(rest[labels == c])
        bounds = np.cumsum(shares[c])
        for part, chunk in zip(names, np.split(members, bounds[:-1])):
            parts[part].append(chunk)
    return {part: np.concatenate(chunks) for part, chunks in parts.items()}


def _controlled_rounding(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Integer shares[c, p] of class c in part p, each within one of n_c·T_p/N.

    Rows sum to the class counts n_c and columns to the part sizes T_p (Σ T_p = N). Start
    from the floors; each class then misses a few units (fewer than the number of parts)
    and each part too, in equal totals. Handing each class's units, one per part, to the
    parts that still miss the most always succeeds (Ryser's greedy construction of a 0-1
    matrix with given margins; the fractional remainders are one such matrix, so an integer
    one exists); ties go to the larger remainder.
    """
    n = int(counts.sum())
    numerators = np.outer(counts, totals)  # exact integers: quota = numerator / n
    shares, remainders = numerators // n, numerators % n
    row_left = counts - shares.sum(axis=1)
    col_left = totals - shares.sum(axis=0)
    for c in np.argsort(-row_left, kind="stable"):
        keys = sorted(range(len(totals)), key=lambda p: (-col_left[p], -remainders[c, p], p))
        for p in keys[: row_left[c]]:
            shares[c, p] += 1
            col_left[p] -= 1
    return shares
