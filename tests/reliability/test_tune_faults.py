"""Tuning under faults: every worker of a study killed mid-trial, PostgreSQL restarted or
gone mid-study. The study resumes, each trial is recorded once, and the defaults trial is
neither lost nor run twice. (A single dead worker of a running study is retried by its
coordinator: tests/tune/test_tune.py.)

The PostgreSQL tests run where the suite has a server (TRAINLAB_TEST_POSTGRES, set by
`make test`), and restart a private one of their own (scripts/postgres.sh).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest

from tables import read_trials, write_tune_config

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, trials: int = 3, epochs: int = 3) -> Path:
    return write_tune_config(
        tmp_path,
        trials=trials,
        epochs=epochs,
        space={"optimizer.lr": "loguniform(1e-3, 1e-1)"},
        name="faults-tune",
        hidden=(8,),
        batch_size=32,
    )


def _assert_each_trial_recorded_once(rows: list[dict], trials: int) -> None:
    numbers = [int(r["number"]) for r in rows]
    assert numbers == sorted(set(numbers)), numbers
    assert not [r for r in rows if r["state"] == "RUNNING"]
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(complete) == trials, rows
    assert len({r["optimizer.lr"] for r in complete}) == len(complete)  # none twice
    assert [r["default"] for r in rows if r["state"] != "FAIL"].count("True") == 1


@pytest.fixture(params=["journal", "postgresql"])
def storage(request, tmp_path) -> list[str]:
    """The --storage/--study arguments of a study: the journal file, or PostgreSQL."""
    if request.param == "journal":
        return []
    url = request.getfixturevalue("postgres_db")
    return ["--storage", url, "--study", "faults"]


def test_a_study_resumes_after_every_worker_was_killed_mid_trial(tmp_path, forked, storage):
    config, run_dir = _config(tmp_path), tmp_path / "study"
    command = ("tune", config, "--out", run_dir, "--quiet", *storage)
    # the coordinator is the study's only worker: killed in the defaults trial, all are gone
    killed = forked.run(*command, trial={"number": 0, "epoch": 2, "kill": True})
    assert killed.code == -signal.SIGKILL
    resumed = forked.run(*command)
    assert resumed.code == 0, resumed.err
    assert "resuming the study" in resumed.out
    rows = read_trials(run_dir)
    _assert_each_trial_recorded_once(rows, trials=3)
    assert [(r["number"], r["state"], r["default"]) for r in rows[:2]] == [
        ("0", "FAIL", "True"),  # the killed trial, failed, and retried first
        ("1", "COMPLETE", "True"),
    ]
    assert rows[0]["optimizer.lr"] == rows[1]["optimizer.lr"]


# --- a private PostgreSQL server, to restart ---------------------------------------------


class _Server:
    """A throwaway cluster of scripts/postgres.sh that the test may stop and start."""

    def __init__(self, directory: Path, url: str):
        self.directory, self.url = directory, url
        self.port = url.rsplit(":", 1)[1].split("/")[0]

    def _pg_ctl(self, *args: str) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or [shutil.which("pg_ctl")]
        command = [found[-1], "-D", str(self.directory / "data"), *args]
        if os.geteuid() == 0:  # the cluster belongs to the postgres user
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")

    def start(self) -> None:
        log = str(self.directory / "server.log")
        self._pg_ctl("start", "-w", "-t", "60", "-l", log, "-o", f"-p {self.port}")


@pytest.fixture(scope="module")
def server(postgres_url):
    """A PostgreSQL of this module's own (where the suite has one: postgres_url)."""
    directory = Path(tempfile.mkdtemp(prefix="trainlab-pg."))  # in /tmp: postgres enters
    script = str(ROOT / "scripts" / "postgres.sh")
    started = subprocess.run(["bash", script, "start", str(directory)], capture_output=True)
    assert started.returncode == 0, started.stderr.decode()
    yield _Server(directory, started.stdout.decode().strip())
    subprocess.run(["bash", script, "stop", str(directory)], capture_output=True)


def _while_paused(ready: Path, action) -> threading.Thread:
    """Run ``action`` once a worker has paused mid-trial (it touched ``ready``)."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        action()

    thread = threading.Thread(target=wait_then_act)
    thread.start()
    return thread


def test_postgresql_restarted_mid_trial_the_worker_reconnects_and_records_each_trial_once(
    tmp_path, forked, server
):
    config, run_dir, study = _config(tmp_path), tmp_path / "study", f"s{uuid.uuid4().hex}"
    ready, go = tmp_path / "ready", tmp_path / "go"

    def restart() -> None:  # down for a second and a half, while the trial goes on
        server.stop()
        go.touch()
        time.sleep(1.5)
        server.start()

    thread = _while_paused(ready, restart)
    run = forked.run(
        *("tune", config, "--out", run_dir, "--quiet", "--storage", server.url, "--study", study),
        trial={"number": 1, "epoch": 1, "ready": str(ready), "go": str(go)},
    )
    thread.join()
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    rows = read_trials(run_dir)
    _assert_each_trial_recorded_once(rows, trials=3)
    assert not [r for r in rows if r["state"] == "FAIL"]  # trial 1 went on, not retried
    reloaded = optuna.load_study(study_name=study, storage=server.url)
    assert sorted(reloaded.trials[1].intermediate_values) == [1, 2, 3]


def test_postgresql_gone_mid_study_is_one_line_and_the_same_command_resumes(
    tmp_path, forked, server
):
    config, run_dir, study = _config(tmp_path), tmp_path / "study", f"s{uuid.uuid4().hex}"
    command = ("tune", config, "--out", run_dir, "--quiet", "--storage", server.url)
    ready, go = tmp_path / "ready", tmp_path / "go"

    def stop() -> None:
        server.stop()
        go.touch()

    thread = _while_paused(ready, stop)
    try:
        gone = forked.run(
            *command,
            "--study",
            study,
            trial={"number": 1, "epoch": 1, "ready": str(ready), "go": str(go)},
            reconnect_seconds=1.0,
        )
    finally:
        thread.join()
        server.start()
    assert gone.code == 2
    assert gone.err.count("\n") == 1 and "Traceback" not in gone.err, gone.err
    assert gone.err.startswith(f"trainlab: error: the study's database {server.url} has not ")
    assert gone.err.strip().endswith(
        "the study is safe in it: run the same command again once it is back"
    )
    resumed = forked.run(*command, "--study", study)
    assert resumed.code == 0, resumed.err
    rows = read_trials(run_dir)
    _assert_each_trial_recorded_once(rows, trials=3)
    assert [r["state"] for r in rows if r["number"] == "1"] == ["FAIL"]
    retried = [r for r in rows if r["optimizer.lr"] == rows[1]["optimizer.lr"]]
    assert [r["state"] for r in retried] == ["FAIL", "COMPLETE"]  # retried, once
