"""A network's health before training: activations, gradients and loss at init, per layer.

:func:`health` looks at a model on one batch and reports, for every Linear, Conv and
activation layer, the statistics of its output (:func:`trainlab.init.activation_stats`),
and for every Linear and Conv layer the norm of its weight and of the weight's gradient;
then the loss at init against what it should be (ln C for C balanced classes), and the
problems it finds, one line each: dead ReLU units, activations that vanish or explode
with depth (the lecture's C9/C10; batch norm keeps them in range, C13), outputs that
are too confident at init, gradients of very different size from layer to layer.

:func:`overfit_one_batch` is the classic sanity check before a long run: a model that
cannot drive the loss on one small batch near zero has a bug, too small a capacity or
too low a learning rate.

Both work on a deep copy of the model, under their own random-number state: the model
(parameters, gradients, buffers, train/eval modes) and torch's RNG are as they were, so
calling them changes nothing in a training run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trainlab import init as _init
from trainlab import nn as tl_nn
from trainlab.nn import BatchNorm1d, BatchNorm2d
from trainlab.train.metrics import TASK_METRICS
from trainlab.train.metrics import default_loss as _task_loss

__all__ = [
    "DEAD_FRACTION_LIMIT",
    "ACTIVATION_STD_RATIO_LIMIT",
    "INITIAL_LOSS_FACTOR",
    "GRADIENT_NORM_RATIO_LIMIT",
    "SANITY_LOSS_TARGET",
    "SANITY_REGRESSION_FRACTION",
    "LayerHealth",
    "HealthReport",
    "health",
    "SanityResult",
    "overfit_one_batch",
]

DEAD_FRACTION_LIMIT = 0.5
"""A ReLU layer with more than this fraction of dead units is a finding.

A dead unit outputs 0 for every sample, so it passes no signal and gets no gradient: it
stays dead. At init a healthy ReLU layer has almost none (each unit is positive for
about half the samples); more than half dead means the layer has lost most of its width,
usually to large negative biases or a learning rate that threw the units out. Measure on
a batch of at least 32 samples: with very few samples a unit is "dead" by chance.
"""

ACTIVATION_STD_RATIO_LIMIT = 1e3
"""Activations whose std changes more than this factor from the first hidden layer to
the last (std_last / std_first < 1/limit or > limit) vanish or explode.

Each layer multiplies the scale of the signal by about σ·√n_in (times the activation's
slope), so with a fixed σ the scale changes geometrically with depth: N(0, 0.01²) in
20 layers of 64 units shrinks it by 0.08¹⁹ ≈ 1e-21 (C9). Fan-in scaling keeps the factor
near 1 (C10), and batch norm resets the scale at every layer (C13). A factor of 1000 is
far beyond what a sound initialization does, and far below what a bad one does.
"""

INITIAL_LOSS_FACTOR = 2.0
"""A classifier's initial loss more than this factor above ln C (or below ln C / factor)
is a finding.

At init the logits should be small, the softmax near uniform, and the cross-entropy
near −ln(1/C) = ln C. A loss far above it means confident, random predictions: the
last layer's weights are too large, and the first steps are spent shrinking them. A loss
far below it before any training means the model already knows the labels (a leak) or
the loss is not the mean cross-entropy.
"""

GRADIENT_NORM_RATIO_LIMIT = 1e3
"""Weight-gradient norms of two Linear/Conv layers that differ by more than this factor
are a finding.

