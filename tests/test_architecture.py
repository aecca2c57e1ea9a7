"""The layers of ../shared/DESIGN.md hold: checked by import-linter's own contracts (in
pyproject.toml), run here so that CI fails on a new upward import or import cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``cwd/src`` with the contracts of
    ``cwd/pyproject.toml``."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports is missing: it comes with the dev extra (import-linter)"
    env = dict(os.environ, PYTHONPATH=str(cwd / "src"))
    return subprocess.run(
        [exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_the_layers_and_acyclic_contracts_are_kept():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    assert "Layers: interfaces > procedures > training > components KEPT" in result.stdout
    assert "No import cycles inside any package KEPT" in result.stdout


@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(
        ROOT / "src" / "trainlab",
        tmp_path / "src" / "trainlab",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_an_upward_import_inside_a_function_breaks_the_layers(broken_copy: Path):
    # the optimizers (components) reaching up into the CLI (interfaces), dodged in a function
    sgd = broken_copy / "src" / "trainlab" / "optim" / "sgd.py"
    sgd.write_text(
        sgd.read_text()
        + textwrap.dedent(
            """

            def _upward():
                from trainlab import cli

                return cli
            """
        )
    )
    result = _lint_imports(broken_copy)
    assert result.returncode != 0
    assert "trainlab.optim is not allowed to import trainlab.cli" in result.stdout


def test_a_cycle_inside_a_package_breaks_the_acyclic_contract(broken_copy: Path):
    # train.metrics importing train.trainer, which imports train.metrics
    metrics = broken_copy / "src" / "trainlab" / "train" / "metrics.py"
    metrics.write_text(
        metrics.read_text() + "\n\ndef _cycle():\n    from . import trainer\n\n    return trainer\n"
    )
    result = _lint_imports(broken_copy)
    assert result.returncode != 0
    assert "No import cycles inside any package BROKEN" in result.stdout


#: Suites that test the whole tool rather than one module (they mirror no source file).
CROSS_CUTTING = {"reliability"}


def _source_units() -> list[str]:
    """The top-level modules and packages of trainlab (``run``, ``train``, ...)."""
    src = ROOT / "src" / "trainlab"
    modules = [p.stem for p in src.glob("*.py") if not p.stem.startswith("_")]
    packages = [p.name for p in src.iterdir() if (p / "__init__.py").is_file()]
    return sorted(modules + packages)


def test_the_test_tree_mirrors_the_source_tree():
    # a module trainlab/X.py is tested in tests/test_X.py; a package trainlab/X/ in
    # tests/X/, with a test module for each of its public modules that has its own tests
    missing = []
    for unit in _source_units():
        package = ROOT / "src" / "trainlab" / unit
        if package.is_dir():
            if not list((ROOT / "tests" / unit).glob("test_*.py")):
                missing.append(f"tests/{unit}/test_*.py")
        elif not (ROOT / "tests" / f"test_{unit}.py").is_file():
            missing.append(f"tests/test_{unit}.py")
    assert not missing, f"source units without their test module: {missing}"
    for directory in (ROOT / "tests").iterdir():
        if directory.is_dir() and list(directory.glob("test_*.py")):
            assert directory.name in _source_units() or directory.name in CROSS_CUTTING, (
                f"tests/{directory.name}/ mirrors no package of src/trainlab"
            )


def test_test_module_names_are_unique_across_the_tree():
    # pytest imports test modules by their base name (no __init__.py in tests/): two
    # tests/*/test_report.py would stop the whole collection
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
