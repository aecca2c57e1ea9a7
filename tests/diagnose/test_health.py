"""Claims about trainlab.diagnose.health: what it finds at init (C9, C10, C13), that it
changes nothing, and that the one-batch sanity check tells a working setup from a broken one."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from trainlab import init, models, optim
from trainlab.diagnose.health import (
    HealthReport,
    health,
    overfit_one_batch,
)
from trainlab.nn import BatchNorm1d

IN, CLASSES, N = 32, 10, 64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(N, IN), torch.randint(0, CLASSES, (N,))


def _deep_tanh(scheme: str, norm: str = "none", **kwargs: float) -> nn.Module:
    """20 Linear layers: 19 hidden of 64 tanh units, then the output."""
    model = models.mlp(IN, CLASSES, hidden=(64,) * 19, activation="tanh", norm=norm)
    return init.apply(model, scheme, **kwargs)


def _small(n_out: int = CLASSES, **kwargs: object) -> nn.Module:
    return models.mlp(IN, n_out, hidden=(64, 64), **kwargs)


def _kind(report: HealthReport, word: str) -> list[str]:
    return [f for f in report.findings if word in f]


def _adam(lr: float):
    return lambda params: optim.Adam(params, lr=lr)


class _IgnoresInput(nn.Module):
    """A bug: the input is multiplied by 0 before the network sees it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * 0)


# --- what health finds ---------------------------------------------------------------


def test_a_deep_tanh_net_with_a_fixed_small_gaussian_has_vanishing_activations(batch) -> None:
    report = health(_deep_tanh("gaussian", std=0.01), *batch)
    (finding,) = _kind(report, "vanishing")
    assert finding.startswith("activations shrink")
    assert "fc1_act" in finding and "fc19_act" in finding


def test_the_same_net_with_fan_in_init_has_no_vanishing_or_exploding_activations(batch) -> None:
    report = health(_deep_tanh("fan_in"), *batch)
    assert not [f for f in report.findings if f.startswith("activations")]


def test_batch_norm_keeps_a_gaussian_initialized_deep_net_from_vanishing(batch) -> None:
    report = health(_deep_tanh("gaussian", norm="batch", std=0.01), *batch)
    assert not [f for f in report.findings if f.startswith("activations")]
    hidden = [layer.act_std for layer in report.layers if layer.kind == "Tanh"]
    assert min(hidden) > 0.5  # each BN output has unit variance: tanh of it is ~0.6


def test_batch_norm_with_exact_statistics_is_diagnosed_before_any_recalibration(batch) -> None:
    model = nn.Sequential(nn.Linear(IN, 64), BatchNorm1d(64, stats="exact"), nn.ReLU())
    model.add_module("out", nn.Linear(64, CLASSES))
    report = health(model, *batch)
    assert report.findings == []
    with pytest.raises(RuntimeError, match="recalibrate"):  # the model itself still can't eval
        model.eval()(batch[0])


def test_relu_units_behind_biases_of_minus_10_are_found_dead(batch) -> None:
    model = _small()
    with torch.no_grad():
        model.fc1.bias.fill_(-10.0)
        model.fc2.bias.fill_(-10.0)
    report = health(model, *batch)
    dead = _kind(report, "dead ReLU units")
    assert len(dead) == 2 and dead[0].startswith("layer fc1_act: 100% dead")
    assert _kind(report, "zero weight gradient in fc1, fc2, out")


def test_a_healthy_relu_net_has_no_dead_units_finding(batch) -> None:
    assert not _kind(health(_small(), *batch), "dead")


def test_a_last_layer_scaled_100x_makes_the_initial_loss_too_high(batch) -> None:
    model = _small()
    with torch.no_grad():
        model.out.weight.mul_(100)
    report = health(model, *batch)
    assert report.initial_loss > 2 * math.log(CLASSES)
    (finding,) = _kind(report, "initial loss")
    assert "ln(10)=2.30" in finding and "too confident" in finding