One learning rate serves every layer; when the gradient of one layer is 1000× that of
another, a rate that moves one does nothing to the other, or blows it up. Gradients
growing toward the input explode, shrinking toward it vanish.
"""

SANITY_LOSS_TARGET = 0.05
"""Classification: :func:`overfit_one_batch` passes once the batch's cross-entropy is
below this (geometric-mean probability of the right class above e^−0.05 ≈ 0.95), or every sample
of the batch is classified right."""

SANITY_REGRESSION_FRACTION = 0.01
"""Regression: :func:`overfit_one_batch` passes once the batch's loss is below this
fraction of the loss at init (the model explains 99% of what it got wrong at first)."""

#: Layers whose weight and gradient norms are reported.
_WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Activations whose units are dead when their output is ≤ 0 for every sample (their
#: gradient is 0 there too); a tanh unit that is always negative still passes gradient.
_DEAD_UNIT_LAYERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_SANITY_STEPS = 200


@dataclass
class LayerHealth:
    """One layer's output statistics on the batch, and its weight's norms."""

    name: str  #: qualified module name ("" for the model itself)
    kind: str  #: the module's class name, e.g. ``"Linear"``, ``"ReLU"``
    act_mean: float  #: mean of the output over all its elements
    act_std: float  #: standard deviation of the output over all its elements
    dead_fraction: float  #: fraction of units ≤ 0 for every sample
    grad_norm: float | None  #: ‖∂L/∂W‖ (Frobenius); None for a layer without a weight
    weight_norm: float | None  #: ‖W‖ (Frobenius); None for a layer without a weight


@dataclass
class HealthReport:
    """What :func:`health` found; ``format()`` prints it, ``to_dict()`` saves it."""

    layers: list[LayerHealth]
    initial_loss: float  #: the loss on the batch at init (training mode)
    expected_initial_loss: float | None  #: ln C for a classifier; None for regression
    findings: list[str]  #: one line per problem found; empty when healthy

    def to_dict(self) -> dict:
        """Plain dict of lists, floats and strings (``json.dumps`` takes it)."""
        return asdict(self)

    def format(self) -> str:
        """A table of the layers, the loss at init, and the findings."""
        header = ("layer", "kind", "mean", "std", "dead", "|grad W|", "|W|")
        rows = [
            (
                _display(layer.name),
                layer.kind,
                f"{layer.act_mean:+.3g}",
                f"{layer.act_std:.3g}",
                f"{layer.dead_fraction:.0%}",
                "" if layer.grad_norm is None else f"{layer.grad_norm:.3g}",
                "" if layer.weight_norm is None else f"{layer.weight_norm:.3g}",
            )
            for layer in self.layers
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(0, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
        loss = f"initial loss {self.initial_loss:.4g}"
        if self.expected_initial_loss is not None:
            loss += f" (expected ln C = {self.expected_initial_loss:.4g})"
        lines += ["", loss, ""]
        if self.findings:
            lines += ["findings:", *(f"- {finding}" for finding in self.findings)]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


@dataclass
class SanityResult:
    """The outcome of :func:`overfit_one_batch`."""

    passed: bool
    steps: int  #: optimizer steps taken (fewer than asked when it passed early)
    initial_loss: float
    final_loss: float
    final_accuracy: float | None  #: on the batch; None for regression
    message: str  #: one line: what happened, and what to check when it failed


def health(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    task: str = "classification",
    n_classes: int | None = None,
) -> HealthReport:
    """Activation and gradient statistics per layer, and the loss at init, on one batch.

    Two passes over ``x``, both on a deep copy of ``model``:

    * a forward and backward in training mode, as the first training step runs it: the
      loss at init and ‖∂L/∂W‖, ‖W‖ of every Linear and Conv weight;
    * :func:`trainlab.init.activation_stats`: mean, std and dead fraction of every
      Linear, Conv and activation output, in eval mode (dropout keeps every unit), with
      each batch-norm layer normalizing by the statistics of this batch, as it does in
      training (at init its running statistics are still 0 and 1, which would make it
      an identity; the variance is torch's unbiased one, N/(N − 1) off).

    The findings apply :data:`DEAD_FRACTION_LIMIT`, :data:`ACTIVATION_STD_RATIO_LIMIT`
    (first against last activation layer; without activation modules, first against
    last Linear/Conv before the output), :data:`INITIAL_LOSS_FACTOR` (classification)
    and :data:`GRADIENT_NORM_RATIO_LIMIT`. ``model`` and torch's RNG state (CPU, and the
    batch's GPU) are left exactly as they were. The copy needs as much memory again.

    Parameters
    ----------
    model : nn.Module
    x, y : Tensor
        A batch (32 samples or more is best) and its targets, on the model's device.
    loss : callable, optional
        ``loss(output, target) -> scalar``; default the Trainer's for ``task``. The
        ln C expectation assumes a mean cross-entropy.
    task : {"classification", "regression"}
    n_classes : int, optional
        C; default the size of the output's dimension 1.

    Returns
    -------
    HealthReport

    Raises
    ------
    ValueError
        For an unknown task, fewer than 2 samples, ``x`` and ``y`` of different
        lengths, or a classifier output that is not N × C with C ≥ 2 (or not
        ``n_classes`` wide).
    """
    _check_batch(task, x, y)
    if n_classes is not None and not (
        isinstance(n_classes, int) and not isinstance(n_classes, bool) and n_classes >= 2
    ):
        raise ValueError(f"n_classes must be an int ≥ 2 or None; got {n_classes!r}")
    loss_fn = loss or _task_loss(task)
    probe = copy.deepcopy(model)
    with torch.random.fork_rng(devices=_rng_devices(x)):
        initial_loss, out_shape, grads = _gradient_pass(probe, x, y, loss_fn)
        _normalize_by_batch_at_eval(probe, x)
        stats = _init.activation_stats(probe, x)

    expected = None
    if task == "classification":
        n_classes = _classes(out_shape, n_classes)
        expected = math.log(n_classes)
    modules = dict(probe.named_modules())
    layers = []
    for record in stats:
        module = modules[record.name]
        weighted = isinstance(module, _WEIGHT_LAYERS)
        layers.append(
            LayerHealth(
                name=record.name,
                kind=record.kind,
                act_mean=record.mean,
                act_std=record.std,
                dead_fraction=record.dead_fraction,
                grad_norm=grads.get(module) if weighted else None,
                weight_norm=module.weight.detach().norm().item() if weighted else None,
            )
        )
    findings = [
        *_dead_unit_findings(layers, modules),
        *_scale_findings(layers, modules),
        *_loss_findings(initial_loss, expected, n_classes),
        *_gradient_findings(layers, modules),
    ]
    return HealthReport(layers, initial_loss, expected, findings)


def overfit_one_batch(
    model: nn.Module,
    optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    x: torch.Tensor,
    y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    task: str = "classification",
    steps: int = _SANITY_STEPS,
    target: float | None = None,
    dropout: bool = False,
) -> SanityResult:
    """The sanity check before a long run: can the model fit one small batch?

        Trains a deep copy of ``model`` (training mode, as a run would) on the batch
        ``(x, y)`` alone, up to ``steps`` optimizer steps, and stops as soon as it passes:

        * classification: every sample of the batch classified right, or the loss below
          :data:`SANITY_LOSS_TARGET`;
        * regression: the loss below :data:`SANITY_REGRESSION_FRACTION` × the loss at init;
        * with ``target``: the loss below ``target``, for either task.

        A model that fails has a bug (its output does not depend on the input, the targets
        are wrong), too small a capacity, or too low a learning rate; the message says which
    it looks like. Dropout is switched off (its layers in eval mode) unless ``dropout``:
        the check is about the model's wiring and capacity, and dropout's noise keeps a
        small model from memorizing a batch. ``model`` and torch's RNG state are left
        unchanged.

        Parameters
        ----------
        model : nn.Module
        optimizer_factory : callable
            ``optimizer_factory(params)`` builds a fresh optimizer, e.g.
            ``lambda p: trainlab.optim.Adam(p, lr=1e-2)``.
        x, y : Tensor
            One small batch (e.g. 32 samples) and its targets, on the model's device.
        loss : callable, optional
            ``loss(output, target) -> scalar``; default the Trainer's for ``task``.
        task : {"classification", "regression"}
        steps : int
            Most optimizer steps to take. Default 200.
        target : float, optional
            The loss to get below, instead of the default per task.
        dropout : bool
            Keep dropout on during the check. Default False.


        Returns
        -------
        SanityResult

        Raises
        ------
        ValueError
            For an unknown task, fewer than 2 samples, ``x`` and ``y`` of different
            lengths, ``steps`` not an int ≥ 1, ``target`` not a finite number > 0, or an
            ``optimizer_factory`` that is not callable.
    """
    _check_batch(task, x, y)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1):
        raise ValueError(f"steps must be an int ≥ 1; got {steps!r}")
    if target is not None and not (
        isinstance(target, (int, float)) and math.isfinite(target) and target > 0
    ):
        raise ValueError(f"target must be a finite number > 0 or None; got {target!r}")
    if not callable(optimizer_factory):
        raise ValueError(
            "optimizer_factory must be a callable that builds an optimizer from the "
            f"parameters, e.g. lambda p: trainlab.optim.Adam(p, lr=1e-2); got {optimizer_factory!r}"
        )
    loss_fn = loss or _task_loss(task)
    probe = copy.deepcopy(model)
    probe.train()
    if not dropout:
        for module in probe.modules():
            if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, tl_nn.Dropout)):
                module.eval()
    with torch.random.fork_rng(devices=_rng_devices(x)):
        optimizer = optimizer_factory(probe.parameters())
        taken, initial, passed = 0, math.nan, False
        while True:
            out = probe(x)
            value = loss_fn(out, y)
            current = value.item()
            accuracy = _accuracy(out, y) if task == "classification" else None
            if taken == 0:
                initial = current
                goal = _sanity_goal(task, target, initial)
            passed = current < goal or (target is None and accuracy == 1.0)
            if passed or taken == steps or not math.isfinite(current):
                break
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            taken += 1
    message = _sanity_message(
        passed, taken, initial, current, accuracy, goal, out.detach(), x.shape[0]
    )
    return SanityResult(passed, taken, initial, current, accuracy, message)


# --- passes over the probe -----------------------------------------------------------


def _gradient_pass(
    probe: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable
) -> tuple[float, tuple[int, ...], dict[nn.Module, float]]:
    """Loss at init, output shape and ‖∂L/∂W‖ per weight layer, in training mode."""
    probe.train()
    probe.zero_grad(set_to_none=True)  # the copy carries the caller's gradients
    out = probe(x)
    value = loss_fn(out, y)
    if value.requires_grad:
        value.backward()
    grads = {
        m: m.weight.grad.norm().item()
        for m in probe.modules()
        if isinstance(m, _WEIGHT_LAYERS) and m.weight.grad is not None
    }
    return value.item(), tuple(out.shape), grads


@torch.no_grad()
def _normalize_by_batch_at_eval(probe: nn.Module, x: torch.Tensor) -> None:
    """Set each batch norm's running statistics to those of ``x``, as the layer sees it.

    One forward with every module in eval mode except the batch norms, which run in
    training mode with momentum 1 (running ← this batch's statistics), each on the
    input its batch-normalized predecessors give it. Afterwards an eval forward
    normalizes by the batch, as training does, and deterministically.
    """
    norms = [m for m in probe.modules() if isinstance(m, _BATCH_NORMS)]
    if not norms:
        return
    probe.eval()
    for m in norms:
        m.train()
        m.momentum = 1.0
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            m.stats = "running"  # "exact" leaves the buffers alone in training mode
    probe(x)
    probe.eval()


# --- findings ------------------------------------------------------------------------


def _dead_unit_findings(layers: list[LayerHealth], modules: dict[str, nn.Module]) -> list[str]:
    return [
        f"layer {_display(layer.name)}: {layer.dead_fraction:.0%} dead {layer.kind} units "
        "(0 for every sample, so no gradient either; check for large negative biases, "
        "or lower the learning rate)"
        for layer in layers
        if isinstance(modules[layer.name], _DEAD_UNIT_LAYERS)
        and layer.dead_fraction > DEAD_FRACTION_LIMIT
    ]


def _scale_findings(layers: list[LayerHealth], modules: dict[str, nn.Module]) -> list[str]:
    hidden = [layer for layer in layers if not isinstance(modules[layer.name], _WEIGHT_LAYERS)]
    if not hidden:  # no activation modules: a deep linear net; the output layer aside
        hidden = [layer for layer in layers if isinstance(modules[layer.name], _WEIGHT_LAYERS)]
        hidden = hidden[:-1]
    if len(hidden) < 2:
        return []
    first, last = hidden[0], hidden[-1]
    if not (first.act_std > 0 and math.isfinite(first.act_std)):
        return []  # all dead, or already broken: other findings say so
    ratio = last.act_std / first.act_std
    span = f"from {_display(first.name)} to {_display(last.name)} ({len(hidden)} layers)"
    if ratio < 1 / ACTIVATION_STD_RATIO_LIMIT:
        return [
            f"activations shrink {_times(ratio)} {span} (vanishing; try init fan_in/he "
            "or batch norm)"
        ]
    if ratio > ACTIVATION_STD_RATIO_LIMIT or not math.isfinite(ratio):
        return [
            f"activations grow {_times(ratio)} {span} (exploding; try init fan_in/he or batch norm)"
        ]
    return []


def _loss_findings(initial: float, expected: float | None, n_classes: int | None) -> list[str]:
    if not math.isfinite(initial):
        return [
            f"initial loss is {initial}: the forward pass already gives non-finite values "
            "(check the inputs for nan/inf and the init scale)"
        ]
    if expected is None:
        return []
    versus = f"initial loss {initial:.3g} vs ln({n_classes})={expected:.2f}"
    if initial > INITIAL_LOSS_FACTOR * expected:
        return [f"{versus}: outputs are too confident at init (scale the last layer down)"]
    if initial < expected / INITIAL_LOSS_FACTOR:
        return [
            f"{versus}: far below chance before any training (do the labels leak into "
            "the input, or is the loss not the mean cross-entropy?)"
        ]
    return []


def _gradient_findings(layers: list[LayerHealth], modules: dict[str, nn.Module]) -> list[str]:
    weighted, seen = [], set()
    for layer in layers:  # forward order; a module called twice counts once
        module = modules[layer.name]
        if layer.grad_norm is not None and module not in seen:
            seen.add(module)
            weighted.append(layer)
    findings = []
    zero = [_display(layer.name) for layer in weighted if layer.grad_norm == 0]
    if zero:
        findings.append(
            f"zero weight gradient in {', '.join(zero)} (no signal reaches "
            f"{'it' if len(zero) == 1 else 'them'}: dead units or a cut graph)"
        )
    live = [layer for layer in weighted if layer.grad_norm > 0 and math.isfinite(layer.grad_norm)]
    if len(live) < 2:
        return findings
    big = max(live, key=lambda layer: layer.grad_norm)
    small = min(live, key=lambda layer: layer.grad_norm)
    ratio = big.grad_norm / small.grad_norm
    if ratio > GRADIENT_NORM_RATIO_LIMIT:
        toward_input = "exploding" if live.index(big) < live.index(small) else "vanishing"
        findings.append(
            f"gradient norm of {_display(big.name)} is {_times(ratio)} that of "
            f"{_display(small.name)} ({toward_input} toward the input; normalize the "
            "inputs, try init fan_in/he or batch norm)"
        )
    return findings


# --- overfit_one_batch helpers -------------------------------------------------------


def _sanity_goal(task: str, target: float | None, initial: float) -> float:
    if target is not None:
        return float(target)
    if task == "classification":
        return SANITY_LOSS_TARGET
    return SANITY_REGRESSION_FRACTION * initial


def _sanity_message(
    passed: bool,
    steps: int,
    initial: float,
    final: float,
    accuracy: float | None,
    goal: float,
    out: torch.Tensor,
    n: int,
) -> str:
    acc = "" if accuracy is None else f", {accuracy:.0%} accuracy"
    course = f"loss {initial:.4g} → {final:.4g} in {steps} steps{acc} on {n} samples"
    if passed:
        return f"passed: {course}; the model can fit one batch"
    if not math.isfinite(final):
        return f"failed: {course}: the loss diverged; lower the learning rate"
    flat = out.reshape(n, -1)
    if n > 1 and bool((flat == flat[:1]).all()):
        return (
            f"failed: {course}: the output is the same for every sample, so it does not "
            "depend on the input (a bug in forward, all units dead, or inputs that are all equal)"
        )
    if not final < initial * (1 - 1e-3):
        return (
            f"failed: {course}: the loss did not decrease (is the learning rate 0 or far "
            "too low? do gradients reach the parameters?)"
        )
    return (
        f"failed: {course}, not below {goal:.3g}: too few steps, too low a learning rate, "
        "too small a model, or targets that do not match the inputs"
    )


# --- small helpers -------------------------------------------------------------------


def _check_batch(task: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if task not in TASK_METRICS:
        raise ValueError(f"task must be one of {', '.join(TASK_METRICS)}; got {task!r}")
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise ValueError(f"x and y must be tensors; got {type(x).__name__} and {type(y).__name__}")
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must hold the same number of samples; got shapes {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(
            f"the batch needs at least 2 samples (32 or more is best); got {x.shape[0]}"
        )


def _classes(out_shape: tuple[int, ...], n_classes: int | None) -> int:
    if len(out_shape) != 2 or out_shape[1] < 2:
        raise ValueError(
            "a classifier's output must be N × C logits with C ≥ 2; got shape "
            f"{out_shape} (use task='regression' for a regression model)"
        )
    if n_classes is not None and n_classes != out_shape[1]:
        raise ValueError(
            f"n_classes={n_classes} but the model outputs {out_shape[1]} logits per sample"
        )
    return out_shape[1]


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    return (out.detach().argmax(dim=1) == y).to(torch.float64).mean().item()


def _rng_devices(x: torch.Tensor) -> list[torch.device]:
    return [x.device] if x.device.type == "cuda" else []


def _display(name: str) -> str:
    return name or "<root>"


def _times(ratio: float) -> str:
    """``3e-21×``, ``1e+04×`` → ``1e4×``: a factor at a glance."""
    if not math.isfinite(ratio) or ratio == 0:
        return f"{ratio}×"
    mantissa, exponent = f"{ratio:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}×"
