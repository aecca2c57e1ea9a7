"""Model builders: linear, MLP, 1-D and 2-D CNN, with the training techniques as arguments.

Each builder returns a plain ``nn.Sequential`` whose layers have names, so a model prints
readably and its ``state_dict`` keys say what they are (``conv1.weight``,
``fc1_norm.running_mean``, ``out.bias``). Every hidden block is laid out the same way::

    Linear or Conv  →  norm (unless "none")  →  activation  →  [max-pool]  →  Dropout (if p > 0)

and the output layer ``out`` is a plain ``Linear`` with no norm, activation or dropout
(it returns logits, or the prediction of a regression). A Linear or Conv followed by a
batch or instance norm has no bias: the norm subtracts it again (its gradient is exactly
0), and the norm's β is the layer's shift. The techniques come from the
components: ``norm=`` from :func:`trainlab.nn.create_norm`, dropout is
:class:`trainlab.nn.Dropout` (``dropout_mode="inverted" | "scale_at_test"``), and
``init=`` goes through :func:`trainlab.init.apply` after the model is built
(``"default"`` keeps torch's own initialization).

:func:`create` picks a builder by a config's ``model.kind`` (one of :data:`NAMES`) and the
shape of one sample (``Dataset.X.shape[1:]``). All arguments are checked before any layer
is made; a bad one raises ``ValueError`` naming it and what it accepts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from trainlab import init as _init
from trainlab.errors import check_choice, check_range
from trainlab.nn import DROPOUT_MODES, NORM_NAMES, Dropout, create_norm

__all__ = [
    "NAMES",
    "ACTIVATIONS",
    "OPTIONS",
    "AddChannelDim",
    "linear",
    "mlp",
    "cnn1d",
    "cnn2d",
    "create",
]

#: The model kinds :func:`create` builds (a config's ``model.kind``).
NAMES = ("linear", "mlp", "cnn1d", "cnn2d")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "identity")

_ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01, torch's default
    "elu": nn.ELU,
    "identity": nn.Identity,
}


class AddChannelDim(nn.Module):
    """Give a one-channel input its channel dimension: N × L → N × 1 × L (or N × H × W →
    N × 1 × H × W); an input that already has it (N × 1 × L, N × 1 × H × W) passes unchanged.

    MNIST-1D sequences come as N × 40; a ``Conv1d`` needs N × C × L.

    Parameters
    ----------
    spatial_dims : int
        1 for sequences, 2 for images.
    """

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() == self.spatial_dims + 1:
            return input.unsqueeze(1)
        return input

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}"


# --- argument checks -----------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sizes(name: str, value: object, *, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of ints > 0; got {value!r}")
    if not (allow_empty or len(value)) or not all(_is_int(v) and v > 0 for v in value):
        what = "a list" if allow_empty else "a non-empty list"
        raise ValueError(f"{name} must be {what} of ints > 0; got {value!r}")
    return tuple(value)


def _check_techniques(
    activation: str, norm: str, dropout: float, dropout_mode: str, init: str | _init.Scheme
) -> None:
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("norm", norm, NORM_NAMES)
    check_range("dropout", dropout, 0.0, 1.0, high_open=True)
    check_choice("dropout_mode", dropout_mode, DROPOUT_MODES)
    _check_init(init)


def _check_init(init: str | _init.Scheme) -> None:
    if not isinstance(init, _init.Scheme):
        check_choice("init", init, _init.NAMES)


# --- blocks --------------------------------------------------------------------------


#: Norms that subtract, per unit, a mean over a set on which a bias added just before is
#: constant (the batch, and the positions; or a sample's positions): such a bias cancels
#: exactly — its true gradient is 0 — so a Linear or Conv feeding one has none (β does
#: its work). Trained with RMSProp or Adam it would move by rounding noise alone
#: (g/√s with g ≈ 0), differently on every machine and thread count.
_CANCEL_BIAS = ("batch", "sync_batch", "instance")


def _block_tail(
    prefix: str,
    n: int,
    *,
    norm: str,
    dim: int,
    activation: str,
    dropout: float,
    dropout_mode: str,
    pool: nn.Module | None = None,
) -> list[tuple[str, nn.Module]]:
    """The layers after a block's Linear/Conv: norm → activation → [pool] → dropout."""
    layers: list[tuple[str, nn.Module]] = []
    if norm != "none":
        layers.append((f"{prefix}_norm", create_norm(norm, n, dim=dim)))
    layers.append((f"{prefix}_act", _ACTIVATION_LAYERS[activation]()))
    if pool is not None:
        layers.append((f"{prefix}_pool", pool))
    if dropout > 0:
        layers.append((f"{prefix}_dropout", Dropout(dropout, mode=dropout_mode)))
    return layers


