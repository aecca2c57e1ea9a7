"""Smoke test of bench/sweep.py: it runs both ways, checks they agree, reports a ratio.

No timing thresholds: only the structure of the results and the agreement are checked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sweep.py"


def test_the_sweep_benchmark_measures_both_ways_and_they_agree(bench_module, tmp_path):
    threads = torch.get_num_threads()
    path = tmp_path / "bench.json"
    try:
        argv = ["--quick", "--rounds", "1", "--threads", "1", "--json", str(path)]
        results = bench_module.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert results["K"] == 4 and len(results["rounds"]) == 1
    r = results["rounds"][0]
    assert r["sequential_s"] > 0 and r["batched_s"] > 0 and r["cpu_ratio"] > 0
    assert math.isclose(r["ratio"], r["sequential_s"] / r["batched_s"])
    assert r["max_abs_difference"] <= 1e-5
    assert json.loads(path.read_text())["ratio"] == results["ratio"]


def test_the_agreement_mode_compares_both_ways_on_one_and_two_threads(bench_module):
    threads = torch.get_num_threads()
    try:
        out = bench_module.main(["--quick", "--agreement"])
    finally:
        torch.set_num_threads(threads)
    assert len(out) == 5 and all(len(d) == 4 for d in out.values())
    assert torch.get_num_threads() == threads
    assert max(out["batched 1 vs sequential 1"]) <= 1e-5  # same thread count: equal runs
