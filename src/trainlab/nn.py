"""Dropout and normalization layers: drop-in replacements for torch's, with the lecture's modes.

The arithmetic runs in ``torch.nn.functional`` kernels (``F.dropout``, ``F.batch_norm``,
…); trainlab owns the statistics and the modes:

- :class:`Dropout` with ``mode="inverted"`` (torch's) or ``"scale_at_test"`` (the
  lecture's);
- :class:`BatchNorm1d`, :class:`BatchNorm2d` with ``stats="running"`` (moving averages,
  torch's) or ``"exact"`` (whole-training-set statistics from :func:`recalibrate`), and
  ``sync=True`` for statistics over the global batch of all processes of a distributed
  run (``norm: sync_batch``);
- :class:`LayerNorm`, :class:`ConvLayerNorm`, :class:`InstanceNorm1d`,
  :class:`InstanceNorm2d`, :class:`GroupNorm`, which use each sample's own statistics in
  training and eval alike;
- :func:`create_norm`, the factory the model builders call with a config's ``norm:``
  (one of :data:`NORM_NAMES`).

Symbols are the lecture's: h̃ is a layer's input (the hidden state before
normalization), μ and σ² its mean and variance, ĥ = (h̃ − μ) ⊘ √(σ² + ε), and
z = γ ⊙ ĥ + β the output with learnable γ (``weight``) and β (``bias``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainlab.errors import check_choice, check_range
from trainlab.moments import merge_moments

__all__ = [
    "Dropout",
    "DROPOUT_MODES",
    "BatchNorm1d",
    "BatchNorm2d",
    "BATCH_NORM_STATS",
    "recalibrate",
    "LayerNorm",
    "ConvLayerNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "GroupNorm",
    "NORM_NAMES",
    "create_norm",
]

#: The modes of :class:`Dropout`.
DROPOUT_MODES = ("inverted", "scale_at_test")
#: The ``stats`` of :class:`BatchNorm1d` and :class:`BatchNorm2d`.
BATCH_NORM_STATS = ("running", "exact")
#: The norms :func:`create_norm` makes (a config's ``model.norm``).
NORM_NAMES = ("none", "batch", "sync_batch", "layer", "instance", "group")


class Dropout(nn.Module):
    """Dropout: in training, each unit is set to zero with probability ``p``.

    With m a mask of independent Bernoulli(1 − p) draws, for input h̃:

    * ``mode="inverted"`` (torch's ``nn.Dropout``): training ``z = m ⊙ h̃ / (1 − p)``,
      eval ``z = h̃``;
    * ``mode="scale_at_test"`` (the lecture): training ``z = m ⊙ h̃`` (kept units pass
      unchanged), eval ``z = (1 − p)·h̃``, so each unit's input matches its expectation
      during training.

    The two agree in expectation: E[training output] = eval output in both modes. The
    eval output is deterministic. ``p`` is the probability of *dropping*; 0.5 is common.

    Parameters
    ----------
    p : float
        Drop probability in [0, 1]; 1 zeroes every unit in training (as torch). Default 0.5.
    inplace : bool
        Overwrite the input (torch's argument). Default False.
    mode : {"inverted", "scale_at_test"}
        Keyword only: where the 1 − p rescaling happens. Default ``"inverted"``.

    Raises
    ------
    ValueError
        For ``p`` outside [0, 1] or an unknown ``mode``.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, mode: str = "inverted") -> None:
        super().__init__()
        check_range("p", p, 0.0, 1.0, owner="Dropout")
        check_choice("mode", mode, DROPOUT_MODES, owner="Dropout")
        self.p = float(p)
        self.inplace = bool(inplace)
        self.mode = mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return input
        if self.training:
            if self.mode == "inverted":
                return F.dropout(input, self.p, True, self.inplace)
            mask = torch.bernoulli(torch.full_like(input, 1.0 - self.p))
            return input.mul_(mask) if self.inplace else input * mask
        if self.mode == "scale_at_test":
            return input.mul_(1.0 - self.p) if self.inplace else input * (1.0 - self.p)
        return input

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"p={self.p}{inplace}, mode={self.mode!r}"


class _AllReduceSum(torch.autograd.Function):
    """Σ over the ranks, differentiable: the gradient of a sum is the sum of the ranks'
    gradients, so the backward all-reduces too."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class _BatchNormStats:
    """What trainlab's batch norms add to torch's: ``stats``, and the forward that uses it.

    Mixed in before ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``, so parameters, buffers,
    ``state_dict`` keys, input checks and ``reset_parameters`` are torch's.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        stats: str = "running",
        sync: bool = False,
    ) -> None:
        owner = type(self).__name__
        check_choice("stats", stats, BATCH_NORM_STATS, owner=owner)
        if stats == "exact" and not track_running_stats:
            raise ValueError(
                f"{owner}: stats='exact' keeps its statistics in the running buffers; "
                "track_running_stats must be True"
            )
        check_range("num_features", num_features, 1, integer=True, owner=owner)
        check_range("eps", eps, 0.0, low_open=True, owner=owner)
        if momentum is not None:
            check_range("momentum", momentum, 0.0, 1.0, owner=owner)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.stats = stats
        self.sync = bool(sync)
        self._owner = owner  # the class name, for TorchScript's error message
        self._has_exact_stats = False

    def _synced(self) -> bool:
        return (
            self.sync
            and dist.is_available()
            and dist.is_initialized()
            and (dist.get_world_size() > 1)
        )

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        self._has_exact_stats = False

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not torch.jit.is_scripting():  # TorchScript has no process groups
            if self.training and self._synced():
                # The weights are being trained: exact statistics from before are stale.
                self._has_exact_stats = False
                return self._sync_forward(input)
        return self.normalize(
            input,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.num_batches_tracked,
        )

    def normalize(
        self,
        input: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        num_batches_tracked: torch.Tensor | None,
    ) -> torch.Tensor:
        """The forward pass (one process, no ``sync``) with these tensors standing for the
        layer's parameters and buffers: :mod:`trainlab.sweep` runs the layers of K models
        as one layer on their stacked tensors with it. The buffers are updated in place."""
        if self.training:
            # The weights are being trained: exact statistics from before are stale.
            self._has_exact_stats = False
            if self.stats == "exact":  # batch statistics; the buffers are left alone
                return F.batch_norm(input, None, None, weight, bias, True, 0.0, self.eps)
            if num_batches_tracked is None:  # track_running_stats=False: batch statistics
                return F.batch_norm(input, None, None, weight, bias, True, 0.0, self.eps)
            num_batches_tracked.add_(1)
            factor = self._factor(num_batches_tracked)
            return F.batch_norm(
                input, running_mean, running_var, weight, bias, True, factor, self.eps
            )
        if self.stats == "exact" and not self._has_exact_stats:
            raise RuntimeError(
                f"{self._owner}(stats='exact') has no exact statistics for its "
                "current weights: call trainlab.nn.recalibrate(model, train_loader) after "
                "training and before evaluating"
            )
        # Without running buffers (track_running_stats=False) eval uses the batch, as torch.
        batch = running_mean is None
        return F.batch_norm(input, running_mean, running_var, weight, bias, batch, 0.0, self.eps)

    def _factor(self, count: torch.Tensor | None = None) -> float:
        if self.momentum is None:  # cumulative average, as torch
            return 1.0 / float(self.num_batches_tracked if count is None else count)
        return self.momentum

    def _sync_forward(self, x: torch.Tensor) -> torch.Tensor:
        # μ and σ² over the samples (and positions) of every rank's batch: sums all-reduced
        # with a differentiable all-reduce, whose backward all-reduces the gradients, so
        # each rank's backward is that of batch norm over the global batch.
        dims = [0, *range(2, x.dim())]
        shape = (1, -1, *([1] * (x.dim() - 2)))
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centered = x - mean.view(shape)
        var = _AllReduceSum.apply(centered.square().sum(dims)) / n
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.stats == "running" and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self._factor()
                unbiased = var.detach() * (n / (n - 1)) if n > 1 else var.detach()
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "running_mean" in state_dict:  # loaded statistics count as set
            self._has_exact_stats = True

    def extra_repr(self) -> str:
        sync = ", sync=True" if self.sync else ""
        return f"{super().extra_repr()}, stats={self.stats!r}{sync}"


