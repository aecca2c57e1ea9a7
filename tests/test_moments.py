"""Claims about trainlab.moments: Chan et al.'s merge equals the statistics of the union."""

from __future__ import annotations

import pytest
import torch

from trainlab.moments import merge_moments


def _moments(x: torch.Tensor, kind: str):
    mean = x.mean(0)
    centered = x - mean
    m2 = centered.square().sum(0) if kind == "diag" else centered.T @ centered
    return len(x), mean, m2


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_merging_two_samples_gives_the_moments_of_their_union(kind):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(37, 4, generator=g, dtype=torch.float64) * 3 + 5
    b = torch.randn(11, 4, generator=g, dtype=torch.float64) - 2
    n, mean, m2 = merge_moments(*_moments(a, kind), *_moments(b, kind))
    want_n, want_mean, want_m2 = _moments(torch.cat([a, b]), kind)
    assert n == want_n
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(m2, want_m2)


def test_merging_means_only_keeps_m2_none():
    n, mean, m2 = merge_moments(2, torch.tensor([1.0]), None, 6, torch.tensor([3.0]), None)
    assert (n, m2) == (8, None)
    torch.testing.assert_close(mean, torch.tensor([2.5]))
