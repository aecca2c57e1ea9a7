"""The lecture's training techniques, measured (claims C8–C15).

One experiment per claim, each registered in :data:`trainlab.lecture.claims.EXPERIMENTS`:

- C8: gradient descent on linear regression (the ``housing`` table) with raw, centered,
  standardized and ZCA-whitened features;
- C9, C10: activations by depth and a short training under N(0, 0.01²) and fan-in
  initialization;
- C11: dropout against overfitting on MNIST-1D (real runs of ``examples/mnist1d_mlp.yaml``,
  shipped as :data:`MNIST1D_MLP`);
- C12: batch norm with γ = √(σ² + ε), β = μ is the identity;
- C13: batch norm keeps a deep, badly initialized MLP trainable;
- C14: layer and instance norm compute the same function in training and eval;
- C15: the curve doctor (:func:`trainlab.diagnose.diagnose`) on real runs at very high,
  low and good learning rates, and on a run that overfits.

The networks are small and the runs short, so every experiment trains on one CPU thread
(:func:`_one_thread`): on a shared machine, two threads fighting over two busy cores make
these tiny matrix products ten times slower, not faster.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainlab import data, init, models, optim, preprocess
from trainlab import nn as tl_nn
from trainlab.diagnose.curves import LEARNED_FRACTION
from trainlab.figures import figure, save
from trainlab.lecture.claims import ClaimResult, register, verdict_from
from trainlab.run import fit
from trainlab.train.rundir import RunDir

__all__ = [
    "preprocessing_speeds_up_gradient_descent",
    "small_gaussian_fails_in_deep_networks",
    "fan_in_init_trains_deep_networks",
    "dropout_alleviates_overfitting",
    "batch_norm_can_be_the_identity",
    "batch_norm_keeps_deep_networks_trainable",
    "layer_and_instance_norm_ignore_the_mode",
    "curves_tell_learning_rate_and_fit",
]

#: The example run that C11 and C15 vary with overrides: ``examples/mnist1d_mlp.yaml``,
#: shipped with the package as ``trainlab/lecture/configs/mnist1d_mlp.yaml`` (a test keeps
#: the two equal), so the lecture runs from an installed wheel.
MNIST1D_MLP = "mnist1d_mlp.yaml"
#: C9, C10, C13 train on this many MNIST-1D training signals, in mini-batches of this size.
SUBSET, BATCH = 1000, 100
#: C9/C10/C13: a network "trains" when its final train loss is below this fraction of
#: ln C, the loss of a uniform guess (the curve doctor's "it had learned").
TRAINED_FRACTION = LEARNED_FRACTION


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block; put the caller's setting back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.cache
def _mnist1d_subset() -> tuple[torch.Tensor, torch.Tensor]:
    """The first :data:`SUBSET` MNIST-1D training signals, standardized, and their labels."""
    ds = data.load("mnist1d")
    is_train = torch.ones(len(ds.y), dtype=torch.bool)
    is_train[torch.as_tensor(ds.test_indices)] = False
    X, y = ds.X[is_train][:SUBSET], ds.y[is_train][:SUBSET]
    return torch.as_tensor(preprocess.Standardize().fit_transform(X)), y


def _train(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    optimizer: str,
    lr: float,
    seed: int,
) -> tuple[list[float], float]:
    """Mini-batch training on (X, y); returns the batch losses and the final train loss
    on all of X (eval mode)."""
    generator = torch.Generator().manual_seed(seed)
    opt = optim.create(optimizer, model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        batch = torch.randint(len(X), (BATCH,), generator=generator)
        loss = F.cross_entropy(model(X[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = F.cross_entropy(model(X), y).item()
    return losses, final


def _smooth(values: Sequence[float], window: int = 20) -> np.ndarray:
    """Running mean over ``window`` steps (shorter at the start)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(v, 0, 0.0))
    lo = np.maximum(np.arange(1, len(v) + 1) - window, 0)
    return (c[1:] - c[lo]) / (np.arange(1, len(v) + 1) - lo)


def _example_config(name: str):
    """A config the lecture ships as package data (``trainlab/lecture/configs/<name>``), as
    an :mod:`importlib.resources` traversable; ``resources.as_file`` gives it a path."""
    return resources.files("trainlab.lecture") / "configs" / name