_BATCH_NORM_DOC = """Batch normalization over {shape}: statistics per {unit}, over the batch{over}.

    In training, with the N samples of the batch{over}:
    μ = (1/N)Σ h̃⁽ⁱ⁾, σ² = (1/N)Σ (h̃⁽ⁱ⁾ − μ)² (biased, as the lecture and torch),
    ĥ = (h̃ − μ) ⊘ √(σ² + ε), z = γ ⊙ ĥ + β, with μ, σ, γ, β of shape {param_shape}.
    γ = √(σ² + ε), β = μ gives back the input (C12).

    At eval, μ and σ² are the buffers ``running_mean`` and ``running_var``:

    * ``stats="running"`` (torch's behaviour): moving averages updated at each training
      step, ``running ← (1 − momentum)·running + momentum·batch`` (the variance with the
      unbiased 1/(N − 1), as torch; ``momentum=None``: cumulative average);
    * ``stats="exact"``: training leaves the buffers alone; :func:`recalibrate` sets them
      to the exact mean and biased variance of the layer's input over the whole training
      set. Eval raises ``RuntimeError`` until it has run (or a state dict was loaded),
      and again after any training-mode forward pass, which means the weights moved.

    Parameters, buffers and ``state_dict`` keys are torch's (``weight``, ``bias``,
    ``running_mean``, ``running_var``, ``num_batches_tracked``): a
    ``torch.nn.{torch_name}`` state dict loads, and isinstance checks against
    ``torch.nn.{torch_name}`` hold.

    Parameters
    ----------
    num_features : int
        C, the number of features or channels.
    eps : float
        ε added to σ². Default 1e-5.
    momentum : float or None
        Weight of the newest batch in the moving averages. Default 0.1.
    affine : bool
        Learnable γ (``weight``, init 1) and β (``bias``, init 0). Default True.
    track_running_stats : bool
        Keep the buffers; False (torch's meaning): no buffers, eval uses the batch's
        statistics too (refused with ``stats="exact"``). Default True.
    device, dtype
        Of the parameters and buffers, as torch.
    stats : {{"running", "exact"}}
        Keyword only: which statistics eval uses (above). Default ``"running"``.
    sync : bool
        Keyword only. In a distributed run (a process group of more than one rank), take μ and σ² in
        training over the global batch, the union of every rank's batch (sums all-reduced,
        gradients too), so N processes compute what one process computes on the whole
        batch; the moving averages then use the global N. Without a process group it is
        plain batch norm. Default False; ``norm: sync_batch`` sets it.

    Raises
    ------
    ValueError
        For an unknown ``stats`` or an out-of-range parameter.
    """


