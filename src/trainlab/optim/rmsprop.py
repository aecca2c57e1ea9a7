"""RMSProp: every dimension's step divided by a moving RMS of its gradients."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ._engine import Optimizer, settings_on
from ._precision import in_float32

__all__ = ["RMSProp"]


class RMSProp(Optimizer):
    r"""RMSProp (Hinton's lecture 6e), with the switches of torch, Keras and optax.

    With ``g = ∇f(w_t)`` (plus ``λ·w_t`` for L2 weight decay):

    * the lecture:  ``s_t = ρ·s_{t−1} + (1−ρ)·g²``;  ``w_{t+1} = w_t − lr·g ⊘ (√s_t + ε)``
    * ``eps_in_sqrt`` (Keras, optax): the denominator is ``√(s_t + ε)``
    * ``centered``: ``ḡ_t = ρ·ḡ_{t−1} + (1−ρ)·g`` and ``s_t − ḡ_t²`` (an estimate of the
      gradient's variance, ≥ 0 in exact arithmetic; clamped at 0 so that rounding never
      takes the square root of a negative number) replaces ``s_t`` in the denominator
    * ``momentum`` μ > 0 (torch, optax): ``b_t = μ·b_{t−1} + g ⊘ d_t``;
      ``w_{t+1} = w_t − lr·b_t`` where ``d_t`` is the denominator above;
      with ``lr_in_buffer`` (Keras): ``b_t = μ·b_{t−1} + lr·g ⊘ d_t``; ``w_{t+1} = w_t − b_t``
    * ``decoupled`` weight decay (Keras): ``w ← w − lr·λ·w`` before the step.
    * ``maximize`` (torch): ``g ← −g`` first.

    Unrolled, ``s_n = ρⁿ·s_0 + Σ_k ρ^{n−k}(1−ρ)·g_k²``: a moving average whose weights
    sum to ``1 − ρⁿ`` (claim C5).

    Parameters
    ----------
    params : iterable of tensors or of dicts (param groups)
    lr : float, optional
        ≥ 0. Default 1e-3 (torch: 1e-2).
    rho : float, optional
        ρ in [0, 1), the decay of the moving average. Default 0.9 (torch's ``alpha``: 0.99).
    eps : float, optional
        ε > 0. Default 1e-8 (Keras: 1e-7).
    eps_in_sqrt, centered : bool, optional
    momentum : float, optional
        μ in [0, 1). Default 0.
    weight_decay : float, optional
        λ ≥ 0. Default 0.
    decoupled, lr_in_buffer : bool, optional
    convention : {"lecture", "torch", "keras", "optax"}, optional
        torch: ``lr=1e-2, rho=0.99``; Keras: ``eps=1e-7, eps_in_sqrt, lr_in_buffer,
        decoupled``; optax: ``eps_in_sqrt, lr_in_buffer`` (its chain scales by
        the learning rate before the momentum trace); the lecture: trainlab's defaults.
        Explicit arguments win.
    maximize : bool, optional
        Ascend (torch's ``maximize``): ``g ← −g`` first, before weight decay. Default False.
    impl : {"auto", "flat", "reference", "foreach"}

    State per parameter: ``square_avg`` (s), ``grad_avg`` (ḡ, centered),
    ``momentum_buffer`` (b, momentum), ``step`` — torch's names. A state dict names ρ
    ``alpha`` too, as ``torch.optim.RMSprop`` does; torch has no equation for
    ``eps_in_sqrt``, for ``lr_in_buffer`` with momentum, nor for ``decoupled`` with weight
    decay.
    """

    DEFAULTS = {
        "lr": 1e-3,
        "rho": 0.9,
        "eps": 1e-8,
        "eps_in_sqrt": False,
        "centered": False,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "decoupled": False,
        "lr_in_buffer": False,
    }
    TORCH_NAMES = {"rho": "alpha"}
    CONVENTIONS = {
        "lecture": {},
        "torch": {"lr": 1e-2, "rho": 0.99},
        "keras": {"eps": 1e-7, "eps_in_sqrt": True, "lr_in_buffer": True, "decoupled": True},
        "optax": {"eps_in_sqrt": True, "lr_in_buffer": True},
    }
    RANGES = {
        "lr": (0.0, math.inf, "[)"),
        "rho": (0.0, 1.0, "[)"),
        "eps": (0.0, math.inf, "()"),
        "momentum": (0.0, 1.0, "[)"),
        "weight_decay": (0.0, math.inf, "[)"),
    }

    def __init__(
        self,
        params: Iterable,
        lr: float | None = None,
        rho: float | None = None,
        eps: float | None = None,
        eps_in_sqrt: bool | None = None,
        centered: bool | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        decoupled: bool | None = None,
        lr_in_buffer: bool | None = None,
        *,
        maximize: bool | None = None,
        convention: str | None = None,
        impl: str = "auto",
    ):
        given = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "eps_in_sqrt": eps_in_sqrt,
            "centered": centered,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "decoupled": decoupled,
            "lr_in_buffer": lr_in_buffer,
            "maximize": maximize,
        }
        super().__init__(params, given, convention, impl)

    def not_in_torch(self, group: dict) -> str | None:
        return settings_on(
            {
                "eps_in_sqrt=True": group["eps_in_sqrt"],
                "lr_in_buffer=True": group["lr_in_buffer"] and group["momentum"],
                "decoupled=True": group["decoupled"] and group["weight_decay"],
            }
        )

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return (
            ("square_avg",)
            + (("grad_avg",) if group["centered"] else ())
            + (("momentum_buffer",) if group["momentum"] else ())
        )

    @in_float32
    def update(self, p, g, state: dict, group: dict, step: int) -> None:
        lr, rho, eps, wd = group["lr"], group["rho"], group["eps"], group["weight_decay"]
        if group["maximize"]:
            g = g.neg()  # g ← −g: ascend (torch's maximize)
        if wd:
            if group["decoupled"]:
                p.mul_(1 - lr * wd)  # w ← w − lr·λ·w
            else:
                g = g.add(p, alpha=wd)  # g ← g + λ·w
        s = state["square_avg"]
        s.mul_(rho).addcmul_(g, g, value=1 - rho)  # s ← ρ·s + (1−ρ)·g²
        if group["centered"]:
            g_avg = state["grad_avg"]
            g_avg.lerp_(g, 1 - rho)  # ḡ ← ρ·ḡ + (1−ρ)·g
            s = s.addcmul(g_avg, g_avg, value=-1).clamp_min_(0)  # max(s − ḡ², 0)
        if group["eps_in_sqrt"]:
            d = s.add(eps).sqrt_()  # d = √(s + ε)
        else:
            d = s.sqrt().add_(eps)  # d = √s + ε
        if not group["momentum"]:
            p.addcdiv_(g, d, value=-lr)  # w ← w − lr·g ⊘ d
            return
        b = state["momentum_buffer"]
        if group["lr_in_buffer"]:
            b.mul_(group["momentum"]).addcdiv_(g, d, value=lr)  # b ← μ·b + lr·g ⊘ d
            p.sub_(b)  # w ← w − b
        else:
            b.mul_(group["momentum"]).addcdiv_(g, d)  # b ← μ·b + g ⊘ d
            p.add_(b, alpha=-lr)  # w ← w − lr·b
