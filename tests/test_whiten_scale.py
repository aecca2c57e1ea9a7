"""Claims about Whiten at scale: float32 accuracy, exact streaming, constant memory.

The 200,000 × 256 timing race against scikit-learn lives in bench/whiten.py; here the data
are small and the block size is shrunk so that every path of the blockwise covariance
(several blocks, a ragged last one) runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import trainlab.preprocess as preprocess
from trainlab.preprocess import Pipeline, Standardize, Whiten

BENCH = Path(__file__).resolve().parents[1] / "bench" / "whiten.py"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """On data this small one thread is as fast as two, and it does not stall waiting for
    a core when other processes hold them (the suite runs beside other work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # scikit-learn's BLAS, in the bench's smoke run
        yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["one block", "many blocks"])
def blocks(request, monkeypatch):
    """The default blocks (small data: one block, one panel), and 256-row blocks of
    7-column panels (ragged last block and panel)."""
    if request.param == "many blocks":
        monkeypatch.setattr(preprocess, "_SCATTER_BLOCK_BYTES", 1)  # → the 256-row minimum
        monkeypatch.setattr(preprocess, "_SCATTER_PANEL", 7)
    return request.param


def _offset_data(n: int, d: int, offset: float, smallest: float, seed: int = 0) -> np.ndarray:
    """Correlated float64 rows, eigenvalues 1 … ``smallest``, every mean near ``offset``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = np.sqrt(np.geomspace(1.0, smallest, d))[:, None] * q.T
    return rng.standard_normal((n, d)) @ a + offset * (1 + rng.uniform(size=d))


def _covariance64(x: np.ndarray) -> np.ndarray:
    """The float64 (N−1) covariance of the rows, two-pass."""
    x = x.astype(np.float64)
    centered = x - x.mean(axis=0)
    return centered.T @ centered / (len(x) - 1)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------------ float32 accuracy


def test_float32_covariance_matches_float64_despite_an_offset_that_ruins_x_t_x(blocks):
    # Means 1000× the spread: Σ xᵀx − n μᵀμ in float32 cancels away all but ~2 digits.
    x = _offset_data(3000, 16, offset=1000.0, smallest=1e-2).astype(np.float32)
    reference = _covariance64(x)
    n, mean = len(x), x.mean(axis=0)
    naive = (x.T @ x - n * np.outer(mean, mean)) / (n - 1)  # float32, scikit-learn's formula
    assert _rel(naive, reference) > 1e-3
    white = Whiten("pca").fit(x)
    assert white.covariance_.dtype == torch.float64
    assert _rel(white.covariance_, reference) < 2e-6
    np.testing.assert_allclose(white.mean_.numpy(), x.astype(np.float64).mean(axis=0), rtol=1e-9)


def test_float32_whitened_covariance_is_identity_to_float32_accuracy(blocks):
    # Condition number 1e3 and offsets of a few standard deviations, as in image data.
    x = _offset_data(5000, 24, offset=3.0, smallest=1e-3, seed=1).astype(np.float32)
    reference = _covariance64(x)
    for method in ("pca", "zca"):
        w = Whiten(method, eps=1e-12).fit(x).whitening_.numpy()
        error = np.abs(w.T @ reference @ w - np.eye(24)).max()  # Cov(x W) − I, exactly
        assert error < 1e-4, method


def test_float64_input_keeps_float64_accuracy(blocks):
    x = _offset_data(2000, 12, offset=1e4, smallest=1e-6, seed=2)
    white = Whiten("zca", eps=1e-14).fit(x)
    assert _rel(white.covariance_, _covariance64(x)) < 1e-12
    w = white.whitening_.numpy()
    assert np.abs(w.T @ _covariance64(x) @ w - np.eye(12)).max() < 1e-6


def test_half_precision_input_is_fit_like_its_float32_copy(blocks):
    x = torch.from_numpy(_offset_data(1000, 8, offset=5.0, smallest=0.1, seed=3)).half()
    ours = Whiten().fit(x).covariance_
    assert _rel(ours, Whiten().fit(x.float()).covariance_) < 1e-6


def test_float32_squares_that_overflow_are_redone_in_float64():
    # Finite float32 values whose squares exceed float32's 3.4e38.
    x = (np.random.default_rng(4).standard_normal((500, 6)) * 1e20).astype(np.float32)
    white = Whiten().fit(x)
    assert torch.isfinite(white.covariance_).all()
    assert _rel(white.covariance_, _covariance64(x)) < 1e-12


# ------------------------------------------------------------------------------ streaming


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_partial_fit_over_chunks_equals_fit_on_the_concatenation(dtype, blocks):
    x = _offset_data(3000, 10, offset=50.0, smallest=1e-3, seed=5).astype(dtype)
    whole = Whiten("zca").fit(x)
    streamed = Whiten("zca")
    for chunk in np.split(x, [1, 700, 701, 2048, 2900]):  # ragged, with 1-row chunks
        streamed.partial_fit(chunk)
    assert streamed.n_samples_seen_ == whole.n_samples_seen_ == len(x)
    # float64: equal to rounding. float32: the blocks' products are rounded in float32,
    # at other shifts in the two runs, so both sit within float32 rounding of the truth.
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert _rel(streamed.covariance_, whole.covariance_) < tol
    assert _rel(streamed.whitening_, whole.whitening_) < 1e3 * tol
    np.testing.assert_allclose(streamed.mean_, whole.mean_, rtol=tol)
    if dtype == np.float32:
        assert _rel(streamed.covariance_, _covariance64(x)) < tol


def test_fit_of_a_read_only_memory_map_equals_fit_of_the_array_and_leaves_it_read_only(tmp_path):
    x = _offset_data(1000, 5, offset=2.0, smallest=0.1, seed=6).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    white = Whiten().fit(mapped)
    z = white.transform(mapped)
    assert _rel(white.covariance_, Whiten().fit(x).covariance_) == 0.0
    assert not mapped.flags.writeable and z.flags.writeable
    as_tensor, _ = preprocess._as_tensor(mapped, "test")
    assert as_tensor.data_ptr() == mapped.ctypes.data  # the file's pages, not a copy


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_value_in_a_later_block_is_named_by_row_and_column(bad, blocks):
    x = _offset_data(1000, 4, offset=1.0, smallest=0.5).astype(np.float32)
    x[700, 3] = bad
    with pytest.raises(ValueError, match=rf"^Whiten.fit: non-finite value (?i:{bad}) at row 700, "):
        Whiten().fit(x)
    with pytest.raises(ValueError, match=r"^Pipeline.partial_fit: .* at row 700, column 3$"):
        Pipeline([Standardize(), Whiten()]).partial_fit(x)
    with pytest.raises(ValueError, match=r"^Standardize.fit: .* at row 700, column 3$"):
        Standardize().fit(x)


# ---------------------------------------------------------------------- bench/whiten.py


@pytest.fixture(scope="module")
def bench_results(bench_module, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "whiten.json"
    argv = ["--quick", "--rounds", "1", "--no-stream", "--json", str(path)]
    return bench_module.main(argv), path


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_bench_times_both_fits_and_reports_the_ratio(bench_results):
    results, path = bench_results
    timing = results["timing"]
    assert set(timing["median_s"]) == {"trainlab", "sklearn"}
    assert all(_positive(s) for s in timing["median_s"].values())
    assert timing["ratio"] == pytest.approx(
        timing["seconds"]["sklearn"][0] / timing["seconds"]["trainlab"][0]
    )
    assert _positive(results["matmul_peak_gflops"])
    assert json.loads(path.read_text())["timing"]["ratio"] == timing["ratio"]


def test_bench_accuracy_shows_float32_fit_close_to_the_float64_reference(bench_results):
    rows = {(r["fit"], r["input"]): r for r in bench_results[0]["accuracy"]}
    ours32 = rows[('trainlab Whiten("pca")', "float32")]
    ours64 = rows[('trainlab Whiten("pca")', "float64")]
    assert ours64["covariance_rel_err"] < 1e-12
    assert ours32["covariance_rel_err"] < 1e-6
    assert ours32["whitened_max_abs_err"] < 1e-2
    assert ("sklearn PCA(whiten=True)", "float32") in rows


def test_bench_streaming_peak_memory_does_not_grow_with_the_data(bench_module, tmp_path):
    # The bench runs each stream in a fresh process; here both run in this one, after
    # the peak is reset, which is enough to see whether memory grows with the data.
    bench = bench_module
    a, mean = bench.mixing(64, 1e-3, seed=0)
    runs = []
    for rows in (8192, 81920):  # 2 MiB and 20 MiB of float32
        path = tmp_path / f"{rows}.f32"
        bench.write_file(path, rows, 4096, a, mean, seed=1)
        argv = ["--quick", "--dims", "64", "--chunk-rows", "1024"]
        args = bench.parse_args([*argv, "--child-file", str(path), "--child-rows", str(rows)])
        runs.append(bench.stream_child(args))
    small, large = runs
    assert (small["chunks"], large["chunks"]) == (8, 80)
    assert large["data_mib"] == 10 * small["data_mib"]
    grown = large["peak_rss_mib"] - small["peak_rss_mib"]
    assert grown < 0.5 * (large["data_mib"] - small["data_mib"])  # 18 MiB more data