def _fresh_dir(base: Path) -> Path:
    """``base`` if it does not exist yet, else ``base-2``, ``base-3``, … (fit() refuses a
    non-empty run directory)."""
    candidate, k = base, 1
    while candidate.exists():
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate


def _fit(out_dir: Path, name: str, overrides: list[str]) -> dict:
    """A real run of the MNIST-1D example with ``overrides``; its summary and history."""
    run_dir = _fresh_dir(out_dir / "runs" / name)
    with _one_thread(), resources.as_file(_example_config(MNIST1D_MLP)) as config:
        summary = fit(config, overrides, out=run_dir, quiet=True, echo=lambda s: None)
    summary["history"] = RunDir(run_dir).read_history()
    return summary


# --------------------------------------------------------------------------- C8

_C8_VARIANTS = {
    "raw": None,
    "centered": preprocess.Center,
    "standardized": preprocess.Standardize,
    "whitened (ZCA)": lambda: preprocess.Whiten(method="zca"),
}
#: C8: fractions of the stability limit 2/λ_max tried as learning rates.
_C8_LR_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.95)


def _gradient_descent(X: np.ndarray, y: np.ndarray, tol: float, max_iter: int) -> dict[str, object]:
    """Full-batch gradient descent on L(w) = (1/n)‖X̃w − y‖², X̃ = [X, 1], from w = 0, at
    each learning rate of the grid; the best one's iterations to (L − L*) ≤ tol·(L₀ − L*).

    L is a quadratic with Hessian H = (2/n)X̃ᵀX̃, so the loop runs on H and the gradient
    ∇L(w) = H w − (2/n)X̃ᵀy, all learning rates at once (one column of W each).
    """
    n = len(y)
    Xb = np.column_stack([X, np.ones(n)])
    gram = Xb.T @ Xb
    eig = np.linalg.eigvalsh(gram)
    H, g = 2.0 * gram / n, 2.0 * Xb.T @ y / n
    w_star = np.linalg.lstsq(Xb, y, rcond=None)[0]
    lam_max = 2.0 * eig[-1] / n
    lrs = np.array([f * 2.0 / lam_max for f in _C8_LR_FRACTIONS])

    def excess(W: np.ndarray) -> np.ndarray:  # L(w) − L* = ½ (w − w*)ᵀ H (w − w*)
        D = W - w_star[:, None]
        return 0.5 * np.einsum("ik,ij,jk->k", D, H, D)

    W = np.zeros((len(w_star), len(lrs)))
    e0 = excess(W)
    curves = [excess(W) / e0]
    iters: list[int | None] = [None] * len(lrs)
    for t in range(1, max_iter + 1):
        W -= lrs * (H @ W - g[:, None])
        rel = excess(W) / e0
        curves.append(rel)
        for k in np.flatnonzero((rel <= tol) & np.array([i is None for i in iters])):
            iters[k] = t
        if all(i is not None for i in iters) or not np.isfinite(rel).any():
            break
    curves = np.array(curves)
    done = [k for k, i in enumerate(iters) if i is not None]
    best = min(done, key=lambda k: iters[k]) if done else int(np.nanargmin(curves[-1]))
    return {
        "condition_number": float(eig[-1] / eig[0]),
        "lr": float(lrs[best]),
        "lr_fraction_of_2_over_lambda_max": _C8_LR_FRACTIONS[best],
        "iterations": iters[best],
        "final_relative_excess_loss": float(curves[-1, best]),
        "curve": curves[:, best],
    }


