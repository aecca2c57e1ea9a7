"""Files written atomically: a reader (or a kill, or a full disk) never sees half of one.

A file is written to a temporary file in its own directory, flushed and fsync'ed, then
renamed over the old one (``os.replace`` is atomic on POSIX), and the directory is
fsync'ed. Whatever happens during the write, the previous version is left intact (a kill
may leave the temporary file ``.NAME.*.tmp`` behind: :func:`remove_partial_writes` clears
it). Checkpoints, configs, splits, summaries and every other file of a run go through here.

It imports only trainlab.errors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from trainlab.errors import WriteError

__all__ = ["replace_atomically", "write_atomic", "remove_partial_writes"]


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def replace_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file in its directory, flush
    and fsync it, rename it over ``path`` and fsync the directory: ``path`` then holds
    either the old content or the whole new one, never a part. Raises the ``OSError``."""
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent
        )
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`replace_atomically`).

    Raises
    ------
    WriteError
        When the file cannot be written; the message names it and the reason.
    """
    data = text.encode("utf-8")
    try:
        return replace_atomically(path, lambda f: f.write(data))
    except OSError as err:
        kept = "; the previous version is intact" if Path(path).is_file() else ""
        raise WriteError(f"cannot write {path}: {err.strerror or err}{kept}") from err


def remove_partial_writes(directory: str | Path) -> list[Path]:
    """Delete the temporary files that writes killed before their rename left in
    ``directory`` (``.NAME.*.tmp``); returns them. Call it only where no other process
    is writing checkpoints into the same directory."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for tmp in directory.glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


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
