"""Checkpoints that survive crashes: atomic writes, safe and verified loads.

A checkpoint is written to a temporary file in the same directory, flushed and fsync'ed,
then renamed over the old one (``os.replace`` is atomic on POSIX), and the directory is
fsync'ed. Whatever happens during the write — a full disk, a read-only directory, a kill —
the previous checkpoint is left intact (a kill may leave the temporary file behind:
:func:`remove_partial_writes` clears it). Checkpoints hold only tensors and plain Python
values and load with ``torch.load(weights_only=True)``: a file that carries pickled code
is refused. Before loading, the CRC-32 of every record of the file (a zip archive) is
checked, so a file damaged after it was written is reported, not loaded.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from trainlab.atomic import remove_partial_writes, replace_atomically, write_atomic
from trainlab.errors import UserError, first_line

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "remove_partial_writes",
    "replace_atomically",
    "write_atomic",
]


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be written or read; ``str(err)`` names the file."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically; on failure the old file is untouched.

    Raises
    ------
    CheckpointError
        When the file cannot be written (the message names it and the reason).
    """
    path = Path(path)
    try:
        return replace_atomically(path, lambda f: torch.save(state, f))
    except OSError as err:
        reason = err.strerror or str(err)
        kept = "; the previous checkpoint is intact" if path.is_file() else ""
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}{kept}") from err


def _damaged_record(path: Path) -> str | None:
    """The name of the first record of the zip archive whose CRC-32 does not match, if any
    (torch.load itself does not check them: a flipped bit in a tensor would load)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        return f"? ({first_line(err)})"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``, after checking its records' CRC-32.

    Raises
    ------
    CheckpointError
        A missing, empty, truncated or corrupted file, or one that carries pickled code
        (which is never run); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"truncated or corrupted checkpoint {path}: the file is empty")
    if zipfile.is_zipfile(path):
        damaged = _damaged_record(path)
        if damaged is not None:
            raise CheckpointError(
                f"corrupted checkpoint {path}: record {damaged} fails its CRC-32 check (the "
                "file was damaged after it was written)"
            )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        code = re.search(r"GLOBAL ([\w.]+)", str(err))
        if code:
            raise CheckpointError(
                f"refusing checkpoint {path}: it carries pickled code ({code.group(1)}) "
                "that a weights-only load does not run"
            ) from None
        raise CheckpointError(
            f"truncated or corrupted checkpoint {path}: not a valid checkpoint archive"
        ) from None
    except Exception as err:  # noqa: BLE001 — whatever a damaged file makes torch raise
        if not zipfile.is_zipfile(path):
            reason = "not a complete checkpoint archive (zip)"
        else:
            reason = first_line(err)
        raise CheckpointError(f"truncated or corrupted checkpoint {path}: {reason}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"not a trainlab checkpoint: {path} holds a {type(state).__name__}")
    return state