@register("C8")
def preprocessing_speeds_up_gradient_descent(out_dir: Path, quick: bool) -> ClaimResult:
    """C8: iterations of gradient descent on linear regression, by preprocessing."""
    tol, max_iter = 1e-6, 10_000 if quick else 100_000
    ds = data.load("housing")
    X, y = ds.X.double().numpy(), ds.y.double().numpy()
    results = {}
    for name, make in _C8_VARIANTS.items():
        Xv = X if make is None else np.asarray(make().fit_transform(X), dtype=np.float64)
        results[name] = _gradient_descent(Xv, y, tol, max_iter)

    fig, ax = figure()
    for name, r in results.items():
        curve = r["curve"][1:]  # from iteration 1: iteration 0 is 1 by definition
        ax.plot(np.arange(1, len(curve) + 1), np.maximum(curve, 1e-16), label=name)
    ax.axhline(tol, color="grey", ls=":", lw=1, label=f"tolerance {tol:g}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="iteration (log)",
        ylabel="(L − L*) / (L₀ − L*)",
        title="Gradient descent on housing linear regression, best lr each",
    )
    ax.legend(fontsize=8)
    figures = [save(fig, out_dir / "c8_preprocessing_gd.png").name]

    def steps(name: str) -> int:  # a run that never converged counts as the cap
        return results[name]["iterations"] or max_iter

    fast = min(steps("standardized"), steps("whitened (ZCA)"))
    held = fast * 10 <= steps("raw")
    numbers = {
        "tolerance": tol,
        "max_iterations": max_iter,
        "bias": "a column of ones appended to X (condition number of X̃ᵀX̃ with it)",
        "feature_std": dict(zip(ds.feature_names, X.std(axis=0).round(3).tolist())),
        **{name: {k: v for k, v in r.items() if k != "curve"} for name, r in results.items()},
    }

    def said(name: str) -> str:
        r = results[name]
        it = r["iterations"]
        return f"{name} {it if it is not None else f'>{max_iter}'} (κ {r['condition_number']:.3g})"

    summary = (
        f"Iterations to cut the excess loss by {1 / tol:.0e} at the best stable lr: "
        + ", ".join(said(name) for name in results)
        + f"; {'held' if held else 'did not hold'}: standardized/whitened "
        + ("need" if held else "do not need")
        + " at least 10× fewer iterations than raw."
    )
    return ClaimResult(
        "C8",
        "Preprocessing to similar scales speeds up gradient descent",
        verdict_from(held),
        summary,
        numbers,
        figures,
    )


# --------------------------------------------------------------------------- C9, C10

_INIT_SCHEMES = {"gaussian(0.01)": init.Gaussian(0.01), "fan_in": init.FanIn()}
_INIT_DEPTHS = (4, 8, 16)
_INIT_WIDTH = 128
_INIT_STEPS = 300


@functools.cache
def _init_study(quick: bool) -> dict:
    """Activation std per layer and a short training, for every scheme and depth (tanh
    MLPs of width :data:`_INIT_WIDTH`, Adam lr 1e-3, :data:`_INIT_STEPS` steps on
    :data:`SUBSET` MNIST-1D signals)."""
    X, y = _mnist1d_subset()
    seeds = (0,) if quick else (0, 1, 2)
    rows: dict[str, dict] = {}
    with _one_thread(), torch.random.fork_rng():
        for scheme_name, scheme in _INIT_SCHEMES.items():
            for depth in _INIT_DEPTHS:
                stds, finals = [], []
                for seed in seeds:
                    torch.manual_seed(seed)
                    model = models.mlp(
                        X.shape[1], 10, [_INIT_WIDTH] * depth, activation="tanh", init=scheme
                    )
                    stats = init.activation_stats(model, X[:256], layers=(torch.nn.Tanh,))
                    stds.append([s.std for s in stats])
                    finals.append(_train(model, X, y, _INIT_STEPS, "adam", 1e-3, seed)[1])
                rows[f"{scheme_name}, {depth} layers"] = {
                    "scheme": scheme_name,
                    "depth": depth,
                    "activation_std_by_layer": np.mean(stds, axis=0).tolist(),
                    "final_train_loss": float(np.mean(finals)),
                    "trained": bool(np.mean(finals) < TRAINED_FRACTION * math.log(10)),
                }
    return {"seeds": len(seeds), "ln_C": math.log(10), "runs": rows}


def _runs_of(study: dict, scheme: str) -> dict[int, dict]:
    """depth → the study's row for ``scheme``."""
    return {r["depth"]: r for r in study["runs"].values() if r["scheme"] == scheme}


def _loss_lines(ax, study: dict) -> None:
    """The two reference losses of C9/C10, ln C (a uniform guess) and the "trained" bar,
    and the legend above the bars."""
    ax.axhline(study["ln_C"], color="grey", ls=":", lw=1, label="ln C (uniform guess)")
    ax.axhline(
        TRAINED_FRACTION * study["ln_C"],
        color="C3",
        ls="--",
        lw=1,
        label=f"trained: below {TRAINED_FRACTION:g}·ln C",
    )
    ax.set_ylim(0, 1.5 * study["ln_C"])
    ax.legend(fontsize=7, ncol=2, loc="upper center")