class BatchNorm1d(_BatchNormStats, nn.BatchNorm1d):
    __doc__ = _BATCH_NORM_DOC.format(
        shape="N × D (fully connected) or N × C × L inputs",
        unit="feature",
        over=" (and the L positions)",
        param_shape="1 × D",
        torch_name="BatchNorm1d",
    )


class BatchNorm2d(_BatchNormStats, nn.BatchNorm2d):
    __doc__ = _BATCH_NORM_DOC.format(
        shape="N × C × H × W inputs (spatial batch norm)",
        unit="channel",
        over=" and the H × W positions",
        param_shape="1 × C × 1 × 1",
        torch_name="BatchNorm2d",
    )


def _device_of(model: nn.Module) -> torch.device | None:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return None if tensor is None else tensor.device


@torch.no_grad()
def recalibrate(model: nn.Module, loader: Iterable) -> nn.Module:
    """Set every trainlab batch-norm layer's statistics to those of the whole training set.

    One pass over ``loader`` under ``torch.no_grad``. Each :class:`BatchNorm1d` /
    :class:`BatchNorm2d` accumulates its input h̃ over all batches (per feature or
    channel, merged batch by batch with Chan's formulas in float64) and then sets
    ``running_mean`` to its exact mean μ and ``running_var`` to its exact *biased*
    variance σ² = (1/N)Σ(h̃⁽ⁱ⁾ − μ)² over all N samples (and positions) — not the
    average of per-batch variances, which misses the spread between batch means and
    which torch's ``swa_utils.update_bn`` computes.

    During the pass the batch-norm layers run in training mode, normalizing with each
    batch's statistics as they did in training, so each layer sees the inputs it saw
    in training; every other module runs in eval mode (dropout keeps every unit, as
    at test time). The statistics therefore describe the inputs of the trained
    network, except that upstream batch-norm layers normalize by their batch's
    statistics rather than by the exact ones they will use at eval; the difference
    shrinks with the batch size. Buffers of layers with ``stats="running"`` are
    overwritten too (their moving averages restart from the exact values);
    ``num_batches_tracked`` is unchanged. Every module's train/eval mode is restored.

    Parameters
    ----------
    model : nn.Module
    loader : iterable
        The training data: yields input tensors or ``(x, y, …)`` tuples or lists whose
        first item is the input. Batches are moved to the model's device.

    Returns
    -------
    nn.Module
        ``model``, with its statistics set (unchanged if it has no trainlab batch norm).

    Raises
    ------
    ValueError
        If the model holds torch batch-norm layers (which this cannot set exactly), the
        loader yields nothing, or a batch-norm layer is never called.
    """
    named = list(model.named_modules())
    layers = [
        (name, m) for name, m in named if isinstance(m, _BatchNormStats) and m.track_running_stats
    ]
    foreign = [
        f"{name or '<root>'} ({type(m).__name__})"
        for name, m in named
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm))
        and not isinstance(m, _BatchNormStats)
    ]
    if foreign:
        raise ValueError(
            "recalibrate sets trainlab.nn batch-norm layers only; the model holds torch "
            f"batch norm at {', '.join(foreign)}"
        )
    if not layers:
        return model

    moments: dict[nn.Module, tuple[int, torch.Tensor, torch.Tensor]] = {}

    def accumulate(module: nn.Module, args: tuple) -> None:
        x = args[0].detach().to(torch.float64)
        count = x.numel() // x.shape[1]
        if count == 0:
            return
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dims)
        m2 = (x - mean.view(1, -1, *([1] * (x.dim() - 2)))).square().sum(dims)
        if module in moments:  # Chan et al.: merge (count, mean, M2) of two parts
            moments[module] = merge_moments(*moments[module], count, mean, m2)
        else:
            moments[module] = (count, mean, m2)

    modes = [(m, m.training) for _, m in named]
    saved = [(m, m.stats, m._has_exact_stats) for _, m in layers]
    handles = [m.register_forward_pre_hook(accumulate) for _, m in layers]
    device = _device_of(model)
    batches = 0
    try:
        model.eval()
        for _, m in layers:
            m.train()
            m.stats = "exact"  # normalize by the batch; leave the buffers alone
        for batch in loader:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(x, torch.Tensor):
                raise ValueError(
                    "the loader must yield tensors or (x, y) tuples with a tensor x; "
                    f"got {type(x).__name__}"
                )
            model(x if device is None else x.to(device))
            batches += 1
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes:
            m.training = training
        for m, stats, has_exact in saved:
            m.stats = stats
            m._has_exact_stats = has_exact
    if batches == 0:
        raise ValueError("recalibrate needs training data: the loader yielded no batches")
    unused = [name or "<root>" for name, m in layers if m not in moments]
    if unused:
        raise ValueError(f"batch-norm layers never called in model.forward: {', '.join(unused)}")
    for _, m in layers:
        if m._synced():  # every rank saw its shard: merge the moments over the ranks
            moments[m] = _merge_over_ranks(*moments[m])
        count, mean, m2 = moments[m]
        m.running_mean.copy_(mean)
        m.running_var.copy_(m2 / count)
        m._has_exact_stats = True
    return model


