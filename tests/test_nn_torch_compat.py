"""trainlab.nn's layers are drop-in for torch.nn's: same constructor signatures, each
other's checkpoints, and TorchScript / trace / export / compile give eager's outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import trainlab.nn as tnn

BATCH_NORMS = [
    (tnn.BatchNorm1d, nn.BatchNorm1d, (8, 3)),
    (tnn.BatchNorm1d, nn.BatchNorm1d, (8, 3, 5)),
    (tnn.BatchNorm2d, nn.BatchNorm2d, (8, 3, 4, 4)),
]


def _pairs() -> list[tuple[str, nn.Module, nn.Module, tuple[int, ...]]]:
    """(name, trainlab layer, torch layer, input shape) for each layer and configuration."""
    pairs = []
    for ours, theirs, shape in BATCH_NORMS:
        for affine in (True, False):
            for track in (True, False):
                # torch's positional order: num_features, eps, momentum, affine, track
                pairs.append(
                    (
                        f"{ours.__name__}{shape}-affine={affine}-track={track}",
                        ours(3, 1e-5, 0.1, affine, track),
                        theirs(3, 1e-5, 0.1, affine, track),
                        shape,
                    )
                )
    for affine in (True, False):
        pairs.append(
            (
                f"InstanceNorm1d-affine={affine}",
                tnn.InstanceNorm1d(3, 1e-5, 0.1, affine, False),
                nn.InstanceNorm1d(3, 1e-5, 0.1, affine, False),
                (8, 3, 5),
            )
        )
        pairs.append(
            (
                f"InstanceNorm2d-affine={affine}",
                tnn.InstanceNorm2d(3, 1e-5, 0.1, affine, False),
                nn.InstanceNorm2d(3, 1e-5, 0.1, affine, False),
                (8, 3, 4, 4),
            )
        )
        pairs.append(
            (
                f"LayerNorm-affine={affine}",
                tnn.LayerNorm(3, 1e-5, affine),
                nn.LayerNorm(3, 1e-5, affine),
                (8, 3),
            )
        )
        pairs.append(
            (
                f"GroupNorm-affine={affine}",
                tnn.GroupNorm(3, 6, 1e-5, affine),
                nn.GroupNorm(3, 6, 1e-5, affine),
                (8, 6, 4, 4),
            )
        )
        pairs.append(
            (
                f"ConvLayerNorm-affine={affine}",
                tnn.ConvLayerNorm(6, 1e-5, affine),
                nn.GroupNorm(1, 6, 1e-5, affine),
                (8, 6, 4, 4),
            )
        )
    return pairs


PAIRS = _pairs()
IDS = [p[0] for p in PAIRS]


def _randomize(layer: nn.Module) -> nn.Module:
    """Non-default parameters and statistics, so a load that drops one shows."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in layer.parameters():
            t.copy_(torch.randn(t.shape, generator=gen))
        if getattr(layer, "running_var", None) is not None:
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=gen))
            layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=gen) + 0.5)
            layer.num_batches_tracked.fill_(7)
    return layer


@pytest.mark.parametrize(("name", "ours", "theirs", "shape"), PAIRS, ids=IDS)
@pytest.mark.parametrize("direction", ["torch_to_trainlab", "trainlab_to_torch"])
def test_a_checkpoint_loads_either_way_and_both_layers_then_compute_the_same(
    name: str, ours: nn.Module, theirs: nn.Module, shape: tuple[int, ...], direction: str
) -> None:
    source, target = (theirs, ours) if direction == "torch_to_trainlab" else (ours, theirs)
    _randomize(source)
    target.load_state_dict(source.state_dict())  # strict: same keys both ways
    assert source.state_dict().keys() == target.state_dict().keys()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    for training in (True, False):  # train first: eval then uses the updated buffers
        ours.train(training)
        theirs.train(training)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
        for key, value in theirs.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[key], value, rtol=1e-6, atol=1e-6)


def test_batch_norm_takes_torchs_keywords_and_keeps_its_own_keyword_only() -> None:
    layer = tnn.BatchNorm2d(
        4,
        eps=1e-3,
        momentum=None,
        affine=False,
        track_running_stats=False,
        device="cpu",
        dtype=torch.float64,
        stats="running",
    )
    assert isinstance(layer, nn.BatchNorm2d)
    assert layer.running_mean is None and layer.weight is None
    with pytest.raises(TypeError):
        tnn.BatchNorm2d(4, 1e-5, 0.1, True, True, None, None, "exact")


