"""The text of ``trainlab demo``: the lecture's optimizers on the long narrow valley of
:mod:`trainlab.lecture.quadratic`, aligned with the axes and turned, and what that shows
(claims C2, C3, C4)."""

from __future__ import annotations

import math

from .quadratic import ValleyResult, valley

__all__ = ["DEMO_LRS", "DEMO_ANGLE", "format_demo"]

#: The learning-rate grid every optimizer searches: 10^(k/4), 1e-5 … 3.2.
DEMO_LRS = [10 ** (k / 4) for k in range(-20, 3)]
#: How far the second valley is turned away from the axes, in degrees.
DEMO_ANGLE = 30


def format_demo(tol: float, max_steps: int) -> str:
    """Run the valley twice (along the axes, turned by :data:`DEMO_ANGLE`) and say what it
    shows: a table of steps, best learning rate and converged rates, then the lessons.

    Parameters
    ----------
    tol
        Stop when the loss is this fraction of its start, in (0, 1).
    max_steps
        Give up after this many steps (≥ 1).
    """
    lrs = DEMO_LRS
    lines = [
        "The valley f(w) = ½·(100·a² + b²): 100× steeper across than along (condition "
        "number 100),\nstarting at w = (1, 10). Steps to cut the loss "
        f"{1 / tol:g}×, each optimizer at the best of {len(lrs)} learning rates "
        f"({lrs[0]:.0e} … {lrs[-1]:.1f}); 'ok' counts the rates that got there within "
        f"{max_steps} steps.\n"
    ]
    aligned = valley(rotation=0.0, tol=tol, max_steps=max_steps, lrs=lrs)
    rotated = valley(rotation=math.radians(DEMO_ANGLE), tol=tol, max_steps=max_steps, lrs=lrs)

    def cell(r: ValleyResult) -> str:
        if r.steps is None:
            return f"{'—':>6} {'—':>8} {r.converged:>3}/{len(lrs)}"
        return f"{r.steps:>6} {r.best_lr:>8.3g} {r.converged:>3}/{len(lrs)}"

    lines.append(f"{'':18}  {'valley along the axes':^22}   {f'valley turned {DEMO_ANGLE}°':^22}")
    lines.append(
        f"{'optimizer':18}  {'steps':>6} {'best lr':>8} {'ok':>6}   "
        f"{'steps':>6} {'best lr':>8} {'ok':>6}"
    )
    lines += [f"{a.optimizer:18}  {cell(a)}   {cell(r)}" for a, r in zip(aligned, rotated)]

    by = {r.optimizer.split()[0]: r for r in aligned}
    byr = {r.optimizer.split()[0]: r for r in rotated}
    lines.append("")
    if by["sgd"].steps and by["momentum"].steps:
        lines.append(
            f"- Momentum needs {by['sgd'].steps / by['momentum'].steps:.1f}× fewer steps than "
            "SGD: it builds up speed along the flat direction and damps the zig-zag across "
            "the steep one (claims C2, C3)."
        )
    if by["rmsprop"].steps and byr["rmsprop"].steps:
        lines.append(
            f"- RMSProp needs {by['rmsprop'].steps} steps when the valley lies along the axes "
            f"but {byr['rmsprop'].steps} when it is turned: it rescales each coordinate, which "
            "evens out the curvature only when the steep directions are coordinates (C4)."
        )
    lines.append(
        "- Reproduce any framework step for step: trainlab.optim.Adam(params, "
        "convention='keras') — see docs/optimizers.md."
    )
    return "\n".join(lines)
