"""The run-directory type: one owner of the layout, its readers and writers."""

from __future__ import annotations

import json
import math

import pytest

from trainlab.errors import UserError
from trainlab.train.rundir import RunDir, RunError, require_empty


def _write_metrics(rd: RunDir, lines: list[str]) -> None:
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.metrics.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_paths_are_named_once_under_the_run_directory(tmp_path):
    rd = RunDir(tmp_path / "r")
    assert rd.config == tmp_path / "r" / "config.yaml"
    assert rd.split.name == "split.json" and rd.metrics.name == "metrics.jsonl"
    assert rd.last == tmp_path / "r" / "checkpoints" / "last.pt"
    assert rd.best.parent == rd.checkpoints and rd.summary.name == "summary.json"
    assert rd.report.name == "report.html" and rd.file("lr_find.json").parent == rd.path


def test_a_new_run_refuses_a_directory_that_is_not_empty(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(RunError, match=r"used already exists and is not empty; .*--resume"):
        RunDir.new("n", tmp_path / "used")
    assert RunDir.new("n", tmp_path / "fresh").path == tmp_path / "fresh"
    (tmp_path / "empty").mkdir()
    assert RunDir.new("n", tmp_path / "empty").path == tmp_path / "empty"
    assert not (tmp_path / "fresh").exists()  # chosen, not made


def test_require_empty_refuses_a_file_and_names_what_it_is(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunError, match="sweep directory .*f already exists"):
        require_empty(tmp_path / "f", what="sweep directory")


def test_a_new_run_without_out_is_timestamped_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rd = RunDir.new("digits")
    assert rd.path.parent.name == "runs" and rd.path.name.startswith("digits-")


def test_create_makes_the_checkpoints_directory(tmp_path):
    rd = RunDir(tmp_path / "a" / "b").create()
    assert rd.checkpoints.is_dir()


def test_strict_history_names_the_file_and_the_bad_line(tmp_path):
    rd = RunDir(tmp_path / "r")
    _write_metrics(rd, ['{"epoch": 1, "train_loss": 1.0}', "{half", "[1]"])
    with pytest.raises(RunError, match=r"metrics.jsonl, line 2: not a JSON object"):
        rd.read_history()
    assert rd.read_history(strict=False) == [{"epoch": 1, "train_loss": 1.0}]
    assert rd.unreadable_lines() == [2, 3]


def test_strict_history_of_a_directory_without_metrics_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is not a run directory: no metrics.jsonl"):
        RunDir(tmp_path).read_history()
    assert RunDir(tmp_path).read_history(strict=False) == []
    assert not RunDir(tmp_path).is_run()


def test_history_keeps_nan_and_infinity_as_json_writes_them(tmp_path):
    rd = RunDir(tmp_path)
    _write_metrics(rd, [json.dumps({"epoch": 1, "val_loss": math.nan, "lr": math.inf})])
    (h,) = rd.read_history()
    assert math.isnan(h["val_loss"]) and h["lr"] == math.inf


def test_summary_is_written_atomically_and_read_back(tmp_path):
    rd = RunDir(tmp_path).create()
    rd.write_summary({"task": "classification", "n_classes": 3, "x": 0.5})
    assert rd.read_summary() == {"task": "classification", "n_classes": 3, "x": 0.5}
    assert rd.summary.read_text().endswith("}\n")
    assert not list(tmp_path.glob(".summary.json.*"))  # no temporary file left


def test_read_json_says_why_a_file_is_missing_or_unreadable(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.read_json("summary.json") == (None, "no summary.json")
    rd.summary.write_text("[1, 2]")
    assert rd.read_json("summary.json") == (None, "summary.json is not a JSON object")
    rd.summary.write_text("{broken")
    value, why = rd.read_json("summary.json")
    assert value is None and why.startswith("summary.json cannot be read")


def test_the_task_comes_from_the_summary_else_from_the_curves(tmp_path):
    rd = RunDir(tmp_path)
    _write_metrics(rd, ['{"epoch": 1, "train_loss": 1.0, "train_r2": 0.1}'])
    assert rd.task() == ("regression", None)
    rd.write_summary({"task": "classification", "n_classes": 4})
    assert rd.task() == ("classification", 4)


def test_a_write_that_fails_is_a_user_error_naming_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rd = RunDir(blocker / "run")  # its parent is a file: nothing can be written there
    with pytest.raises(UserError, match=r"cannot write .*summary.json"):
        rd.write_summary({})


def test_one_summary_schema_for_runs_trained_alone_or_batched():
    from trainlab.train.rundir import make_summary

    history = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}]
    common = dict(
        run_dir="r", name="n", task="regression", n_classes=None, history=history,
        monitor="val_loss", steps=20, seconds=1.234, diagnosis=[],
        evaluated={"train": {"loss": 0.3}, "val": {"loss": 0.4}},
    )  # fmt: skip
    alone, batched = make_summary(**common), make_summary(**common, batched=True)
    assert list(alone) == list(batched)  # the same keys, in the same order
    assert alone["best_epoch"] == 2 and alone["epochs_run"] == 2 and alone["seconds"] == 1.23
    assert alone["test"] == {} and alone["batched"] is False and batched["batched"] is True
