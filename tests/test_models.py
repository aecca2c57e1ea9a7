"""Claims about trainlab.models: shapes, layer order, techniques as arguments, validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab import init as tinit
from trainlab import models
from trainlab import nn as tnn


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _types(model: nn.Module) -> list[type[nn.Module]]:
    return [type(m) for m in model.children()]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- output shapes -------------------------------------------------------------------


def test_linear_maps_n_by_d_to_n_by_out_and_flattens_other_inputs() -> None:
    assert models.linear(40, 10)(torch.randn(8, 40)).shape == (8, 10)
    assert models.linear(12, 3)(torch.randn(8, 3, 4)).shape == (8, 3)
    assert _n_params(models.linear(40, 10)) == 40 * 10 + 10  # the paper's 410


@pytest.mark.parametrize(
    ("in_features", "x_shape"), [(40, (5, 40)), (3 * 8 * 8, (5, 3, 8, 8))], ids=["NxD", "NxCxHxW"]
)
def test_mlp_output_is_n_by_out_for_flat_and_image_inputs(
    in_features: int, x_shape: tuple[int, ...]
) -> None:
    model = models.mlp(in_features, 7, hidden=(16, 16))
    assert model(torch.randn(x_shape)).shape == (5, 7)


def test_mlp_default_is_the_mnist1d_paper_size_40_100_100_10() -> None:
    model = models.mlp(40, 10)
    widths = [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)]
    assert widths == [(40, 100), (100, 100), (100, 10)]
    assert _n_params(model) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10  # 15,210


def test_cnn1d_takes_n_by_l_and_n_by_1_by_l_alike() -> None:
    model = models.cnn1d(40, 10).eval()
    x = torch.randn(6, 40)
    assert model(x).shape == (6, 10)
    assert torch.equal(model(x), model(x.unsqueeze(1)))


def test_cnn1d_takes_n_by_c_by_l_with_several_input_channels() -> None:
    model = models.cnn1d(32, 4, in_channels=3, channels=(8, 8), kernel_size=3, hidden=(12,))
    assert model(torch.randn(5, 3, 32)).shape == (5, 4)
    assert model.conv1.in_channels == 3


@pytest.mark.parametrize("hw", [(28, 28), (8, 8), (9, 13)])
def test_cnn2d_output_is_n_by_out_for_any_image_size(hw: tuple[int, int]) -> None:
    model = models.cnn2d((3, *hw), 10, channels=(4, 8), hidden=(16,))
    assert model(torch.randn(2, 3, *hw)).shape == (2, 10)
    # Two 2 × 2 pools: the flattened features are 8 channels × ⌊⌊H/2⌋/2⌋ × ⌊⌊W/2⌋/2⌋.
    assert model.fc1.in_features == 8 * (hw[0] // 4) * (hw[1] // 4)


def test_cnn2d_with_one_channel_takes_n_by_h_by_w_too() -> None:
    model = models.cnn2d((1, 8, 8), 10, channels=(4,), hidden=()).eval()
    x = torch.randn(3, 8, 8)
    assert torch.equal(model(x), model(x.unsqueeze(1)))


# --- the MNIST-1D paper's CNN ---------------------------------------------------------


def test_cnn1d_default_is_the_mnist1d_paper_cnn() -> None:
    model = models.cnn1d(40, 10)
    convs = [m for m in model if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [25, 25, 25]
    assert [c.kernel_size for c in convs] == [(5,), (3,), (3,)]
    assert all(c.stride == (2,) and c.padding == (1,) for c in convs)
    assert sum(isinstance(m, nn.ReLU) for m in model) == 3
    # Lengths 40 → ⌊(40+2−5)/2⌋+1 = 19 → ⌊(19+2−3)/2⌋+1 = 10 → 5: 25·5 = 125 features.
    assert model.out.in_features == 125
    conv1 = 1 * 25 * 5 + 25
    conv23 = 2 * (25 * 25 * 3 + 25)
    head = 125 * 10 + 10
    assert _n_params(model) == conv1 + conv23 + head == 5210


def test_cnn1d_default_kernels_are_5_then_3_for_any_depth() -> None:
    deep = models.cnn1d(40, 10, channels=(8, 8, 8, 8))
    assert [m.kernel_size for m in deep if isinstance(m, nn.Conv1d)] == [(5,), (3,), (3,), (3,)]
    one = models.cnn1d(40, 10, channels=(8,))
    assert one.conv1.kernel_size == (5,)
    mixed = models.cnn1d(40, 10, channels=(8, 8), kernel_size=[7, 2])
    assert (mixed.conv1.kernel_size, mixed.conv2.kernel_size) == ((7,), (2,))


def test_cnn1d_flattened_size_follows_the_length_formula_for_other_settings() -> None:
    model = models.cnn1d(100, 3, channels=(6, 6), kernel_size=7, stride=3)
    first = (100 + 2 - 7) // 3 + 1  # 32
    second = (first + 2 - 7) // 3 + 1  # 10
    assert model.out.in_features == 6 * second
    assert model(torch.randn(2, 100)).shape == (2, 3)


# --- layer order and the techniques --------------------------------------------------


def test_mlp_block_is_linear_norm_activation_dropout_and_the_output_is_bare() -> None:
    model = models.mlp(10, 3, hidden=(8, 8), norm="batch", dropout=0.5)
    block = [nn.Linear, tnn.BatchNorm1d, nn.ReLU, tnn.Dropout]
    assert _types(model) == [nn.Flatten, *block, *block, nn.Linear]


def test_cnn1d_blocks_put_norm_before_activation_and_dropout_after() -> None:
    model = models.cnn1d(40, 10, channels=(4, 4), hidden=(8,), norm="batch", dropout=0.1)
    conv = [nn.Conv1d, tnn.BatchNorm1d, nn.ReLU, tnn.Dropout]
    fc = [nn.Linear, tnn.BatchNorm1d, nn.ReLU, tnn.Dropout]
    expected = [models.AddChannelDim, *conv, *conv, nn.Flatten, *fc, nn.Linear]
    assert _types(model) == expected


def test_cnn2d_block_is_conv_norm_activation_pool_dropout() -> None:
    model = models.cnn2d((1, 8, 8), 10, channels=(4,), hidden=(8,), norm="batch", dropout=0.1)
    conv = [nn.Conv2d, tnn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, tnn.Dropout]
    fc = [nn.Linear, tnn.BatchNorm1d, nn.ReLU, tnn.Dropout]
    assert _types(model) == [models.AddChannelDim, *conv, nn.Flatten, *fc, nn.Linear]


def test_norm_none_and_dropout_zero_add_no_layers() -> None:
    model = models.mlp(10, 3, hidden=(8,))
    assert _types(model) == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]


@pytest.mark.parametrize(
    ("norm", "layer_type"),
    [("layer", tnn.LayerNorm), ("group", tnn.GroupNorm), ("batch", tnn.BatchNorm1d)],
)
def test_mlp_norm_argument_picks_the_layer(norm: str, layer_type: type[nn.Module]) -> None:
    model = models.mlp(10, 3, hidden=(100,), norm=norm)
    assert type(model.fc1_norm) is layer_type
    if norm == "layer":  # over the 100 features of each sample
        assert model.fc1_norm.normalized_shape == (100,)
    elif norm == "group":  # gcd(32, 100) = 4 groups
        assert (model.fc1_norm.num_groups, model.fc1_norm.num_channels) == (4, 100)
    else:
        assert model.fc1_norm.num_features == 100


def test_cnn_norm_layer_is_conv_layer_norm_then_layer_norm_on_the_features() -> None:
    one = models.cnn1d(40, 10, channels=(4,), hidden=(8,), norm="layer")
    two = models.cnn2d((1, 8, 8), 10, channels=(4,), hidden=(8,), norm="layer")
    for model in (one, two):
        assert type(model.conv1_norm) is tnn.ConvLayerNorm and model.conv1_norm.num_channels == 4
        assert type(model.fc1_norm) is tnn.LayerNorm and model.fc1_norm.normalized_shape == (8,)
    assert one(torch.randn(3, 40)).shape == two(torch.randn(3, 8, 8)).shape == (3, 10)


def test_cnn_norm_instance_normalizes_the_convolutions_only() -> None:
    one = models.cnn1d(40, 10, channels=(4,), hidden=(8,), norm="instance")
    two = models.cnn2d((1, 8, 8), 10, channels=(4,), hidden=(8,), norm="instance")
    assert isinstance(one.conv1_norm, tnn.InstanceNorm1d)
    assert isinstance(two.conv1_norm, tnn.InstanceNorm2d)
    assert not hasattr(one, "fc1_norm") and not hasattr(two, "fc1_norm")
    assert one(torch.randn(3, 40)).shape == two(torch.randn(3, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("activation", models.ACTIVATIONS)
def test_activation_argument_picks_the_module(activation: str) -> None:
    expected = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": nn.GELU,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
        "identity": nn.Identity,
    }[activation]
    model = models.cnn1d(40, 10, channels=(4,), hidden=(8,), activation=activation)
    assert type(model.conv1_act) is expected and type(model.fc1_act) is expected


def test_dropout_p_and_mode_reach_every_dropout_layer() -> None:
    model = models.cnn2d((1, 8, 8), 10, dropout=0.3, dropout_mode="scale_at_test")
    drops = [m for m in model if isinstance(m, tnn.Dropout)]
    assert len(drops) == 3  # two conv blocks and one hidden Linear
    assert all(d.p == 0.3 and d.mode == "scale_at_test" for d in drops)


def test_init_fan_in_draws_weights_with_std_one_over_sqrt_n_in_and_zero_biases() -> None:
    model = models.mlp(400, 10, hidden=(400,), init="fan_in")
    assert model.fc1.weight.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.03)
    assert model.out.weight.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.1)
    assert all(torch.count_nonzero(m.bias) == 0 for m in (model.fc1, model.out))


def test_init_takes_a_scheme_object_with_its_parameters() -> None:
    model = models.cnn2d((1, 8, 8), 10, channels=(64,), hidden=(), init=tinit.gaussian(std=0.05))
    assert model.conv1.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert model.out.weight.std().item() == pytest.approx(0.05, rel=0.05)


def test_init_reaches_the_convolutions() -> None:
    model = models.cnn1d(40, 10, channels=(64, 64), kernel_size=5, init="he")
    n_in = 64 * 5  # in_channels · kernel size
    assert model.conv2.weight.std().item() == pytest.approx(math.sqrt(2 / n_in), rel=0.05)
    assert torch.count_nonzero(model.conv2.bias) == 0


def test_init_default_keeps_torchs_initialization() -> None:
    torch.manual_seed(1)
    ours = models.mlp(40, 10, hidden=(100,))
    torch.manual_seed(1)
    torchs = nn.Sequential(nn.Flatten(), nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 10))
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), torchs.parameters()))


def test_building_a_batch_norm_model_leaves_its_statistics_untouched() -> None:
    model = models.cnn1d(40, 10, norm="batch", hidden=(8,))
    for bn in (m for m in model if isinstance(m, tnn.BatchNorm1d)):
        assert int(bn.num_batches_tracked) == 0
        assert torch.count_nonzero(bn.running_mean) == 0
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_models_print_their_layer_names() -> None:
    text = repr(models.cnn1d(40, 10, norm="batch", dropout=0.1))
    for name in ("(conv1)", "(conv1_norm)", "(conv1_act)", "(conv1_dropout)", "(out)"):
        assert name in text


# --- create --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "input_shape", "options", "expected"),
    [
        ("linear", (40,), {}, lambda: models.linear(40, 10)),
        ("mlp", (3, 4), {"hidden": (5,)}, lambda: models.mlp(12, 10, hidden=(5,))),
        ("cnn1d", (40,), {}, lambda: models.cnn1d(40, 10)),
        ("cnn1d", (2, 40), {"norm": "batch"}, lambda: models.cnn1d(40, 10, 2, norm="batch")),
        ("cnn2d", (8, 8), {"hidden": ()}, lambda: models.cnn2d((1, 8, 8), 10, hidden=())),
        ("cnn2d", (3, 8, 8), {"dropout": 0.2}, lambda: models.cnn2d((3, 8, 8), 10, dropout=0.2)),
    ],
)
def test_create_dispatches_by_kind_with_the_sample_shape(
    kind: str, input_shape: tuple[int, ...], options: dict, expected
) -> None:
    model = models.create(kind, input_shape, 10, **options)
    assert repr(model) == repr(expected())
    assert model(torch.randn(4, *input_shape)).shape == (4, 10)


def test_options_lists_each_kinds_builder_options() -> None:
    assert models.OPTIONS["linear"] == ("init",)
    assert models.OPTIONS["mlp"] == (
        "hidden",
        "activation",
        "norm",
        "dropout",
        "dropout_mode",
        "init",
    )
    assert "kernel_size" in models.OPTIONS["cnn1d"] and "stride" not in models.OPTIONS["cnn2d"]
    assert set(models.OPTIONS) == set(models.NAMES)


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: models.create("rnn", (40,), 10), "kind must be one of linear, mlp, cnn1d, cnn2d"),
        (lambda: models.mlp(40, 10, activation="rleu"), "activation must be one of relu, tanh"),
        (lambda: models.mlp(40, 10, norm="batchnorm"), "norm must be one of none, batch"),
        (lambda: models.mlp(40, 10, norm="instance"), "instance.*makes no sense for an mlp"),
        (lambda: models.mlp(40, 10, init="kaiming"), "init must be one of default, gaussian"),
        (lambda: models.linear(40, 10, init="glorot"), "init must be one of"),
        (lambda: models.mlp(40, 10, dropout=1.0), r"dropout must be .* \[0, 1\)"),
        (lambda: models.mlp(40, 10, dropout=-0.1), "dropout must be"),
        (lambda: models.cnn2d((1, 8, 8), 10, dropout="0.5"), "dropout must be"),
        (lambda: models.mlp(40, 10, dropout_mode="test"), "dropout_mode must be one of inverted"),
        (lambda: models.linear(0, 10), "in_features must be a positive int"),
        (lambda: models.linear(40, -1), "n_out must be a positive int"),
        (lambda: models.mlp(40.0, 10), "in_features"),
        (lambda: models.mlp(40, 10, hidden=(100, 0)), "hidden must be a list of ints > 0"),
        (lambda: models.mlp(40, 10, hidden=100), "hidden must be a list"),
        (lambda: models.cnn1d(0, 10), "in_length"),
        (lambda: models.cnn1d(40, 10, in_channels=0), "in_channels"),
        (lambda: models.cnn1d(40, 10, channels=()), "channels must be a non-empty list"),
        (lambda: models.cnn1d(40, 10, kernel_size=0), "kernel_size must be a positive int"),
        (lambda: models.cnn1d(40, 10, channels=(4,), kernel_size=(5, 3)), "2 entries .* has 1"),
        (lambda: models.cnn1d(40, 10, stride=0), "stride must be a positive int"),
        (lambda: models.cnn1d(6, 10, kernel_size=5), "in_length=6 is too short"),
        (lambda: models.cnn2d((1, 8), 10), r"in_shape must be \(C, H, W\)"),
        (lambda: models.cnn2d((1, 0, 8), 10), "in_shape H"),
        (lambda: models.cnn2d((1, 8, 8), 10, kernel_size=0), "kernel_size must be a positive int"),
        (lambda: models.cnn2d((1, 4, 4), 10, channels=(2, 2, 2)), "too small for 3 conv blocks"),
        (lambda: models.create("mlp", (40,), 10, channels=(4,)), "'mlp' has no option channels"),
        (lambda: models.create("cnn1d", (1, 2, 3), 10), r"cnn1d needs input_shape \(L,\)"),
        (lambda: models.create("cnn2d", (64,), 10), r"cnn2d needs input_shape \(H, W\)"),
        (lambda: models.create("mlp", (40, 0), 10), "input_shape must be"),
    ],
)
def test_bad_argument_raises_value_error_naming_it(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


# --- training ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "input_shape", "options"),
    [
        ("linear", (20,), {}),
        ("mlp", (20,), {"norm": "batch", "dropout": 0.2, "init": "he"}),
        ("cnn1d", (40,), {"norm": "layer", "dropout": 0.1, "dropout_mode": "scale_at_test"}),
        ("cnn2d", (1, 8, 8), {"channels": (4, 8), "hidden": (16,), "norm": "batch"}),
    ],
)
def test_model_trains_to_a_lower_loss_on_random_data(
    kind: str, input_shape: tuple[int, ...], options: dict
) -> None:
    x, y = torch.randn(64, *input_shape), torch.randint(0, 3, (64,))
    model = models.create(kind, input_shape, 3, **options).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert math.isfinite(losses[-1]) and losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("mode", tnn.DROPOUT_MODES)
def test_dropout_model_is_random_in_training_and_deterministic_in_eval(mode: str) -> None:
    model = models.mlp(20, 3, dropout=0.5, dropout_mode=mode)
    x = torch.randn(16, 20)
    assert not torch.equal(model.train()(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