def _small_gaussian_figure(study: dict, out_dir: Path) -> str:
    """C9: under N(0, 0.01²) the activations shrink layer by layer, and the final loss
    crosses the "trained" bar as the network gets deeper."""
    fig, (ax_std, ax_loss) = figure(10.0, 3.8, ncols=2)
    runs = _runs_of(study, "gaussian(0.01)")
    # every depth decays at the same rate per layer, so the curves lie on one another:
    # hollow markers of three sizes keep each one visible
    for (depth, row), size in zip(runs.items(), (10, 6, 3)):
        std = row["activation_std_by_layer"]
        ax_std.plot(
            range(1, len(std) + 1),
            std,
            marker="o",
            ms=size,
            fillstyle="none",
            label=f"{depth} layers",
        )
    ax_std.set(
        yscale="log",
        xlabel="hidden layer",
        ylabel="std of tanh activations at init",
        title="N(0, 0.01²): activations shrink layer by layer",
    )
    ax_std.legend(fontsize=8)
    depths = list(runs)
    ax_loss.bar(
        [str(d) for d in depths],
        [runs[d]["final_train_loss"] for d in depths],
        color=["C0" if runs[d]["trained"] else "C3" for d in depths],
    )
    _loss_lines(ax_loss, study)
    ax_loss.set(
        xlabel="hidden layers",
        ylabel="final train loss",
        title=f"N(0, 0.01²): after {_INIT_STEPS} Adam steps",
    )
    return save(fig, out_dir / "c9_small_gaussian_by_depth.png").name


def _fan_in_figure(study: dict, out_dir: Path) -> str:
    """C10: the effect of fan-in scaling against N(0, 0.01²) — the activations of the
    deepest network keep their scale, and every depth trains."""
    fig, (ax_std, ax_loss) = figure(10.0, 3.8, ncols=2)
    deepest = max(_INIT_DEPTHS)
    schemes = {"gaussian(0.01)": ("N(0, 0.01²)", "--", "C1"), "fan_in": ("fan-in", "-", "C0")}
    for scheme, (label, style, colour) in schemes.items():
        std = _runs_of(study, scheme)[deepest]["activation_std_by_layer"]
        ax_std.plot(range(1, len(std) + 1), std, style, color=colour, marker=".", label=label)
    ax_std.set(
        yscale="log",
        xlabel="hidden layer",
        ylabel="std of tanh activations at init",
        title=f"{deepest} layers: fan-in keeps the scale",
    )
    ax_std.legend(fontsize=8)
    width = 0.4
    for j, (scheme, (label, _, colour)) in enumerate(schemes.items()):
        runs = _runs_of(study, scheme)
        x = [k - width / 2 + j * width for k in range(len(_INIT_DEPTHS))]
        ax_loss.bar(
            x, [runs[d]["final_train_loss"] for d in _INIT_DEPTHS], width, color=colour, label=label
        )
    ax_loss.set_xticks(range(len(_INIT_DEPTHS)), [str(d) for d in _INIT_DEPTHS])
    _loss_lines(ax_loss, study)
    ax_loss.set(
        xlabel="hidden layers",
        ylabel="final train loss",
        title=f"After {_INIT_STEPS} Adam steps, by depth",
    )
    return save(fig, out_dir / "c10_fan_in_vs_small_gaussian.png").name


def _init_numbers(study: dict, scheme: str) -> dict:
    runs = {k: r for k, r in study["runs"].items() if r["scheme"] == scheme}
    return {
        "activation": "tanh",
        "width": _INIT_WIDTH,
        "steps": _INIT_STEPS,
        "optimizer": "adam, lr 1e-3",
        "seeds": study["seeds"],
        "trained_means_final_loss_below": TRAINED_FRACTION * study["ln_C"],
        **{
            k: {
                "last_layer_activation_std": r["activation_std_by_layer"][-1],
                "final_train_loss": r["final_train_loss"],
                "trained": r["trained"],
            }
            for k, r in runs.items()
        },
    }


def _init_line(study: dict, scheme: str) -> str:
    return ", ".join(
        f"{r['depth']} layers: loss {r['final_train_loss']:.2f}, "
        f"last std {r['activation_std_by_layer'][-1]:.1e}"
        for r in study["runs"].values()
        if r["scheme"] == scheme
    )


