"""The in-memory dataset record that every loader returns, and the error they raise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from trainlab.errors import UserError

__all__ = ["TASKS", "DataError", "Dataset"]

TASKS = ("classification", "regression")


class DataError(UserError, ValueError):
    """A data problem the user can fix: a bad file, value, name or fraction.

    ``str(err)`` is one line that names the culprit (the file, line and column, the class,
    or the parameter), so a command line can print it as it is, without a traceback.
    """


@dataclass(repr=False)
class Dataset:
    """Features and targets held in memory, with what a model and a report need to know.

    Parameters
    ----------
    name : str
        The built-in name, or the path as the user gave it.
    X : torch.Tensor
        float32 features: N×D for tables, N×L for sequences (MNIST-1D: N×40), N×C×H×W
        for images.
    y : torch.Tensor
        Targets, shape (N,): int64 labels 0..C−1 for classification, float32 for
        regression.
    task : str
        ``"classification"`` or ``"regression"``.
    classes : list of str or None
        Class names for classification, indexed by label; ``None`` for regression.
    feature_names : list of str or None
        One name per column of an N×D table; ``None`` when the features have no names.
    test_indices : numpy.ndarray or None
        The dataset's canonical test split (int64, sorted), if it has one;
        :func:`trainlab.data.split` keeps it as the test split.
    metadata : dict
        JSON-serializable facts: ``source``, ``description`` and whatever else is known.

    Raises
    ------
    DataError
        If the pieces disagree (lengths, dtypes, task, number of class names).
    """

    name: str
    X: torch.Tensor
    y: torch.Tensor
    task: str
    classes: list[str] | None = None
    feature_names: list[str] | None = None
    test_indices: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}")
        if self.X.dtype != torch.float32 or self.X.ndim < 2:
            raise DataError(
                f"{self.name}: X must be a float32 tensor with a sample dimension and at "
                f"least one feature dimension, got {self.X.dtype} of shape {tuple(self.X.shape)}"
            )
        if self.y.ndim != 1 or len(self.y) != len(self.X):
            raise DataError(
                f"{self.name}: y must have shape ({len(self.X)},) to match X, "
                f"got {tuple(self.y.shape)}"
            )
        if self.task == "classification":
            if self.y.dtype != torch.int64 or self.classes is None:
                raise DataError(f"{self.name}: classification needs int64 labels and class names")
            if len(self.y) and not 0 <= int(self.y.min()) <= int(self.y.max()) < len(self.classes):
                raise DataError(
                    f"{self.name}: labels must lie in 0..{len(self.classes) - 1} "
                    f"(one per class name)"
                )
        elif self.y.dtype != torch.float32:
            raise DataError(f"{self.name}: regression targets must be float32, got {self.y.dtype}")
        if self.test_indices is not None:
            test = np.unique(np.asarray(self.test_indices, dtype=np.int64))  # sorted
            if len(test) != len(self.test_indices) or (
                len(test) and not 0 <= test[0] <= test[-1] < len(self.X)
            ):
                raise DataError(
                    f"{self.name}: test_indices must be distinct sample indices in "
                    f"0..{len(self.X) - 1}"
                )
            self.test_indices = test

    @property
    def n_classes(self) -> int | None:
        """Number of classes for classification, ``None`` for regression."""
        return len(self.classes) if self.task == "classification" else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``X.shape[1:]``."""
        return tuple(self.X.shape[1:])

    def __len__(self) -> int:
        return len(self.X)

    def __repr__(self) -> str:
        classes = f", n_classes={self.n_classes}" if self.task == "classification" else ""
        return (
            f"Dataset(name={self.name!r}, n_samples={len(self)}, "
            f"input_shape={self.input_shape}, task={self.task!r}{classes})"
        )
