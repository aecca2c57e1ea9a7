"""Smoke test of bench/optim_step.py: it runs, measures everything, reports ratios.

No timing thresholds: only the structure of the results is checked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "optim_step.py"


@pytest.fixture(scope="module")
def bench(bench_module):
    return bench_module


@pytest.fixture(scope="module")
def results(bench, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "results.json"
    argv = ["--quick", "--sizes", "3x1K", "--rounds", "2", "--triad-mib", "1"]
    out = bench.main([*argv, "--json", str(path)])
    out["json_path"] = path
    return out


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_parse_size(bench):
    assert bench.parse_size("10x1M") == (10, 1024**2)
    assert bench.parse_size("1000x1K") == (1000, 1024)
    assert bench.parse_size("3x100") == (3, 100)


def test_every_optimizer_and_impl_is_measured(bench, results):
    measured = {(r["optimizer"], r["lib"], r["impl"]) for r in results["results"]}
    expected = set()
    for name, (_, _, torch_cls, _, _) in bench.OPTIMIZERS.items():
        expected |= {(name, "trainlab", impl) for impl in bench.TRAINLAB_IMPLS}
        impls = bench.torch_impls(torch_cls)
        assert {"forloop", "foreach"} <= set(impls)
        expected |= {(name, "torch", impl) for impl in impls}
    assert measured == expected
    assert {r["size"] for r in results["results"]} == {"3x1K"}


def test_rmsprop_has_no_fused_baseline(bench, results):
    rms = [r for r in results["results"] if r["optimizer"] == "RMSProp"]
    assert all(r["baseline"] == "torch foreach" for r in rms)
    assert not any(r["impl"] == "fused" for r in rms)


def test_times_bandwidths_and_ratios(results):
    for r in results["results"]:
        assert len(r["samples_ms"]) == 2
        assert all(_positive(s) for s in r["samples_ms"])
        assert _positive(r["ms"]) and _positive(r["gbps"]) and _positive(r["ratio"])
        assert r["steps"] >= 1 and r["bytes_per_step"] > 0
        if f"{r['lib']} {r['impl']}" == r["baseline"]:
            assert r["ratio"] == pytest.approx(1.0)
    assert [t["size"] for t in results["triads"]] == ["1MiB", "3x1K"]
    assert all(_positive(t["gbps"]) for t in results["triads"])
    assert results["triad"] == results["triads"][0]


def test_auto_check_and_json(bench, results):
    assert [c["optimizer"] for c in results["auto_check"]] == list(bench.OPTIMIZERS)
    for c in results["auto_check"]:
        assert c["faster"] in bench.TRAINLAB_IMPLS
        assert _positive(c["auto_over_faster"])
    saved = json.loads(results["json_path"].read_text())
    assert len(saved["results"]) == len(results["results"])
    assert saved["machine"]["torch"]
    assert "other_processes_cores" in saved["machine"]
