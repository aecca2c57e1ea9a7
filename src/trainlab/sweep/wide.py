"""The forward pass of K stacked ``nn.Sequential`` models without ``vmap``: one wide layer.

For the layers trainlab's builders make (``Linear``, ``Conv1d``/``Conv2d``, batch, group,
layer and instance norms, activations, pooling, ``Flatten``, :class:`AddChannelDim`,
Dropout), K models side by side are one layer K times as wide:

* a ``Linear`` is one batched matrix product (``baddbmm``) over the K weight matrices, or,
  while every model still sees the same input, one matrix product with the K weight
  matrices stacked (``x @ [W₁; …; W_K]ᵀ``);
* a convolution is one convolution with ``groups=K`` over the K·C channels (or, on the
  shared input, K·C_out filters);
* a norm is one call on K·C channels: batch norm's statistics per channel are each model's
  own; a group norm of G groups is one of K·G groups; a layer norm of feature vectors
  normalizes each sample as it is, then scales by each model's own γ and β;
* element-wise layers apply as they are.

A tensor between layers is [K, B, …] (possibly a transposed view of [B, K, …], the layout
the norms and convolutions use), or [B, …] while the models share their input. The layers'
own settings (eps, momentum, stride, padding, activation parameters …) are read from the
template's modules; trainlab's batch norm runs its own forward pass
(:meth:`trainlab.nn.BatchNorm1d.normalize`) on the wide tensors, so its ``stats`` modes and
momentum rule are not written here again.

:func:`plan` returns None for a model with any other layer: the stack then uses ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.models import AddChannelDim
from trainlab.nn import (
    BatchNorm1d,
    BatchNorm2d,
    ConvLayerNorm,
    Dropout,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
)

__all__ = ["plan", "Step"]

#: step(stack, x, shared, buffers) -> (x, shared): one layer of the K models.
Step = Callable[[Any, torch.Tensor, bool, dict], tuple[torch.Tensor, bool]]

_ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Identity,
)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """[K, B, C, …] → [B, K·C, …] (a copy unless x is a transposed view of that layout)."""
    k, b = x.shape[:2]
    return x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])


def _models_first(y: torch.Tensor, k: int) -> torch.Tensor:
    """[B, K·C, …] → [K, B, C, …] (a view)."""
    b = y.shape[0]
    return y.view(b, k, y.shape[1] // k, *y.shape[2:]).transpose(0, 1)


def _expand(stack: Any, x: torch.Tensor, shared: bool) -> torch.Tensor:
    return x.expand(stack.K, *x.shape) if shared else x


def _linear(name: str, module: nn.Linear, last: bool = False) -> Step:
    """A Linear layer; the ``last`` layer of the model computes its output as [K, out, B]
    (returned as a [K, B, out] view): the loss's softmax and the accuracy's maximum then
    run over a middle dimension, which torch's CPU kernels do several times faster than
    over a short last one (10 classes: 387 → 101 µs for the cross-entropy's forward and
    backward over K = 32 batches of 100)."""

    def step(stack, x, shared, buffers):
        w = stack.params[f"{name}.weight"]  # [K, out, in]
        b = stack.params.get(f"{name}.bias")
        if shared:  # one product with the K weight matrices side by side
            y = x @ w.reshape(-1, w.shape[-1]).t()  # [B, K·out]
            if b is not None:
                y = y + b.reshape(-1)
            return _models_first(y, stack.K), False
        if last:  # W xᵀ + b, [K, out, B]
            xt = x.transpose(1, 2)
            y = torch.bmm(w, xt) if b is None else torch.baddbmm(b.unsqueeze(2), w, xt)
            return y.transpose(1, 2), False
        if b is None:
            return torch.bmm(x, w.transpose(1, 2)), False
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)), False

    return step


def _conv(name: str, module: nn.Conv1d | nn.Conv2d) -> Step:
    conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d

    def step(stack, x, shared, buffers):
        k = stack.K
        w = stack.params[f"{name}.weight"]  # [K, out, in/groups, *kernel]
        b = stack.params.get(f"{name}.bias")
        weight = w.reshape(-1, *w.shape[2:])
        bias = b.reshape(-1) if b is not None else None
        if shared:  # the K·out filters all read the same input channels
            groups, inp = module.groups, x
        else:
            groups, inp = module.groups * k, _channels_first(x)
        y = conv(inp, weight, bias, module.stride, module.padding, module.dilation, groups)
        return _models_first(y, k), False

    return step


def _batch_norm(name: str, module: BatchNorm1d | BatchNorm2d) -> Step:
    def tensor(stack, buffers, key):
        full = f"{name}.{key}"
        if full in stack.params:
            return stack.params[full].reshape(-1)
        t = buffers.get(full)
        if t is None:
            return None
        # the K counters move together: the layer counts on the first
        return t[0] if key == "num_batches_tracked" else t.view(-1)

    def step(stack, x, shared, buffers):
        x = _channels_first(_expand(stack, x, shared))
        y = module.normalize(
            x,
            *(
                tensor(stack, buffers, key)
                for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
            ),
        )
        count = buffers.get(f"{name}.num_batches_tracked")
        if count is not None and module.training:
            count[1:] = count[0]
        return _models_first(y, stack.K), False

    return step


def _group_norm(name: str, module: GroupNorm) -> Step:
    def step(stack, x, shared, buffers):
        w = stack.params.get(f"{name}.weight")
        b = stack.params.get(f"{name}.bias")
        y = F.group_norm(
            _channels_first(_expand(stack, x, shared)),
            module.num_groups * stack.K,
            w.reshape(-1) if w is not None else None,
            b.reshape(-1) if b is not None else None,
            module.eps,
        )
        return _models_first(y, stack.K), False

    return step


def _layer_norm(name: str, module: LayerNorm) -> Step:
    def step(stack, x, shared, buffers):
        w = stack.params.get(f"{name}.weight")  # [K, D]
        b = stack.params.get(f"{name}.bias")
        y = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
        if w is None and b is None:
            return y, shared
        if w is not None:  # [K, 1, D]: each model's γ over its batch (or the shared one)
            y = y * w.unsqueeze(1)
        if b is not None:
            y = y + b.unsqueeze(1)
        return y, False

    return step


def _instance_norm(name: str, module: InstanceNorm1d | InstanceNorm2d) -> Step:
    def step(stack, x, shared, buffers):
        w = stack.params.get(f"{name}.weight")
        b = stack.params.get(f"{name}.bias")
        y = F.instance_norm(
            _channels_first(_expand(stack, x, shared)),
            weight=w.reshape(-1) if w is not None else None,
            bias=b.reshape(-1) if b is not None else None,
            eps=module.eps,
        )
        return _models_first(y, stack.K), False

    return step


def _dropout(name: str, module: nn.Module) -> Step:
    def step(stack, x, shared, buffers):
        x = _expand(stack, x, shared)
        if stack.training:  # masks drawn now, in x's memory layout, layer after layer
            return x * stack.mask(name, x), False
        if module.mode == "scale_at_test":
            keep = buffers[f"{name}.keep"]
            return x * keep.view(-1, *([1] * (x.dim() - 1))), False
        return x, False

    return step


def _per_sample(module: nn.Module) -> Step:
    """A layer that acts on each sample alone: on [B, …] as it is, on [K, B, …] with the
    model and batch dimensions merged."""

    def step(stack, x, shared, buffers):
        if shared:
            return module(x), True
        k, b = x.shape[:2]
        y = module(x.reshape(k * b, *x.shape[2:]))
        return y.view(k, b, *y.shape[1:]), False

    return step


def _pool(module: nn.MaxPool2d) -> Step:
    def step(stack, x, shared, buffers):
        if shared:
            return module(x), True
        y = module(_channels_first(x))
        return _models_first(y, stack.K), False

    return step


def _elementwise(module: nn.Module) -> Step:
    def step(stack, x, shared, buffers):
        return module(x), shared

    return step


def plan(template: nn.Module, dropout_type: type) -> list[Step] | None:
    """The steps of the wide forward pass of ``template`` (an ``nn.Sequential`` whose
    dropout layers are ``dropout_type``), or None when it has a layer this module does not
    know (or is not a flat ``nn.Sequential``)."""
    if type(template) is not nn.Sequential:
        return None
    steps: list[Step] = []
    children = list(template.named_children())
    for i, (name, module) in enumerate(children):
        kind = type(module)
        if kind is nn.Linear:
            steps.append(_linear(name, module, last=i == len(children) - 1))
        elif kind in (nn.Conv1d, nn.Conv2d) and module.padding_mode == "zeros":
            steps.append(_conv(name, module))
        elif kind in (BatchNorm1d, BatchNorm2d):
            steps.append(_batch_norm(name, module))
        elif kind in (GroupNorm, ConvLayerNorm):
            steps.append(_group_norm(name, module))
        elif kind is LayerNorm and len(module.normalized_shape) == 1:
            steps.append(_layer_norm(name, module))
        elif kind in (InstanceNorm1d, InstanceNorm2d):
            steps.append(_instance_norm(name, module))
        elif kind is dropout_type or kind is Dropout:
            steps.append(_dropout(name, module))
        elif kind in (nn.Flatten, AddChannelDim):
            steps.append(_per_sample(module))
        elif kind is nn.MaxPool2d:
            steps.append(_pool(module))
        elif kind in _ELEMENTWISE:
            steps.append(_elementwise(module))
        else:
            return None
    return steps
