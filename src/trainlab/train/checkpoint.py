"""Checkpoints that survive crashes: atomic writes, safe loads.

A checkpoint is written to a temporary file in the same directory, flushed and fsync'ed,
then renamed over the old one (``os.replace`` is atomic on POSIX), and the directory is
fsync'ed. Whatever happens during the write — a full disk, a read-only directory, a kill —
the previous checkpoint is left intact. Checkpoints hold only tensors and plain Python
values and load with ``torch.load(weights_only=True)``: a file that carries pickled code
is refused.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; ``str(err)`` names the file."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically; on failure the old file is untouched.

    Raises
    ------
    CheckpointError
        When the file cannot be written (the message names it and the reason).
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except OSError as err:
        reason = err.strerror or str(err)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {reason}; the previous checkpoint is intact"
        ) from err
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``.

    Raises
    ------
    CheckpointError
        A missing, truncated or corrupted file, or one that carries pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unpickling failed"
        if "Weights only load failed" in str(err) or "Unsupported" in str(err):
            raise CheckpointError(
                f"refusing checkpoint {path}: it carries pickled objects or code that a "
                "weights-only load does not allow"
            ) from None
        raise CheckpointError(f"corrupted checkpoint {path}: {first}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"truncated or corrupted checkpoint {path}: {first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"not a trainlab checkpoint: {path}")
    return state
