"""Atomic writes: a failed or killed write leaves the previous version whole."""

from __future__ import annotations

import os

import pytest

from trainlab import atomic
from trainlab.errors import UserError, WriteError


def test_write_atomic_replaces_the_whole_file(tmp_path):
    path = tmp_path / "a" / "config.yaml"
    atomic.write_atomic(path, "one\n")
    atomic.write_atomic(path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]


def test_a_write_that_fails_midway_keeps_the_old_version_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    atomic.write_atomic(path, "old")

    def broken(f):
        f.write(b"half of the new")
        raise OSError(28, os.strerror(28))  # ENOSPC: the disk filled up

    with pytest.raises(OSError):
        atomic.replace_atomically(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_refused_write_is_one_user_error_naming_the_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*file/summary.json: ") as err:
        atomic.write_atomic(tmp_path / "file" / "summary.json", "{}")
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_remove_partial_writes_clears_what_a_kill_left_behind(tmp_path):
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"whole")
    removed = atomic.remove_partial_writes(tmp_path)
    assert [p.name for p in removed] == [".last.pt.abc.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