def _merge_over_ranks(
    count: int, mean: torch.Tensor, m2: torch.Tensor
) -> tuple[int, torch.Tensor, torch.Tensor]:
    # Every rank's (count, mean, M2) gathered, then merged in rank order with Chan et al.'s
    # formulas (float64): every rank computes the same numbers from the same parts.
    mine = torch.cat([mean.new_tensor([float(count)]), mean, m2])
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine)
    c = mean.numel()
    merged = (int(parts[0][0].item()), parts[0][1 : 1 + c], parts[0][1 + c :])
    for part in parts[1:]:
        merged = merge_moments(*merged, int(part[0].item()), part[1 : 1 + c], part[1 + c :])
    return merged


class LayerNorm(nn.LayerNorm):
    """Layer normalization: statistics per sample over its features (torch's ``LayerNorm``).

    For one sample h̃ with D features (the last dimensions, ``normalized_shape``):
    μ = (1/D)Σ_d h̃_d, σ² = (1/D)Σ_d (h̃_d − μ)², ĥ = (h̃ − μ) ⊘ √(σ² + ε),
    z = γ ⊙ ĥ + β. No statistic depends on the batch, so training and eval compute
    the same function (C14); it works for any batch size and in recurrent networks.
    """


class _OwnStatistics:
    """What trainlab's instance norms change in torch's: always the instance's own
    statistics (no running averages), so training and eval compute the same function.

    Mixed in before ``nn.InstanceNorm1d`` / ``nn.InstanceNorm2d``: parameters, buffers and
    ``state_dict`` keys are torch's.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if track_running_stats:
            raise ValueError(
                "trainlab's instance norm uses each instance's statistics in training and "
                "eval alike; track_running_stats must be False"
            )
        super().__init__(num_features, eps, momentum, affine, False, device, dtype)


class InstanceNorm1d(_OwnStatistics, nn.InstanceNorm1d):
    """Instance normalization for N × C × L maps: statistics per sample and channel over L.

    μ_nc = (1/L)Σ_l h̃_ncl, σ²_nc = (1/L)Σ_l (h̃_ncl − μ_nc)², ĥ = (h̃ − μ) ⊘ √(σ² + ε),
    z = γ ⊙ ĥ + β (γ, β per channel when ``affine``). Always the instance's own
    statistics, so training and eval compute the same function (C14):
    ``track_running_stats=True`` is refused. A 2-D input is refused too (torch would
    take ``(C, L)`` for one unbatched sample, and an ``N × D`` batch of feature vectors
    has no positions to average over: use layer norm there).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 3:
            raise ValueError(
                f"InstanceNorm1d needs N × C × L input; got shape {input.shape} "
                "(for N × D features use layer norm)"
            )
        # torch's forward, for the batched input and no running statistics (scriptable).
        return F.instance_norm(input, None, None, self.weight, self.bias, True, 0.0, self.eps)


