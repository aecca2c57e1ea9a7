"""The diagnosis read off REAL training runs on MNIST-1D, not only synthetic curves.

Each run is a short `trainlab fit` of the MNIST-1D MLP example (a few seconds each).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainlab.run import diagnose_run, fit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist1d_mlp.yaml"
CNN = EXAMPLE.with_name("mnist1d_cnn.yaml")  # 96% on MNIST-1D: a good configuration
PLAIN = ["model.norm=none", "model.dropout=0"]  # the paper's MLP: no batch norm, no dropout


def _fit(tmp_path, name, overrides, example=EXAMPLE):
    summary = fit(example, overrides, out=tmp_path / name, quiet=True, echo=lambda _: None)
    history = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return summary, history, {f["kind"] for f in summary["diagnosis"]}


def test_an_mlp_without_dropout_trained_long_reads_as_overfitting_at_the_right_epoch(tmp_path):
    summary, history, kinds = _fit(tmp_path, "overfit", [*PLAIN, "train.epochs=60"])
    assert "overfitting" in kinds, summary["diagnosis"]
    finding = next(f for f in summary["diagnosis"] if f["kind"] == "overfitting")
    val_losses = [h["val_loss"] for h in history]
    best = 1 + val_losses.index(min(val_losses))
    assert abs(finding["evidence"]["best_epoch"] - best) <= 2, (finding, best)
    assert str(finding["evidence"]["best_epoch"]) in finding["advice"]
    # the diagnosis is read again from the run directory alone
    assert "overfitting" in {f.kind for f in diagnose_run(tmp_path / "overfit")}


def test_sgd_at_learning_rate_10_reads_as_diverged_or_too_high(tmp_path):
    summary, _, kinds = _fit(
        tmp_path, "high", [*PLAIN, "optimizer.name=sgd", "optimizer.lr=10", "train.epochs=10"]
    )
    assert kinds & {"diverged", "lr_too_high"}, summary["diagnosis"]
    assert "healthy" not in kinds


def test_sgd_at_learning_rate_1e_5_reads_as_too_low(tmp_path):
    summary, _, kinds = _fit(
        tmp_path, "low", [*PLAIN, "optimizer.name=sgd", "optimizer.lr=1e-5", "train.epochs=20"]
    )
    assert kinds & {"lr_too_low", "underfitting"}, summary["diagnosis"]
    assert "healthy" not in kinds


def test_a_good_configuration_reads_as_healthy_with_no_false_alarm(tmp_path):
    summary, _, kinds = _fit(tmp_path, "good", ["train.epochs=20"], example=CNN)
    assert kinds and kinds <= {"healthy", "not_converged"}, summary["diagnosis"]


@pytest.mark.parametrize("rule", ["valley"])
def test_the_lr_finder_suggests_a_good_adam_rate_for_the_mnist1d_mlp(tmp_path, rule):
    summary = fit(
        EXAMPLE,
        ["optimizer.lr=auto", "train.epochs=60"],
        out=tmp_path / "auto",
        quiet=True,
        echo=lambda _: None,
    )
    found = json.loads((tmp_path / "auto" / "lr_find.json").read_text())
    assert found["rule"] == rule
    assert 1e-3 <= found["suggestion"] <= 3e-2, found["message"]
    assert (tmp_path / "auto" / "lr_find.png").stat().st_size > 0
    assert summary["test"]["accuracy"] >= 0.60