def test_a_default_initialized_classifier_starts_at_ln_c(batch) -> None:
    report = health(_small(), *batch)
    assert report.expected_initial_loss == pytest.approx(math.log(CLASSES))
    assert report.initial_loss == pytest.approx(math.log(CLASSES), rel=0.2)
    assert not _kind(report, "initial loss")


@pytest.mark.parametrize(("scale", "direction"), [(1e4, "exploding"), (1e-4, "vanishing")])
def test_a_first_layer_gradient_1e4x_off_the_others_is_a_finding(
    batch, scale: float, direction: str
) -> None:
    # Inputs scaled by s and fc1's weight by 1/s: the same function, but ∂L/∂W₁ = δ₁xᵀ
    # is s× what it was, while every other layer's gradient stays as it was.
    x, y = batch
    model = _small(activation="identity")
    assert not _kind(health(model, x, y), "gradient norm")
    with torch.no_grad():
        model.fc1.weight.div_(scale)
    (finding,) = _kind(health(model, x * scale, y), "gradient norm")
    assert "fc1" in finding and f"({direction} toward the input" in finding


def test_each_weight_layer_reports_grad_and_weight_norms_and_activations_none(batch) -> None:
    model = _small()
    report = health(model, *batch)
    assert [layer.name for layer in report.layers] == [
        "fc1",
        "fc1_act",
        "fc2",
        "fc2_act",
        "out",
    ]
    for layer in report.layers:
        if layer.kind == "Linear":
            weight = getattr(model, layer.name).weight
            assert layer.weight_norm == pytest.approx(weight.norm().item())
            assert layer.grad_norm > 0
        else:
            assert layer.grad_norm is None and layer.weight_norm is None


def test_gradient_norms_are_those_of_one_training_step(batch) -> None:
    model = _small(dropout=0.0)
    report = health(model, *batch)
    reference = copy.deepcopy(model)
    nn.functional.cross_entropy(reference(batch[0]), batch[1]).backward()
    by_name = {layer.name: layer.grad_norm for layer in report.layers}
    assert by_name["fc2"] == pytest.approx(reference.fc2.weight.grad.norm().item(), rel=1e-5)


def test_a_regression_model_has_no_expected_initial_loss_and_its_mse_as_initial_loss() -> None:
    x, y = torch.randn(N, IN), torch.randn(N)
    model = _small(n_out=1)
    report = health(model, x, y, task="regression")
    assert report.expected_initial_loss is None
    mse = nn.functional.mse_loss(model(x).reshape(-1), y).item()
    assert report.initial_loss == pytest.approx(mse, rel=1e-6)
    assert not _kind(report, "initial loss")


# --- health changes nothing ----------------------------------------------------------


def test_health_leaves_parameters_grads_buffers_modes_and_rng_unchanged(batch) -> None:
    model = models.mlp(IN, CLASSES, hidden=(64, 64), norm="batch", dropout=0.5)
    model.fc1.weight.grad = torch.full_like(model.fc1.weight, 3.0)  # a pending gradient
    model.fc2_dropout.eval()  # a mixed mode, to see it restored exactly
    state = copy.deepcopy(model.state_dict())
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    rng = torch.get_rng_state()

    health(model, *batch)

    assert torch.equal(torch.get_rng_state(), rng)
    assert {n: m.training for n, m in model.named_modules()} == modes
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    for name, p in model.named_parameters():
        if grads[name] is None:
            assert p.grad is None, name
        else:
            assert torch.equal(p.grad, grads[name]), name


def test_health_refuses_a_batch_of_one_and_mismatched_classes(batch) -> None:
    x, y = batch
    with pytest.raises(ValueError, match="at least 2 samples"):
        health(_small(), x[:1], y[:1])
    with pytest.raises(ValueError, match="n_classes=5"):
        health(_small(), x, y, n_classes=5)
    with pytest.raises(ValueError, match="task must be one of"):
        health(_small(), x, y, task="ranking")


