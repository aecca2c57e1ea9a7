"""Weight initialization: the lecture's schemes, and a look at what they do to activations.

A scheme is a small callable that fills one weight tensor in place with W ~ N(0, σ²)
(or its truncated form), σ given by the scheme:

- ``gaussian``: σ = ``std`` (the lecture's 0.01), :class:`Gaussian`;
- ``truncated_gaussian``: σ = ``std``, cut at ±``bound``·σ, :class:`TruncatedGaussian`;
- ``fan_in``: σ = 1/√n_in (the lecture's C10), :class:`FanIn`;
- ``xavier``: σ = √(2/(n_in + n_out)) (Glorot), :class:`Xavier`;
- ``he``: σ = √(2/n_in) (for ReLU), :class:`He`.

``n_in`` and ``n_out`` are counted as torch counts them: for a ``Linear(n_in, n_out)``
weight (``n_out × n_in``) the two sizes; for a convolution weight
(``out_channels × in_channels × k…``) ``n_in = in_channels·∏k`` and
``n_out = out_channels·∏k``. :func:`apply` initializes a whole model;
:func:`activation_stats` shows activations vanishing with depth under a fixed small
Gaussian and keeping their scale under fan-in scaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainlab.errors import check_choice, check_range

__all__ = [
    "Scheme",
    "Gaussian",
    "TruncatedGaussian",
    "FanIn",
    "Xavier",
    "He",
    "gaussian",
    "truncated_gaussian",
    "fan_in",
    "xavier",
    "he",
    "NAMES",
    "SCHEMES",
    "INIT_LAYERS",
    "STAT_LAYERS",
    "fans",
    "apply",
    "LayerStats",
    "activation_stats",
]


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(n_in, n_out)`` of a Linear or convolution weight, counted as torch counts them.

    Raises
    ------
    ValueError
        For a tensor with fewer than 2 dimensions (a bias has no fan-in).
    """
    if weight.dim() < 2:
        raise ValueError(
            f"fan-in and fan-out need a weight with at least 2 dimensions; "
            f"got shape {tuple(weight.shape)}"
        )
    receptive_field = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


class Scheme:
    """An initialization scheme: ``scheme(weight)`` fills ``weight`` in place with N(0, σ²).

    Subclasses say how σ follows from the weight's shape in :meth:`sigma`.
    """

    def sigma(self, weight: torch.Tensor) -> float:
        """σ of the normal distribution the weight is drawn from."""
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        """Fill ``weight`` in place; return it."""
        return weight.normal_(0.0, self.sigma(weight))


@dataclass(frozen=True)
class Gaussian(Scheme):
    """Fixed Gaussian: W ~ N(0, std²), the same σ for every layer (the lecture: 0.01).

    Fine for networks that are not too deep (C9); in a deep one each layer scales the
    signal by about ``std·√n_in``, so activations vanish geometrically with depth.
    """

    std: float = 0.01

    def __post_init__(self) -> None:
        check_range("std", self.std, 0.0, low_open=True, owner="Gaussian")

    def sigma(self, weight: torch.Tensor) -> float:
        return float(self.std)


@dataclass(frozen=True)
class TruncatedGaussian(Scheme):
    """Truncated Gaussian N_T(0, std²): N(0, std²) restricted to ``[−bound·σ, bound·σ]``.

    ``bound`` is in units of σ (Keras' ``TruncatedNormal`` cuts at ±2σ). This is not
    torch's ``nn.init.trunc_normal_(std=0.01)``, whose bounds ``a=−2, b=2`` are absolute
    and so never cut anything at σ = 0.01. The samples' standard deviation is smaller
    than σ: ``σ·√(1 − 2bφ(b)/(2Φ(b) − 1))`` (:meth:`effective_std`; 0.88σ at b = 2).
    """

    std: float = 0.01
    bound: float = 2.0

    def __post_init__(self) -> None:
        check_range("std", self.std, 0.0, low_open=True, owner="TruncatedGaussian")
        check_range("bound", self.bound, 0.0, low_open=True, owner="TruncatedGaussian")

    def sigma(self, weight: torch.Tensor) -> float:
        return float(self.std)

    def effective_std(self) -> float:
        """Standard deviation of the truncated distribution."""
        b = float(self.bound)
        pdf = math.exp(-0.5 * b * b) / math.sqrt(2.0 * math.pi)
        mass = math.erf(b / math.sqrt(2.0))  # 2Φ(b) − 1
        return self.std * math.sqrt(1.0 - 2.0 * b * pdf / mass)

    @torch.no_grad()
    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        limit = self.bound * self.std
        return nn.init.trunc_normal_(weight, mean=0.0, std=self.std, a=-limit, b=limit)


@dataclass(frozen=True)
class FanIn(Scheme):
    """Fan-in scaling (C10): layer i gets N(0, σ_i²), σ_i = 1/√n_in, n_in = units of layer i−1.

    A linear layer then keeps the variance of its input: Var(Σ_j w_j h_j) = n_in·σ²·Var(h).
    """

    def sigma(self, weight: torch.Tensor) -> float:
        n_in, _ = fans(weight)
        return 1.0 / math.sqrt(n_in)


@dataclass(frozen=True)
class Xavier(Scheme):
    """Xavier / Glorot normal: σ = √(2/(n_in + n_out)), a compromise between keeping the
    variance of the activations (forward) and of the gradients (backward); for tanh."""

    def sigma(self, weight: torch.Tensor) -> float:
        n_in, n_out = fans(weight)
        return math.sqrt(2.0 / (n_in + n_out))