def _hidden_and_out(
    in_features: int,
    n_out: int,
    hidden: tuple[int, ...],
    *,
    norm: str,
    activation: str,
    dropout: float,
    dropout_mode: str,
) -> list[tuple[str, nn.Module]]:
    """Fully connected blocks ``fc1 … fcK`` on N × D features, then the output layer ``out``."""
    layers: list[tuple[str, nn.Module]] = []
    width = in_features
    for i, units in enumerate(hidden, start=1):
        layers.append((f"fc{i}", nn.Linear(width, units, bias=norm not in _CANCEL_BIAS)))
        layers += _block_tail(
            f"fc{i}",
            units,
            norm=norm,
            dim=0,
            activation=activation,
            dropout=dropout,
            dropout_mode=dropout_mode,
        )
        width = units
    layers.append(("out", nn.Linear(width, n_out)))
    return layers


def _finish(layers: list[tuple[str, nn.Module]], init: str | _init.Scheme) -> nn.Sequential:
    model = nn.Sequential()
    for name, layer in layers:
        model.add_module(name, layer)
    return _init.apply(model, init)


# --- builders ------------------------------------------------------------------------


def linear(in_features: int, n_out: int, init: str | _init.Scheme = "default") -> nn.Module:
    """Linear model z = Wx + b: logistic (softmax) regression with a cross-entropy loss,
    linear regression with a squared loss.

    Parameters
    ----------
    in_features : int
        D, the number of input features; an N × … input is flattened to N × D.
    n_out : int
        Number of outputs (classes, or regression targets).
    init : str or trainlab.init.Scheme
        Weight initialization, a name from :data:`trainlab.init.NAMES`; ``"default"``
        keeps torch's.

    Returns
    -------
    nn.Sequential
        ``flatten`` → ``out``.

    Raises
    ------
    ValueError
        For a size that is not a positive int or an unknown ``init``.
    """
    check_range("in_features", in_features, 1, integer=True)
    check_range("n_out", n_out, 1, integer=True)
    _check_init(init)
    return _finish([("flatten", nn.Flatten()), ("out", nn.Linear(in_features, n_out))], init)


def mlp(
    in_features: int,
    n_out: int,
    hidden: Sequence[int] = (100, 100),
    activation: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    dropout_mode: str = "inverted",
    init: str | _init.Scheme = "default",
) -> nn.Module:
    """Multilayer perceptron: fully connected blocks Linear → norm → activation → Dropout.

    The default is the MNIST-1D paper's MLP size, 40-100-100-10 for ``in_features=40``.

    Parameters
    ----------
    in_features : int
        D, the number of input features; an N × … input is flattened to N × D.
    n_out : int
        Number of outputs.
    hidden : sequence of int
        Units of each hidden layer; ``()`` gives a linear model. Default ``(100, 100)``.
    activation : str
        One of :data:`ACTIVATIONS`. Default ``"relu"``.
    norm : str
        ``"none"``, ``"batch"`` (:class:`trainlab.nn.BatchNorm1d`), ``"layer"``
        (:class:`trainlab.nn.LayerNorm`) or ``"group"`` after each hidden Linear.
        ``"instance"`` is refused: it needs positions to average over, and a hidden
        layer's N × D units have none.
    dropout : float
        Drop probability p in [0, 1) after each hidden activation; 0 adds no Dropout.
    dropout_mode : str
        ``"inverted"`` or ``"scale_at_test"`` (see :class:`trainlab.nn.Dropout`).
    init : str or trainlab.init.Scheme
        Weight initialization, a name from :data:`trainlab.init.NAMES`.

    Returns
    -------
    nn.Sequential
        ``flatten``, then ``fc1``, ``fc1_norm``, ``fc1_act``, ``fc1_dropout``, …, ``out``.

    Raises
    ------
    ValueError
        For any argument out of its range or set of choices (the message names it).
    """
    check_range("in_features", in_features, 1, integer=True)
    check_range("n_out", n_out, 1, integer=True)
    hidden = _check_sizes("hidden", hidden, allow_empty=True)
    _check_techniques(activation, norm, dropout, dropout_mode, init)
    if norm == "instance":
        raise ValueError(
            "norm='instance' makes no sense for an mlp: instance norm averages over the "
            "positions of each channel, and a hidden layer's N × D units have none "
            "(use 'layer' for per-sample statistics)"
        )
    layers = [("flatten", nn.Flatten())]
    layers += _hidden_and_out(
        in_features,
        n_out,
        hidden,
        norm=norm,
        activation=activation,
        dropout=dropout,
        dropout_mode=dropout_mode,
    )
    return _finish(layers, init)


