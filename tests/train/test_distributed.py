"""The single-process pieces of distributed training: sharding, loss weights, sync batch
norm without a process group."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn as tl_nn
from trainlab.data import TensorLoader
from trainlab.train import Trainer, distributed


@pytest.mark.parametrize("n, batch, world", [(10, 4, 2), (11, 4, 3), (9, 4, 2), (8, 8, 4)])
def test_shards_partition_every_global_batch(n, batch, world):
    X, y = torch.arange(n).float()[:, None], torch.arange(n)
    whole = TensorLoader(X, y, batch_size=batch, seed=5)
    shards = [TensorLoader(X, y, batch_size=batch, seed=5).shard(r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
    per_rank = [list(s) for s in shards]
    batches = list(whole)
    # the global size of the last batch yielded
    assert all(s.batch_samples == len(batches[len(s) - 1][1]) for s in shards)
    for b, (_, yb) in enumerate(batches):
        if b >= len(shards[0]):  # a last batch smaller than the world is dropped
            assert len(yb) < world
            continue
        parts = [per_rank[r][b][1] for r in range(world)]
        assert torch.equal(torch.cat(parts), yb)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_rejects_bad_ranks():
    loader = TensorLoader(torch.zeros(4, 1), torch.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        loader.shard(2, 2)
    with pytest.raises(ValueError, match="world_size must be a positive integer"):
        loader.shard(0, 0)


def test_unequal_shares_are_weighted_so_ranks_sum_to_the_global_mean():
    model = torch.nn.Linear(1, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), "regression")
    trainer.world = distributed.World(0, 2, 0)
    loader = TensorLoader(torch.zeros(9, 1), torch.zeros(9), batch_size=9)
    loader.batch_samples = 9
    # rank 0 holds 5 of 9 samples: mean·(5·2/9); rank 1: mean·(4·2/9); DDP halves the sum
    assert trainer._weighted(torch.tensor(1.0), 5, loader).item() == pytest.approx(10 / 9)
    assert trainer._weighted(torch.tensor(1.0), 4, loader).item() == pytest.approx(8 / 9)
    loader.batch_samples = 8
    loss = torch.tensor(3.0)
    assert trainer._weighted(loss, 4, loader) is loss  # equal shares: untouched


def test_sync_batch_norm_without_a_process_group_is_batch_norm():
    torch.manual_seed(0)
    x = torch.randn(16, 5)
    plain, synced = tl_nn.create_norm("batch", 5), tl_nn.create_norm("sync_batch", 5)
    assert synced.sync and not plain.sync
    torch.testing.assert_close(synced(x), plain(x))
    torch.testing.assert_close(synced.running_var, plain.running_var)
    assert "sync=True" in repr(synced)


def test_single_process_world():
    assert distributed.world() == distributed.World(0, 1, 0)
    assert distributed.is_main() and not distributed.requested()
    assert distributed.on_main(lambda a: a + 1, 1) == 2
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t and torch.equal(t, torch.ones(3))
