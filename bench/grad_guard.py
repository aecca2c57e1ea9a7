"""What the Trainer's non-finite-gradient check costs per step: the same training with the
check and with it turned off, as a ratio of steps per second.

    .venv/bin/python bench/grad_guard.py                  # ~1 min
    .venv/bin/python bench/grad_guard.py --rounds 3 --epochs 2 --threads 2

The model is the shape of ``examples/mnist1d_mlp.yaml`` (40-100-100-10 MLP; batch 100; Adam
lr 1e-2) on 4,000 random samples held in memory: about as small a step as the Trainer
runs, so the check's share is as large as it gets. The two variants alternate, round after
round, in one process, and the median of each is reported; other processes on the machine
slow both alike, so read the ratio, not the absolute figures. One torch thread by default:
the cheapest step, so the largest share for the check (and, on a busy machine, two
threads' OpenMP barriers make the timings noise).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

from trainlab import optim
from trainlab.data import TensorLoader
from trainlab.train import Trainer


def _steps_per_second(check: bool, epochs: int) -> float:
    torch.manual_seed(0)
    X, y = torch.randn(4000, 40), torch.randint(0, 10, (4000,))
    model = torch.nn.Sequential(
        torch.nn.Linear(40, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )
    trainer = Trainer(model, optim.Adam(model.parameters(), lr=1e-2), device="cpu")
    if not check:
        trainer._skip_if_non_finite_gradient = lambda loss: None
    loader = TensorLoader(X, y, batch_size=100, seed=0)
    started = time.perf_counter()
    trainer.fit(loader, epochs=epochs)
    return trainer.step / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5, help="epochs (40 steps each) a round")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _steps_per_second(True, 1)  # warm up
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for check in (False, True):
            rates[check].append(_steps_per_second(check, args.epochs))
    without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"torch threads: {torch.get_num_threads()}; {args.epochs * 40} steps a round")
    print(f"steps/s without the check: {without:8.0f}   (median of {args.rounds} rounds)")
    print(f"steps/s with the check:    {with_:8.0f}")
    print(f"with / without:            {with_ / without:8.3f}")
    return {"without": without, "with": with_, "ratio": with_ / without}


if __name__ == "__main__":
    main()
