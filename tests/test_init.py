"""Claims about trainlab.init: each scheme's σ, truncation, depth behaviour (C9, C10)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab import init

WIDTH = 256
DEPTH = 20


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _deep(activation: type[nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(DEPTH):
        layers.append(nn.Linear(WIDTH, WIDTH))
        if activation is not None:
            layers.append(activation())
    return nn.Sequential(*layers)


@pytest.mark.parametrize(
    ("scheme", "sigma"),
    [
        (init.gaussian(), 0.01),
        (init.gaussian(std=0.05), 0.05),
        (init.fan_in(), 1 / math.sqrt(1000)),
        (init.xavier(), math.sqrt(2 / 2000)),
        (init.he(), math.sqrt(2 / 1000)),
    ],
    ids=["gaussian", "gaussian-0.05", "fan_in", "xavier", "he"],
)
def test_scheme_draws_a_1000x1000_weight_with_its_sigma(scheme: init.Scheme, sigma: float) -> None:
    weight = torch.empty(1000, 1000)
    scheme(weight)
    assert scheme.sigma(weight) == pytest.approx(sigma)
    assert weight.std().item() == pytest.approx(sigma, rel=0.02)
    assert abs(weight.mean().item()) < 0.01 * sigma


def test_fans_of_a_conv_weight_count_the_kernel_like_torch() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=(5, 4))
    assert init.fans(conv.weight) == (3 * 20, 8 * 20)
    assert init.fans(conv.weight) == nn.init._calculate_fan_in_and_fan_out(conv.weight)
    assert init.he().sigma(conv.weight) == pytest.approx(math.sqrt(2 / 60))
    assert init.fan_in().sigma(nn.Conv1d(4, 2, 3).weight) == pytest.approx(1 / math.sqrt(12))


def test_fans_of_a_bias_raise() -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fans(torch.zeros(5))


@pytest.mark.parametrize("bound", [1.0, 2.0, 3.0])
def test_truncated_gaussian_stays_inside_bound_sigma_with_the_truncated_std(bound: float) -> None:
    scheme = init.truncated_gaussian(std=0.01, bound=bound)
    weight = scheme(torch.empty(1000, 1000))
    assert weight.abs().max().item() <= bound * 0.01 * (1 + 1e-6)
    phi = math.exp(-(bound**2) / 2) / math.sqrt(2 * math.pi)
    expected = 0.01 * math.sqrt(1 - 2 * bound * phi / math.erf(bound / math.sqrt(2)))
    assert scheme.effective_std() == pytest.approx(expected)
    assert weight.std().item() == pytest.approx(expected, rel=0.02)


def test_torch_trunc_normal_with_std_001_does_not_truncate_at_two_sigma() -> None:
    # The trap: torch's bounds a=-2, b=2 are absolute, 200σ away at σ = 0.01.
    weight = nn.init.trunc_normal_(torch.empty(1000, 1000), std=0.01)
    outside = (weight.abs() > 0.02).float().mean().item()
    assert outside == pytest.approx(0.0455, abs=0.003)  # P(|z| > 2) of an untruncated normal
    assert init.truncated_gaussian(std=0.01)(weight).abs().max().item() <= 0.02 * (1 + 1e-6)


def test_apply_initializes_linear_and_conv_weights_and_zeroes_biases() -> None:
    model = nn.Sequential(
        nn.Conv1d(4, 8, 3), nn.Conv2d(8, 8, 3), nn.Linear(300, 400), nn.LayerNorm(4)
    )
    norm_weight = model[3].weight.clone()
    assert init.apply(model, "gaussian", std=0.02) is model
    for layer in model[:3]:
        assert layer.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.equal(model[3].weight, norm_weight)  # not a Linear/Conv: untouched


def test_apply_takes_a_scheme_object() -> None:
    model = nn.Linear(500, 600)
    init.apply(model, init.he())
    assert model.weight.std().item() == pytest.approx(math.sqrt(2 / 500), rel=0.02)


def test_apply_default_leaves_torch_initialization() -> None:
    model = nn.Linear(10, 10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    init.apply(model, "default")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_apply_with_an_unknown_name_lists_the_allowed_names() -> None:
    with pytest.raises(ValueError, match="default, gaussian, truncated_gaussian, fan_in"):
        init.apply(nn.Linear(2, 2), "kaiming")


def test_bad_scheme_parameters_raise_naming_them() -> None:
    with pytest.raises(ValueError, match="std"):
        init.gaussian(std=-1.0)
    with pytest.raises(ValueError, match="bound"):
        init.truncated_gaussian(bound=0)
    with pytest.raises(ValueError, match="constructor"):
        init.apply(nn.Linear(2, 2), init.he(), std=0.1)


def _output_ratio(model: nn.Module, kind: str) -> float:
    x = torch.randn(512, WIDTH)
    stats = init.activation_stats(model, x)
    last = [s for s in stats if s.kind == kind][-1]
    return last.std / x.std(correction=0).item()


def test_fan_in_keeps_the_std_through_20_linear_layers() -> None:  # C10
    ratio = _output_ratio(init.apply(_deep(None), "fan_in"), "Linear")
    assert 0.5 <= ratio <= 2.0


def test_small_gaussian_collapses_the_std_through_20_linear_layers() -> None:  # C9
    # Each layer scales the std by about 0.01·√256 = 0.16: 0.16²⁰ ≈ 1e-16.
    ratio = _output_ratio(init.apply(_deep(None), "gaussian", std=0.01), "Linear")
    assert ratio < 1e-10


def test_fan_in_keeps_tanh_activations_alive_through_20_layers() -> None:  # C10
    assert _output_ratio(init.apply(_deep(nn.Tanh), "fan_in"), "Tanh") > 0.1


def test_small_gaussian_collapses_tanh_activations_through_20_layers() -> None:  # C9
    assert _output_ratio(init.apply(_deep(nn.Tanh), "gaussian"), "Tanh") < 1e-10


def test_small_gaussian_std_decays_geometrically_with_depth() -> None:
    model = init.apply(_deep(None), "gaussian")
    stds = [s.std for s in init.activation_stats(model, torch.randn(512, WIDTH))]
    factors = [b / a for a, b in zip(stds[:-1], stds[1:], strict=True)]
    assert all(f == pytest.approx(0.01 * math.sqrt(WIDTH), rel=0.1) for f in factors)


def test_activation_stats_reports_layers_in_forward_order_with_names() -> None:
    model = nn.Sequential(
        nn.Conv1d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6, 4), nn.Tanh()
    )
    stats = init.activation_stats(model, torch.randn(16, 1, 8))
    assert [(s.name, s.kind) for s in stats] == [
        ("0", "Conv1d"),
        ("1", "ReLU"),
        ("3", "Linear"),
        ("4", "Tanh"),
    ]
    assert stats[0].shape == (16, 3, 6)
    assert stats[3].shape == (16, 4)


def test_activation_stats_counts_units_that_are_never_positive_as_dead() -> None:
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, 1.0, -2.0, 0.0]))
        model[0].weight[3, 0] = 1.0  # unit 3 is positive for some samples, not all
    x = torch.randn(100, 5)
    relu = init.activation_stats(model, x)[1]
    assert relu.dead_fraction == 0.5  # units 0 and 2; unit 1 and 3 are alive
    out = torch.relu(model[0](x))
    assert relu.mean == pytest.approx(out.mean().item(), rel=1e-6)
    assert relu.std == pytest.approx(out.std(correction=0).item(), rel=1e-6)


def test_activation_stats_counts_a_conv_channel_dead_only_if_never_positive_anywhere() -> None:
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.copy_(torch.tensor([-100.0, 0.0]))
    stats = init.activation_stats(nn.Sequential(conv), torch.randn(8, 1, 4, 4))
    assert stats[0].dead_fraction == 0.5


def test_activation_stats_removes_its_hooks_and_restores_modes() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.ReLU())
    model.train()
    model[2].eval()
    seen_training: list[bool] = []
    model[1].register_forward_pre_hook(lambda m, a: seen_training.append(m.training))
    init.activation_stats(model, torch.randn(3, 4))
    assert seen_training == [False]  # ran in eval mode
    assert model.training and model[1].training and not model[2].training
    assert all(not m._forward_hooks for m in model.modules())
    out = model[0](torch.randn(2, 4, requires_grad=True))
    assert out.requires_grad  # grad mode is back too


def test_activation_stats_restores_modes_when_forward_fails() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(5, 5))
    model.train()
    with pytest.raises(RuntimeError):
        init.activation_stats(model, torch.randn(3, 4))
    assert model.training and model[0].training
    assert all(not m._forward_hooks for m in model.modules())