def _fc_norm(norm: str) -> str:
    # Instance norm has no positions to average over on the flattened N × D features.
    return "none" if norm == "instance" else norm


def cnn1d(
    in_length: int,
    n_out: int,
    in_channels: int = 1,
    channels: Sequence[int] = (25, 25, 25),
    kernel_size: int | Sequence[int] | None = None,
    stride: int = 2,
    hidden: Sequence[int] = (),
    activation: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    dropout_mode: str = "inverted",
    init: str | _init.Scheme = "default",
) -> nn.Module:
    """1-D CNN for sequences: Conv1d blocks, flatten, fully connected blocks, output.

    Conv block i: ``Conv1d(C_{i−1}, C_i, k_i, stride, padding=1)`` → norm → activation →
    Dropout; a length L becomes ⌊(L + 2 − k)/stride⌋ + 1. The flattened size is found by
    running a zero input through the convolutions when the model is built.

    The defaults are the MNIST-1D paper's CNN (Greydanus 2020; ~94% test accuracy with
    Adam, lr 1e-2, batch 100, 6000 steps): three convolutions of 25 channels with kernel
    sizes 5, 3, 3, stride 2, padding 1 and ReLU, then one Linear layer to the outputs.
    On length 40 the lengths go 40 → 19 → 10 → 5, so that layer sees 25·5 = 125
    features; 5,210 parameters for 10 classes.

    Parameters
    ----------
    in_length : int
        L, the sequence length.
    n_out : int
        Number of outputs.
    in_channels : int
        C of an N × C × L input. With 1, an N × L input is accepted too (the channel
        dimension is added by an :class:`AddChannelDim` layer). Default 1.
    channels : sequence of int
        Output channels of each convolution (at least one). Default ``(25, 25, 25)``.
    kernel_size : int, sequence of int or None
        One kernel size for every convolution, or one per convolution (as many as
        ``channels``). Default ``None``: 5 for the first convolution and 3 for the
        others, as in the paper's CNN, for any number of ``channels``.
    stride : int
        Stride of every convolution. Default 2.
    hidden : sequence of int
        Units of fully connected hidden layers between the flattened features and the
        output. Default ``()``.
    activation : str
        One of :data:`ACTIVATIONS`. Default ``"relu"``.
    norm : str
        One of :data:`trainlab.nn.NORM_NAMES`, after every convolution (``"batch"``:
        :class:`trainlab.nn.BatchNorm1d` per channel; ``"layer"``:
        :class:`trainlab.nn.ConvLayerNorm`) and every hidden Linear (``"layer"``:
        :class:`trainlab.nn.LayerNorm`). ``"instance"`` normalizes the convolutions only;
        the hidden Linear layers, whose N × D units have no positions to average over, get
        no norm.
    dropout : float
        Drop probability p in [0, 1) after every hidden activation; 0 adds no Dropout.
    dropout_mode : str
        ``"inverted"`` or ``"scale_at_test"``.
    init : str or trainlab.init.Scheme
        Weight initialization, a name from :data:`trainlab.init.NAMES`.

    Returns
    -------
    nn.Sequential
        [``add_channel``], ``conv1``, ``conv1_norm``, ``conv1_act``, ``conv1_dropout``, …,
        ``flatten``, ``fc1`` …, ``out``.

    Raises
    ------
    ValueError
        For any argument out of its range or set of choices, or a sequence too short
        for the convolutions.
    """
    check_range("in_length", in_length, 1, integer=True)
    check_range("n_out", n_out, 1, integer=True)
    check_range("in_channels", in_channels, 1, integer=True)
    channels = _check_sizes("channels", channels, allow_empty=False)
    if kernel_size is None:
        kernel_sizes = (5,) + (3,) * (len(channels) - 1)
    elif _is_int(kernel_size):
        check_range("kernel_size", kernel_size, 1, integer=True)
        kernel_sizes = (kernel_size,) * len(channels)
    else:
        kernel_sizes = _check_sizes("kernel_size", kernel_size, allow_empty=False)
    if len(kernel_sizes) != len(channels):
        raise ValueError(
            f"kernel_size {list(kernel_sizes)} has {len(kernel_sizes)} entries but channels "
            f"{list(channels)} has {len(channels)}: give one kernel size per convolution, "
            "or a single int for all"
        )
    check_range("stride", stride, 1, integer=True)
    hidden = _check_sizes("hidden", hidden, allow_empty=True)
    _check_techniques(activation, norm, dropout, dropout_mode, init)

    layers: list[tuple[str, nn.Module]] = []
    if in_channels == 1:
        layers.append(("add_channel", AddChannelDim(1)))
    # The dummy forward runs through the convolutions only: norm, activation and dropout
    # keep the shape, and a batch norm must not see (or count) a fake batch.
    x = torch.zeros(1, in_channels, in_length)
    for i, (out_channels, k) in enumerate(zip(channels, kernel_sizes), start=1):
        if x.shape[-1] + 2 < k:
            raise ValueError(
                f"in_length={in_length} is too short for these convolutions: conv{i} "
                f"(kernel_size {k}, padding 1) gets a length of {x.shape[-1]}"
            )
        conv = nn.Conv1d(
            x.shape[1], out_channels, k, stride=stride, padding=1, bias=norm not in _CANCEL_BIAS
        )
        with torch.no_grad():
            x = conv(x)
        layers.append((f"conv{i}", conv))
        layers += _block_tail(
            f"conv{i}",
            out_channels,
            norm=norm,
            dim=1,
            activation=activation,
            dropout=dropout,
            dropout_mode=dropout_mode,
        )
    layers.append(("flatten", nn.Flatten()))
    layers += _hidden_and_out(
        x[0].numel(),
        n_out,
        hidden,
        norm=_fc_norm(norm),
        activation=activation,
        dropout=dropout,
        dropout_mode=dropout_mode,
    )
    return _finish(layers, init)


