"""The curve doctor reads synthetic learning curves the way C15a and C15b do."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from trainlab.diagnose import curves
from trainlab.diagnose.curves import KINDS, Finding, diagnose, format_findings

EPOCHS = np.arange(1, 41)


def make_history(
    train_loss,
    val_loss=None,
    train_score=None,
    val_score=None,
    task: str = "classification",
    lr: float = 0.01,
) -> list[dict]:
    """Per-epoch dicts with the Trainer's keys (``train_accuracy`` or ``train_mse`` and
    ``train_r2``; ``val_*`` only when given)."""
    score = "accuracy" if task == "classification" else "r2"
    history = []
    for i, loss in enumerate(train_loss):
        row = {"epoch": i + 1, "train_loss": float(loss)}
        if task == "regression":
            row["train_mse"] = float(loss)
        if train_score is not None:
            row[f"train_{score}"] = float(train_score[i])
        if val_loss is not None:
            row["val_loss"] = float(val_loss[i])
            if task == "regression":
                row["val_mse"] = float(val_loss[i])
        if val_score is not None:
            row[f"val_{score}"] = float(val_score[i])
        row["lr"] = lr
        row["seconds"] = 0.1
        history.append(row)
    return history


def noisy(values, rel: float, seed: int) -> np.ndarray:
    """Multiplicative Gaussian noise of relative size ``rel``."""
    rng = np.random.default_rng(seed)
    return np.asarray(values) * (1 + rel * rng.standard_normal(len(values)))


def kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


# --- the curves ------------------------------------------------------------------------------
def healthy_curves(e=EPOCHS):
    """Fast drop, then flat: train and validation converge together."""
    train = 0.15 + 2.15 * np.exp(-e / 4)
    val = 0.30 + 2.0 * np.exp(-e / 4)
    train_acc = 0.97 - 0.87 * np.exp(-e / 4)
    val_acc = 0.92 - 0.82 * np.exp(-e / 4)
    return train, val, train_acc, val_acc


def overfitting_curves(e=EPOCHS):
    """Validation loss lowest at epoch 12, then rising; train loss → 0, accuracy → 1."""
    train = 0.01 + 2.3 * np.exp(-e / 6)
    val = np.where(e <= 12, 0.41 + 0.004 * (e - 12) ** 2, 0.41 + 0.01 * (e - 12))
    train_acc = 1.0 - 0.9 * np.exp(-e / 6)
    val_acc = np.minimum(0.1 + 0.06 * e, 0.8)
    return train, val, train_acc, val_acc


def slow_linear_curves(e=EPOCHS):
    """Low learning rate: a slow, almost linear decrease from chance level."""
    train = 2.30 - 0.004 * e
    val = 2.31 - 0.004 * e
    acc = 0.10 + 0.002 * e
    return train, val, acc, acc - 0.01


def high_plateau_curves(e=EPOCHS):
    """High learning rate: a fast drop, then an oscillating high plateau."""
    train = 1.8 + 0.5 * np.exp(-e) + 0.09 * np.where(e % 2 == 0, 1.0, -1.0)
    val = 1.9 + 0.5 * np.exp(-e) + 0.12 * np.where(e % 3 == 0, 1.0, -0.5)
    acc = 0.28 + 0.03 * np.where(e % 2 == 0, -1.0, 1.0)
    return train, val, acc, acc - 0.02


def underfitting_curves(e=EPOCHS):
    """Too small a model: fast drop to a flat, poor level on both splits."""
    train = 1.60 + 0.4 * np.exp(-e / 3)
    val = 1.70 + 0.4 * np.exp(-e / 3)
    train_acc = 0.37 - 0.15 * np.exp(-e / 3)
    val_acc = 0.31 - 0.15 * np.exp(-e / 3)
    return train, val, train_acc, val_acc


# --- overfitting (C15b) ----------------------------------------------------------------------
def test_clean_overfitting_names_the_epoch_of_the_validation_minimum():
    findings = diagnose(make_history(*overfitting_curves()))
    assert kinds(findings) == ["overfitting"]
    (f,) = findings
    assert f.severity == "warning"
    assert f.evidence["best_epoch"] == 12
    assert f.evidence["val_loss_min"] == pytest.approx(0.41)
    assert f.evidence["rise"] >= curves.OVERFIT_RISE
    assert f.evidence["gap"] > curves.OVERFIT_GAP
    assert "stop at epoch 12" in f.advice
    assert "dropout" in f.advice and "weight decay" in f.advice
    assert "epoch 12" in f.message


@pytest.mark.parametrize("seed", range(8))
def test_overfitting_is_found_through_noise_near_the_true_minimum(seed):
    train, val, train_acc, val_acc = overfitting_curves()
    history = make_history(
        noisy(train, 0.02, seed), noisy(val, 0.05, seed + 100), train_acc, val_acc
    )
    (f,) = [f for f in diagnose(history) if f.kind == "overfitting"]
    assert abs(f.evidence["best_epoch"] - 12) <= 3  # 5 % noise on a curve this flat near 12
    assert f"stop at epoch {f.evidence['best_epoch']}" in f.advice


def test_a_large_gap_alone_is_overfitting_without_a_stop_epoch():
    train, val, train_acc, _ = healthy_curves()
    train_acc = np.minimum(train_acc + 0.03, 1.0)
    val_acc = np.full(len(EPOCHS), 0.70)  # flat validation loss, but far below train accuracy
    (f,) = diagnose(make_history(train, val, train_acc, val_acc))
    assert f.kind == "overfitting"
    assert "best_epoch" not in f.evidence and "stop at" not in f.advice
    assert f.evidence["gap"] == pytest.approx(0.30, abs=0.01)


def test_a_validation_loss_rising_with_the_train_loss_is_not_overfitting():
    # Both rise together after epoch 12: instability, not a model that memorizes.
    train, val, _, _ = overfitting_curves()
    train = np.where(EPOCHS <= 12, train, train[11] + 0.01 * (EPOCHS - 12))
    assert "overfitting" not in kinds(diagnose(make_history(train, val)))


# --- healthy: no false alarms ------------------------------------------------------------------
def test_a_healthy_converging_curve_is_exactly_healthy():
    findings = diagnose(make_history(*healthy_curves()))
    assert kinds(findings) == ["healthy"]
    (f,) = findings
    assert f.severity == "info"
    assert f.evidence["best_metric"] == "val_accuracy"
    assert f.evidence["val_accuracy"] == pytest.approx(0.92, abs=0.01)


@pytest.mark.parametrize("seed", range(8))
def test_a_noisy_healthy_curve_is_still_exactly_healthy(seed):
    train, val, train_acc, val_acc = healthy_curves()
    history = make_history(
        noisy(train, 0.01, seed),
        noisy(val, 0.03, seed + 100),
        noisy(train_acc, 0.005, seed + 200),
        noisy(val_acc, 0.01, seed + 300),
    )
    assert kinds(diagnose(history)) == ["healthy"]


@pytest.mark.parametrize("seed", [77, 122, 141])
def test_noise_in_a_converged_validation_loss_is_not_read_as_still_improving(seed):
    # With these seeds the 3 % noise tilts the last third's fitted line down by ≥ 5 %; the
    # tilt is within two standard errors of its slope (TREND_T), so it is noise.
    train, val, train_acc, val_acc = healthy_curves()
    history = make_history(
        noisy(train, 0.01, seed),
        noisy(val, 0.03, seed + 100),
        noisy(train_acc, 0.005, seed + 200),
        noisy(val_acc, 0.01, seed + 300),
    )
    k = curves._last_third(len(EPOCHS))
    drop, t, improving = curves._trend(np.array([h["val_loss"] for h in history]), k)
    assert drop >= curves.FLAT_DROP and t < curves.TREND_T and not improving
    assert kinds(diagnose(history)) == ["healthy"]


def test_a_run_still_improving_is_not_converged():
    e = EPOCHS
    train, val = 0.2 + 2.0 * np.exp(-e / 25), 0.3 + 2.0 * np.exp(-e / 25)
    acc = 0.9 - 0.3 * np.exp(-e / 25)
    (f,) = diagnose(make_history(train, val, acc, acc - 0.03))
    assert f.kind == "not_converged" and f.severity == "info"
    assert f.evidence["drop_last_third"] >= curves.FLAT_DROP
    assert "train longer" in f.advice


# --- learning rate (C15a) ----------------------------------------------------------------------
def test_a_nan_in_the_middle_is_divergence():
    train, val, train_acc, val_acc = healthy_curves()
    history = make_history(train, val, train_acc, val_acc, lr=0.5)
    for row in history[20:]:
        row["train_loss"] = math.nan
    findings = diagnose(history)
    assert findings[0].kind == "diverged" and findings[0].severity == "error"
    assert findings[0].evidence["epoch"] == 21
    assert "lower the learning rate 3–10×" in findings[0].advice
    assert "0.05–0.17" in findings[0].advice  # from the logged lr 0.5


def test_an_infinite_validation_loss_is_divergence():
    history = make_history(*healthy_curves())
    history[-1]["val_loss"] = math.inf
    assert kinds(diagnose(history))[0] == "diverged"


def test_an_exploding_loss_without_nan_is_divergence():
    e = EPOCHS
    train = np.where(e <= 10, 2.3 - 0.1 * e, 1.3 * 1.3 ** (e - 10))
    (f, *_) = diagnose(make_history(train))
    assert f.kind == "diverged"
    assert f.evidence["ratio"] > curves.DIVERGE_FACTOR


def test_a_loss_that_climbs_back_up_gives_back_its_progress_and_diverged():
    e = EPOCHS
    train = np.where(e <= 20, 2.3 - 0.05 * e, 1.3 + 0.05 * (e - 20))  # back to 2.3
    (f, *_) = diagnose(make_history(train))
    assert f.kind == "diverged"
    assert f.evidence["given_back"] >= curves.GIVE_BACK


def test_a_slow_linear_decrease_means_the_learning_rate_is_too_low():
    findings = diagnose(make_history(*slow_linear_curves(), lr=1e-3))
    assert kinds(findings) == ["lr_too_low"]
    (f,) = findings
    assert f.evidence["linear_r2"] >= curves.SLOW_LINEAR_R2
    assert f.evidence["total_drop"] < curves.SLOW_MAX_DROP
    assert "raise the learning rate" in f.advice and "0.003–0.01" in f.advice


@pytest.mark.parametrize("seed", range(8))
def test_the_learning_rate_and_capacity_rules_hold_through_noise(seed):
    train, val, acc, val_acc = slow_linear_curves()
    history = make_history(noisy(train, 0.002, seed), noisy(val, 0.01, seed + 1), acc, val_acc)
    assert kinds(diagnose(history)) == ["lr_too_low"]
    train, val, acc, val_acc = high_plateau_curves()
    history = make_history(noisy(train, 0.01, seed), noisy(val, 0.02, seed + 1), acc, val_acc)
    assert kinds(diagnose(history)) == ["lr_too_high"]
    train, val, acc, val_acc = underfitting_curves()
    history = make_history(noisy(train, 0.005, seed), noisy(val, 0.02, seed + 1), acc, val_acc)
    assert kinds(diagnose(history)) == ["underfitting"]


def test_a_slow_linear_decrease_at_chance_level_is_not_divergence():
    # SGD lr 1e-5 sits at ln C and creeps down: too low, not diverged.
    train, val, acc, val_acc = slow_linear_curves()
    train = math.log(10) + 0.01 - 1e-4 * EPOCHS
    assert kinds(diagnose(make_history(train, val, acc, val_acc), n_classes=10)) == ["lr_too_low"]


def test_a_high_oscillating_plateau_means_the_learning_rate_is_too_high():
    findings = diagnose(make_history(*high_plateau_curves(), lr=0.1))
    assert kinds(findings) == ["lr_too_high"]  # underfitting is explained by the lr
    (f,) = findings
    assert f.evidence["oscillation_cv"] >= curves.OSCILLATION_CV
    assert f.evidence["fraction_up"] >= curves.OSCILLATION_UPS
    assert "lower the learning rate" in f.advice


def test_an_early_explosion_then_a_stall_at_chance_is_too_high_and_with_n_classes_diverged():
    # SGD lr 10 on MNIST-1D: epoch 1 at 11.5, then stuck at ~2.35 with 10% accuracy.
    train = noisy(np.full(len(EPOCHS), 2.35), 0.003, 0)
    train[0] = 11.5
    acc = np.full(len(EPOCHS), 0.10)
    history = make_history(train, train + 0.05, acc, acc, lr=10.0)
    assert kinds(diagnose(history)) == ["lr_too_high"]
    assert kinds(diagnose(history, n_classes=10)) == ["diverged", "lr_too_high"]


# --- underfitting (C15b) -----------------------------------------------------------------------
def test_both_poor_and_close_together_is_underfitting():
    findings = diagnose(make_history(*underfitting_curves()))
    assert kinds(findings) == ["underfitting"]
    (f,) = findings
    assert f.evidence["train_accuracy"] < curves.UNDERFIT_ACCURACY
    assert abs(f.evidence["gap"]) < curves.OVERFIT_GAP
    assert "larger model" in f.advice


def test_underfitting_from_the_loss_alone_needs_n_classes():
    train, val, _, _ = underfitting_curves()
    history = make_history(train, val)  # no accuracy logged
    assert "underfitting" not in kinds(diagnose(history))
    assert kinds(diagnose(history, task="classification", n_classes=10)) == ["underfitting"]


# --- short runs, missing validation, regression ------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2])
def test_one_or_two_epochs_are_too_short_to_judge(n):
    train, val, train_acc, val_acc = overfitting_curves()
    findings = diagnose(make_history(train[:n], val[:n], train_acc[:n], val_acc[:n]))
    assert kinds(findings) == ["too_short"]
    assert findings[0].evidence["epochs"] == n


def test_a_nan_in_a_two_epoch_run_is_still_divergence():
    history = make_history([2.3, math.nan])
    assert kinds(diagnose(history)) == ["diverged"]


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_very_short_runs_do_not_crash(n):
    for build in (healthy_curves, overfitting_curves, high_plateau_curves, slow_linear_curves):
        findings = diagnose(make_history(*(c[:n] for c in build())))
        assert findings and all(f.kind in KINDS for f in findings)


def test_without_validation_only_the_train_rules_run_and_say_so():
    train, _, train_acc, _ = overfitting_curves()
    findings = diagnose(make_history(train, train_score=train_acc))
    assert kinds(findings) == ["healthy"]  # no validation: overfitting cannot be seen
    assert "missing" in findings[0].evidence["validation"]
    findings = diagnose(make_history(slow_linear_curves()[0]))
    assert kinds(findings) == ["lr_too_low"]
    assert "missing" in findings[0].evidence["validation"]


def test_regression_histories_use_mse_and_r2():
    e = EPOCHS
    train, val = 400 + 6e4 * np.exp(-e), 410 + 1.5e4 * np.exp(-e)
    r2_train, r2_val = 0.96 - 6 * np.exp(-e), 0.967 - 1.2 * np.exp(-e)
    findings = diagnose(make_history(train, val, r2_train, r2_val, task="regression"))
    assert kinds(findings) == ["healthy"]
    assert findings[0].evidence["best_metric"] == "val_loss"
    assert "val_r2" in findings[0].evidence


def test_regression_with_a_poor_r2_on_both_splits_is_underfitting():
    e = EPOCHS
    train, val = 60 + 40 * np.exp(-e / 3), 62 + 40 * np.exp(-e / 3)
    r2 = 0.3 - 0.4 * np.exp(-e / 3)
    (f,) = diagnose(make_history(train, val, r2, r2 - 0.02, task="regression"))
    assert f.kind == "underfitting" and f.evidence["train_r2"] < curves.UNDERFIT_R2


def test_regression_overfitting_is_found_from_the_validation_loss():
    train, val, _, _ = overfitting_curves()
    (f,) = diagnose(make_history(100 * train, 100 * val, task="regression"))
    assert f.kind == "overfitting" and f.evidence["best_epoch"] == 12


def test_a_noisy_oscillating_regression_plateau_is_a_high_learning_rate():
    e = EPOCHS
    train = noisy(600 + 3e4 * np.exp(-e), 0.25, 3)
    findings = diagnose(make_history(train, task="regression", lr=0.5))
    assert kinds(findings) == ["lr_too_high"]


# --- several findings, output, serialization -----------------------------------------------------
def test_findings_are_ordered_by_severity():
    train, val, train_acc, val_acc = overfitting_curves()
    history = make_history(train, val, train_acc, val_acc)
    history[-1]["train_loss"] = math.nan  # overfits, then blows up
    assert kinds(diagnose(history)) == ["diverged", "overfitting"]


def test_format_findings_prints_severity_message_evidence_and_advice():
    findings = diagnose(make_history(*overfitting_curves()))
    text = format_findings(findings)
    (f,) = findings
    assert text.startswith("[warning] ")
    assert f.message in text and f.advice in text
    assert "best_epoch=12" in text


def _all_synthetic_histories():
    yield make_history(*healthy_curves())
    yield make_history(*overfitting_curves())
    yield make_history(*slow_linear_curves())
    yield make_history(*high_plateau_curves())
    yield make_history(*underfitting_curves())
    yield make_history([2.3, math.nan, math.nan, math.nan])
    yield make_history([2.3])
    yield make_history(*healthy_curves(), task="regression")


def test_every_finding_serializes_to_strict_json():
    for history in _all_synthetic_histories():
        for n_classes in (None, 10):
            for f in diagnose(history, n_classes=n_classes):
                data = f.to_dict()
                assert json.loads(json.dumps(data, allow_nan=False)) == data
                assert set(data) == {"kind", "severity", "evidence", "advice", "message"}


def test_a_finding_of_an_unknown_kind_or_severity_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Finding(kind="weird", severity="info", evidence={}, advice="", message="")
    with pytest.raises(ValueError, match="severity"):
        Finding(kind="healthy", severity="fatal", evidence={}, advice="", message="")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("not a history",), "list of per-epoch dicts"),
        (([{"epoch": 1}],), "train_loss"),
        (([{"train_loss": 1.0}], "ranking"), "task"),
        (([{"train_loss": 1.0}], None, 1), "n_classes"),
    ],
)
def test_bad_inputs_are_refused_with_a_message_that_names_them(args, match):
    with pytest.raises(ValueError, match=match):
        diagnose(*args)


def test_every_threshold_is_documented_in_docs_diagnose_md_with_its_value():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "diagnose.md").read_text("utf-8")
    thresholds = [n for n in curves.__all__ if n.isupper() and n not in ("KINDS", "SEVERITIES")]
    assert len(thresholds) > 20
    for name in thresholds:
        values = re.findall(rf"`{name}` = ([0-9][0-9./]*)", docs)
        assert values, f"docs/diagnose.md does not give `{name}` = its value"
        for text in values:
            num, _, den = text.rstrip(".").partition("/")
            documented = float(num) / float(den or 1)
            assert documented == pytest.approx(getattr(curves, name)), (name, text)
    for kind in KINDS:
        assert f"### `{kind}`" in docs, f"docs/diagnose.md has no section for {kind}"
