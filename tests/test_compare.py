"""trainlab.compare: variants × seeds, the same lr-tuning budget, failures counted."""

from __future__ import annotations

import csv
import json
import math

import pytest

from trainlab.compare import CompareError, compare, format_comparison, lr_grid
from trainlab.config import ConfigError
from trainlab.report import write_report
from trainlab.train.rundir import RunError
from trainlab.variants import VaryError

from tables import write_table_config, write_table_csv


@pytest.fixture
def config(tmp_path):
    return write_table_config(tmp_path, write_table_csv(tmp_path, n=150))


SHORT = ["train.epochs=2"]


# --------------------------------------------------------------------------- lr grid


def test_lr_grid_is_log_spaced_around_the_center():
    grid = lr_grid(1e-3, 3)
    assert grid == [3.16e-05, 1e-3, 0.0316]
    assert len(lr_grid(1e-2, 5)) == 5


# --------------------------------------------------------------------------- validation


def test_bad_arguments_fail_before_training(config, tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(CompareError, match="seeds"):
        compare(config, ["model.dropout=0"], seeds=0, out=out)
    with pytest.raises(CompareError, match="tune_lr"):
        compare(config, ["model.dropout=0"], tune_lr=1, out=out)
    with pytest.raises(CompareError, match="optimizer.lr"):
        compare(config, ["optimizer.lr=0.1,0.01"], tune_lr=2, out=out)
    with pytest.raises(VaryError, match="model.dropout="):
        compare(config, ["model.dropout="], out=out)
    # an unknown key in the second variant: the config's own error, nothing trained
    with pytest.raises(ConfigError, match="bogus"):
        compare(config, ["optimizer.name=adam,sgd", "optimizer.bogus=1"], out=out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--vary", "optimizer.name"], "--vary 'optimizer.name': expected KEY=SPEC"),
        (["--vary", "model.dropout=0,,0.5"], "--vary 'model.dropout=0,,0.5': an empty value"),
        (["--vary", "model.dropout=0", "--seeds", "0"], "seeds must be at least 1"),
    ],
)
def test_a_bad_argument_is_a_one_line_cli_error(config, tmp_path, run_cli, args, says):
    out = tmp_path / "cmp"
    code, _, err = run_cli("compare", str(config), *args, "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"trainlab: error: {says}")
    assert not out.exists()


# --------------------------------------------------------------------------- runs


def test_two_variants_two_seeds(config, tmp_path):
    out = tmp_path / "cmp"
    result = compare(config, ["model.dropout=0,0.5"], seeds=2, out=out, overrides=SHORT, target=0.0)
    assert [v["name"] for v in result["variants"]] == ["model.dropout=0", "model.dropout=0.5"]
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("metrics.jsonl"))
    assert runs == [
        "model.dropout=0.5/seed0",
        "model.dropout=0.5/seed1",
        "model.dropout=0/seed0",
        "model.dropout=0/seed1",
    ]
    assert result["metric"] == "val_accuracy"
    for v in result["variants"]:
        s = v["summary"]
        assert s["runs"] == 2 and s["diverged"] == 0
        finals = [r["final_val"] for r in v["runs"]]
        assert s["final_val"]["mean"] == pytest.approx(sum(finals) / 2)
        assert s["best_val"]["mean"] >= s["final_val"]["mean"] - 1e-12
        assert 0 <= s["test"]["mean"] <= 1
        assert s["epochs_to_target"]["mean"] == 1  # target 0: reached at once
    table = format_comparison(result)
    assert "±" in table and "model.dropout=0.5" in table and "epochs to 0" in table

    saved = json.loads((out / "compare.json").read_text())
    assert saved["variants"][1]["summary"] == result["variants"][1]["summary"]
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["model.dropout"] for r in rows] == ["0", "0.5"]
    assert (out / "curves.png").stat().st_size > 1000
    # the comparison page (the CLI renders it): seed 0 of each variant
    assert result["report_runs"] == [
        str(out / "model.dropout=0/seed0"),
        str(out / "model.dropout=0.5/seed0"),
    ]
    assert saved["report_runs"] == result["report_runs"] and "report" not in saved
    assert not (out / "report.html").exists()
    report = write_report(result["report_runs"], out / "report.html").read_text()
    assert "comparison of 2 runs" in report


def test_tune_lr_picks_the_best_validation_lr(config, tmp_path):
    out = tmp_path / "cmp"
    result = compare(config, ["optimizer.name=adam,sgd"], tune_lr=3, out=out, overrides=SHORT)
    saved = json.loads((out / "compare.json").read_text())
    for v, center in zip(saved["variants"], (1e-3, 1e-2)):
        grid = v["lr_grid"]
        assert [g["lr"] for g in grid] == lr_grid(center, 3)
        assert max(g["val"] for g in grid) == next(g["val"] for g in grid if g["lr"] == v["lr"])
        assert len(v["runs"]) == 1 and v["runs"][0]["lr"] == v["lr"]  # seed 0 reused
        for g in grid:
            assert (out / v["name"] / f"lr={g['lr']:g}" / "seed0" / "metrics.jsonl").is_file()
    assert len(list(out.rglob("metrics.jsonl"))) == 6
    assert "lr" in format_comparison(result).splitlines()[0]


def test_a_diverged_variant_is_counted_not_dropped(config, tmp_path):
    out = tmp_path / "cmp"
    result = compare(
        config,
        ["optimizer.lr=1e-3,1e6"],
        out=out,
        overrides=[*SHORT, "optimizer.name=sgd", "data.preprocess=[]"],
    )
    ok, bad = result["variants"]
    assert bad["name"] == "optimizer.lr=1e6"
    assert ok["summary"]["diverged"] == 0
    assert bad["summary"]["runs"] == 1 and bad["summary"]["diverged"] == 1
    run = bad["runs"][0]
    assert run["diverged"] and "training loss" in run["error"]
    assert run["final_val"] == 0.0 and bad["summary"]["test"]["mean"] == 0.0
    assert (out / "optimizer.lr=1e6" / "seed0").is_dir()
    table = format_comparison(result)
    assert "optimizer.lr=1e6" in table
    assert table.splitlines()[3].split()[1:3] == ["1", "1"]  # runs, diverged
    assert (out / "curves.png").is_file() and ok["runs"][0]["run_dir"] in result["report_runs"]
    assert math.isfinite(ok["summary"]["final_val"]["mean"])


def test_an_existing_output_directory_is_not_overwritten(config, tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "x").write_text("")
    with pytest.raises(RunError, match="not empty"):
        compare(config, ["model.dropout=0"], out=out, overrides=SHORT)