@register("C9")
def small_gaussian_fails_in_deep_networks(out_dir: Path, quick: bool) -> ClaimResult:
    """C9: N(0, 0.01²) trains a shallow network but not a deep one."""
    study = _init_study(quick)
    runs = _runs_of(study, "gaussian(0.01)")
    held = runs[4]["trained"] and not runs[16]["trained"]
    fails_at = [d for d in _INIT_DEPTHS if not runs[d]["trained"]]
    summary = (
        f"Under N(0, 0.01²) (tanh, width {_INIT_WIDTH}, {_INIT_STEPS} Adam steps; "
        f"ln C = {study['ln_C']:.2f}): "
        f"{_init_line(study, 'gaussian(0.01)')}; it "
        + (f"fails from {fails_at[0]} layers on" if fails_at else "trains at every depth")
        + f", so the claim {'held' if held else 'did not hold'}."
    )
    return ClaimResult(
        "C9",
        "A fixed small Gaussian init works only for networks that are not too deep",
        verdict_from(held),
        summary,
        _init_numbers(study, "gaussian(0.01)"),
        [_small_gaussian_figure(study, out_dir)],
    )


@register("C10")
def fan_in_init_trains_deep_networks(out_dir: Path, quick: bool) -> ClaimResult:
    """C10: σ_i = 1/√n_in keeps the activations' scale and trains at every depth."""
    study = _init_study(quick)
    held = all(r["trained"] for r in _runs_of(study, "fan_in").values())
    summary = (
        f"Under fan-in init σ = 1/√n_in (tanh, width {_INIT_WIDTH}, {_INIT_STEPS} Adam steps): "
        f"{_init_line(study, 'fan_in')}; "
        + ("it trains at every depth." if held else "it does not train at every depth.")
    )
    return ClaimResult(
        "C10",
        "Fan-in scaled initialization trains deep networks",
        verdict_from(held),
        summary,
        _init_numbers(study, "fan_in"),
        [_fan_in_figure(study, out_dir)],
    )


# --------------------------------------------------------------------------- C11

#: C11: best validation accuracy with dropout may be this much lower and still count as
#: "not worse" (the spread between seeds is about that size).
_C11_VAL_SLACK = 0.01
#: C11: label → drop probability; the verdict compares the first two, 0.3 (the example's
#: rate) is shown for context.
_C11_RATES = {"no dropout": 0.0, "dropout 0.5": 0.5, "dropout 0.3": 0.3}


