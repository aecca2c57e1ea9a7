"""The lecture's optimizer claims C1–C7 as experiments (quick mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainlab.lecture import optimizers  # noqa: F401  (importing registers the experiments)
from trainlab.lecture.claims import EXPERIMENTS, VERDICTS, ClaimResult

CLAIMS = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ClaimResult]]:
    """Every optimizer claim run once, quick, into one folder (C2–C4 share a cached grid)."""
    out = tmp_path_factory.mktemp("lecture")
    return out, {claim: EXPERIMENTS[claim](out, True) for claim in CLAIMS}


def test_every_optimizer_claim_is_registered():
    assert set(CLAIMS) <= set(EXPERIMENTS)


@pytest.mark.parametrize("claim", CLAIMS)
def test_each_experiment_returns_a_verdict_and_writes_its_figures(results, claim):
    out, by_claim = results
    result = by_claim[claim]
    assert isinstance(result, ClaimResult)
    assert result.claim == claim
    assert result.verdict in VERDICTS
    assert result.summary and result.numbers
    assert result.figures
    for name in result.figures:
        assert (out / name).is_file() and (out / name).stat().st_size > 0


@pytest.mark.parametrize("claim", CLAIMS)
def test_each_result_is_json_serializable(results, claim):
    _, by_claim = results
    json.dumps(by_claim[claim].to_dict())


def test_rmsprop_average_of_a_constant_gradient_is_one_minus_rho_to_the_n(results):
    result = results[1]["C5"]
    assert result.verdict == "held"
    assert result.numbers["max_abs_error_state"] <= 1e-12


def test_adam_with_beta1_zero_is_rmsprop_to_the_last_bit(results):
    result = results[1]["C7"]
    assert result.verdict == "held"
    assert result.numbers["max_abs_weight_gap"] <= 1e-12


def test_momentum_beats_sgd_in_both_valleys(results):
    result = results[1]["C3"]
    assert result.verdict == "held"
    assert all(result.numbers["momentum_needs_fewer_steps"].values())
