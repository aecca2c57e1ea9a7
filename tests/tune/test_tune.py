"""`trainlab tune`: the protocol, the journal storage, workers, resume, dead workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

import trainlab.atomic as atomic_module
import trainlab.run as run_module
from trainlab.tune import storage as storage_module
from trainlab.tune import tune
from trainlab.tune import workers as workers_module

from tables import read_trials, write_tune_config


def _config(tmp_path, trials=6, epochs=6, extra=""):
    return write_tune_config(
        tmp_path,
        trials=trials,
        epochs=epochs,
        space={"optimizer.lr": "loguniform(1e-4, 1e-1)", "model.dropout": "uniform(0.0, 0.6)"},
        extra=extra,
    )


def _start_coordinator(config, run_dir, *extra: str) -> subprocess.Popen:
    """`trainlab tune CONFIG --workers 2` in a process of its own, as a user starts it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainlab",
            "tune",
            str(config),
            "--out",
            str(run_dir),
            "--workers",
            "2",
            *extra,
            "--quiet",
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_a_worker_mid_trial(coordinator, study_name, storage) -> int | None:
    """SIGKILL the worker process of the first running trial seen; return its number."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            study = optuna.load_study(study_name=study_name, storage=storage())
        except KeyError:
            continue
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            pid = t.user_attrs.get("worker_pid")
            if pid and pid != coordinator.pid:
                os.kill(pid, signal.SIGKILL)
                return t.number
    return None


def _quiet():
    return dict(quiet=True, echo=lambda _: None)


def test_a_study_tries_the_defaults_once_first_and_tests_the_winner_once(tmp_path, monkeypatch):
    parts_seen = []
    real_build = run_module.build

    def spy(config, split=None, parts=("train", "val", "test")):
        parts_seen.append(tuple(parts))
        return real_build(config, split, parts)

    monkeypatch.setattr(run_module, "build", spy)
    monkeypatch.setattr(workers_module, "build", spy)
    summary = tune(_config(tmp_path), out=tmp_path / "study", **_quiet())

    # the test split is read only by the last build: the final retraining
    assert all("test" not in p for p in parts_seen[:-1]) and "test" in parts_seen[-1]
    assert len(parts_seen) == 6 + 1
    rows = read_trials(tmp_path / "study")
    assert rows[0]["default"] == "True" and float(rows[0]["optimizer.lr"]) == 1e-3
    assert float(rows[0]["model.dropout"]) == 0.5
    assert sum(r["default"] == "True" for r in rows) == 1
    assert summary["trials"] == {"complete": 6, "pruned": 0, "failed": 0, "running": 0}
    assert summary["best_value"] >= summary["default_value"]
    assert set(summary["best_params"]) == {"optimizer.lr", "model.dropout"}
    assert set(summary["test"]) == {"loss", "accuracy"}
    assert set(summary["importances"]) == {"optimizer.lr", "model.dropout"}
    final = json.loads((tmp_path / "study" / "final" / "summary.json").read_text())
    assert final["test"] == summary["test"]


def test_a_study_writes_each_summary_json_once_and_the_cli_renders_the_report(
    tmp_path, monkeypatch, capsys
):
    from trainlab.cli import main

    writes: Counter = Counter()
    real_replace, real_write_text = atomic_module.replace_atomically, Path.write_text

    def replace_atomically(path, write):
        writes[Path(path)] += 1
        return real_replace(path, write)

    def write_text(self, *args, **kwargs):
        writes[self] += 1
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(atomic_module, "replace_atomically", replace_atomically)
    monkeypatch.setattr(Path, "write_text", write_text)
    study = tmp_path / "study"
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", str(_config(tmp_path, trials=2, epochs=1)), "--out", str(study), "--quiet"])
    assert exit_info.value.code == 0

    summaries = {path: n for path, n in writes.items() if path.name == "summary.json"}
    assert summaries == {study / "summary.json": 1, study / "final" / "summary.json": 1}
    out = capsys.readouterr().out
    assert f"report: {study / 'report.html'}" in out and (study / "report.html").is_file()
    assert "report" not in json.loads((study / "summary.json").read_text())


def test_running_the_same_command_again_resumes_the_study(tmp_path):
    config = _config(tmp_path, trials=3)
    tune(config, out=tmp_path / "study", **_quiet())
    summary = tune(config, out=tmp_path / "study", trials=5, **_quiet())
    rows = read_trials(tmp_path / "study")
    assert len(rows) == 5 and summary["trials"]["complete"] == 5
    assert sum(r["default"] == "True" for r in rows) == 1  # not enqueued again


def test_two_workers_on_the_journal_record_every_trial_once(tmp_path):
    summary = tune(_config(tmp_path, trials=8), out=tmp_path / "study", workers=2, **_quiet())
    rows = read_trials(tmp_path / "study")
    numbers = [int(r["number"]) for r in rows]
    assert len(numbers) == len(set(numbers)) and len(rows) >= 8
    assert sum(r["default"] == "True" for r in rows) == 1
    assert summary["trials"]["failed"] == 0 and summary["trials"]["complete"] >= 8


def test_a_worker_killed_mid_trial_has_its_trial_retried(tmp_path):
    config = _config(tmp_path, trials=6, epochs=60)
    run_dir = tmp_path / "study"
    coordinator = _start_coordinator(config, run_dir)
    journal = run_dir / storage_module.STORAGE_FILE

    def storage():
        if not journal.exists():
            raise KeyError("no journal yet")
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        )

    killed = _kill_a_worker_mid_trial(coordinator, "table-tune", storage)
    assert killed is not None, "no running trial was seen"
    out, err = coordinator.communicate(timeout=300)
    assert coordinator.returncode == 0, err
    assert "died" in out
    rows = read_trials(run_dir)
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert [int(r["number"]) for r in failed] == [killed]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trials"]["complete"] >= 6


def test_sqlite_with_several_workers_is_refused_naming_the_alternatives(tmp_path, capsys):
    from trainlab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "tune",
                str(_config(tmp_path)),
                "--workers",
                "2",
                "--storage",
                f"sqlite:///{tmp_path}/s.db",
                "--out",
                str(tmp_path / "study"),
            ]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "journal file" in err and "PostgreSQL" in err


def test_a_config_without_a_tune_section_is_a_clear_error(tmp_path, capsys):
    from trainlab.cli import main

    path = tmp_path / "plain.yaml"
    path.write_text("name: x\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", str(path)])
    assert exit_info.value.code == 2 and "no tune section" in capsys.readouterr().err


# --- the same on a real PostgreSQL (the Makefile's test target starts one) ------------------
def test_two_workers_on_postgresql_record_every_trial_once(tmp_path, postgres_db):
    summary = tune(
        _config(tmp_path, trials=6),
        out=tmp_path / "study",
        workers=2,
        storage=postgres_db,
        study_name="pg",
        **_quiet(),
    )
    rows = read_trials(tmp_path / "study")
    numbers = [int(r["number"]) for r in rows]
    assert len(numbers) == len(set(numbers)) and len(rows) >= 6
    assert sum(r["default"] == "True" for r in rows) == 1
    assert summary["trials"]["failed"] == 0 and summary["trials"]["complete"] >= 6
    study = optuna.load_study(study_name="pg", storage=postgres_db)
    assert len(study.trials) == len(rows)  # the database holds them, not a local file
    assert not (tmp_path / "study" / storage_module.STORAGE_FILE).exists()


def test_a_worker_killed_mid_trial_on_postgresql_is_retried_and_the_study_resumes(
    tmp_path, postgres_db
):
    config = _config(tmp_path, trials=5, epochs=60)
    run_dir = tmp_path / "study"
    coordinator = _start_coordinator(config, run_dir, "--storage", postgres_db, "--study", "pg")
    killed = _kill_a_worker_mid_trial(coordinator, "pg", lambda: postgres_db)
    assert killed is not None, "no running trial was seen"
    out, err = coordinator.communicate(timeout=300)
    assert coordinator.returncode == 0, err
    rows = read_trials(run_dir)
    assert [int(r["number"]) for r in rows if r["state"] == "FAIL"] == [killed]
    # every worker is gone: the same command with more trials resumes the study
    summary = tune(config, out=run_dir, trials=7, storage=postgres_db, study_name="pg", **_quiet())
    assert summary["trials"]["complete"] >= 7
    # one defaults trial (a retry of it, after a kill, replaces it)
    assert sum(r["default"] == "True" and r["state"] != "FAIL" for r in read_trials(run_dir)) == 1


def test_a_worker_joins_from_another_directory_with_the_split_from_the_study(tmp_path):
    """A machine with no copy of the study directory gets the split from the study."""
    config = _config(tmp_path, trials=3)
    tune(config, out=tmp_path / "study", **_quiet())
    journal = str(tmp_path / "study" / storage_module.STORAGE_FILE)
    assert (
        tune(config, out=tmp_path / "elsewhere", trials=5, storage=journal, join=True, **_quiet())
        is None
    )
    assert not (tmp_path / "elsewhere" / "split.json").exists()
    study = optuna.load_study(study_name="table-tune", storage=storage_module.open_storage(journal))
    assert len(study.trials) == 5


def test_a_space_where_every_trial_fails_stops_instead_of_looping(tmp_path, capsys):
    from trainlab.cli import main

    config = (
        _config(tmp_path, trials=3, epochs=2)
        .read_text()
        .replace("model.dropout: uniform(0.0, 0.6)", "model.dropout: uniform(1.0, 2.0)")
        .replace("optimizer.lr: loguniform(1e-4, 1e-1)\n", "")
    )
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", str(path), "--out", str(tmp_path / "study"), "--quiet"])
    assert (
        exit_info.value.code == 2 and "no trial of the study completed" in capsys.readouterr().err
    )
    rows = read_trials(tmp_path / "study")
    assert (
        all(r["state"] == "FAIL" for r in rows) and len(rows) == workers_module.MIN_FAILURES_TO_STOP
    )


def test_the_grid_sampler_takes_list_choices(tmp_path):
    path = write_tune_config(
        tmp_path,
        trials=4,
        epochs=2,
        space={"optimizer.lr": "[0.001, 0.01]", "model.hidden": "[[8], [16, 16]]"},
        extra="  sampler: grid\n",
    )
    summary = tune(path, out=tmp_path / "study", **_quiet())
    assert summary["trials"]["failed"] == 0 and summary["trials"]["complete"] >= 4
    assert summary["best_params"]["model.hidden"] in ([8], [16, 16])


def test_a_refused_start_leaves_no_study_directory(tmp_path, capsys):
    from trainlab.cli import main

    with pytest.raises(SystemExit):
        main(
            [
                "tune",
                str(_config(tmp_path)),
                "--workers",
                "2",
                "--storage",
                f"sqlite:///{tmp_path}/s.db",
                "--out",
                str(tmp_path / "study"),
            ]
        )
    assert not (tmp_path / "study").exists()


def test_resuming_with_another_config_is_refused(tmp_path):
    tune(_config(tmp_path, trials=2, epochs=2), out=tmp_path / "study", **_quiet())
    with pytest.raises(storage_module.TuneError, match="holds a study of another config"):
        tune(_config(tmp_path, trials=2, epochs=3), out=tmp_path / "study", **_quiet())
    # how long it runs may change
    tune(_config(tmp_path, trials=3, epochs=2), out=tmp_path / "study", **_quiet())


def test_a_database_error_does_not_print_the_password():
    with pytest.raises(storage_module.TuneError) as err:
        storage_module.open_storage("postgresql+psycopg://user:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(err.value) and "user:***@" in str(err.value)