def test_exact_batch_norm_without_running_buffers_is_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="track_running_stats must be True"):
        tnn.BatchNorm1d(4, track_running_stats=False, stats="exact")


def test_instance_norm_takes_torchs_signature_and_refuses_running_stats_by_name() -> None:
    layer = tnn.InstanceNorm2d(3, 1e-5, 0.1, True, False, "cpu", torch.float32)
    assert isinstance(layer, nn.InstanceNorm2d)
    with pytest.raises(ValueError, match="track_running_stats must be False"):
        tnn.InstanceNorm2d(3, track_running_stats=True)


@pytest.mark.parametrize("mode", ["inverted", "scale_at_test"])
def test_dropout_with_p_one_zeroes_every_unit_in_training_as_torch(mode: str) -> None:
    x = torch.randn(16, 8)
    assert torch.equal(tnn.Dropout(1.0, mode=mode).train()(x), torch.zeros_like(x))
    assert torch.equal(nn.Dropout(1.0).train()(x), torch.zeros_like(x))


@pytest.mark.parametrize("mode", ["inverted", "scale_at_test"])
def test_inplace_dropout_overwrites_its_input_with_the_same_output(mode: str) -> None:
    x = torch.randn(16, 8)
    torch.manual_seed(0)
    expected = tnn.Dropout(0.3, mode=mode).train()(x.clone())
    torch.manual_seed(0)
    y = x.clone()
    out = tnn.Dropout(0.3, True, mode=mode).train()(y)
    assert torch.equal(out, expected) and torch.equal(y, expected)
    assert repr(tnn.Dropout(0.3, True)) == "Dropout(p=0.3, inplace=True, mode='inverted')"


def _compiled(kind: str, layer: nn.Module, x: torch.Tensor, fullgraph: bool = True) -> nn.Module:
    if kind == "script":
        return torch.jit.script(layer)
    if kind == "trace":
        return torch.jit.trace(layer, (x,))
    if kind == "export":
        return torch.export.export(layer, (x,)).module()
    # Each test compiles a fresh layer of a shared class: forget earlier compilations,
    # which would otherwise reach dynamo's recompile limit.
    torch._dynamo.reset()
    return torch.compile(layer, backend="aot_eager", fullgraph=fullgraph)


LAYERS = [(name, ours, shape) for name, ours, _, shape in PAIRS] + [
    ("Dropout-inverted", tnn.Dropout(0.3), (8, 3)),
    ("Dropout-scale_at_test", tnn.Dropout(0.3, mode="scale_at_test"), (8, 3)),
    ("BatchNorm2d-exact", tnn.BatchNorm2d(3, stats="exact"), (8, 3, 4, 4)),
    ("BatchNorm1d-momentum=None", tnn.BatchNorm1d(3, momentum=None), (8, 3)),
]


@pytest.mark.parametrize("kind", ["script", "trace", "export", "compile"])
@pytest.mark.parametrize(("name", "layer", "shape"), LAYERS, ids=[n for n, _, _ in LAYERS])
def test_scripted_traced_exported_and_compiled_layers_match_eager_at_eval(
    kind: str, name: str, layer: nn.Module, shape: tuple[int, ...]
) -> None:
    layer = _randomize(copy.deepcopy(layer)).eval()
    if getattr(layer, "stats", None) == "exact":
        layer._has_exact_stats = True  # as after recalibrate
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    expected = layer(x)
    torch.testing.assert_close(_compiled(kind, layer, x)(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["script", "compile"])
@pytest.mark.parametrize(
    ("name", "layer", "shape"),
    [p for p in LAYERS if not p[0].startswith("Dropout")],
    ids=[n for n, _, _ in LAYERS if not n.startswith("Dropout")],
)
def test_scripted_and_compiled_layers_train_like_eager(
    kind: str, name: str, layer: nn.Module, shape: tuple[int, ...]
) -> None:
    eager = _randomize(copy.deepcopy(layer)).train()
    other = copy.deepcopy(eager)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    # momentum=None trains with 1 / float(num_batches_tracked), a data-dependent float that
    # breaks the graph in torch.nn.BatchNorm1d too: compile it with a graph break there.
    compiled = _compiled(kind, other, x, fullgraph=getattr(layer, "momentum", 0.1) is not None)
    for _ in range(2):  # the second step sees the buffers the first one updated
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-6, atol=1e-6)
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], value, rtol=1e-6, atol=1e-6)
