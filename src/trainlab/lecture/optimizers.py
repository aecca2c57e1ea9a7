"""The lecture's claims about optimization algorithms (C1–C7), as experiments.

* C1: plain SGD stops at the nearest local minimum of a tilted double well; momentum
  (ρ = 0.9, same learning rate) can roll over the barrier into the global one.
* C2, C3, C4: SGD, momentum, RMSProp and Adam on two ill-conditioned problems — the long
  narrow quadratic valley of :mod:`trainlab.lecture.quadratic` and the Rosenbrock function
  — each at the best learning rate of a grid, counted in steps to a tolerance. They share
  one cached computation (:func:`_valleys`), so the grid runs once for the three claims.
* C5: RMSProp's moving average of a constant g = 1 is ``s_n = 1 − ρⁿ`` (its weights sum).
* C6: Adam's step is RMSProp's step with g replaced by its moving average m.
* C7: Adam with β₁ = 0 and no bias correction is RMSProp with ρ = β₂, to the last bit.

Every optimizer is trainlab's own (:mod:`trainlab.optim`).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainlab import optim
from trainlab.figures import figure, save

from .claims import ClaimResult, register, verdict_from
from .quadratic import OPTIMIZERS, steps_to_converge

__all__ = [
    "sgd_gets_stuck_at_local_optima",
    "sgd_is_slow_under_pathological_curvature",
    "momentum_beats_sgd_under_pathological_curvature",
    "rmsprop_rescales_every_dimension",
    "rmsprop_moving_average_weights_sum_to_one_minus_rho_n",
    "adam_is_rmsprop_of_the_moving_average",
    "adam_with_beta1_zero_is_rmsprop",
]

_Loss = Callable[[torch.Tensor], torch.Tensor]


# --- C1: a tilted double well ---------------------------------------------------------------


def _double_well(x: torch.Tensor) -> torch.Tensor:
    """f(x) = x⁴ − 3x² + x: a deep minimum at x ≈ −1.30, a shallow one at x ≈ 1.13."""
    return x**4 - 3 * x**2 + x


def _descend_double_well(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], starts: Sequence[float], steps: int
) -> np.ndarray:
    """Positions (steps + 1, len(starts)): one independent 1-D run per start, vectorized
    (the update of SGD, with or without momentum, is element-wise)."""
    x = torch.tensor(starts, dtype=torch.float64, requires_grad=True)
    opt = make([x])
    path = [x.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        _double_well(x).sum().backward()
        opt.step()
        path.append(x.detach().clone())
    return torch.stack(path).numpy()


@register("C1")
def sgd_gets_stuck_at_local_optima(out_dir: Path, quick: bool) -> ClaimResult:
    """C1 on f(x) = x⁴ − 3x² + x, started in the shallow basin."""
    lr, rho, start, steps = 0.01, 0.9, 2.0, 300 if quick else 1000
    # the stationary points: f'(x) = 4x³ − 6x + 1 = 0
    low, barrier, high = sorted(np.roots([4.0, 0.0, -6.0, 1.0]).real)
    makers = {
        "sgd": lambda p: optim.SGD(p, lr=lr),
        "momentum": lambda p: optim.SGD(p, lr=lr, momentum=rho),
    }
    # the chosen start, and a sweep of starts across the whole shallow basin
    sweep = np.round(np.linspace(barrier + 0.05, 2.5, 24), 3).tolist()
    paths = {k: _descend_double_well(m, [start, *sweep], steps) for k, m in makers.items()}

    def basin(x: float) -> str:
        return "global" if x < barrier else "local"

    numbers: dict = {
        "function": "f(x) = x^4 - 3x^2 + x",
        "global_minimum": {
            "x": float(low),
            "f": float(_double_well(torch.tensor(low, dtype=torch.float64))),
        },
        "local_minimum": {
            "x": float(high),
            "f": float(_double_well(torch.tensor(high, dtype=torch.float64))),
        },
        "start": start,
        "lr": lr,
        "rho": rho,
        "steps": steps,
    }
    for name, path in paths.items():
        x = float(path[-1, 0])
        numbers[name] = {
            "final_x": x,
            "final_f": float(_double_well(torch.tensor(x, dtype=torch.float64))),
            "basin": basin(x),
        }
        ends = path[-1, 1:]
        numbers[name]["sweep_fraction_reaching_global"] = float(np.mean(ends < barrier))
    numbers["sweep_starts"] = [sweep[0], sweep[-1], len(sweep)]
    stuck = abs(numbers["sgd"]["final_x"] - high) < 1e-3
    escaped = abs(numbers["momentum"]["final_x"] - low) < 1e-3

    fig, (ax, ax_t) = figure(10, 4, ncols=2)
    grid = np.linspace(-2.0, 2.3, 400)
    ax.plot(grid, _double_well(torch.from_numpy(grid)).numpy(), color="0.3", lw=1)
    for (name, path), colour in zip(paths.items(), ("tab:red", "tab:blue")):
        xs = path[:, 0]
        fx = _double_well(torch.from_numpy(xs)).numpy()
        ax.plot(xs, fx, ".-", ms=3, lw=0.6, color=colour, alpha=0.7, label=name)
        ax_t.plot(xs, color=colour, label=name)
    ax.set(xlabel="x", ylabel="f(x)", ylim=(-4.5, 8), title=f"f(x) = x⁴ − 3x² + x, x₀ = {start}")
    ax_t.axhline(low, ls=":", color="0.5")
    ax_t.axhline(high, ls=":", color="0.5")
    ax_t.set(
        xlabel="step", ylabel="x", xscale="symlog", xlim=(0, steps), title=f"lr = {lr}, ρ = {rho}"
    )
    ax.legend()
    ax_t.legend()
    drawn = save(fig, out_dir / "c1.png").name

    sgd, mom = numbers["sgd"], numbers["momentum"]
    return ClaimResult(
        claim="C1",
        title="SGD gets stuck at local optima",
        verdict=verdict_from(stuck and escaped),
        summary=(
            f"From x₀ = {start} (lr = {lr}) SGD stops at x = {sgd['final_x']:.3f} "
            f"(f = {sgd['final_f']:.3f}, the {sgd['basin']} minimum) while momentum ρ = {rho} "
            f"ends at x = {mom['final_x']:.3f} (f = {mom['final_f']:.3f}, {mom['basin']}); over "
            f"{len(sweep)} starts in the shallow basin SGD reaches the global minimum from "
            f"{sgd['sweep_fraction_reaching_global']:.0%} and momentum from "
            f"{mom['sweep_fraction_reaching_global']:.0%}."
        ),
        numbers=numbers,
        figures=[drawn],
    )


# --- C2, C3, C4: ill-conditioned valleys ---------------------------------------------------

#: The four optimizers compared, at the lecture's defaults (from quadratic.OPTIMIZERS).
_FOUR = {
    "sgd": OPTIMIZERS["sgd"],
    "momentum": OPTIMIZERS["momentum (ρ=0.9)"],
    "rmsprop": OPTIMIZERS["rmsprop (ρ=0.9)"],
    "adam": OPTIMIZERS["adam (0.9, 0.999)"],
}
_COLOURS = {"sgd": "tab:red", "momentum": "tab:blue", "rmsprop": "tab:green", "adam": "tab:purple"}

#: The valley of quadratic.valley: 100× steeper across than along, from (1, 10).
_CURVATURES = (100.0, 1.0)
_QUADRATIC_START = (1.0, 10.0)
_ROTATION = math.radians(30)
_ROSENBROCK_START = (-1.2, 1.0)


@dataclass(frozen=True)
class _Setup:
    tols: tuple[float, ...]  # relative: f(w) ≤ tol·f(w₀); the last is the tightest
    quadratic_lrs: tuple[float, ...]
    quadratic_max_steps: int
    rosenbrock_lrs: tuple[float, ...]
    rosenbrock_max_steps: int


def _setup(quick: bool) -> _Setup:
    if quick:
        return _Setup(
            tols=(1e-3,),
            quadratic_lrs=tuple(10 ** (k / 2) for k in range(-6, 3)),
            quadratic_max_steps=600,
            rosenbrock_lrs=tuple(10 ** (k / 4) for k in range(-11, 1)),
            rosenbrock_max_steps=2500,
        )
    return _Setup(
        tols=(1e-3, 1e-6),
        quadratic_lrs=tuple(10 ** (k / 4) for k in range(-12, 5)),
        quadratic_max_steps=2000,
        rosenbrock_lrs=tuple(10 ** (k / 4) for k in range(-14, 1)),
        rosenbrock_max_steps=20000,
    )


def _quadratic(rotation: float) -> _Loss:
    """f(w) = ½·Σ_i h_i·(u_i·w)², the valley of quadratic.steps_to_converge."""
    c, s = math.cos(rotation), math.sin(rotation)
    u = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    h = torch.tensor(_CURVATURES, dtype=torch.float64)
    return lambda w: 0.5 * (h * (u @ w) ** 2).sum()


def _rosenbrock(w: torch.Tensor) -> torch.Tensor:
    """f(x, y) = (1 − x)² + 100·(y − x²)²: a curved, narrow valley; minimum 0 at (1, 1)."""
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def _rosenbrock_grad(w: torch.Tensor) -> torch.Tensor:
    x, y = w[0], w[1]
    return torch.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def _rosenbrock_steps(
    make: Callable[[list[dict]], torch.optim.Optimizer],
    lrs: Sequence[float],
    tols: Sequence[float],
    max_steps: int,
) -> dict[float, list[int | None]]:
    """Steps each learning rate needs until ``f(w) ≤ tol·f(w₀)``, for every tolerance at once.

    Like :func:`trainlab.lecture.quadratic.steps_to_converge`: one param group per
    learning rate; a run leaves once it meets the tightest tolerance or diverges.
    """
    w0 = torch.tensor(_ROSENBROCK_START, dtype=torch.float64)
    f0 = _rosenbrock(w0).item()
    ws = [w0.clone() for _ in lrs]
    opt = make([{"params": [w], "lr": lr} for w, lr in zip(ws, lrs)])
    steps: dict[float, list[int | None]] = {tol: [None] * len(lrs) for tol in tols}
    pending = list(range(len(lrs)))
    for t in range(1, max_steps + 1):
        for i, w in enumerate(ws):
            w.grad = _rosenbrock_grad(w.detach()) if i in pending else None
        opt.step()
        values = {i: _rosenbrock(ws[i].detach()).item() for i in pending}
        for i, f in values.items():
            for tol in tols:
                if steps[tol][i] is None and f <= tol * f0:
                    steps[tol][i] = t
        pending = [i for i, f in values.items() if steps[tols[-1]][i] is None and math.isfinite(f)]
        if not pending:
            break
    return steps


def _trajectory(
    make: Callable[[list[dict]], torch.optim.Optimizer],
    loss: _Loss,
    start: Sequence[float],
    lr: float,
    steps: int,
) -> np.ndarray:
    """The points w_0 … w_steps of one run (autograd for the gradient)."""
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make([{"params": [w], "lr": lr}])
    path = [w.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        loss(w).backward()
        opt.step()
        path.append(w.detach().clone())
        if not torch.isfinite(path[-1]).all():
            break
    return torch.stack(path).numpy()


@dataclass(frozen=True)
class _Run:
    """One optimizer on one problem: the best of the grid at each tolerance, and a path."""

    best_lr: dict[float, float | None]
    steps: dict[float, int | None]
    path: np.ndarray  # at the best lr for the tightest tolerance that any lr met


def _best(steps: list[int | None], lrs: Sequence[float]) -> tuple[int | None, float | None]:
    done = [(st, lr) for st, lr in zip(steps, lrs) if st is not None]
    return min(done) if done else (None, None)


def _run(
    make: Callable[[list[dict]], torch.optim.Optimizer],
    loss: _Loss,
    start: Sequence[float],
    grid: dict[float, list[int | None]],
    lrs: Sequence[float],
    max_steps: int,
) -> _Run:
    best = {tol: _best(grid[tol], lrs) for tol in grid}
    met = [tol for tol in grid if best[tol][1] is not None]
    steps, lr = best[met[-1]] if met else (max_steps, min(lrs))
    path = _trajectory(make, loss, start, lr, steps)
    return _Run({t: b[1] for t, b in best.items()}, {t: b[0] for t, b in best.items()}, path)


@functools.lru_cache(maxsize=2)
def _valleys(quick: bool) -> dict[str, dict[str, _Run]]:
    """problem → optimizer → its best runs; computed once for C2, C3 and C4."""
    setup = _setup(quick)
    problems: dict[str, dict[str, _Run]] = {}
    for problem, rotation in (("quadratic", 0.0), ("quadratic_rotated", _ROTATION)):
        loss = _quadratic(rotation)
        problems[problem] = {}
        for name, make in _FOUR.items():
            grid = {
                tol: steps_to_converge(
                    make,
                    _CURVATURES,
                    _QUADRATIC_START,
                    setup.quadratic_lrs,
                    rotation,
                    tol,
                    setup.quadratic_max_steps,
                )
                for tol in setup.tols
            }
            problems[problem][name] = _run(
                make,
                loss,
                _QUADRATIC_START,
                grid,
                setup.quadratic_lrs,
                setup.quadratic_max_steps,
            )
    problems["rosenbrock"] = {}
    for name, make in _FOUR.items():
        grid = _rosenbrock_steps(make, setup.rosenbrock_lrs, setup.tols, setup.rosenbrock_max_steps)
        problems["rosenbrock"][name] = _run(
            make,
            _rosenbrock,
            _ROSENBROCK_START,
            grid,
            setup.rosenbrock_lrs,
            setup.rosenbrock_max_steps,
        )
    return problems


def _tol_key(tol: float) -> str:
    return f"tol={tol:g}"


def _valley_numbers(quick: bool, problems: Sequence[str]) -> dict:
    """Steps and best learning rates, JSON-ready: problem → optimizer → tol → values."""
    setup = _setup(quick)
    runs = _valleys(quick)
    numbers: dict = {
        "tolerances": list(setup.tols),
        "criterion": "steps until f(w) <= tol * f(w0), best lr of the grid (null: none met it)",
        "max_steps": {
            "quadratic": setup.quadratic_max_steps,
            "rosenbrock": setup.rosenbrock_max_steps,
        },
        "lr_grid": {
            "quadratic": [min(setup.quadratic_lrs), max(setup.quadratic_lrs)],
            "rosenbrock": [min(setup.rosenbrock_lrs), max(setup.rosenbrock_lrs)],
        },
    }
    for problem in problems:
        numbers[problem] = {
            name: {
                _tol_key(tol): {"steps": run.steps[tol], "best_lr": run.best_lr[tol]}
                for tol in setup.tols
            }
            for name, run in runs[problem].items()
        }
    return numbers


def _compare(a: int | None, b: int | None) -> bool | None:
    """Does a need fewer steps than b? (None: never met the tolerance; both None: unknown.)"""
    if a is None and b is None:
        return None
    return (math.inf if a is None else a) < (math.inf if b is None else b)


def _combine(checks: Sequence[bool | None]) -> bool | None:
    """held everywhere → True; nowhere → False; mixed or unknown → None (inconclusive)."""
    if all(c is True for c in checks):
        return True
    if all(c is False for c in checks):
        return False
    return None


def _steps_text(quick: bool, problem: str, names: Sequence[str], tol: float | None = None) -> str:
    tol = _setup(quick).tols[-1] if tol is None else tol
    runs = _valleys(quick)[problem]
    return ", ".join(f"{n} {runs[n].steps[tol] if runs[n].steps[tol] else 'never'}" for n in names)


def _draw_valleys(out_dir: Path, quick: bool) -> list[str]:
    """Contours with the four trajectories: the quadratic (aligned, rotated) and Rosenbrock."""
    runs = _valleys(quick)
    tol = _setup(quick).tols[-1]
    fig, axes = figure(11, 4.6, ncols=2)
    for ax, problem, rotation in zip(axes, ("quadratic", "quadratic_rotated"), (0.0, _ROTATION)):
        loss = _quadratic(rotation)
        xs, ys = np.linspace(-10, 10, 201), np.linspace(-4, 12, 161)
        z = np.array([[loss(torch.tensor([x, y])).item() for x in xs] for y in ys])
        ax.contour(xs, ys, z, levels=np.geomspace(1e-2, 5e3, 16), colors="0.75", linewidths=0.6)
        _draw_paths(ax, runs[problem], tol)
        angle = round(math.degrees(rotation))
        ax.set(
            xlim=(-10, 10),
            ylim=(-4, 12),
            xlabel="w₁",
            ylabel="w₂",
            title=f"½·100·(u₁·w)² + ½·(u₂·w)², axes turned {angle}°",
        )
        ax.legend(fontsize=8, loc="lower right")
    names = [save(fig, out_dir / "c2_c4_quadratic.png").name]

    fig, ax = figure(6.5, 5)
    xs, ys = np.linspace(-2, 2, 201), np.linspace(-1.5, 3, 226)
    gx, gy = np.meshgrid(xs, ys)
    z = (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2
    ax.contour(xs, ys, z, levels=np.geomspace(1e-2, 2e3, 16), colors="0.75", linewidths=0.6)
    _draw_paths(ax, runs["rosenbrock"], tol)
    ax.plot([1], [1], "k*", ms=10)
    ax.set(
        xlim=(-2, 2), ylim=(-1.5, 3), xlabel="x", ylabel="y", title="Rosenbrock (1−x)² + 100(y−x²)²"
    )
    ax.legend(fontsize=8, loc="lower right")
    names.append(save(fig, out_dir / "c2_c4_rosenbrock.png").name)
    return names


def _draw_paths(ax, runs: dict[str, _Run], tol: float) -> None:
    for name, run in runs.items():
        lr = run.best_lr[tol]
        steps = run.steps[tol]
        label = f"{name}: lr {lr:.2g}, {steps} steps" if steps else f"{name}: tol not met"
        ax.plot(run.path[:, 0], run.path[:, 1], "-", lw=0.9, color=_COLOURS[name], label=label)


@register("C2")
def sgd_is_slow_under_pathological_curvature(out_dir: Path, quick: bool) -> ClaimResult:
    """C2: SGD needs more steps than momentum, RMSProp and Adam in narrow valleys."""
    setup, runs = _setup(quick), _valleys(quick)
    problems = ("quadratic", "rosenbrock")
    slowest, slower_than_sgd = {}, {}
    for problem in problems:
        for tol in setup.tols:
            case = f"{problem} {_tol_key(tol)}"
            steps = {n: r.steps[tol] for n, r in runs[problem].items()}
            faster = {n: _compare(steps[n], steps["sgd"]) for n in steps if n != "sgd"}
            slower_than_sgd[case] = [n for n, f in faster.items() if f is False]
            # SGD needs the most unless some optimizer needs more (None: a tie, unknown)
            slowest[case] = False if slower_than_sgd[case] else _combine(list(faster.values()))
    numbers = _valley_numbers(quick, problems)
    numbers["sgd_needs_the_most_steps"] = slowest
    held = _combine(list(slowest.values()))
    tol = setup.tols[-1]
    if held is True:
        verdict_text = "SGD needs the most steps on both problems at every tolerance."
    else:
        exceptions = "; ".join(
            f"{case}: {', '.join(names)} slower" for case, names in slower_than_sgd.items() if names
        )
        unknown = [case for case, c in slowest.items() if c is None]
        verdict_text = (
            f"SGD needs the most steps in {sum(c is True for c in slowest.values())} of "
            f"{len(slowest)} cases (problem × tolerance); not in: {exceptions or 'none'}"
            + (f"; undecided: {', '.join(unknown)}" if unknown else "")
            + "."
        )
    return ClaimResult(
        claim="C2",
        title="SGD converges slowly under pathological curvature",
        verdict=verdict_from(held),
        summary=(
            f"Steps to f ≤ {tol:g}·f₀ at each optimizer's best learning rate — quadratic "
            f"valley (100:1): {_steps_text(quick, 'quadratic', list(_FOUR))}; Rosenbrock: "
            f"{_steps_text(quick, 'rosenbrock', list(_FOUR))}. {verdict_text}"
        ),
        numbers=numbers,
        figures=_draw_valleys(out_dir, quick),
    )


@register("C3")
def momentum_beats_sgd_under_pathological_curvature(out_dir: Path, quick: bool) -> ClaimResult:
    """C3: momentum (ρ = 0.9) needs fewer steps than SGD on both valleys."""
    setup, runs = _setup(quick), _valleys(quick)
    problems = ("quadratic", "rosenbrock")
    wins = {
        f"{p} {_tol_key(tol)}": _compare(runs[p]["momentum"].steps[tol], runs[p]["sgd"].steps[tol])
        for p in problems
        for tol in setup.tols
    }
    numbers = _valley_numbers(quick, problems)
    numbers["momentum_needs_fewer_steps"] = wins
    tol = setup.tols[-1]
    return ClaimResult(
        claim="C3",
        title="Momentum beats SGD under pathological curvature",
        verdict=verdict_from(_combine(list(wins.values()))),
        summary=(
            f"Steps to f ≤ {tol:g}·f₀ at the best learning rate — quadratic valley: "
            f"{_steps_text(quick, 'quadratic', ['momentum', 'sgd'])}; Rosenbrock: "
            f"{_steps_text(quick, 'rosenbrock', ['momentum', 'sgd'])}."
        ),
        numbers=numbers,
        figures=_draw_valleys(out_dir, quick),
    )


@register("C4")
def rmsprop_rescales_every_dimension(out_dir: Path, quick: bool) -> ClaimResult:
    """C4: RMSProp beats SGD when the valley lies along the axes (and the turned case)."""
    setup, runs = _setup(quick), _valleys(quick)
    problems = ("quadratic", "quadratic_rotated", "rosenbrock")
    wins = {
        f"{p} {_tol_key(tol)}": _compare(runs[p]["rmsprop"].steps[tol], runs[p]["sgd"].steps[tol])
        for p in problems
        for tol in setup.tols
    }
    numbers = _valley_numbers(quick, problems)
    numbers["rotation_degrees"] = round(math.degrees(_ROTATION))
    numbers["rmsprop_needs_fewer_steps"] = wins
    held = _combine([wins[f"quadratic {_tol_key(tol)}"] for tol in setup.tols])
    turned = ", ".join(
        f"{_steps_text(quick, 'quadratic_rotated', ['rmsprop', 'sgd'], t)} at tol {t:g} "
        f"({'RMSProp faster' if wins[f'quadratic_rotated {_tol_key(t)}'] else 'SGD faster'})"
        for t in setup.tols
    )
    aligned = ", ".join(
        f"{_steps_text(quick, 'quadratic', ['rmsprop', 'sgd'], t)} at tol {t:g}" for t in setup.tols
    )
    return ClaimResult(
        claim="C4",
        title="RMSProp rescales every dimension, alleviating pathological curvature",
        verdict=verdict_from(held),
        summary=(
            f"Steps on the axis-aligned 100:1 valley at the best learning rate: {aligned}. "
            f"Turned {numbers['rotation_degrees']}° off the axes, where per-coordinate "
            f"rescaling cannot match the curvature: {turned}."
        ),
        numbers=numbers,
        figures=_draw_valleys(out_dir, quick)[:1],
    )


# --- C5: the moving average ----------------------------------------------------------------


@register("C5")
def rmsprop_moving_average_weights_sum_to_one_minus_rho_n(
    out_dir: Path, quick: bool
) -> ClaimResult:
    """C5: RMSProp's s_n after n constant gradients g = 1 is Σ_k ρ^{n−k}(1−ρ) = 1 − ρⁿ."""
    rhos = (0.5, 0.9, 0.99, 0.999)
    ns = (1, 2, 10, 100, 1000)
    # trainlab's RMSProp, lr = 0 so w stays put; one param group per ρ, g = 1 each step
    ws = [torch.zeros(1, dtype=torch.float64) for _ in rhos]
    opt = optim.RMSProp([{"params": [w], "rho": rho} for w, rho in zip(ws, rhos)], lr=0.0)
    table: dict[str, dict[str, float]] = {f"rho={rho:g}": {} for rho in rhos}
    errors, sum_errors = [], []
    for n in range(1, max(ns) + 1):
        for w in ws:
            w.grad = torch.ones_like(w)
        opt.step()
        if n not in ns:
            continue
        for w, rho in zip(ws, rhos):
            s_n = opt.state[w]["square_avg"].item()
            expected = 1 - rho**n
            weights = sum(rho ** (n - k) * (1 - rho) for k in range(1, n + 1))
            table[f"rho={rho:g}"][f"n={n}"] = s_n
            errors.append(abs(s_n - expected))
            sum_errors.append(abs(weights - expected))
    max_error, max_sum_error = max(errors), max(sum_errors)

    fig, (ax_w, ax_s) = figure(10, 4, ncols=2)
    n = 50
    k = np.arange(1, n + 1)
    for rho in (0.5, 0.9, 0.95):
        ax_w.plot(k, rho ** (n - k) * (1 - rho), ".-", ms=3, label=f"ρ = {rho}")
    ax_w.set(xlabel="k (the record g_k²)", ylabel="weight ρ^{n−k}(1−ρ)", title=f"n = {n}")
    ax_w.legend()
    steps = np.arange(1, 201)
    for rho in (0.9, 0.99):
        ax_s.plot(steps, 1 - rho**steps, label=f"1 − ρⁿ, ρ = {rho}")
        got = [table[f"rho={rho:g}"][f"n={m}"] for m in ns if m <= steps[-1]]
        ax_s.plot([m for m in ns if m <= steps[-1]], got, "ko", ms=4)
    ax_s.set(xlabel="n", ylabel="s_n for g = 1", title="RMSProp's s_n (dots) vs 1 − ρⁿ")
    ax_s.legend()
    drawn = save(fig, out_dir / "c5.png").name

    return ClaimResult(
        claim="C5",
        title="RMSProp's moving-average weights sum to 1 − ρⁿ",
        verdict=verdict_from(max_error <= 1e-12 and max_sum_error <= 1e-12),
        summary=(
            f"Fed g = 1, trainlab's RMSProp state s_n matches 1 − ρⁿ for ρ ∈ {list(rhos)} and "
            f"n ∈ {list(ns)} to {max_error:.1e} (the weights Σ ρ^(n−k)(1−ρ) to "
            f"{max_sum_error:.1e})."
        ),
        numbers={
            "rhos": list(rhos),
            "ns": list(ns),
            "s_n": table,
            "max_abs_error_state": max_error,
            "max_abs_error_weight_sum": max_sum_error,
        },
        figures=[drawn],
    )


