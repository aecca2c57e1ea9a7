"""Throughput of K models trained together (trainlab.sweep) against K sequential Trainer runs.

What is measured
----------------
K copies of one config (default ``examples/mnist1d_mlp.yaml``: MNIST-1D, MLP 40-100-100-10
with batch norm and dropout 0.3, Adam, batch 100) that differ in their learning rate, K of
them log-spaced over 1e-4 … 1e-1, all with the config's seed (so they share the data order:
one batch per step for all, the case a learning-rate sweep is). ``--seeds S`` gives each
learning rate S seeds instead (S data orders).

* **sequential**: for each of the K configs, ``trainlab.train.build.build`` (data, split,
  model, optimizer) and then ``Trainer(model, optimizer).fit(train, val, epochs)``, one
  after another in this process; only the ``fit`` calls are timed.
* **batched**: the same K pieces built the same way, then one
  ``SweepTrainer(models, optimizers, rng_states=…).fit(trains, vals, epochs)``; only
  ``fit`` is timed.

Both train ``--epochs`` epochs with a validation pass after each (as a run does). The
figure is the throughput, model-epochs per second; ``× sequential`` is batched throughput
over sequential throughput, from the same round. ``--rounds`` rounds alternate the two
(sequential, then batched) after an untimed warm-up of both (one epoch: two sequential
models, all K batched), and the median of the rounds' ratios is reported. The ratio of
the two ways' CPU time (this process's) is reported too: with ``--threads 1`` it is what
the wall-clock ratio would be on an idle machine, when other processes share the cores.

Each round also checks that the two agree: per model, the largest difference between its
final weights and buffers in the two ways; the largest over the models, and how many are
within 1e-5. Adam with batch norm at the sweep's larger learning rates amplifies
rounding: on one thread 26 of the 32 models agree to 1e-5 and all to ~1e-4; on two
threads a model can end ~1e-1 away, as far as the sequential runs on 1 and on 2 threads
end from each other (docs/sweep.md).

The run ends with the cores other processes used meanwhile (from /proc/stat): on a shared
machine, rerun when it is high.

Run ``python bench/sweep.py`` (K = 32, about a minute on 2 cores), ``--quick`` for a smoke
test (K = 4, a small dataset), ``--device cuda --K 256`` on a GPU, ``--json PATH`` to save
the results; ``--agreement`` times nothing and compares both ways on 1 and on 2 threads.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from optim_step import cpu_seconds, machine, others_load  # noqa: E402
from trainlab.config import load_config  # noqa: E402
from trainlab.sweep import SweepTrainer  # noqa: E402
from trainlab.train import Trainer  # noqa: E402
from trainlab.train.build import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "mnist1d_mlp.yaml"
#: --quick: a small model on a small dataset, a few models, one epoch.
QUICK = ["data.dataset=iris", "model.hidden=[16]", "train.batch_size=16"]


def configs(args: argparse.Namespace) -> list:
    """The K configs: learning rates log-spaced over [1e-4, 1e-1] (× seeds)."""
    n_lr = max(1, args.K // args.seeds)
    lrs = [10 ** (-4 + 3 * i / max(1, n_lr - 1)) for i in range(n_lr)]
    extra = (QUICK if args.quick else []) + [f"train.device={args.device}"] + args.set
    base = load_config(args.config, extra)
    return [
        load_config(args.config, [*extra, f"optimizer.lr={lr!r}", f"seed={base.seed + s}"])
        for lr in lrs
        for s in range(args.seeds)
    ]


def _pieces(config):
    p = build(config, parts=("train", "val"))
    return p, torch.get_rng_state()


def sequential(cfgs: list, epochs: int) -> tuple[float, float, list[dict]]:
    """Wall and CPU seconds spent in ``Trainer.fit`` for all configs, and each model's
    final state."""
    seconds = cpu = 0.0
    states = []
    for config in cfgs:
        p, _ = _pieces(config)
        trainer = Trainer(p.model, p.optimizer, task=p.dataset.task, device=p.device)
        _sync(p.device)
        start, cpu0 = time.perf_counter(), time.process_time()
        trainer.fit(p.loaders["train"], p.loaders.get("val"), epochs=epochs)
        _sync(p.device)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - cpu0
        states.append(_state(p.model))
    return seconds, cpu, states


def batched(cfgs: list, epochs: int) -> tuple[float, float, list[dict]]:
    """Wall and CPU seconds spent in ``SweepTrainer.fit``, and each model's final state."""
    built = [_pieces(c) for c in cfgs]
    pieces = [p for p, _ in built]
    trainer = SweepTrainer(
        [p.model for p in pieces],
        [p.optimizer for p in pieces],
        task=pieces[0].dataset.task,
        rng_states=[s for _, s in built],
        device=pieces[0].device,
    )
    _sync(pieces[0].device)
    start, cpu0 = time.perf_counter(), time.process_time()
    trains = [p.loaders["train"] for p in pieces]
    trainer.fit(trains, [p.loaders.get("val") for p in pieces], epochs)
    _sync(pieces[0].device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return seconds, cpu, [_state(p.model) for p in pieces]


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def differences(a: list[dict], b: list[dict]) -> list[float]:
    """Per model, the largest difference between its two final states."""
    return [
        max((v - sb[key]).abs().max().item() for key, v in sa.items() if v.is_floating_point())
        for sa, sb in zip(a, b)
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--K", type=int, default=32, help="models (default 32)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per learning rate")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", action="append", default=[], help="a config override")
    ap.add_argument("--quick", action="store_true", help="smoke test: K=4, iris, 1 epoch")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--agreement",
        action="store_true",
        help="no timing: both ways on 1 and 2 threads and how far apart each pair ends",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.K, args.epochs, args.rounds = min(args.K, 4), 1, min(args.rounds, 2)
    return args


def agreement(cfgs: list, epochs: int, file=sys.stdout) -> dict[str, list[float]]:
    """Both ways on 1 and on 2 threads, and each pair's per-model differences: how far the
    batched runs are from the sequential ones, next to how far the sequential runs on 1
    and on 2 threads are from each other."""
    threads = torch.get_num_threads()
    states = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            states[f"sequential {n}"] = sequential(cfgs, epochs)[2]
            states[f"batched {n}"] = batched(cfgs, epochs)[2]
    finally:
        torch.set_num_threads(threads)
    pairs = [
        ("sequential 1", "sequential 2"),
        ("batched 1", "sequential 1"),
        ("batched 2", "sequential 2"),
        ("batched 2", "sequential 1"),
        ("batched 1", "batched 2"),
    ]
    out = {}
    print(f"{'threads':>28}  {'max |Δ|':>8}  within 1e-5  worst model", file=file)
    for a, b in pairs:
        d = differences(states[a], states[b])
        worst = max(range(len(d)), key=d.__getitem__)
        out[f"{a} vs {b}"] = d
        print(
            f"{a + ' vs ' + b:>28}  {max(d):>8.1e}  {sum(x <= 1e-5 for x in d):>5}/{len(d):<5}"
            f"  {worst} (lr {cfgs[worst].optimizer.lr:.2g})",
            file=file,
        )
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the report, optionally write JSON; return the results."""
    args = parse_args(argv)
    if args.agreement:
        return agreement(configs(args), args.epochs)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    cfgs = configs(args)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    probe, _ = _pieces(cfgs[0])
    steps = len(probe.loaders["train"])
    # warm-up, not timed: one epoch each way loads what each way loads once per process
    # (for the batched way the compiled mask kernel) and lets the allocator grow to each
    # way's working set — two sequential models (each the same), all K batched
    sequential(cfgs[:2], 1)
    batched(cfgs, 1)
    rounds = []
    for _ in range(args.rounds):
        seq_s, seq_cpu, seq_states = sequential(cfgs, args.epochs)
        bat_s, bat_cpu, bat_states = batched(cfgs, args.epochs)
        model_epochs = len(cfgs) * args.epochs
        rounds.append(
            {
                "sequential_s": seq_s,
                "batched_s": bat_s,
                "sequential_cpu_s": seq_cpu,
                "batched_cpu_s": bat_cpu,
                "cpu_ratio": seq_cpu / bat_cpu,
                "sequential_model_epochs_per_s": model_epochs / seq_s,
                "batched_model_epochs_per_s": model_epochs / bat_s,
                "ratio": seq_s / bat_s,
                "max_abs_difference": max(diffs := differences(seq_states, bat_states)),
                "models_within_1e-5": sum(d <= 1e-5 for d in diffs),
            }
        )
    wall = time.perf_counter() - start
    info["other_processes_cores"] = others_load(cpu0, cpu_seconds(), wall)
    results = {
        "machine": info,
        "settings": {k: v for k, v in vars(args).items()},
        "K": len(cfgs),
        "steps_per_epoch": steps,
        "rounds": rounds,
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
        "wall_s": wall,
    }
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def print_report(results: dict, file=sys.stdout) -> None:
    m, s = results["machine"], results["settings"]
    print(
        f"{results['K']} models × {s['epochs']} epochs × {results['steps_per_epoch']} steps, "
        f"{s['device']}, torch {m['torch']}, {m['torch_threads']} threads, {m['cpu']}",
        file=file,
    )
    head = f"{'round':>5}  {'sequential s':>12}  {'batched s':>9}  {'× sequential':>12}"
    print(f"{head}  {'CPU ×':>6}  max |Δ|  within 1e-5", file=file)
    for i, r in enumerate(results["rounds"], 1):
        print(
            f"{i:>5}  {r['sequential_s']:>12.2f}  {r['batched_s']:>9.2f}  "
            f"{r['ratio']:>12.2f}  {r['cpu_ratio']:>6.2f}  {r['max_abs_difference']:.1e}  "
            f"{r['models_within_1e-5']:>5}/{results['K']}",
            file=file,
        )
    print(
        f"median × sequential: {results['ratio']:.2f} (wall clock); "
        f"{results['cpu_ratio']:.2f} (CPU time of this process)",
        file=file,
    )
    load = m.get("other_processes_cores")
    if load is not None and math.isfinite(load):
        print(f"other processes used {load:.2f} cores on average meanwhile", file=file)


if __name__ == "__main__":
    main()
