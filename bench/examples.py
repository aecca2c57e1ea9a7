"""Train every example config over a few seeds and print a Markdown table of the results.

    .venv/bin/python bench/examples.py                 # all examples, seeds 0 1 2
    .venv/bin/python bench/examples.py --seeds 0 --only digits_mlp

Each run is a real `trainlab fit` (in this process, one after another), written under a
temporary directory. The table gives, per example, the test metric of every seed, its
mean, and the wall time of each run (data generation, training, evaluation) — the
figures recorded in docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from trainlab.run import fit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, seed: int, out: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    summary = fit(
        EXAMPLES / f"{name}.yaml",
        [f"seed={seed}"],
        out=out / f"{name}-{seed}",
        quiet=True,
        echo=lambda _: None,
    )
    return summary, time.perf_counter() - started


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", help="example names (files in examples/)")
    args = parser.parse_args(argv)
    names = args.only or sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    rows = []
    print("| example | metric | test, per seed | mean | seconds per run |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results = [run_example(name, seed, Path(tmp)) for seed in args.seeds]
            task = results[0][0]["task"]
            metric = "accuracy" if task == "classification" else "r2"
            values = [s["test"][metric] for s, _ in results]
            times = [t for _, t in results]
            row = {"example": name, "metric": metric, "values": values, "times": times}
            rows.append(row)
            print(
                f"| {name} | test {metric} | "
                + ", ".join(f"{v:.3f}" for v in values)
                + f" | {statistics.mean(values):.3f} | "
                + ", ".join(f"{t:.0f}" for t in times)
                + " |",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
