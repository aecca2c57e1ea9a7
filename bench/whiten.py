"""Whitening at scale: ``Whiten.fit`` against scikit-learn's ``PCA(whiten=True).fit``, its
accuracy, and the memory of ``partial_fit`` streamed from disk.

What is measured
----------------
1. **Time.** ``Whiten("pca").fit(x)`` and ``PCA(whiten=True).fit(x)`` on the same
   ``--rows`` × ``--dims`` float32 NumPy array (default 200,000 × 256), in one process,
   over ``--rounds`` interleaved rounds (the order alternates between rounds, so a slow
   spell of a noisy machine hits both alike), each fit after ``--pause`` seconds of rest
   (the BLAS threads of the previous call stop spinning). Reported: the median seconds of each, and
   the median over rounds of the ratio sklearn seconds / trainlab seconds (≥ 1: trainlab
   at least as fast). scikit-learn's solver is the one ``svd_solver="auto"`` picks
   (``covariance_eigh`` from 1.5 for data this shape: it forms XᵀX in float32 and
   eigendecomposes it). GFLOP/s counts the N·D·(D+1) flops of the covariance's one
   triangle (what a ``syrk`` computes; the work both libraries cannot avoid) per second
   of the whole ``fit``; the float32 matrix-multiply peak of the machine is measured in
   the same run (the best of ``torch.mm`` on two n × n matrices, n = 512, 1024, 2048;
   2n³ flops) for comparison.

2. **Accuracy.** Against a float64 two-pass reference covariance C of the same float32
   data (mean first, then Σ (x − μ)ᵀ(x − μ), with NumPy): the relative error of each fit's
   covariance, max |C_fit − C| / max |C|, and how white its whitened data is,
   max |Cov(x W) − I| = max |Wᵀ C W − I| with W its whitening matrix (exact for the data,
   no rounding of the transform). trainlab uses ``eps=1e-12`` here, so ε's shrinkage
   λ/(λ + ε) is negligible. The data are correlated with eigenvalues from 1 down to
   ``--smallest`` (default 1e-4, condition number 10⁴) and per-feature offsets of 2–5
   (units of the largest standard deviation), as image patches or pixels have.

3. **Memory of streaming.** ``partial_fit`` over a float32 file on disk, one chunk of
   ``--chunk-rows`` rows at a time (each chunk is a ``np.memmap`` of its own byte range,
   closed after use), in a fresh subprocess per data size: 1× and ``--stream-scale``×
   (default 10×) the rows of part 1. Reported: the resident set size of that process
   after the imports (VmRSS), its peak since then (VmHWM, reset after the imports through
   /proc/self/clear_refs) after the first chunk and at the end, and the size of the
   data. The streamed 1× fit is compared with ``fit`` on the concatenation in memory.

Run ``python bench/whiten.py`` (about 30 s on 2 idle cores; it writes 2.2 GB of temporary
files, removed afterwards), ``--quick`` for a smoke test, ``--json PATH`` to save the
results.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from optim_step import cpu_seconds, machine, others_load  # noqa: E402
from trainlab.preprocess import Whiten  # noqa: E402

ACCURACY_EPS = 1e-12
PEAK_SIZES = (512, 1024, 2048)  # n of the n × n matrix products that measure the peak


# --- data --------------------------------------------------------------------------------


def mixing(dims: int, smallest: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, μ): rows z A + μ with z ~ N(0, I) have covariance AᵀA with eigenvalues 1 … smallest."""
    rng = np.random.default_rng(seed)
    eigenvalues = np.geomspace(1.0, smallest, dims)
    q, _ = np.linalg.qr(rng.standard_normal((dims, dims)))
    a = np.sqrt(eigenvalues)[:, None] * q.T
    return a.astype(np.float32), rng.uniform(2.0, 5.0, dims).astype(np.float32)


def make_rows(rows: int, a: np.ndarray, mean: np.ndarray, seed: int) -> np.ndarray:
    """``rows`` float32 samples z A + μ (the same for the same seed)."""
    z = np.random.default_rng(seed).standard_normal((rows, a.shape[0]), dtype=np.float32)
    return z @ a + mean


def write_file(path: Path, rows: int, chunk_rows: int, a, mean, seed: int) -> None:
    """A float32 file of ``rows`` samples, written chunk by chunk (constant memory)."""
    with open(path, "wb") as f:
        for i, start in enumerate(range(0, rows, chunk_rows)):
            make_rows(min(chunk_rows, rows - start), a, mean, seed + i).tofile(f)