@dataclass(frozen=True)
class He(Scheme):
    """He / Kaiming normal (fan-in mode): σ = √(2/n_in); the 2 makes up for the half of
    its input that a ReLU sets to zero."""

    def sigma(self, weight: torch.Tensor) -> float:
        n_in, _ = fans(weight)
        return math.sqrt(2.0 / n_in)


# The config's names for the schemes (``init: he``); call them like the classes.
gaussian = Gaussian
truncated_gaussian = TruncatedGaussian
fan_in = FanIn
xavier = Xavier
he = He

#: Scheme classes by config name.
SCHEMES: dict[str, type[Scheme]] = {
    "gaussian": Gaussian,
    "truncated_gaussian": TruncatedGaussian,
    "fan_in": FanIn,
    "xavier": Xavier,
    "he": He,
}
#: Every name :func:`apply` accepts; ``default`` leaves torch's own initialization.
NAMES = ("default", *SCHEMES)

#: The layers whose weights :func:`apply` initializes.
INIT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


def apply(model: nn.Module, scheme: str | Scheme = "default", **kwargs: float) -> nn.Module:
    """Initialize every Linear, Conv1d and Conv2d weight of ``model`` and zero its biases.

    Parameters
    ----------
    model : nn.Module
    scheme : str or Scheme
        A name from :data:`NAMES` (``kwargs`` go to its class, e.g.
        ``apply(model, "gaussian", std=0.02)``) or a scheme object. ``"default"``
        leaves the model exactly as torch initialized it.

    Returns
    -------
    nn.Module
        ``model``, initialized in place.

    Raises
    ------
    ValueError
        For an unknown name (the message lists :data:`NAMES`), a bad parameter, or
        ``kwargs`` given with a scheme object or with ``"default"``.
    """
    if isinstance(scheme, str):
        check_choice("scheme", scheme, NAMES, owner="init")
        if scheme == "default":
            if kwargs:
                raise ValueError(f"init scheme 'default' takes no parameters; got {kwargs}")
            return model
        scheme = SCHEMES[scheme](**kwargs)
    elif not isinstance(scheme, Scheme):
        raise ValueError(
            f"init scheme must be a name ({', '.join(NAMES)}) or a trainlab.init.Scheme; "
            f"got {scheme!r}"
        )
    elif kwargs:
        raise ValueError(f"parameters {kwargs} go to the scheme's constructor, not to apply()")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, INIT_LAYERS):
                scheme(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
    return model


#: Activation modules whose outputs :func:`activation_stats` reports.
_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softsign,
)
#: The modules :func:`activation_stats` looks at: Linear, convolutions, activations.
STAT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    *_ACTIVATIONS,
)


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's output over a batch (see :func:`activation_stats`)."""

    name: str  #: qualified name, as ``model.named_modules()`` gives it ("" for the root)
    kind: str  #: the module's class name, e.g. ``"Linear"``, ``"ReLU"``
    shape: tuple[int, ...]  #: shape of the output
    mean: float  #: mean over all elements of the output
    std: float  #: standard deviation over all elements (biased, 1/numel)
    dead_fraction: float  #: fraction of units whose output is ≤ 0 for every sample


def _layer_stats(name: str, module: nn.Module, out: torch.Tensor) -> LayerStats:
    values = out.detach().to(torch.float64)
    if values.dim() >= 2:
        per_unit = values.transpose(0, 1).reshape(values.shape[1], -1)
    else:
        per_unit = values.reshape(-1, 1)
    dead = (per_unit <= 0).all(dim=1)
    return LayerStats(
        name=name,
        kind=type(module).__name__,
        shape=tuple(out.shape),
        mean=values.mean().item(),
        std=values.std(correction=0).item(),
        dead_fraction=dead.to(torch.float64).mean().item(),
    )


def activation_stats(
    model: nn.Module,
    x: torch.Tensor,
    layers: tuple[type[nn.Module], ...] = STAT_LAYERS,
) -> list[LayerStats]:
    """Mean, std and dead fraction of every Linear, Conv and activation output, in forward order.

    The model runs once on the batch ``x`` in eval mode under ``torch.no_grad``, with a
    forward hook on every module that is an instance of ``layers``. Afterwards the hooks
    are removed and every module's train/eval mode is restored, also on error.

    A *unit* is one index along dimension 1 of a layer's output: an output feature of a
    Linear (``N × D``: D units), a channel of a convolution (``N × C × …``: C units).
    A unit is *dead* when its output is ≤ 0 for every sample of ``x`` and, for a
    convolution, at every position: a ReLU after it passes no signal and no gradient.
    ``dead_fraction`` is the number of dead units over the number of units. Mean and
    std are taken over all elements of the output.

    Parameters
    ----------
    model : nn.Module
    x : Tensor
        A batch of inputs (``N × …``), on the model's device.
    layers : tuple of module classes, optional
        Which modules to report; default :data:`STAT_LAYERS`.

    Returns
    -------
    list of LayerStats
        One entry per call of a reported module, in the order the forward pass ran them
        (a module called twice appears twice).
    """
    records: list[LayerStats] = []
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor):
            records.append(_layer_stats(names[module], module, out))

    modes = [(module, module.training) for module in model.modules()]
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return records
