"""Claims about trainlab.nn: dropout (C11), batch norm (C12), layer and instance norm (C14)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab import nn as tnn
from trainlab.errors import HyperparameterError


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- dropout -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", tnn.DROPOUT_MODES)
def test_dropout_training_output_averages_to_the_eval_output(mode: str) -> None:
    layer = tnn.Dropout(0.5, mode=mode)
    x = torch.rand(64) + 0.5
    many = x.expand(20000, 64)
    mean_train = layer.train()(many).mean(dim=0)
    assert torch.allclose(mean_train, layer.eval()(x), rtol=0.05)


def test_the_two_dropout_modes_agree_up_to_the_constant_one_minus_p() -> None:
    p, x = 0.3, torch.rand(20000, 32) + 0.5
    inverted = tnn.Dropout(p, mode="inverted").train()(x).mean(dim=0)
    at_test = tnn.Dropout(p, mode="scale_at_test").train()(x).mean(dim=0)
    assert torch.allclose(at_test, (1 - p) * inverted, rtol=0.03)


@pytest.mark.parametrize("mode", tnn.DROPOUT_MODES)
def test_dropout_is_deterministic_in_eval_mode(mode: str) -> None:
    layer = tnn.Dropout(0.5, mode=mode).eval()
    x = torch.randn(100, 10)
    assert torch.equal(layer(x), layer(x))


def test_scale_at_test_keeps_training_units_unscaled_and_scales_at_test() -> None:
    p, x = 0.25, torch.randn(400, 50)
    layer = tnn.Dropout(p, mode="scale_at_test")
    out = layer.train()(x)
    kept = out != 0
    assert torch.equal(out[kept], x[kept])  # exactly the input, no 1/(1 − p)
    assert (~kept).float().mean().item() == pytest.approx(p, abs=0.01)
    assert torch.equal(layer.eval()(x), x * (1 - p))


def test_inverted_dropout_scales_kept_units_in_training_and_is_identity_at_test() -> None:
    p, x = 0.25, torch.randn(400, 50)
    layer = tnn.Dropout(p)
    out = layer.train()(x)
    kept = out != 0
    assert torch.allclose(out[kept], x[kept] / (1 - p))
    assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_probability_outside_0_1_raises_naming_p(p: float) -> None:
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        tnn.Dropout(p)


def test_unknown_dropout_mode_raises_naming_the_modes() -> None:
    with pytest.raises(ValueError, match="inverted, scale_at_test"):
        tnn.Dropout(0.5, mode="lecture")


def test_dropout_prints_like_torch() -> None:
    assert repr(tnn.Dropout(0.2, mode="scale_at_test")) == "Dropout(p=0.2, mode='scale_at_test')"


# --- batch norm ----------------------------------------------------------------------

SHAPES = {1: (16, 6), 2: (8, 6, 5, 4)}
PAIRS = {1: (tnn.BatchNorm1d, nn.BatchNorm1d), 2: (tnn.BatchNorm2d, nn.BatchNorm2d)}


@pytest.mark.parametrize("dim", [1, 2])
def test_train_mode_batch_norm_equals_torch_outputs_gradients_and_running_stats(dim: int) -> None:
    ours_cls, torch_cls = PAIRS[dim]
    ours, theirs = ours_cls(6), torch_cls(6)
    with torch.no_grad():
        for layer in (ours, theirs):
            layer.weight.copy_(torch.linspace(0.5, 2.0, 6))
            layer.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    for _ in range(3):
        x = (3 * torch.randn(SHAPES[dim]) + 2).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        upstream = torch.randn(SHAPES[dim])
        out, ref = ours(x), theirs(x2)
        torch.testing.assert_close(out, ref)
        (out * upstream).sum().backward()
        (ref * upstream).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad)
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name))
    x = torch.randn(SHAPES[dim])
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_batch_norm_with_momentum_none_keeps_a_cumulative_average_like_torch() -> None:
    ours, theirs = tnn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)
    for _ in range(4):
        x = torch.randn(10, 3) * 2
        ours(x), theirs(x)
    torch.testing.assert_close(ours.running_var, theirs.running_var)


@pytest.mark.parametrize("dim", [1, 2])
def test_gamma_sigma_and_beta_mu_give_back_the_input(dim: int) -> None:  # C12
    ours = PAIRS[dim][0](6)
    x = 3 * torch.randn(SHAPES[dim]) + 2
    dims = [0] if dim == 1 else [0, 2, 3]
    mu, var = x.mean(dims), x.var(dims, correction=0)
    with torch.no_grad():
        ours.weight.copy_(torch.sqrt(var + ours.eps))
        ours.bias.copy_(mu)
    torch.testing.assert_close(ours.train()(x), x, rtol=1e-5, atol=1e-5)


def test_a_torch_batchnorm2d_state_dict_loads() -> None:
    theirs = nn.BatchNorm2d(4)
    for _ in range(3):
        theirs(torch.randn(8, 4, 3, 3) * 2 + 1)
    with torch.no_grad():
        theirs.weight.uniform_()
        theirs.bias.uniform_()
    for stats in tnn.BATCH_NORM_STATS:
        ours = tnn.BatchNorm2d(4, stats=stats)
        ours.load_state_dict(theirs.state_dict())  # strict: same keys
        assert set(ours.state_dict()) == set(theirs.state_dict())
        x = torch.randn(2, 4, 3, 3)
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_batch_norm_prints_like_torch_plus_stats() -> None:
    text = repr(tnn.BatchNorm2d(64, stats="exact"))
    assert text.startswith(repr(nn.BatchNorm2d(64))[:-1])
    assert text.endswith(", stats='exact')")
    assert isinstance(tnn.BatchNorm2d(3), nn.BatchNorm2d)


def test_unknown_batch_norm_stats_raises_naming_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="running, exact"):
        tnn.BatchNorm1d(4, stats="ema")


def _shifted_batches() -> list[torch.Tensor]:
    # Three batches of different sizes, means and spreads.
    return [
        torch.randn(10, 3) + 0.0,
        2 * torch.randn(30, 3) + 5.0,
        0.5 * torch.randn(20, 3) - 3.0,
    ]


def test_recalibrate_sets_the_statistics_of_the_concatenated_training_set() -> None:
    batches = _shifted_batches()
    layer = tnn.BatchNorm1d(3, stats="exact")
    tnn.recalibrate(layer, batches)
    data = torch.cat(batches)
    mean, var = data.mean(0), data.var(0, correction=0)
    torch.testing.assert_close(layer.running_mean, mean)
    torch.testing.assert_close(layer.running_var, var)
    x = torch.randn(7, 3)
    torch.testing.assert_close(layer.eval()(x), (x - mean) / torch.sqrt(var + layer.eps))
    # The average of per-batch statistics (what swa_utils.update_bn computes) differs.
    per_batch_var = torch.stack([b.var(0, correction=0) for b in batches]).mean(0)
    per_batch_mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    assert (per_batch_var < 0.5 * var).all()
    assert ((per_batch_mean - mean).abs() > 0.5).all()


def test_recalibrate_measures_the_input_of_a_batch_norm_inside_a_model() -> None:
    conv = nn.Conv2d(2, 4, 3)
    model = nn.Sequential(conv, tnn.BatchNorm2d(4, stats="exact"), nn.ReLU())
    images = [torch.randn(5, 2, 6, 6) + k for k in range(4)]
    loader = [(x, torch.zeros(len(x))) for x in images]  # (x, y) tuples
    model.train()
    tnn.recalibrate(model, loader)
    with torch.no_grad():
        h = conv(torch.cat(images))
    torch.testing.assert_close(model[1].running_mean, h.mean((0, 2, 3)))
    torch.testing.assert_close(model[1].running_var, h.var((0, 2, 3), correction=0))
    assert model.training and model[1].training  # mode restored


def test_recalibrate_runs_dropout_in_eval_mode() -> None:
    model = nn.Sequential(tnn.Dropout(0.5), tnn.BatchNorm1d(3))
    batches = _shifted_batches()
    tnn.recalibrate(model, batches)
    torch.testing.assert_close(model[1].running_var, torch.cat(batches).var(0, correction=0))


def test_upstream_batch_norms_normalize_by_the_batch_during_recalibrate() -> None:
    first, second = tnn.BatchNorm1d(3), tnn.BatchNorm1d(3)
    model = nn.Sequential(first, second)
    batches = _shifted_batches()
    tnn.recalibrate(model, batches)
    # Each batch leaves the first layer with mean 0 and variance ≈ 1, as in training.
    torch.testing.assert_close(second.running_mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(second.running_var, torch.ones(3), atol=1e-3, rtol=0)


def test_exact_stats_batch_norm_refuses_to_evaluate_before_recalibrate() -> None:
    layer = tnn.BatchNorm1d(3, stats="exact")
    with pytest.raises(RuntimeError, match="recalibrate"):
        layer.eval()(torch.randn(4, 3))
    tnn.recalibrate(layer, _shifted_batches())
    layer.eval()(torch.randn(4, 3))
    layer.train()(torch.randn(4, 3))  # training moves the weights: the stats are stale
    with pytest.raises(RuntimeError, match="recalibrate"):
        layer.eval()(torch.randn(4, 3))


def test_exact_stats_training_normalizes_by_the_batch_and_leaves_the_buffers() -> None:
    ours, theirs = tnn.BatchNorm1d(3, stats="exact"), nn.BatchNorm1d(3)
    x = torch.randn(10, 3) * 4 + 1
    torch.testing.assert_close(ours(x), theirs(x))
    assert torch.equal(ours.running_mean, torch.zeros(3))
    assert torch.equal(ours.running_var, torch.ones(3))


def test_recalibrate_overwrites_running_averages_too() -> None:
    layer = tnn.BatchNorm1d(3)
    layer(torch.randn(10, 3) + 10)
    count = layer.num_batches_tracked.clone()
    batches = _shifted_batches()
    tnn.recalibrate(layer, batches)
    torch.testing.assert_close(layer.running_mean, torch.cat(batches).mean(0))
    assert torch.equal(layer.num_batches_tracked, count)


def test_recalibrate_refuses_torch_batch_norm_and_empty_loaders() -> None:
    with pytest.raises(ValueError, match="torch batch norm"):
        tnn.recalibrate(nn.Sequential(nn.BatchNorm1d(3), tnn.BatchNorm1d(3)), [])
    with pytest.raises(ValueError, match="no batches"):
        tnn.recalibrate(tnn.BatchNorm1d(3), [])


def test_recalibrate_restores_modes_and_flags_when_forward_fails() -> None:
    model = nn.Sequential(tnn.BatchNorm1d(3, stats="exact"), nn.Linear(5, 2))
    model.eval()
    with pytest.raises(RuntimeError):
        tnn.recalibrate(model, [torch.randn(4, 3)])
    assert not model.training and not model[0].training
    assert model[0].stats == "exact"
    assert not model[0]._forward_pre_hooks


# --- layer, instance and group norm ---------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (tnn.LayerNorm(6), (8, 6)),
        (tnn.InstanceNorm1d(3, affine=True), (4, 3, 10)),
        (tnn.InstanceNorm2d(3, affine=True), (4, 3, 5, 5)),
        (tnn.GroupNorm(2, 4), (4, 4, 5, 5)),
    ],
    ids=["layer", "instance1d", "instance2d", "group"],
)
def test_per_sample_norms_give_the_same_output_in_train_and_eval(
    layer: nn.Module, shape: tuple[int, ...]
) -> None:  # C14
    x = 2 * torch.randn(shape) + 3
    train_out = layer.train()(x)
    torch.testing.assert_close(layer.eval()(x), train_out)
    assert layer.train()(x[:1]).shape == x[:1].shape  # one sample is enough


def test_instance_norm_normalizes_each_sample_and_channel_over_positions() -> None:
    x = 2 * torch.randn(4, 3, 5, 5) + 3
    out = tnn.InstanceNorm2d(3)(x)
    torch.testing.assert_close(out.mean((2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var((2, 3), correction=0), torch.ones(4, 3), atol=1e-3, rtol=0)


def test_instance_norm_refuses_running_stats_and_feature_vectors() -> None:
    with pytest.raises(ValueError, match="track_running_stats"):
        tnn.InstanceNorm2d(3, track_running_stats=True)
    with pytest.raises(ValueError, match="layer norm"):
        tnn.InstanceNorm1d(3)(torch.randn(8, 3))


@pytest.mark.parametrize(
    ("name", "dim", "cls"),
    [
        ("none", 0, nn.Identity),
        ("batch", 0, tnn.BatchNorm1d),
        ("batch", 1, tnn.BatchNorm1d),
        ("batch", 2, tnn.BatchNorm2d),
        ("layer", 0, tnn.LayerNorm),
        ("layer", 1, tnn.ConvLayerNorm),
        ("layer", 2, tnn.ConvLayerNorm),
        ("instance", 1, tnn.InstanceNorm1d),
        ("instance", 2, tnn.InstanceNorm2d),
        ("group", 0, tnn.GroupNorm),
        ("group", 2, tnn.GroupNorm),
    ],
)
def test_create_norm_builds_each_name(name: str, dim: int, cls: type[nn.Module]) -> None:
    layer = tnn.create_norm(name, 64, dim=dim)
    assert type(layer) is cls
    shape = (4, 64, *([3] * dim))
    assert layer(torch.randn(shape)).shape == shape


def test_layer_norm_of_feature_vectors_is_torch_layer_norm() -> None:
    x = torch.randn(8, 10) * 3 + 1
    layer = tnn.create_norm("layer", 10)
    assert isinstance(layer, nn.LayerNorm) and layer.normalized_shape == (10,)
    torch.testing.assert_close(layer(x), nn.LayerNorm(10)(x))


@pytest.mark.parametrize("shape", [(6, 4, 9), (6, 4, 5, 3)])
def test_conv_layer_norm_normalizes_each_sample_over_channels_and_positions(shape) -> None:
    x = torch.randn(shape) * 3 + 1
    layer = tnn.create_norm("layer", 4, dim=len(shape) - 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        layer.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
    dims = tuple(range(1, len(shape)))
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, correction=0, keepdim=True)
    per_channel = (1, 4, *([1] * (len(shape) - 2)))
    want = (x - mean) / torch.sqrt(var + 1e-5) * layer.weight.view(per_channel)
    want = want + layer.bias.view(per_channel)
    torch.testing.assert_close(layer(x), want)
    assert layer.num_groups == 1 and layer.weight.shape == (4,)
    assert repr(layer) == "ConvLayerNorm(4, eps=1e-05, affine=True)"


def test_conv_layer_norm_on_feature_vectors_is_layer_norm() -> None:
    x = torch.randn(8, 10) * 3 + 1
    torch.testing.assert_close(tnn.ConvLayerNorm(10)(x), tnn.LayerNorm(10)(x))


def test_create_norm_passes_options_and_picks_groups() -> None:
    assert tnn.create_norm("batch", 8, dim=2, stats="exact").stats == "exact"
    assert tnn.create_norm("group", 64).num_groups == 32
    assert tnn.create_norm("group", 100).num_groups == 4
    assert tnn.create_norm("group", 64, num_groups=8).num_groups == 8


def test_create_norm_with_an_unknown_name_or_dim_raises_listing_the_choices() -> None:
    names = "none, batch, sync_batch, layer, instance, group"
    with pytest.raises(HyperparameterError, match=f"name must be one of {names}; got 'weight'"):
        tnn.create_norm("weight", 8)
    with pytest.raises(HyperparameterError, match="dim must be one of 0, 1, 2; got 3"):
        tnn.create_norm("batch", 8, dim=3)


def test_instance_norm_of_feature_vectors_is_refused() -> None:
    with pytest.raises(ValueError, match="use layer norm"):
        tnn.create_norm("instance", 8, dim=0)
