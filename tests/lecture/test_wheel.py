"""`trainlab lecture` works from a built wheel, installed where the source tree is not seen.

The wheel is built from a copy of the project (so the checkout gets no build/ folder) and
installed with ``--no-deps`` into a fresh venv. Its dependencies (torch, numpy, …) come
from the project's venv through a ``.pth`` line placed after the fresh venv's own
site-packages: a plain path line, so the project venv's ``.pth`` files — the editable
install of trainlab among them — are never processed there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What building the wheel reads from the project.
SOURCES = ["pyproject.toml", "README.md", "src"]


def _copy_project(dest: Path) -> Path:
    dest.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    for licence in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(licence, dest / licence.name)
    return dest


def _run(argv: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{argv[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the trainlab wheel installed (its bin/ folder's parent)."""
    tmp = tmp_path_factory.mktemp("wheel")
    project = _copy_project(tmp / "project")
    wheels = tmp / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", wheels, project],
        cwd=tmp,
    )
    (wheel,) = wheels.glob("trainlab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "trainlab/lecture/configs/mnist1d_mlp.yaml" in archive.namelist()

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"]
        + ["--no-index", wheel],
        cwd=tmp,
    )
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp)
    deps = sysconfig.get_paths()["purelib"]  # the project venv's, where torch & co. are
    (Path(site.stdout.strip()) / "zz_project_dependencies.pth").write_text(deps + "\n")
    return venv


def test_the_installed_trainlab_is_the_wheel_not_the_source_tree(installed, tmp_path):
    where = _run(
        [installed / "bin" / "python", "-c", "import trainlab; print(trainlab.__file__)"], tmp_path
    )
    path = Path(where.stdout.strip()).resolve()
    assert installed.resolve() in path.parents
    assert (ROOT / "src").resolve() not in path.parents


def test_lecture_runs_c11_and_c15_from_the_installed_wheel(installed, tmp_path):
    out = tmp_path / "lecture"
    result = _run(
        [
            installed / "bin" / "trainlab",
            "lecture",
            "--quick",
            "--only",
            "C11",
            "C15",
            "--out",
            out,
        ],
        cwd=tmp_path,
    )
    assert (out / "lecture.html").is_file()
    claims = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("C")]
    assert claims == ["C11", "C15"]