@register("C11")
def dropout_alleviates_overfitting(out_dir: Path, quick: bool) -> ClaimResult:
    """C11: the MNIST-1D example MLP without batch norm, dropout 0 vs 0.5, several seeds.

    The gap is train − validation accuracy of the run's selected (best validation
    accuracy) weights, both in eval mode; the validation loss rise is the last epoch's
    over the run's lowest. Full runs train for the example's 120 epochs.
    """
    seeds = (0, 1) if quick else (0, 1, 2)
    epochs = 30 if quick else 120
    rows: dict[str, list[dict]] = {label: [] for label in _C11_RATES}
    for seed in seeds:
        for label, p in _C11_RATES.items():
            s = _fit(
                out_dir,
                f"c11-p{p}-seed{seed}",
                ["model.norm=none", f"model.dropout={p}", f"seed={seed}", f"train.epochs={epochs}"],
            )
            val_loss = [h["val_loss"] for h in s["history"]]
            rows[label].append(
                {
                    "seed": seed,
                    "train_accuracy": s["train"]["accuracy"],
                    "val_accuracy": s["val"]["accuracy"],
                    "gap": s["train"]["accuracy"] - s["val"]["accuracy"],
                    "val_loss_rise": val_loss[-1] / min(val_loss) - 1.0,
                    "diagnosis": [f["kind"] for f in s["diagnosis"]],
                }
            )
    mean = {
        label: {
            k: float(np.mean([r[k] for r in runs]))
            for k in ("gap", "val_accuracy", "val_loss_rise")
        }
        for label, runs in rows.items()
    }
    without, with_, light = mean["no dropout"], mean["dropout 0.5"], mean["dropout 0.3"]
    smaller_gap = with_["gap"] < without["gap"]
    not_worse = with_["val_accuracy"] >= without["val_accuracy"] - _C11_VAL_SLACK
    held = smaller_gap and not_worse

    fig, ax = figure()
    width = 0.8 / len(rows)
    for j, (label, runs) in enumerate(rows.items()):
        x = [k - 0.4 + (j + 0.5) * width for k in range(len(seeds))]
        ax.bar(x, [r["gap"] for r in runs], width, label=label)
    ax.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax.set(
        ylabel="train − val accuracy (best-val weights)",
        title=f"MNIST-1D MLP without batch norm, {epochs} epochs",
    )
    ax.legend()
    figures = [save(fig, out_dir / "c11_dropout_gap.png").name]

    numbers = {
        "epochs": epochs,
        "seeds": list(seeds),
        "val_accuracy_slack": _C11_VAL_SLACK,
        "mean": mean,
        "runs": rows,
    }
    why = (
        "held"
        if held
        else "did not hold: "
        + ("the gap did not shrink" if not smaller_gap else "val accuracy fell")
    )
    summary = (
        f"Over {len(seeds)} seeds × {epochs} epochs the train − val accuracy gap is "
        f"{without['gap']:.3f} without dropout and {with_['gap']:.3f} with p = 0.5, best val "
        f"accuracy {without['val_accuracy']:.3f} vs {with_['val_accuracy']:.3f} (p = 0.3: gap "
        f"{light['gap']:.3f}, val {light['val_accuracy']:.3f}); the claim {why}."
    )
    return ClaimResult(
        "C11",
        "Dropout alleviates overfitting",
        verdict_from(held),
        summary,
        numbers,
        figures,
    )


# --------------------------------------------------------------------------- C12

_C12_TOLERANCE = 1e-5


@register("C12")
def batch_norm_can_be_the_identity(out_dir: Path, quick: bool) -> ClaimResult:
    """C12: a training-mode BatchNorm1d with γ = √(σ² + ε), β = μ returns its input.

    ε is in the normalization, ĥ = (h̃ − μ)/√(σ² + ε), so γ = σ exactly is the identity
    only up to a factor σ/√(σ² + ε): shown for contrast on features with small σ.
    """
    generator = torch.Generator().manual_seed(0)
    n, d = 64, 16
    scales = torch.logspace(-2, 1, d)  # σ from 0.01 to 10, so ε = 1e-5 matters for some
    x = torch.randn(n, d, generator=generator) * scales + torch.linspace(-5, 5, d)
    mu, var = x.mean(0), x.var(0, correction=0)
    bn = tl_nn.BatchNorm1d(d).train()
    errors = {}
    for label, gamma in (("γ = √(σ² + ε)", (var + bn.eps).sqrt()), ("γ = σ", var.sqrt())):
        with torch.no_grad():
            bn.weight.copy_(gamma)
            bn.bias.copy_(mu)
            errors[label] = (bn(x) - x).abs().amax(0)
    worst = errors["γ = √(σ² + ε)"].max().item()
    held = worst <= _C12_TOLERANCE

    fig, ax = figure()
    for label, err in errors.items():
        ax.plot(scales, err.clamp_min(1e-12), marker="o", label=label)
    ax.axhline(_C12_TOLERANCE, color="grey", ls=":", label=f"tolerance {_C12_TOLERANCE:g}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="σ of the feature",
        ylabel="max |BN(x) − x| (0 drawn at 1e-12)",
        title=f"Batch norm with β = μ (train mode, ε = {bn.eps:g})",
    )
    ax.legend()
    figures = [save(fig, out_dir / "c12_batch_norm_identity.png").name]

    numbers = {
        "batch": n,
        "features": d,
        "eps": bn.eps,
        "dtype": "float32",
        "max_abs_error_gamma_sqrt_var_plus_eps": worst,
        "max_abs_error_gamma_sigma": errors["γ = σ"].max().item(),
        "tolerance": _C12_TOLERANCE,
    }
    summary = (
        f"With γ = √(σ² + ε), β = μ the batch norm output differs from its input by at most "
        f"{worst:.2e} (float32; γ = σ alone: {numbers['max_abs_error_gamma_sigma']:.2e}, "
        f"from ε = {bn.eps:g}), so the claim {'held' if held else 'did not hold'}."
    )
    return ClaimResult(
        "C12",
        "Batch norm can represent the identity",
        verdict_from(held),
        summary,
        numbers,
        figures,
    )