def cnn2d(
    in_shape: tuple[int, int, int],
    n_out: int,
    channels: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    hidden: Sequence[int] = (128,),
    activation: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    dropout_mode: str = "inverted",
    init: str | _init.Scheme = "default",
) -> nn.Module:
    """2-D CNN for images: conv blocks with 2 × 2 max-pooling, flatten, fully connected, out.

    Conv block i: ``Conv2d(C_{i−1}, C_i, k, padding="same")`` → norm → activation →
    ``MaxPool2d(2)`` → Dropout; each block keeps H × W through the convolution and
    halves it (rounding down) in the pool. The defaults (two blocks of 32 and 64
    channels, one hidden layer of 128) are the common small CNN for 28 × 28 digits.

    Parameters
    ----------
    in_shape : tuple of int
        (C, H, W) of one image. With C = 1 an N × H × W input is accepted too.
    n_out : int
        Number of outputs.
    channels : sequence of int
        Output channels of each conv block (at least one). Default ``(32, 64)``.
    kernel_size : int
        Kernel size of every convolution. Default 3.
    hidden : sequence of int
        Units of the fully connected hidden layers. Default ``(128,)``.
    activation : str
        One of :data:`ACTIVATIONS`. Default ``"relu"``.
    norm : str
        One of :data:`trainlab.nn.NORM_NAMES`, after every convolution (``"batch"``:
        :class:`trainlab.nn.BatchNorm2d`, spatial batch norm; ``"layer"``:
        :class:`trainlab.nn.ConvLayerNorm`) and every hidden Linear
        (:class:`trainlab.nn.BatchNorm1d`; :class:`trainlab.nn.LayerNorm`).
        ``"instance"`` normalizes the convolutions only.
    dropout : float
        Drop probability p in [0, 1) after every pool and hidden activation.
    dropout_mode : str
        ``"inverted"`` or ``"scale_at_test"``.
    init : str or trainlab.init.Scheme
        Weight initialization, a name from :data:`trainlab.init.NAMES`.

    Returns
    -------
    nn.Sequential
        [``add_channel``], ``conv1``, ``conv1_norm``, ``conv1_act``, ``conv1_pool``,
        ``conv1_dropout``, …, ``flatten``, ``fc1`` …, ``out``.

    Raises
    ------
    ValueError
        For any argument out of its range or set of choices, or an image too small to
        be pooled once per block.
    """
    if isinstance(in_shape, (str, bytes)) or not (
        isinstance(in_shape, Sequence) and len(in_shape) == 3
    ):
        raise ValueError(f"in_shape must be (C, H, W); got {in_shape!r}")
    for name, size in zip(("in_shape C", "in_shape H", "in_shape W"), in_shape):
        check_range(name, size, 1, integer=True)
    check_range("n_out", n_out, 1, integer=True)
    channels = _check_sizes("channels", channels, allow_empty=False)
    check_range("kernel_size", kernel_size, 1, integer=True)
    hidden = _check_sizes("hidden", hidden, allow_empty=True)
    _check_techniques(activation, norm, dropout, dropout_mode, init)

    in_channels, height, width = in_shape
    layers: list[tuple[str, nn.Module]] = []
    if in_channels == 1:
        layers.append(("add_channel", AddChannelDim(2)))
    x = torch.zeros(1, in_channels, height, width)
    for i, out_channels in enumerate(channels, start=1):
        if min(x.shape[-2:]) < 2:
            raise ValueError(
                f"in_shape={tuple(in_shape)} is too small for {len(channels)} conv blocks: "
                f"block {i} would max-pool a {x.shape[-2]} × {x.shape[-1]} map"
            )
        conv = nn.Conv2d(
            x.shape[1], out_channels, kernel_size, padding="same", bias=norm not in _CANCEL_BIAS
        )
        pool = nn.MaxPool2d(2)
        with torch.no_grad():
            x = pool(conv(x))
        layers.append((f"conv{i}", conv))
        layers += _block_tail(
            f"conv{i}",
            out_channels,
            norm=norm,
            dim=2,
            activation=activation,
            dropout=dropout,
            dropout_mode=dropout_mode,
            pool=pool,
        )
    layers.append(("flatten", nn.Flatten()))
    layers += _hidden_and_out(
        x[0].numel(),
        n_out,
        hidden,
        norm=_fc_norm(norm),
        activation=activation,
        dropout=dropout,
        dropout_mode=dropout_mode,
    )
    return _finish(layers, init)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear,
    "mlp": mlp,
    "cnn1d": cnn1d,
    "cnn2d": cnn2d,
}
# Arguments that create() fills in from input_shape and n_out.
_SHAPE_ARGS = ("in_features", "in_length", "in_channels", "in_shape", "n_out")

