"""The training-technique claims C8–C15 as experiments (quick mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainlab.lecture import techniques
from trainlab.lecture.claims import EXPERIMENTS, VERDICTS, ClaimResult

CLAIMS = [f"C{k}" for k in range(8, 16)]


def run_valid(claim: str, out_dir: Path) -> ClaimResult:
    """Run a claim's experiment in quick mode and check what every result must satisfy."""
    result = EXPERIMENTS[claim](out_dir, True)
    assert isinstance(result, ClaimResult)
    assert result.claim == claim
    assert result.verdict in VERDICTS
    assert result.title and result.summary
    assert result.numbers and result.seconds >= 0
    assert result.figures
    for name in result.figures:
        path = out_dir / name
        assert path.is_file() and path.stat().st_size > 0
    json.dumps(result.to_dict(), allow_nan=False)  # the numbers are plain JSON
    return result


def test_every_technique_claim_is_registered_by_the_techniques_module():
    for claim in CLAIMS:
        assert EXPERIMENTS[claim].__module__ == techniques.__name__


def test_preprocessing_experiment_counts_fewer_iterations_when_standardized(tmp_path):
    result = run_valid("C8", tmp_path)
    n = result.numbers
    assert n["standardized"]["condition_number"] < n["raw"]["condition_number"]
    assert n["whitened (ZCA)"]["condition_number"] == pytest.approx(1.0, abs=0.01)
    assert n["standardized"]["iterations"] is not None


@pytest.mark.parametrize("claim", ["C9", "C10"])
def test_init_experiments_report_activation_std_by_depth(claim, tmp_path):
    result = run_valid(claim, tmp_path)
    depths = [v for k, v in result.numbers.items() if "layers" in k]
    assert len(depths) == 3
    assert all(row["last_layer_activation_std"] >= 0 for row in depths)


def test_c9_and_c10_each_draw_their_own_figure(tmp_path):
    c9, c10 = run_valid("C9", tmp_path), run_valid("C10", tmp_path)
    assert set(c9.figures).isdisjoint(c10.figures)
    images = [(tmp_path / name).read_bytes() for name in (*c9.figures, *c10.figures)]
    assert len(set(images)) == len(images)


def test_batch_norm_with_gamma_sigma_and_beta_mu_is_the_identity(tmp_path):
    result = run_valid("C12", tmp_path)
    assert result.verdict == "held"
    assert result.numbers["max_abs_error_gamma_sqrt_var_plus_eps"] <= 1e-5


def test_layer_and_instance_norm_compute_the_same_in_train_and_eval(tmp_path):
    result = run_valid("C14", tmp_path)
    assert result.verdict == "held"
    diffs = result.numbers["max_abs_train_minus_eval"]
    assert diffs["BatchNorm1d"] > 1e-3  # the contrast: batch norm does differ


@pytest.mark.parametrize("claim", ["C11", "C13", "C15"])
def test_training_experiments_give_a_valid_result(claim, tmp_path):
    run_valid(claim, tmp_path)