# --------------------------------------------------------------------------- C13


@register("C13")
def batch_norm_keeps_deep_networks_trainable(out_dir: Path, quick: bool) -> ClaimResult:
    """C13: a 12-layer ReLU MLP under N(0, 0.01²), with and without batch norm, the
    same SGD-momentum steps; fan-in without batch norm as the good-init reference."""
    steps, depth, lr = (300 if quick else 600), 12, 0.05
    X, y = _mnist1d_subset()
    variants = {
        "gaussian(0.01), no norm": ("none", init.Gaussian(0.01)),
        "gaussian(0.01), batch norm": ("batch", init.Gaussian(0.01)),
        "fan_in, no norm (reference)": ("none", init.FanIn()),
    }
    curves, finals = {}, {}
    with _one_thread(), torch.random.fork_rng():
        for label, (norm, scheme) in variants.items():
            torch.manual_seed(0)
            model = models.mlp(X.shape[1], 10, [128] * depth, norm=norm, init=scheme)
            curves[label], finals[label] = _train(model, X, y, steps, "momentum", lr, seed=0)
    no_bn, bn = finals["gaussian(0.01), no norm"], finals["gaussian(0.01), batch norm"]
    held = bn <= 0.5 * no_bn

    fig, ax = figure()
    for label, curve in curves.items():
        ax.plot(range(1, steps + 1), _smooth(curve), label=label)
    ax.axhline(math.log(10), color="grey", ls=":", label="ln C (uniform guess)")
    ax.set(
        xlabel="step",
        ylabel="train loss (running mean of 20 batches)",
        title=f"{depth}-layer ReLU MLP, SGD momentum 0.9, lr {lr}",
    )
    ax.legend(fontsize=8)
    figures = [save(fig, out_dir / "c13_batch_norm_deep.png").name]

    numbers = {
        "depth": depth,
        "width": 128,
        "steps": steps,
        "optimizer": f"sgd momentum 0.9, lr {lr}, batch {BATCH}",
        "ln_C": math.log(10),
        "final_train_loss": finals,
    }
    summary = (
        f"After {steps} steps the {depth}-layer MLP under N(0, 0.01²) reaches train loss "
        f"{bn:.3f} with batch norm and {no_bn:.3f} without (ln C = {math.log(10):.3f}; "
        f"fan-in without norm: {finals['fan_in, no norm (reference)']:.3f}); the claim "
        f"{'held' if held else 'did not hold'} (held: at most half the loss)."
    )
    return ClaimResult(
        "C13",
        "Batch norm keeps a deep network trainable",
        verdict_from(held),
        summary,
        numbers,
        figures,
    )


# --------------------------------------------------------------------------- C14

_C14_TOLERANCE = 1e-6


@register("C14")
def layer_and_instance_norm_ignore_the_mode(out_dir: Path, quick: bool) -> ClaimResult:
    """C14: max |train-mode − eval-mode output| of LayerNorm and InstanceNorm2d, with
    BatchNorm1d (after 20 training batches) as the contrast."""
    generator = torch.Generator().manual_seed(0)

    def batch(*shape: int) -> torch.Tensor:
        return 3.0 * torch.randn(*shape, generator=generator) + 1.0

    layers = {
        "LayerNorm": (tl_nn.LayerNorm(32), (16, 32)),
        "InstanceNorm2d": (tl_nn.InstanceNorm2d(4, affine=True), (8, 4, 6, 6)),
        "BatchNorm1d": (tl_nn.BatchNorm1d(32), (16, 32)),
    }
    diffs = {}
    with torch.no_grad():
        for name, (layer, shape) in layers.items():
            for p in layer.parameters():  # not the identity γ = 1, β = 0
                p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
            layer.train()
            for _ in range(20):  # batch norm's running statistics move; the others have none
                layer(batch(*shape))
            x = batch(*shape)
            train_out = layer.train()(x)
            eval_out = layer.eval()(x)
            diffs[name] = (train_out - eval_out).abs().max().item()
    held = max(diffs["LayerNorm"], diffs["InstanceNorm2d"]) <= _C14_TOLERANCE

    fig, ax = figure()
    names = list(diffs)
    ax.bar(names, [max(diffs[n], 1e-12) for n in names], color=["C0", "C0", "C3"])
    for k, n in enumerate(names):
        ax.annotate(f"{diffs[n]:.2g}", (k, max(diffs[n], 1e-12)), ha="center", va="bottom")
    ax.set(
        yscale="log",
        ylabel="max |train − eval output| (0 drawn at 1e-12)",
        title="Same input, training vs eval mode",
    )
    figures = [save(fig, out_dir / "c14_norm_train_vs_eval.png").name]

    summary = (
        f"Max |train − eval output|: LayerNorm {diffs['LayerNorm']:.2g}, InstanceNorm2d "
        f"{diffs['InstanceNorm2d']:.2g}, against {diffs['BatchNorm1d']:.2g} for batch norm; "
        f"the claim {'held' if held else 'did not hold'} (tolerance {_C14_TOLERANCE:g})."
    )
    return ClaimResult(
        "C14",
        "Layer and instance norm behave the same at train and test time",
        verdict_from(held),
        summary,
        {"max_abs_train_minus_eval": diffs, "tolerance": _C14_TOLERANCE},
        figures,
    )


