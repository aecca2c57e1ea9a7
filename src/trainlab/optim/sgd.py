"""Stochastic gradient descent, with heavy-ball or Nesterov momentum."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from trainlab.errors import HyperparameterError

from ._engine import Optimizer, settings_on
from ._precision import in_float32

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""SGD, SGD with momentum (heavy ball) and Nesterov momentum.

    With ``g = ∇f(w_t)`` the mini-batch gradient (plus ``λ·w_t`` for L2 weight decay):

    * plain (``momentum = 0``):  ``w_{t+1} = w_t − lr·g``
    * momentum (the lecture):   ``v_t = ρ·v_{t−1} + g``;  ``w_{t+1} = w_t − lr·v_t``
      (torch's ``dampening`` τ gives ``v_t = ρ·v_{t−1} + (1−τ)·g``, with ``v_1 = g``)
    * Nesterov:                 ``w_{t+1} = w_t − lr·(g + ρ·v_t)``
    * ``lr_in_buffer`` (Keras): ``v_t = ρ·v_{t−1} − lr·g``;  ``w_{t+1} = w_t + v_t``,
      Nesterov ``w_{t+1} = w_t + ρ·v_t − lr·g``. With a constant lr this equals the
      form above (``v`` is scaled by −lr); with a schedule it does not: the buffer
      keeps the old learning rates.
    * ``decoupled`` weight decay (Keras): ``w ← w − lr·λ·w`` before the step, instead
      of adding ``λ·w`` to the gradient.
    * ``maximize`` (torch): ``g ← −g`` first.

    Parameters
    ----------
    params : iterable of tensors or of dicts (param groups)
    lr : float
        Learning rate, ≥ 0.
    momentum : float, optional
        ρ in [0, 1). Default 0 (plain SGD); the lecture suggests 0.9, 0.95 or 0.99.
    nesterov : bool, optional
        Nesterov momentum (needs no dampening, and ``momentum > 0`` except in Keras' form,
        ``lr_in_buffer``, where ρ = 0 is plain SGD, as in Keras).
    weight_decay : float, optional
        λ ≥ 0. Default 0.
    lr_in_buffer : bool, optional
        Keras' form of the momentum buffer (above).
    dampening : float, optional
        τ in [0, 1] (torch). Default 0.
    decoupled : bool, optional
        Decoupled weight decay (above).
    convention : {"lecture", "torch", "keras", "optax"}, optional
        Sets every switch and default as that framework does; arguments given
        explicitly still win. ``"keras"``: ``lr_in_buffer=True, decoupled=True``; the
        others equal trainlab's defaults.
    maximize : bool, optional
        Ascend (torch's ``maximize``): ``g ← −g`` first, before weight decay. Default False.
    impl : {"auto", "flat", "reference", "foreach"}
        How the equation is applied (see :mod:`trainlab.optim`); same results.

    State per parameter: ``momentum_buffer`` (torch's name, so a ``torch.optim.SGD``
    state dict loads), ``step``. ``torch.optim.SGD`` has no equation for
    ``lr_in_buffer`` with momentum, nor for ``decoupled`` with weight decay.
    """

    DEFAULTS = {
        "lr": None,
        "momentum": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "lr_in_buffer": False,
        "dampening": 0.0,
        "decoupled": False,
    }
    CONVENTIONS = {
        "lecture": {},
        "torch": {},
        "keras": {"lr_in_buffer": True, "decoupled": True},
        "optax": {},
    }
    RANGES = {
        "lr": (0.0, math.inf, "[)"),
        "momentum": (0.0, 1.0, "[)"),
        "dampening": (0.0, 1.0, "[]"),
        "weight_decay": (0.0, math.inf, "[)"),
    }

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float | None = None,
        nesterov: bool | None = None,
        weight_decay: float | None = None,
        lr_in_buffer: bool | None = None,
        dampening: float | None = None,
        decoupled: bool | None = None,
        *,
        maximize: bool | None = None,
        convention: str | None = None,
        impl: str = "auto",
    ):
        if lr is None:
            raise HyperparameterError("SGD", "lr", "is required (a number ≥ 0)")
        given = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "lr_in_buffer": lr_in_buffer,
            "dampening": dampening,
            "decoupled": decoupled,
            "maximize": maximize,
        }
        super().__init__(params, given, convention, impl)

    def check_switches(self, hp: dict[str, Any]) -> None:
        # Keras' form accepts ρ = 0 (plain SGD, as keras.optimizers.SGD(nesterov=True)
        # does); torch's refuses it.
        no_momentum = hp["momentum"] <= 0 and not hp["lr_in_buffer"]
        if hp["nesterov"] and (no_momentum or hp["dampening"] != 0):
            raise HyperparameterError(
                "SGD",
                "nesterov",
                "needs momentum > 0 (or lr_in_buffer=True, Keras' form) and dampening = 0, "
                f"got momentum={hp['momentum']!r}, dampening={hp['dampening']!r}",
            )

    def not_in_torch(self, group: dict) -> str | None:
        return settings_on(
            {
                "lr_in_buffer=True": group["lr_in_buffer"] and group["momentum"],
                "decoupled=True": group["decoupled"] and group["weight_decay"],
            }
        )

    def state_keys(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] else ()

    @in_float32
    def update(self, p, g, state: dict, group: dict, step: int) -> None:
        lr, rho, wd = group["lr"], group["momentum"], group["weight_decay"]
        if group["maximize"]:
            g = g.neg()  # g ← −g: ascend (torch's maximize)
        if wd:
            if group["decoupled"]:
                p.mul_(1 - lr * wd)  # w ← w − lr·λ·w
            else:
                g = g.add(p, alpha=wd)  # g ← g + λ·w
        if not rho:
            p.add_(g, alpha=-lr)  # w ← w − lr·g
            return
        v = state["momentum_buffer"]
        if group["lr_in_buffer"]:
            v.mul_(rho).add_(g, alpha=-lr)  # v ← ρ·v − lr·g
            if group["nesterov"]:
                p.add_(v, alpha=rho).add_(g, alpha=-lr)  # w ← w + ρ·v − lr·g
            else:
                p.add_(v)  # w ← w + v
            return
        if step == 1:
            v.copy_(g)  # v_1 = ρ·0 + g
        else:
            v.mul_(rho).add_(g, alpha=1 - group["dampening"])  # v ← ρ·v + (1−τ)·g
        if group["nesterov"]:
            p.add_(g.add(v, alpha=rho), alpha=-lr)  # w ← w − lr·(g + ρ·v)
        else:
            p.add_(v, alpha=-lr)  # w ← w − lr·v
