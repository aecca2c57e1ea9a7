"""`trainlab fit` end to end: the run directory, resume, preprocessing, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.run import fit
from trainlab.train import Checkpoint, load_checkpoint

from tables import write_table_config, write_table_csv


def test_fit_on_a_csv_writes_the_run_directory_and_a_summary(tmp_path, run_cli):
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    run_dir = tmp_path / "run"
    code, out, err = run_cli("fit", str(config), "--out", str(run_dir), "--quiet")
    assert code == 0, err
    assert f"run directory: {run_dir}" in out and "test" in out
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "split.json", "metrics.jsonl", "checkpoints", "summary.json"} <= names
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"last.pt", "best.pt"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) >= {
        "run_dir",
        "best_epoch",
        "epochs_run",
        "train",
        "val",
        "test",
        "diagnosis",
    }
    assert summary["epochs_run"] == 4 and summary["test"]["accuracy"] > 0.6
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    split = json.loads((run_dir / "split.json").read_text())
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == 240


def test_preprocessing_is_fitted_on_the_training_split_only(tmp_path):
    csv = write_table_csv(tmp_path)
    run_dir = tmp_path / "run"
    fit(write_table_config(tmp_path, csv), out=run_dir, quiet=True, echo=lambda s: None)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")["preprocess"]
    train = json.loads((run_dir / "split.json").read_text())["train"]
    table = np.loadtxt(csv, delimiter=",", skiprows=1)[:, :3]
    mean = next(v for k, v in state.items() if k.endswith("mean_"))
    np.testing.assert_allclose(mean.numpy(), table[train].mean(axis=0), rtol=1e-6)
    assert not np.allclose(mean.numpy(), table.mean(axis=0), rtol=1e-6)


class _Killed(Exception):
    pass


def test_two_epochs_kill_and_resume_equal_four_epochs_straight(tmp_path, monkeypatch):
    csv = write_table_csv(tmp_path)
    config = write_table_config(tmp_path, csv)
    quiet = dict(quiet=True, echo=lambda s: None)
    fit(config, out=tmp_path / "straight", **quiet)

    save_last = Checkpoint.save_last

    def save_then_die(self, trainer):
        save_last(self, trainer)
        if trainer.epoch == 2:
            raise _Killed

    monkeypatch.setattr(Checkpoint, "save_last", save_then_die)
    with pytest.raises(_Killed):
        fit(config, out=tmp_path / "killed", **quiet)
    monkeypatch.undo()
    torch.manual_seed(999)  # a fresh process would not share the first run's RNG state
    summary = fit(None, resume=tmp_path / "killed", **quiet)
    assert summary["epochs_run"] == 4

    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["trainer"]
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["trainer"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]
    straight_log = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    resumed_log = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in straight_log]
    strip2 = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in resumed_log]
    assert strip == strip2


def test_fit_errors_are_one_line_with_exit_status_2(tmp_path, run_cli):
    csv = write_table_csv(tmp_path)
    (tmp_path / "empty").mkdir()
    cases = [
        (
            ["fit", str(write_table_config(tmp_path, csv)), "--set", "model.hiden=[3]"],
            "model.hiden: unknown key; did you mean 'hidden'?",
        ),
        (["fit", str(tmp_path / "missing.yaml")], "config file not found"),
        (["fit", str(write_table_config(tmp_path, tmp_path / "nope.csv"))], "nope.csv"),
        (["fit", "--resume", str(tmp_path / "empty")], "no config.yaml"),
        (["fit"], "CONFIG"),
    ]
    for argv, culprit in cases:
        code, out, err = run_cli(*argv, "--quiet")
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and culprit in err and "Traceback" not in err


def test_an_existing_run_directory_is_not_overwritten(tmp_path, run_cli):
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    code, _, err = run_cli("fit", str(config), "--out", str(tmp_path / "run"))
    assert code == 2 and "already exists" in err
    assert (tmp_path / "run" / "precious.txt").read_text() == "keep me"


def test_a_diverging_run_stops_with_advice_and_exit_2(tmp_path, run_cli):
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    code, _, err = run_cli(
        "fit",
        str(config),
        "--out",
        str(tmp_path / "run"),
        "--set",
        "optimizer.name=sgd",
        "--set",
        "optimizer.lr=1e6",
        "--set",
        "data.preprocess=[]",
        "--quiet",
    )
    assert code == 2 and "learning rate is probably too high" in err
    code, out, _ = run_cli("diagnose", str(tmp_path / "run"))
    assert code == 0 and "diverged" in out


def test_problems_found_while_building_leave_no_run_directory(tmp_path, run_cli):
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    cases = [
        (["--set", "model.norm=instance"], "model: "),
        (["--set", "train.monitor=val_r2"], "train.monitor: 'val_r2' is not logged"),
        (
            ["--set", "data.split.val=0", "--set", "train.early_stopping={metric: val_loss}"],
            "train.early_stopping.metric: 'val_loss' is not logged",
        ),
    ]
    for extra, culprit in cases:
        out = tmp_path / "never"
        code, _, err = run_cli("fit", str(config), "--out", str(out), *extra)
        assert code == 2 and culprit in err and err.count("\n") == 1, err
        assert not out.exists()


def test_resume_refuses_to_change_what_is_trained(tmp_path, run_cli):
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    fit(config, out=tmp_path / "run", quiet=True, echo=lambda s: None)
    code, _, err = run_cli("fit", "--resume", str(tmp_path / "run"), "--set", "optimizer.lr=0.001")
    assert code == 2 and "--set optimizer.lr: a resumed run continues as it was configured" in err
    code, out, _ = run_cli(
        "fit", "--resume", str(tmp_path / "run"), "--set", "train.epochs=6", "--quiet"
    )
    assert code == 0 and "resuming after epoch 4 of 6" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_run"] == 6


def test_a_run_writes_its_summary_once_and_no_report(tmp_path, monkeypatch):
    # one writer: RunDir.write_summary, called once when the run is done; rendering
    # report.html is the CLI's job, not the procedure's
    from trainlab import atomic

    written = []
    real = atomic.replace_atomically

    def counting(path, write):
        written.append(Path(path).name)
        return real(path, write)

    monkeypatch.setattr(atomic, "replace_atomically", counting)
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    summary = fit(config, ["train.epochs=2"], out=tmp_path / "run", quiet=True)
    assert written.count("summary.json") == 1
    assert not (tmp_path / "run" / "report.html").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == json.loads(
        json.dumps(summary)
    )


def test_the_cli_renders_the_report_of_a_fit(tmp_path, run_cli):
    config = write_table_config(tmp_path, write_table_csv(tmp_path))
    code, out, err = run_cli("fit", str(config), "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    report = tmp_path / "run" / "report.html"
    assert f"report: {report}" in out and report.is_file()
    assert "report" not in json.loads((tmp_path / "run" / "summary.json").read_text())
