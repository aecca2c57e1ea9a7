"""Adam and AdamW: RMSProp applied to a moving average of the gradient."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ._engine import Optimizer, maximum_, settings_on
from ._precision import in_float32

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with the switches of the lecture, torch, Keras and optax.

    With ``g = ∇f(w_t)`` (plus ``λ·w_t`` for L2 weight decay):

    * ``m_t = β₁·m_{t−1} + (1−β₁)·g``;  ``s_t = β₂·s_{t−1} + (1−β₂)·g²``
    * the lecture's slide (``bias_correction=False``): ``w_{t+1} = w_t − lr·m_t ⊘ (√s_t + ε)``
    * the paper, torch, optax (default): ``m̂ = m_t/(1−β₁ᵗ)``, ``ŝ = s_t/(1−β₂ᵗ)``;
      ``w_{t+1} = w_t − lr·m̂ ⊘ (√ŝ + ε)``. The divisor ``1−βᵗ`` is the sum of the
      moving average's weights (claim C5), so m̂ and ŝ are weighted means.
    * ``eps_hat`` (Keras, TF): ε is added to the uncorrected √s_t and the corrections go
      into the step size: ``α_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)``;  ``w_{t+1} = w_t − α_t·m_t ⊘ (√s_t + ε̂)``
    * ``eps_in_sqrt``: ``√(ŝ + ε)`` instead of ``√ŝ + ε``
    * ``amsgrad``: s is replaced by its running maximum ``s_max = max(s_max, s_t)``
      (torch, Keras: of the raw s_t, then corrected); with ``amsgrad_corrected_max``
      (optax) the maximum is taken of the corrected ŝ
    * ``decoupled`` weight decay (AdamW, Keras): ``w ← w − lr·λ·w`` before the step.
    * ``maximize`` (torch): ``g ← −g`` first.

    With ``β₁ = 0`` and no bias correction Adam is RMSProp with ``ρ = β₂`` (claim C7);
    in general it is RMSProp with g replaced by its moving average m (claim C6).

    Parameters
    ----------
    params : iterable of tensors or of dicts (param groups)
    lr : float, optional
        ≥ 0. Default 1e-3.
    betas : (float, float), optional
        (β₁, β₂), each in [0, 1). Default (0.9, 0.999).
    eps : float, optional
        ε > 0. Default 1e-8 (Keras: 1e-7).
    bias_correction, eps_hat, amsgrad, eps_in_sqrt, amsgrad_corrected_max : bool, optional
    weight_decay : float, optional
        λ ≥ 0. Default 0 (AdamW: 1e-2).
    decoupled : bool, optional
        Decoupled (AdamW) decay instead of L2 added to the gradient.
    convention : {"lecture", "torch", "keras", "optax"}, optional
        The lecture: no bias correction; torch: trainlab's defaults; Keras:
        ``eps=1e-7, eps_hat, decoupled``; optax: ``amsgrad_corrected_max``.
        Explicit arguments win.
    maximize : bool, optional
        Ascend (torch's ``maximize``): ``g ← −g`` first, before weight decay. Default False.
    impl : {"auto", "flat", "reference", "foreach"}

    State per parameter: ``exp_avg`` (m), ``exp_avg_sq`` (s), ``max_exp_avg_sq``
    (AMSGrad), ``step`` — torch's names, so a ``torch.optim.Adam`` state dict loads. A
    state dict names ``decoupled`` ``decoupled_weight_decay`` too, as torch does; torch
    has no equation for ``bias_correction=False``, ``eps_hat``, ``eps_in_sqrt`` nor
    ``amsgrad_corrected_max`` (with ``amsgrad``).
    """

    DEFAULTS = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "bias_correction": True,
        "eps_hat": False,
        "amsgrad": False,
        "weight_decay": 0.0,
        "decoupled": False,
        "eps_in_sqrt": False,
        "amsgrad_corrected_max": False,
    }
    TORCH_NAMES = {"decoupled": "decoupled_weight_decay"}
    CONVENTIONS = {
        "lecture": {"bias_correction": False},
        "torch": {},
        "keras": {"eps": 1e-7, "eps_hat": True, "decoupled": True},
        "optax": {"amsgrad_corrected_max": True},
    }
    RANGES = {
        "lr": (0.0, math.inf, "[)"),
        "betas": (0.0, 1.0, "[)"),
        "eps": (0.0, math.inf, "()"),
        "weight_decay": (0.0, math.inf, "[)"),
    }

    def __init__(
        self,
        params: Iterable,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        bias_correction: bool | None = None,
        eps_hat: bool | None = None,
        amsgrad: bool | None = None,
        weight_decay: float | None = None,
        decoupled: bool | None = None,
        eps_in_sqrt: bool | None = None,
        amsgrad_corrected_max: bool | None = None,
        *,
        maximize: bool | None = None,
        convention: str | None = None,
        impl: str = "auto",
    ):
        given = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "bias_correction": bias_correction,
            "eps_hat": eps_hat,
            "amsgrad": amsgrad,
            "weight_decay": weight_decay,
            "decoupled": decoupled,
            "eps_in_sqrt": eps_in_sqrt,
            "amsgrad_corrected_max": amsgrad_corrected_max,
            "maximize": maximize,
        }
        super().__init__(params, given, convention, impl)

    def not_in_torch(self, group: dict) -> str | None:
        return settings_on(
            {
                "bias_correction=False": not group["bias_correction"],
                "eps_hat=True": group["eps_hat"],
                "eps_in_sqrt=True": group["eps_in_sqrt"],
                "amsgrad_corrected_max=True": group["amsgrad"] and group["amsgrad_corrected_max"],
            }
        )

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    @in_float32
    def update(self, p, g, state: dict, group: dict, step: int) -> None:
        lr, (beta1, beta2), eps, wd = (
            group["lr"],
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        if group["maximize"]:
            g = g.neg()  # g ← −g: ascend (torch's maximize)
        if wd:
            if group["decoupled"]:
                p.mul_(1 - lr * wd)  # w ← w − lr·λ·w
            else:
                g = g.add(p, alpha=wd)  # g ← g + λ·w
        m, s = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - beta1)  # m ← β₁·m + (1−β₁)·g
        s.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # s ← β₂·s + (1−β₂)·g²
        if group["bias_correction"]:
            c1, c2 = 1 - beta1**step, 1 - beta2**step  # the weight sums 1−βᵗ
        else:
            c1, c2 = 1.0, 1.0
        if group["amsgrad"]:
            s_max = state["max_exp_avg_sq"]
            if group["amsgrad_corrected_max"]:
                s, c2 = maximum_(s_max, s.div(c2)), 1.0  # s_max ← max(s_max, ŝ), corrected
            else:
                s = maximum_(s_max, s)  # s_max ← max(s_max, s)
        if group["eps_hat"]:
            step_size = lr * _sqrt(c2) / c1  # α = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)
            d = s.add(eps).sqrt_() if group["eps_in_sqrt"] else s.sqrt().add_(eps)
        else:
            step_size = lr / c1
            if group["eps_in_sqrt"]:
                d = s.div(c2).add_(eps).sqrt_()  # d = √(ŝ + ε)
            else:
                d = s.sqrt().div_(_sqrt(c2)).add_(eps)  # d = √ŝ + ε
        p.addcdiv_(m, d, value=-step_size)  # w ← w − step·m ⊘ d


def _sqrt(x):
    """√x of a number, or of a tensor of per-model values (trainlab.sweep's β₂ column)."""
    return x.sqrt() if isinstance(x, torch.Tensor) else math.sqrt(x)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter): ``w ← w − lr·λ·w``, then
    the Adam step; the decay is not seen by the moving averages.

    Default λ = 1e-2 (torch); ``convention="keras"`` uses 0.004, ``"optax"`` 1e-4.
    Everything else as :class:`Adam`.
    """

    DEFAULTS = {**Adam.DEFAULTS, "weight_decay": 1e-2, "decoupled": True}
    CONVENTIONS = {
        "lecture": {**Adam.CONVENTIONS["lecture"]},
        "torch": {**Adam.CONVENTIONS["torch"]},
        "keras": {**Adam.CONVENTIONS["keras"], "weight_decay": 4e-3},
        "optax": {**Adam.CONVENTIONS["optax"], "weight_decay": 1e-4},
    }
