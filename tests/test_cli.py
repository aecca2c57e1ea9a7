"""The command line: help, version, the demo, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trainlab


def test_version_prints_the_package_version(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"trainlab {trainlab.__version__}"


def test_help_lists_the_commands(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0 and "demo" in out and "Usage" in out


def test_bare_command_prints_help_and_succeeds(run_cli):
    code, out, _ = run_cli()
    assert code == 0 and "demo" in out


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["nonsense"], "No such command 'nonsense'"),
        (["demo", "--tol", "3"], "--tol"),
        (["demo", "--max-steps", "0"], "--max-steps"),
        (["demo", "--bogus"], "--bogus"),
    ],
)
def test_user_errors_are_one_line_naming_the_culprit_with_exit_2(run_cli, argv, culprit):
    code, out, err = run_cli(*argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("trainlab: error:") and culprit in err
    assert "Traceback" not in err + out


def test_demo_shows_momentum_beating_sgd_on_the_valley(run_cli):
    code, out, _ = run_cli("demo", "--max-steps", "400")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line[:4] in ("sgd ", "mome")}
    assert set(rows) == {"sgd", "momentum"}
    sgd_steps, momentum_steps = int(rows["sgd"].split()[1]), int(rows["momentum"].split()[2])
    assert momentum_steps < sgd_steps
    assert "fewer steps than SGD" in out


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "trainlab", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("trainlab ")


def test_datasets_lists_every_builtin_with_its_size(run_cli):
    from trainlab.data import BUILTINS

    code, out, _ = run_cli("datasets")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(rows) == set(BUILTINS)
    assert "5000" in rows["mnist1d"] and "1797" in rows["digits"]
