"""Fixtures of the reliability tests."""

from __future__ import annotations

import pytest
from forked_cli import ForkedCLI


@pytest.fixture(scope="session")
def forked(tmp_path_factory):
    """`trainlab` commands in forked processes, with faults (see forked_cli.py)."""
    cli = ForkedCLI(tmp_path_factory.mktemp("forked"))
    yield cli
    cli.close()
