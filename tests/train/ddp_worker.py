"""Trained by the distributed tests on 1 process (in the test) and on 2 (under torchrun).

``python -m torch.distributed.run --standalone --nproc-per-node 2 ddp_worker.py OUT`` trains
every case of :data:`CASES` and saves each rank's final parameters, buffers and history to
``OUT/<case>-rank<r>.pt``; :func:`train` is the same training for one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from trainlab import nn as tl_nn
from trainlab import optim
from trainlab.data import TensorLoader
from trainlab.train import Trainer

# 201 samples in global batches of 32: the last batch (9 samples) splits 5/4 over two
# ranks, which exercises the weighting of unequal shares.
N, D, BATCH, EPOCHS = 201, 6, 32, 3
CASES = ("plain", "sync_running", "sync_exact")


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    X = torch.randn(N, D, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
    return X, y


def model(case: str) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(D, 16)]
    if case != "plain":
        stats = "exact" if case == "sync_exact" else "running"
        layers.append(tl_nn.BatchNorm1d(16, stats=stats, sync=True))
    layers += [nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def train(case: str) -> dict:
    """Train ``case``; returns the final state, the history and the validation metrics."""
    X, y = data()
    net = model(case)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(net, opt, device="cpu")
    loader = TensorLoader(X, y, batch_size=BATCH, seed=3)
    val = TensorLoader(X[:51], y[:51], batch_size=16, shuffle=False)
    recal = case == "sync_exact"
    trainer.fit(loader, None if recal else val, epochs=EPOCHS)
    if recal:  # exact statistics over the whole (sharded) training set
        tl_nn.recalibrate(net, loader)
    return {
        "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "history": trainer.history,
        "val": trainer.evaluate(val),
    }


if __name__ == "__main__":
    import torch.distributed as dist

    out = Path(sys.argv[1])
    for case in CASES:
        result = train(case)
        torch.save(result, out / f"{case}-rank{dist.get_rank()}.pt")
    # leave together: a rank that exits with the process group alive can abort in gloo's
    # threads ("terminate called without an active exception"), failing the launch
    dist.barrier()
    dist.destroy_process_group()
