"""`trainlab lr-find`, `trainlab diagnose` and the diagnosis `trainlab fit` prints."""

from __future__ import annotations

import json

import pytest

from tables import write_table_config, write_table_csv


@pytest.fixture
def config(tmp_path):
    return write_table_config(tmp_path, write_table_csv(tmp_path))


def test_lr_find_prints_a_suggestion_and_writes_the_plot(tmp_path, config, run_cli):
    png = tmp_path / "curve.png"
    code, out, err = run_cli("lr-find", str(config), "--out", str(png), "--steps", "60")
    assert code == 0, err
    assert "suggested learning rate (valley):" in out and "--set optimizer.lr=" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_with_a_bad_rule_is_a_one_line_error(config, run_cli):
    code, _, err = run_cli("lr-find", str(config), "--rule", "flat")
    assert code == 2 and err.count("\n") == 1 and "rule" in err


def test_fit_prints_its_diagnosis_and_writes_it_into_the_summary(tmp_path, config, run_cli):
    code, out, err = run_cli("fit", str(config), "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["diagnosis"], "a diagnosis is always written"
    for finding in summary["diagnosis"]:
        assert {"kind", "severity", "evidence", "advice"} <= set(finding)
        assert finding["advice"] in out


def test_diagnose_reads_a_run_directory(tmp_path, config, run_cli):
    run_cli("fit", str(config), "--out", str(tmp_path / "run"), "--quiet")
    code, out, _ = run_cli("diagnose", str(tmp_path / "run"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert code == 0
    assert all(f["advice"] in out for f in summary["diagnosis"])


def test_diagnose_of_a_directory_that_is_no_run_is_a_one_line_error(tmp_path, run_cli):
    code, _, err = run_cli("diagnose", str(tmp_path))
    assert code == 2 and "no metrics.jsonl" in err and err.count("\n") == 1


def test_sanity_reports_layer_health_and_overfits_one_batch(config, run_cli):
    code, out, err = run_cli("diagnose", "--sanity", str(config))
    assert code == 0, out + err
    assert "fc1" in out and "overfit one batch of 32: passed" in out


def test_sanity_fails_with_a_learning_rate_of_zero(config, run_cli):
    code, out, _ = run_cli("diagnose", "--sanity", str(config), "--set", "optimizer.lr=0")
    assert code == 1 and "FAILED" in out