#: The ``**options`` :func:`create` accepts for each kind (the builder's other arguments).
OPTIONS: dict[str, tuple[str, ...]] = {
    kind: tuple(p for p in inspect.signature(builder).parameters if p not in _SHAPE_ARGS)
    for kind, builder in _BUILDERS.items()
}


def create(kind: str, input_shape: tuple[int, ...], n_out: int, **options: Any) -> nn.Module:
    """The model a config's ``model:`` section describes.

    Parameters
    ----------
    kind : str
        One of :data:`NAMES`.
    input_shape : tuple of int
        The shape of one sample, ``Dataset.X.shape[1:]``: any shape for ``linear`` and
        ``mlp`` (flattened); ``(L,)`` or ``(C, L)`` for ``cnn1d``; ``(H, W)`` or
        ``(C, H, W)`` for ``cnn2d``.
    n_out : int
        Number of outputs.
    **options
        The builder's other arguments, :data:`OPTIONS` ``[kind]`` (e.g. ``hidden``,
        ``norm``, ``dropout``, ``init``).

    Returns
    -------
    nn.Module

    Raises
    ------
    ValueError
        For an unknown ``kind``, an ``input_shape`` the kind cannot take, an option the
        kind does not have, or a bad option value.
    """
    check_choice("kind", kind, NAMES)
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise ValueError(f"input_shape must be a tuple of ints > 0; got {input_shape!r}")
    shape = _check_sizes("input_shape", input_shape, allow_empty=False)
    unknown = sorted(set(options) - set(OPTIONS[kind]))
    if unknown:
        raise ValueError(
            f"kind {kind!r} has no option {', '.join(unknown)}; "
            f"its options are {', '.join(OPTIONS[kind])}"
        )
    if kind in ("linear", "mlp"):
        return _BUILDERS[kind](math.prod(shape), n_out, **options)
    if kind == "cnn1d":
        if len(shape) not in (1, 2):
            raise ValueError(
                f"cnn1d needs input_shape (L,) or (C, L) (samples N × L or N × C × L); got {shape}"
            )
        in_channels = 1 if len(shape) == 1 else shape[0]
        return cnn1d(shape[-1], n_out, in_channels=in_channels, **options)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"cnn2d needs input_shape (H, W) or (C, H, W) (images N × H × W or "
            f"N × C × H × W); got {shape}"
        )
    return cnn2d(shape if len(shape) == 3 else (1, *shape), n_out, **options)