# --- C6, C7: Adam and RMSProp ---------------------------------------------------------------


def _steps_of(opt: torch.optim.Optimizer, w: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Feed ``grads[t]`` as the gradient at step t; return every step w_{t+1} − w_t."""
    out = []
    for g in grads:
        before = w.detach().clone()
        w.grad = g.clone()
        opt.step()
        out.append(w.detach() - before)
    return torch.stack(out)


@register("C6")
def adam_is_rmsprop_of_the_moving_average(out_dir: Path, quick: bool) -> ClaimResult:
    """C6: Adam's step = RMSProp's step −lr·g ⊘ (√s + ε) with g replaced by m."""
    lr, beta1, beta2, steps, dims = 1e-2, 0.9, 0.999, 100 if quick else 500, 4
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(steps, dims, generator=gen, dtype=torch.float64) + 0.5  # noisy, biased

    w_adam = torch.zeros(dims, dtype=torch.float64)
    adam = optim.Adam([w_adam], lr=lr, betas=(beta1, beta2), bias_correction=False)
    adam_steps = _steps_of(adam, w_adam, grads)

    # RMSProp (ρ = β₂) on the same gradients: its state s_t, step by step
    w_rms = torch.zeros(dims, dtype=torch.float64)
    rms = optim.RMSProp([w_rms], lr=lr, rho=beta2)
    eps = rms.param_groups[0]["eps"]
    rms_steps, s = [], []
    for g in grads:
        rms_steps.append(_steps_of(rms, w_rms, g[None])[0])
        s.append(rms.state[w_rms]["square_avg"].clone())
    rms_steps_t, s_t = torch.stack(rms_steps), torch.stack(s)

    # m_t = β₁·m_{t−1} + (1−β₁)·g_t, then RMSProp's formula with m_t in place of g_t
    m, ms = torch.zeros(dims, dtype=torch.float64), []
    for g in grads:
        m = beta1 * m + (1 - beta1) * g
        ms.append(m)
    m_t = torch.stack(ms)
    rms_of_m = -lr * m_t / (s_t.sqrt() + eps)
    rms_of_g = -lr * grads / (s_t.sqrt() + eps)

    gap = (adam_steps - rms_of_m).abs().max().item()
    rms_formula_gap = (rms_steps_t - rms_of_g).abs().max().item()
    plain_gap = (adam_steps - rms_steps_t).abs().max().item()  # Adam ≠ RMSProp on g itself

    fig, ax = figure(9, 4)
    t = np.arange(1, steps + 1)
    ax.plot(t, rms_steps_t[:, 0].numpy(), color="0.6", lw=0.8, label="RMSProp step (g)")
    ax.plot(t, adam_steps[:, 0].numpy(), color="tab:purple", lw=2, label="Adam step")
    ax.plot(t, rms_of_m[:, 0].numpy(), "k--", lw=1, label="RMSProp formula with m for g")
    ax.set(
        xlabel="step t",
        ylabel="w_{t+1} − w_t (first coordinate)",
        title=f"β₁ = {beta1}, ρ = β₂ = {beta2}, no bias correction; max gap {gap:.1e}",
    )
    ax.legend()
    drawn = save(fig, out_dir / "c6.png").name

    return ClaimResult(
        claim="C6",
        title="Adam is RMSProp with the gradient replaced by its moving average",
        verdict=verdict_from(gap <= 1e-12 and rms_formula_gap <= 1e-12),
        summary=(
            f"Over {steps} steps of one gradient sequence, Adam's step equals RMSProp's "
            f"−lr·m ⊘ (√s + ε) to {gap:.1e}, while it differs from RMSProp's actual step on g by "
            f"up to {plain_gap:.1e}."
        ),
        numbers={
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "steps": steps,
            "dims": dims,
            "max_abs_gap_adam_vs_rmsprop_of_m": gap,
            "max_abs_gap_rmsprop_vs_its_formula": rms_formula_gap,
            "max_abs_gap_adam_vs_rmsprop_of_g": plain_gap,
        },
        figures=[drawn],
    )


@register("C7")
def adam_with_beta1_zero_is_rmsprop(out_dir: Path, quick: bool) -> ClaimResult:
    """C7: Adam(β₁ = 0, no bias correction) and RMSProp(ρ = β₂) train a net identically."""
    lr, beta2, steps = 1e-2, 0.999, 50
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
        torch.manual_seed(0)
        x = torch.randn(64, 3)
        net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    y = torch.sin(x.sum(dim=1, keepdim=True))
    nets = {"adam": net, "rmsprop": copy.deepcopy(net)}
    opts = {
        "adam": optim.Adam(
            nets["adam"].parameters(), lr=lr, betas=(0.0, beta2), bias_correction=False
        ),
        "rmsprop": optim.RMSProp(nets["rmsprop"].parameters(), lr=lr, rho=beta2),
    }
    losses: dict[str, list[float]] = {"adam": [], "rmsprop": []}
    gaps = []
    for _ in range(steps):
        for name, model in nets.items():
            opts[name].zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opts[name].step()
            losses[name].append(loss.item())
        gaps.append(
            max(
                (a - b).abs().max().item()
                for a, b in zip(nets["adam"].parameters(), nets["rmsprop"].parameters())
            )
        )
    gap = max(gaps)

    fig, ax = figure(7, 4)
    t = np.arange(1, steps + 1)
    ax.plot(t, losses["adam"], color="tab:purple", lw=2, label=f"Adam β₁ = 0, β₂ = {beta2}")
    ax.plot(t, losses["rmsprop"], "k.", ms=4, label=f"RMSProp ρ = {beta2}")
    ax.set(
        xlabel="step",
        ylabel="training loss (MSE)",
        title=f"3-16-1 tanh net, float32: max |Δw| over {steps} steps = {gap:.1e}",
    )
    ax.legend()
    drawn = save(fig, out_dir / "c7.png").name

    return ClaimResult(
        claim="C7",
        title="With β₁ = 0, Adam degenerates to RMSProp",
        verdict=verdict_from(gap <= 1e-12),
        summary=(
            f"Training a 3-16-1 network for {steps} steps, Adam (β₁ = 0, β₂ = {beta2}, no bias "
            f"correction) and RMSProp (ρ = {beta2}) give weights that differ by at most "
            f"{gap:.1e}."
        ),
        numbers={
            "lr": lr,
            "beta2": beta2,
            "steps": steps,
            "max_abs_weight_gap": gap,
            "final_loss": {k: v[-1] for k, v in losses.items()},
        },
        figures=[drawn],
    )