class InstanceNorm2d(_OwnStatistics, nn.InstanceNorm2d):
    """Instance normalization for N × C × H × W maps: statistics per sample and channel.

    μ_nc = (1/HW)Σ_hw h̃_nchw, σ²_nc = (1/HW)Σ_hw (h̃_nchw − μ_nc)²,
    ĥ = (h̃ − μ) ⊘ √(σ² + ε), z = γ ⊙ ĥ + β (γ, β per channel when ``affine``).
    Always the instance's own statistics, so training and eval compute the same
    function (C14): ``track_running_stats=True`` is refused.
    """


class GroupNorm(nn.GroupNorm):
    """Group normalization: statistics per sample over each group of channels.

    The C channels are split into G = ``num_groups`` groups; for each sample and group
    g, μ and σ² are taken over the group's channels and all positions, then
    ĥ = (h̃ − μ) ⊘ √(σ² + ε), z = γ ⊙ ĥ + β with γ, β per channel. G = 1 is
    :class:`ConvLayerNorm`; G = C is instance norm. Same function in training and eval.
    """


class ConvLayerNorm(GroupNorm):
    """Layer normalization of a conv map: statistics per sample over all its channels and
    positions, γ and β per channel.

    For one sample h̃ of shape C × L (or C × H × W) with M = C·L (or C·H·W) units:
    μ = (1/M)Σ h̃, σ² = (1/M)Σ (h̃ − μ)², ĥ = (h̃ − μ) ⊘ √(σ² + ε), z = γ ⊙ ĥ + β with γ,
    β of shape C × 1 (× 1). This is layer norm as Wu & He's group-norm paper draws it for
    CNNs, and :class:`GroupNorm` with one group (``num_groups`` is 1, always). It is not
    ``torch.nn.LayerNorm([C, H, W])``, whose γ and β have one entry per unit and so fix
    the map's size when the layer is made; the statistics are the same. On N × C input it
    is :class:`LayerNorm` (C) exactly. Same function in training and eval.

    Parameters
    ----------
    num_channels : int
        C.
    eps : float
        ε added to σ². Default 1e-5.
    affine : bool
        Learnable per-channel γ (``weight``) and β (``bias``). Default True.
    """

    def __init__(
        self,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(1, num_channels, eps, affine, device, dtype)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"


#: ``dim`` of :func:`create_norm` → the input it normalizes.
_NORM_INPUTS = {
    0: "N × D features",
    1: "N × C × L maps",
    2: "N × C × H × W maps",
}


def create_norm(name: str, num_features: int, dim: int = 0, **kwargs: Any) -> nn.Module:
    """The normalization layer a config's ``norm:`` names, for ``num_features`` units.

    ``dim`` is the number of positional dimensions of the input: 0 for N × D features
    (fully connected), 1 for N × C × L maps (1-D conv), 2 for N × C × H × W maps (2-D conv).

    ============== =================================== =========================================
    name           ``dim=0`` (N × D features)          ``dim=1``, ``dim=2`` (conv maps)
    ============== =================================== =========================================
    ``none``       ``nn.Identity()``                   ``nn.Identity()``
    ``batch``      :class:`BatchNorm1d`                :class:`BatchNorm1d`, :class:`BatchNorm2d`
    ``sync_batch`` ``BatchNorm1d(D, sync=True)``       the same with ``sync=True``
    ``layer``      :class:`LayerNorm` ``(D)``          :class:`ConvLayerNorm` ``(C)``
    ``instance``   refused                             ``InstanceNorm1d/2d(C, affine=True)``
    ``group``      ``GroupNorm(G, D)``                 ``GroupNorm(G, C)``
    ============== =================================== =========================================

    ``layer`` is layer norm: per sample, statistics over all of its units. On features it
    is :class:`LayerNorm` (D); on conv maps it is :class:`ConvLayerNorm` (C), whose γ and
    β are per channel (a ``LayerNorm([C, H, W])`` would need the map's size). ``instance``
    needs positions to average over, so ``dim=0`` is refused. ``group`` takes
    ``num_groups`` (G), default ``gcd(32, C)`` (32 groups when C allows it). Other
    ``kwargs`` go to the layer's constructor, e.g. ``stats="exact"`` for batch norm,
    ``eps=1e-3``.

    Raises
    ------
    HyperparameterError
        For an unknown ``name`` (the message lists :data:`NORM_NAMES`) or ``dim`` (a
        ``ValueError``).
    ValueError
        For ``instance`` with ``dim=0``.
    """
    check_choice("name", name, NORM_NAMES, owner="norm")
    check_choice("dim", dim, tuple(_NORM_INPUTS), owner="norm")
    if name == "none":
        return nn.Identity()
    if name in ("batch", "sync_batch"):
        if name == "sync_batch":
            kwargs.setdefault("sync", True)
        return (BatchNorm2d if dim == 2 else BatchNorm1d)(num_features, **kwargs)
    if name == "layer":
        return (
            LayerNorm(num_features, **kwargs) if dim == 0 else ConvLayerNorm(num_features, **kwargs)
        )
    if name == "instance":
        if dim == 0:
            raise ValueError(
                "instance norm averages over the positions of each channel, and "
                f"{_NORM_INPUTS[0]} have none: use layer norm there"
            )
        kwargs.setdefault("affine", True)
        return (InstanceNorm1d if dim == 1 else InstanceNorm2d)(num_features, **kwargs)
    num_groups = kwargs.pop("num_groups", math.gcd(32, num_features))
    return GroupNorm(num_groups, num_features, **kwargs)
