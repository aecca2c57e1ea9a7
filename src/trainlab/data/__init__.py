"""Datasets, splits and mini-batches, all in memory.

``load(name_or_path)`` returns a :class:`Dataset`: a built-in (:data:`BUILTINS`, all
offline), a CSV file, a ``.npz`` archive with arrays ``X`` and ``y``, or a folder of class
subfolders of images. ``split(ds, val=, test=, stratify=, seed=)`` draws one seeded
:class:`Split` (saved with a run as ``split.json``), and :class:`TensorLoader` yields
mini-batches by indexing the tensors, in an order fixed by (seed, epoch).

Every problem the user can fix raises :class:`DataError` with a one-line message that
names the culprit.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from trainlab.data.builtin import BUILTINS, describe, load_builtin
from trainlab.data.dataset import TASKS, DataError, Dataset
from trainlab.data.files import AUTO_MAX_CLASSES, load_csv, load_npz
from trainlab.data.images import IMAGE_SUFFIXES, load_image_folder
from trainlab.data.loader import TensorLoader
from trainlab.data.split import Split, split

__all__ = [
    "AUTO_MAX_CLASSES",
    "BUILTINS",
    "IMAGE_SUFFIXES",
    "DataError",
    "Dataset",
    "Split",
    "TensorLoader",
    "UnknownDataset",
    "describe",
    "load",
    "load_builtin",
    "load_csv",
    "load_image_folder",
    "load_npz",
    "split",
]

_KINDS = "a .csv file, a .npz file (arrays X and y) or an image folder (one subfolder per class)"


def load(name_or_path: str | Path, target: str | None = None, task: str = "auto") -> Dataset:
    """Load a built-in dataset or a user's file or folder.

    Parameters
    ----------
    name_or_path : str or Path
        A built-in name (:data:`BUILTINS`; a string equal to one is always the built-in,
        write ``./digits`` for a folder of that name), or the path of a ``.csv`` file, a
        ``.npz`` file, or an image folder.
    target : str, optional
        CSV only: the target column (default: the last column).
    task : {"auto", "classification", "regression"}
        How to read the targets; see :mod:`trainlab.data.files` for the ``"auto"`` rule.
        Built-ins and image folders have a fixed task, and another value is an error.

    Returns
    -------
    Dataset
        ``name`` is ``name_or_path`` as given.

    Raises
    ------
    DataError
        For an unknown name (the message lists the built-ins and suggests the closest), a
        missing path, an unsupported file type, a ``target`` for anything but a CSV, a
        ``task`` that does not apply, or any problem in the file itself.
    """
    if task not in ("auto", *TASKS):
        raise DataError(f"task must be one of 'auto', {', '.join(map(repr, TASKS))}, got {task!r}")
    name = str(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in BUILTINS:
        _no_target(target, f"the built-in dataset {name!r}")
        ds = load_builtin(name)
        if task not in ("auto", ds.task):
            raise DataError(f"{name} is a {ds.task} dataset; task={task!r} does not apply")
        return ds

    path = Path(name_or_path)
    if path.is_dir():
        _no_target(target, f"an image folder ({name})")
        return load_image_folder(path, task=task, name=name)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return load_csv(path, target=target, task=task, name=name)
        if suffix == ".npz":
            _no_target(target, f"a .npz file ({name})")
            return load_npz(path, task=task, name=name)
        raise DataError(
            f"{name}: unsupported file type {suffix or '(no suffix)'!r}; trainlab reads {_KINDS}"
        )

    builtins = ", ".join(BUILTINS)
    if isinstance(name_or_path, Path) or os.sep in name or "/" in name or path.suffix:
        raise UnknownDataset(f"{name}: no such file or folder (built-in datasets: {builtins})")
    close = difflib.get_close_matches(name.lower(), BUILTINS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownDataset(
        f"unknown dataset {name!r}: {hint}built-ins are {builtins}; or give the path of {_KINDS}"
    )


class UnknownDataset(DataError):
    """The name is neither a built-in dataset nor an existing file or folder (a config
    reports it under its key, ``data.dataset``)."""


def _no_target(target: str | None, what: str) -> None:
    if target is not None:
        raise DataError(f"target={target!r} applies to CSV files only, not to {what}")
