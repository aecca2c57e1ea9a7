"""Chan et al.'s parallel merge of sample moments: the one home of the formula.

A sample's sufficient statistics for its mean and (co)variance are its size n, its mean μ
and its sum of squared deviations M2 = Σᵢ (x⁽ⁱ⁾ − μ)² per feature (or the scatter matrix
Σᵢ (x⁽ⁱ⁾ − μ)ᵀ(x⁽ⁱ⁾ − μ)). The moments of the union of two samples A and B follow from
theirs exactly (Chan, Golub & LeVeque 1979)::

    n = n_A + n_B,   δ = μ_B − μ_A,   μ = μ_A + δ·n_B/n,   M2 = M2_A + M2_B + δᵀδ·n_A·n_B/n

so statistics streamed batch by batch (``trainlab.preprocess``'s ``partial_fit``), or
computed on every rank of a distributed run (``trainlab.nn.recalibrate``), equal those of
the whole data set up to rounding. The variance is M2/n (biased) or M2/(n − 1).

This module imports nothing from trainlab: every layer may use it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["merge_moments"]


def merge_moments(
    n_a: int,
    mean_a: Tensor,
    m2_a: Tensor | None,
    n_b: int,
    mean_b: Tensor,
    m2_b: Tensor | None,
) -> tuple[int, Tensor, Tensor | None]:
    """The moments (n, μ, M2) of the union of samples A and B, from theirs.

    Parameters
    ----------
    n_a, n_b : int
        The sizes of A and B (n_A + n_B > 0).
    mean_a, mean_b : Tensor
        Their means μ, vectors of D features on the same device.
    m2_a, m2_b : Tensor or None
        Their M2: per feature (shape D), the scatter matrix (shape D × D), or both None
        (the mean only).

    Returns
    -------
    tuple
        ``(n, mean, m2)`` of the union; ``m2`` is None when ``m2_a`` is.
    """
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    if m2_a is None:
        return n, mean, None
    cross = torch.outer(delta, delta) if m2_a.ndim == 2 else delta.square()
    return n, mean, m2_a + m2_b + cross * (n_a * n_b / n)
