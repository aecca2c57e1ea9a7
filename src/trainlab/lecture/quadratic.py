"""The lecture's optimizers on a long narrow valley (claims C2, C3, C4).

``f(w) = ½·Σ_i h_i·(u_i·w)²`` is a quadratic whose curvature is ``h_i`` along the
directions ``u_i``: with ``h = (100, 1)`` the valley is 100× steeper across than along —
the "pathological curvature" of the lecture. Each optimizer gets the same fair chance:
a grid of learning rates, and the best one is reported with the number of steps it
needs to reduce the loss by a factor ``1/tol``.

The whole grid runs as one optimizer with one param group per learning rate, so the
search costs one vectorized run per optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from trainlab import optim

__all__ = ["ValleyResult", "OPTIMIZERS", "steps_to_converge", "valley"]

#: name → a function of (param groups) building the optimizer, at the lecture's defaults.
OPTIMIZERS: dict[str, Callable[[list[dict]], torch.optim.Optimizer]] = {
    "sgd": lambda groups: optim.SGD(groups, lr=0.0),
    "momentum (ρ=0.9)": lambda groups: optim.SGD(groups, lr=0.0, momentum=0.9),
    "nesterov (ρ=0.9)": lambda groups: optim.SGD(groups, lr=0.0, momentum=0.9, nesterov=True),
    "rmsprop (ρ=0.9)": lambda groups: optim.RMSProp(groups),
    "adam (0.9, 0.999)": lambda groups: optim.Adam(groups),
}


@dataclass(frozen=True)
class ValleyResult:
    """The best of a learning-rate grid for one optimizer on one valley."""

    optimizer: str
    best_lr: float | None  # None: no learning rate of the grid converged
    steps: int | None
    converged: int  # how many learning rates of the grid converged


def steps_to_converge(
    make: Callable[[list[dict]], torch.optim.Optimizer],
    curvatures: Sequence[float],
    start: Sequence[float],
    lrs: Sequence[float],
    rotation: float = 0.0,
    tol: float = 1e-6,
    max_steps: int = 2000,
) -> list[int | None]:
    """Steps each learning rate needs until ``f(w) ≤ tol·f(w_0)`` (None: never).

    ``rotation`` (radians) turns the valley's axes away from the coordinate axes.
    """
    c, s = math.cos(rotation), math.sin(rotation)
    u = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # rows: the directions u_i
    h = torch.tensor(curvatures, dtype=torch.float64)
    w0 = torch.tensor(start, dtype=torch.float64)
    ws = [w0.clone() for _ in lrs]
    opt = make([{"params": [w], "lr": lr} for w, lr in zip(ws, lrs)])

    def loss(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * (h * (u @ w) ** 2).sum()

    f0 = loss(w0).item()
    steps: list[int | None] = [None] * len(lrs)
    pending = list(range(len(lrs)))  # neither converged nor diverged yet
    for t in range(1, max_steps + 1):
        for i, w in enumerate(ws):
            w.grad = u.T @ (h * (u @ w.detach())) if i in pending else None  # ∇f(w)
        opt.step()  # parameters without a gradient are left alone
        with torch.no_grad():
            values = {i: loss(ws[i]).item() for i in pending}
        for i, f in values.items():
            if f <= tol * f0:
                steps[i] = t
        pending = [i for i, f in values.items() if steps[i] is None and math.isfinite(f)]
        if not pending:
            break
    return steps


def valley(
    curvatures: Sequence[float] = (100.0, 1.0),
    start: Sequence[float] = (1.0, 10.0),
    rotation: float = 0.0,
    tol: float = 1e-6,
    max_steps: int = 2000,
    lrs: Sequence[float] | None = None,
) -> list[ValleyResult]:
    """Best learning rate and steps to converge for each of :data:`OPTIMIZERS`."""
    lrs = list(lrs) if lrs is not None else [10 ** (k / 4) for k in range(-20, 3)]
    results = []
    for name, make in OPTIMIZERS.items():
        steps = steps_to_converge(make, curvatures, start, lrs, rotation, tol, max_steps)
        done = [(st, lr) for st, lr in zip(steps, lrs) if st is not None]
        best = min(done) if done else (None, None)
        results.append(ValleyResult(name, best[1], best[0], len(done)))
    return results