# --- the report ----------------------------------------------------------------------


def test_to_dict_is_json_serializable_and_format_names_every_layer(batch) -> None:
    model = _small()
    with torch.no_grad():
        model.out.weight.mul_(100)
    report = health(model, *batch)
    loaded = json.loads(json.dumps(report.to_dict()))
    assert loaded["findings"] == report.findings
    assert loaded["layers"][0]["name"] == "fc1"
    text = report.format()
    for layer in report.layers:
        assert layer.name in text
    assert "too confident" in text and "ln C = 2.303" in text


def test_format_says_when_nothing_was_found(batch) -> None:
    assert "no problems found" in health(_small(), *batch).format()


# --- overfit_one_batch ---------------------------------------------------------------


def test_a_small_mlp_overfits_32_random_samples_with_adam(batch) -> None:
    x, y = batch[0][:32], batch[1][:32]
    result = overfit_one_batch(_small(), _adam(1e-2), x, y)
    assert result.passed, result.message
    assert result.final_accuracy == 1.0 or result.final_loss < 0.05
    assert result.steps < 200 and result.final_loss < result.initial_loss
    assert result.message.startswith("passed")


def test_overfit_one_batch_fails_with_a_learning_rate_of_0(batch) -> None:
    x, y = batch[0][:32], batch[1][:32]
    result = overfit_one_batch(_small(), _adam(0.0), x, y, steps=50)
    assert not result.passed and result.steps == 50
    assert result.final_loss == result.initial_loss
    assert "did not decrease" in result.message and "learning rate" in result.message


def test_overfit_one_batch_fails_when_the_output_ignores_the_input(batch) -> None:
    x, y = batch[0][:32], batch[1][:32]
    result = overfit_one_batch(_IgnoresInput(_small()), _adam(1e-2), x, y, steps=100)
    assert not result.passed and result.final_accuracy < 1.0
    assert "does not depend on the input" in result.message


def test_overfit_one_batch_leaves_the_callers_model_and_rng_untouched(batch) -> None:
    x, y = batch[0][:32], batch[1][:32]
    model = _small(dropout=0.2)
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    overfit_one_batch(model, _adam(1e-2), x, y, steps=20)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_small_mlp_overfits_32_regression_targets() -> None:
    x, y = torch.randn(32, IN), torch.randn(32)
    result = overfit_one_batch(_small(n_out=1), _adam(1e-2), x, y, task="regression")
    assert result.passed, result.message
    assert result.final_accuracy is None
    assert result.final_loss < 0.01 * result.initial_loss


def test_a_regression_model_that_ignores_its_input_fails(batch) -> None:
    x, y = torch.randn(32, IN), torch.randn(32)
    model = _IgnoresInput(_small(n_out=1))
    result = overfit_one_batch(model, _adam(1e-2), x, y, task="regression", steps=100)
    assert not result.passed
    assert "does not depend on the input" in result.message


def test_an_explicit_target_is_the_loss_to_reach(batch) -> None:
    x, y = batch[0][:32], batch[1][:32]
    loose = overfit_one_batch(_small(), _adam(1e-2), x, y, target=2.0)
    strict = overfit_one_batch(_small(), _adam(1e-2), x, y, target=1e-4, steps=5)
    assert loose.passed and loose.final_loss < 2.0 and loose.steps < 200
    assert not strict.passed and "not below 0.0001" in strict.message


def test_overfit_one_batch_validates_its_arguments(batch) -> None:
    x, y = batch
    with pytest.raises(ValueError, match="steps must be"):
        overfit_one_batch(_small(), _adam(1e-2), x, y, steps=0)
    with pytest.raises(ValueError, match="target must be"):
        overfit_one_batch(_small(), _adam(1e-2), x, y, target=-1.0)
    with pytest.raises(ValueError, match="optimizer_factory"):
        overfit_one_batch(_small(), None, x, y)