# --- part 1: time ------------------------------------------------------------------------


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_peak_gflops(rounds: int, sizes: Sequence[int]) -> float:
    """The best float32 GFLOP/s of ``torch.mm`` on two n × n matrices, over ``sizes``."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        seconds = min(time_once(functools.partial(torch.mm, a, b)) for _ in range(rounds))
        best = max(best, 2 * n**3 / seconds / 1e9)
    return best


def time_fits(x: np.ndarray, rounds: int, pause: float) -> dict:
    """Interleaved rounds of trainlab's and sklearn's fit; seconds and per-round ratios.

    Each fit starts ``pause`` seconds after the previous one: the BLAS's worker threads
    keep spinning for a while after a call (OpenBLAS for about 2²⁸ cycles, 0.1 s), and a
    fit that starts meanwhile shares the cores with them (measured: trainlab's fit took
    180 ms right after scikit-learn's, 89 ms after its own).
    """
    from sklearn.decomposition import PCA  # imported here: the streaming child needs none

    fits = {
        "trainlab": lambda: Whiten("pca").fit(x),
        "sklearn": lambda: PCA(whiten=True).fit(x),
    }
    for fit in fits.values():  # warm-up: thread pools, first-touch allocations
        fit()
    seconds: dict[str, list[float]] = {name: [] for name in fits}
    for r in range(rounds):
        for name in list(fits) if r % 2 == 0 else list(fits)[::-1]:
            time.sleep(pause)
            seconds[name].append(time_once(fits[name]))
    ratios = [s / t for s, t in zip(seconds["sklearn"], seconds["trainlab"])]
    return {
        "seconds": seconds,
        "median_s": {name: statistics.median(s) for name, s in seconds.items()},
        "best_s": {name: min(s) for name, s in seconds.items()},
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "sklearn_solver": PCA(whiten=True).fit(x[:20000])._fit_svd_solver,
    }


# --- part 2: accuracy --------------------------------------------------------------------


def reference_covariance(x: np.ndarray, chunk_rows: int = 16384) -> np.ndarray:
    """The (N−1) covariance of float32 rows in float64, two passes over chunks."""
    n = len(x)
    mean = x.sum(axis=0, dtype=np.float64) / n
    scatter = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, n, chunk_rows):
        d = x[start : start + chunk_rows].astype(np.float64) - mean
        scatter += d.T @ d
    return scatter / (n - 1)


def accuracy(x: np.ndarray) -> list[dict]:
    """Covariance error and whiteness of trainlab (float32, float64) and sklearn fits."""
    from sklearn.decomposition import PCA

    c = reference_covariance(x)
    identity = np.eye(len(c))

    def row(fit: str, dtype: str, covariance: np.ndarray, w: np.ndarray) -> dict:
        return {
            "fit": fit,
            "input": dtype,
            "covariance_rel_err": float(np.abs(covariance - c).max() / np.abs(c).max()),
            "whitened_max_abs_err": float(np.abs(w.T @ c @ w - identity).max()),
        }

    out = []
    for dtype in (np.float32, np.float64):
        white = Whiten("pca", eps=ACCURACY_EPS).fit(x.astype(dtype, copy=False))
        out.append(
            row(
                'trainlab Whiten("pca")',
                np.dtype(dtype).name,
                white.covariance_.numpy(),
                white.whitening_.numpy(),
            )
        )
    pca = PCA(whiten=True).fit(x)
    # sklearn's transform divides by √λ clipped below at the dtype's eps.
    scale = np.sqrt(pca.explained_variance_)
    scale = np.maximum(scale, np.finfo(scale.dtype).eps)
    w = pca.components_.T.astype(np.float64) / scale
    # Its covariance U Λ Uᵀ (get_covariance() rescales the components when whiten=True).
    u = pca.components_.T.astype(np.float64)
    covariance = (u * pca.explained_variance_) @ u.T
    out.append(row("sklearn PCA(whiten=True)", "float32", covariance, w))
    return out


# --- part 3: memory of partial_fit -------------------------------------------------------


def rss_mib() -> tuple[float, float]:
    """(resident set size now, its peak so far) of this process, MiB.

    From /proc/self/status (VmRSS, VmHWM) on Linux, else ``ru_maxrss`` for both.
    """
    try:
        with open("/proc/self/status") as f:
            kib = {k: float(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f)
                   if k in ("VmRSS", "VmHWM")}  # fmt: skip
        return kib["VmRSS"] / 1024, kib["VmHWM"] / 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak /= 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, else KiB
        return peak, peak


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def stream_child(args: argparse.Namespace) -> dict:
    """In a fresh process: partial_fit over the file chunk by chunk; memory and time.

    The peak is reset after the imports (whose own peak says nothing about streaming), so
    the peaks are the largest resident set since then: after the first chunk (what one
    ``partial_fit`` needs: its chunk, its block, the libraries' work space) and at the
    end, the final eigendecomposition included.
    """
    import_peak = rss_mib()[1]
    reset = reset_peak_rss()
    after_import = rss_mib()[0]
    rows, dims, chunk = args.child_rows, args.dims, args.chunk_rows
    row_bytes = dims * np.dtype(np.float32).itemsize
    white = Whiten("pca")
    start = time.perf_counter()
    chunks, first_chunk_peak = 0, None
    for first in range(0, rows, chunk):
        block = np.memmap(
            args.child_file, np.float32, "r", offset=first * row_bytes,
            shape=(min(chunk, rows - first), dims),
        )  # fmt: skip
        white.partial_fit(block)
        del block  # unmaps it: its pages leave the resident set
        chunks += 1
        first_chunk_peak = first_chunk_peak or rss_mib()[1]
    assert white.explained_variance_.shape == (dims,)  # the eigendecomposition, once
    seconds = time.perf_counter() - start
    peak = rss_mib()[1]
    if args.child_state:
        torch.save(white.state_dict(), args.child_state)
    return {
        "rows": rows,
        "chunks": chunks,
        "data_mib": rows * row_bytes / 2**20,
        "import_peak_mib": import_peak,
        "after_import_mib": after_import,
        "first_chunk_peak_mib": first_chunk_peak,
        "peak_rss_mib": peak,
        "peak_reset_after_import": reset,
        "seconds": seconds,
    }


def run_child(file: Path, rows: int, args: argparse.Namespace, state: Path | None) -> dict:
    command = [
        sys.executable, __file__, "--child-file", str(file), "--child-rows", str(rows),
        "--dims", str(args.dims), "--chunk-rows", str(args.chunk_rows),
    ]  # fmt: skip
    if state is not None:
        command += ["--child-state", str(state)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def streaming(x: np.ndarray, a, mean, args: argparse.Namespace) -> dict:
    """Peak RSS of partial_fit over 1× and scale× the data, and 1× streamed against fit."""
    rows = len(x)
    with tempfile.TemporaryDirectory(prefix="whiten-bench-", dir=args.tmpdir) as tmp:
        tmp = Path(tmp)
        one = tmp / "x1.f32"
        x.tofile(one)
        runs = [run_child(one, rows, args, tmp / "state.pt")]
        many = tmp / f"x{args.stream_scale}.f32"
        write_file(many, rows * args.stream_scale, args.chunk_rows, a, mean, args.seed + 1)
        runs.append(run_child(many, rows * args.stream_scale, args, None))
        streamed = torch.load(tmp / "state.pt", weights_only=True)
    whole = Whiten("pca").fit(x)
    c = whole.covariance_
    return {
        "runs": runs,
        "chunk_rows": args.chunk_rows,
        "streamed_vs_fit_covariance_rel": float(
            (streamed["covariance_"] - c).abs().max() / c.abs().max()
        ),
        "streamed_vs_fit_mean_max_abs": float((streamed["mean_"] - whole.mean_).abs().max()),
    }


# --- report ------------------------------------------------------------------------------


def print_report(results: dict, file=sys.stdout) -> None:
    m, t, s = results["machine"], results["timing"], results["settings"]
    print(f"{m['date']}  {m['cpu']}  nproc {m['nproc']}  torch {m['torch']}", end="", file=file)
    print(f" ({m['torch_threads']} threads)  scikit-learn {m['sklearn']}", file=file)
    print(f"BLAS for NumPy and scikit-learn: {', '.join(m['blas'])}\n", file=file)
    rows, dims = s["rows"], s["dims"]
    flops = rows * dims * (dims + 1)
    print(f"fit on {rows} × {dims} float32, {s['rounds']} rounds:", file=file)
    head = (
        "lib        call                                     median s   best s  "
        "sklearn/this  GFLOP/s"
    )
    print(head, "-" * len(head), sep="\n", file=file)
    calls = {
        "trainlab": 'Whiten("pca").fit',
        "sklearn": f"PCA(whiten=True).fit [{t['sklearn_solver']}]",
    }
    for lib, call in calls.items():
        sec, best = t["median_s"][lib], t["best_s"][lib]
        ratio = t["ratio"] if lib == "trainlab" else 1.0
        print(
            f"{lib:<10} {call:<40} {sec:>9.4f} {best:>8.4f}  {ratio:>12.2f}  "
            f"{flops / sec / 1e9:>7.1f}",
            file=file,
        )
    best_ratio = t["best_s"]["sklearn"] / t["best_s"]["trainlab"]
    print(
        "sklearn/this: the median over rounds of sklearn's time / trainlab's "
        f"(of the best times: {best_ratio:.2f}); GFLOP/s: N·D(D+1) / median s",
        file=file,
    )
    print(
        "float32 matrix-multiply peak (best torch.mm of n × n, n in "
        f"{results['matmul_peak_sizes']}): "
        f"{results['matmul_peak_gflops']:.0f} GFLOP/s",
        file=file,
    )
    print(
        f"\naccuracy against a float64 two-pass covariance C (trainlab eps={ACCURACY_EPS:g}):",
        file=file,
    )
    head = "fit                        input     max|ΔC|/max|C|  max|WᵀCW − I|"
    print(head, "-" * len(head), sep="\n", file=file)
    for r in results["accuracy"]:
        print(
            f"{r['fit']:<26} {r['input']:<9} {r['covariance_rel_err']:>14.2e}  "
            f"{r['whitened_max_abs_err']:>13.2e}",
            file=file,
        )
    if results.get("streaming"):
        st = results["streaming"]
        print(f"\npartial_fit streamed from disk, {st['chunk_rows']} rows per chunk:", file=file)
        reset = all(r["peak_reset_after_import"] for r in st["runs"])
        since = "since the imports" if reset else "imports included"
        print(f"(MiB; peaks of the resident set {since})", file=file)
        head = "rows        chunks  data  after imports  peak, 1st chunk  peak at the end  seconds"
        print(head, "-" * len(head), sep="\n", file=file)
        for r in st["runs"]:
            print(
                f"{r['rows']:<11} {r['chunks']:>6} {r['data_mib']:>5.0f} "
                f"{r['after_import_mib']:>14.0f} {r['first_chunk_peak_mib']:>16.0f} "
                f"{r['peak_rss_mib']:>16.0f} {r['seconds']:>8.2f}",
                file=file,
            )
        print(
            f"streamed 1× against fit on the concatenation: max|ΔC|/max|C| = "
            f"{st['streamed_vs_fit_covariance_rel']:.1e}, max|Δμ| = "
            f"{st['streamed_vs_fit_mean_max_abs']:.1e}",
            file=file,
        )
    others = m["other_processes_cores"]
    print(f"\n{results['wall_s']:.0f} s", end="", file=file)
    if others is not None:
        print(f"; other processes used {others:.2f} cores while timing", end="", file=file)
    print(file=file)


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="small data, few rounds (smoke test)")
    ap.add_argument("--rows", type=int, help="samples N (default 200000; quick 4096)")
    ap.add_argument("--dims", type=int, default=256, help="features D (default 256)")
    ap.add_argument("--rounds", type=int, help="timed rounds (default 11; quick 2)")
    ap.add_argument("--smallest", type=float, default=1e-4, help="smallest eigenvalue")
    ap.add_argument(
        "--pause", type=float, help="seconds of rest before each timed fit (default 0.25)"
    )
    ap.add_argument("--chunk-rows", type=int, help="rows per partial_fit (default 10000)")
    ap.add_argument("--stream-scale", type=int, default=10, help="the larger stream, × rows")
    ap.add_argument("--no-stream", action="store_true", help="skip the memory measurement")
    ap.add_argument("--tmpdir", help="where the temporary data files go (default: the system's)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument(
        "--threads", type=int, help="threads of torch and of the BLAS (default: theirs)"
    )
    ap.add_argument("--seed", type=int, default=0)
    # The streaming subprocess (internal).
    ap.add_argument("--child-file", help=argparse.SUPPRESS)
    ap.add_argument("--child-rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-state", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.rows = args.rows or (4096 if args.quick else 200_000)
    args.rounds = args.rounds or (2 if args.quick else 11)
    args.pause = args.pause if args.pause is not None else (0.0 if args.quick else 0.25)
    args.chunk_rows = args.chunk_rows or (1000 if args.quick else 10_000)
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the report, optionally write JSON; return the results."""
    args = parse_args(argv)
    if not args.child_file:
        import sklearn.decomposition  # loads SciPy's BLAS too, before threadpool_limits
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # scikit-learn's BLAS too, for the rest of the run
    if args.child_file:
        result = stream_child(args)
        print(json.dumps(result))
        return result
    import sklearn
    from threadpoolctl import threadpool_info

    blas = sorted({f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                   for i in threadpool_info() if i["user_api"] == "blas"})  # fmt: skip
    info = machine() | {"sklearn": sklearn.__version__, "blas": blas}
    start, cpu0 = time.perf_counter(), cpu_seconds()
    a, mean = mixing(args.dims, args.smallest, args.seed)
    x = make_rows(args.rows, a, mean, args.seed + 1)
    sizes = (256, 512) if args.quick else PEAK_SIZES
    results = {
        "machine": info,
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("child")},
        "matmul_peak_sizes": sizes,
        "matmul_peak_gflops": matmul_peak_gflops(5, sizes),
        "timing": time_fits(x, args.rounds, args.pause),
    }
    # The load while timing (the streaming part's subprocesses would count as "others").
    info["other_processes_cores"] = others_load(cpu0, cpu_seconds(), time.perf_counter() - start)
    results["accuracy"] = accuracy(x)
    results["streaming"] = None if args.no_stream else streaming(x, a, mean, args)
    results["wall_s"] = time.perf_counter() - start
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
