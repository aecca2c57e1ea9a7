"""The cost of training on 2 processes (DDP, gloo) instead of 1, on this machine.

    .venv/bin/python bench/distributed.py                      # mnist1d_mlp and mnist1d_cnn
    .venv/bin/python bench/distributed.py --epochs 10 --only mnist1d_mlp

Each example config runs as a real `trainlab fit` with `--nproc 1` and `--nproc 2` (the same
global batch, so the same training: the table checks that the test metrics agree), one
after the other, in subprocesses. "train s" is the training time the run itself measures
(summary.json's `seconds`: the epochs, without start-up, data loading and the final
evaluation); "wall s" is the whole command. Batch norm becomes `sync_batch` in both runs
(on one process that is plain batch norm), so both normalize over the same global batch;
dropout draws other masks on 2 processes, so the accuracies are close, not equal. The
ratio is 2-process time / 1-process time: above 1 means the second process costs more
than it brings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, nproc: int, epochs: int, out: Path) -> tuple[dict, float]:
    run_dir = out / f"{name}-{nproc}"
    cmd = [sys.executable, "-m", "trainlab", "fit", str(EXAMPLES / f"{name}.yaml")]
    cmd += ["--out", str(run_dir), "--nproc", str(nproc), "--quiet"]
    cmd += ["--set", f"train.epochs={epochs}", "--set", "model.norm=sync_batch"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - started
    return json.loads((run_dir / "summary.json").read_text()), wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only", nargs="+", default=["mnist1d_mlp", "mnist1d_cnn"])
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; {args.epochs} epochs per run")
    print("| config | nproc | train s | wall s | test accuracy | ratio (train s) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            base = None
            for nproc in (1, 2):
                summary, wall = run(name, nproc, args.epochs, Path(tmp))
                seconds = summary["seconds"]
                base = base or seconds
                acc = summary["test"].get("accuracy", float("nan"))
                print(
                    f"| {name} | {nproc} | {seconds:.2f} | {wall:.1f} | {acc:.4f} "
                    f"| {seconds / base:.2f}× |"
                )


if __name__ == "__main__":
    main()