# --------------------------------------------------------------------------- C15

#: C15: run → (overrides of :data:`MNIST1D_MLP`, the findings that confirm the claim).
#: SGD lr 10 is not "very high" for the example's batch-norm MLP: batch norm makes the loss
#: blind to the weights' scale, the weights grow and the net sits at chance without
#: exploding (diagnosed as underfitting); at lr 30 the loss explodes.
_C15_RUNS: dict[str, tuple[list[str], set[str]]] = {
    "very high (sgd, lr 30)": (
        ["optimizer.name=sgd", "optimizer.lr=30"],
        {"diverged", "lr_too_high"},
    ),
    "low (sgd, lr 1e-3)": (
        ["optimizer.name=sgd", "optimizer.lr=1e-3"],
        {"lr_too_low", "underfitting"},
    ),
    "good (the example: adam, lr 1e-2)": ([], {"healthy"}),
    "overfit (adam, no norm, no dropout)": (
        ["model.norm=none", "model.dropout=0"],
        {"overfitting"},
    ),
}
_C15_EPOCHS = 30


@register("C15")
def curves_tell_learning_rate_and_fit(out_dir: Path, quick: bool) -> ClaimResult:
    """C15: the curve doctor on real MNIST-1D runs (30 epochs each, quick or not)."""
    runs = {}
    for k, (label, (overrides, expected)) in enumerate(_C15_RUNS.items()):
        s = _fit(out_dir, f"c15-{k}", [*overrides, f"train.epochs={_C15_EPOCHS}"])
        kinds = [f["kind"] for f in s["diagnosis"]]
        runs[label] = {
            "overrides": overrides,
            "expected_any_of": sorted(expected),
            "diagnosis": kinds,
            "as_expected": bool(expected & set(kinds)),
            "train_loss": [h["train_loss"] for h in s["history"]],
            "final_train_accuracy": s["train"]["accuracy"],
            "final_val_accuracy": s["val"]["accuracy"],
        }
    held = all(r["as_expected"] for r in runs.values())

    fig, ax = figure()
    for label, r in runs.items():
        loss = np.array(r["train_loss"], dtype=np.float64)
        loss[~np.isfinite(loss)] = np.nan
        ax.plot(range(1, len(loss) + 1), loss, marker=".", label=f"{label}: {r['diagnosis'][0]}")
    ax.set(
        yscale="log",
        xlabel="epoch",
        ylabel="train loss",
        title="MNIST-1D MLP at different learning rates",
    )
    ax.legend(fontsize=7)
    figures = [save(fig, out_dir / "c15_diagnosed_curves.png").name]

    numbers = {"epochs": _C15_EPOCHS, "runs": runs}
    summary = (
        "The curve doctor found "
        + "; ".join(f"{label}: {', '.join(r['diagnosis'])}" for label, r in runs.items())
        + f"; the claim {'held' if held else 'did not hold'}."
    )
    return ClaimResult(
        "C15",
        "Learning curves tell the learning-rate regime and over/underfitting",
        verdict_from(held),
        summary,
        numbers,
        figures,
    )
