"""Milliseconds per optimizer step: trainlab's implementations against torch.optim's.

What is measured
----------------
One ``optimizer.step()`` on float32 CPU parameters whose gradients were filled once with
random values (no forward or backward pass is timed). With ``--fresh-grads`` each step is
preceded by ``p.grad = g`` for every parameter, with a tensor other than the last step's
(two sets of equal values, alternating): a stand-in for a loop with
``zero_grad(set_to_none=True)``, where backward hands over new gradient tensors that
``impl="flat"`` must copy into its buffer. For every parameter layout given by
``--sizes`` (default ``10x1M`` = 10 tensors of 2**20 elements, and ``1000x1K`` = 1000
tensors of 2**10 elements; ``K`` = 1024, ``M`` = 1024**2):

* trainlab ``SGD`` (momentum 0.9), ``RMSProp``, ``Adam``, ``AdamW``, each with
  ``impl="reference"``, ``"foreach"``, ``"flat"`` and ``"auto"`` (which is ``flat``);
* ``torch.optim`` ``SGD`` (momentum 0.9), ``RMSprop``, ``Adam``, ``AdamW``, each as
  ``forloop`` (``foreach=False``), ``foreach`` (``foreach=True``) and ``fused``
  (``fused=True``) where torch offers a fused kernel on the CPU. That is probed at run
  time, not assumed: on torch 2.13 ``RMSprop`` has no ``fused`` argument.

All the optimizers get the same hyperparameters (lr 1e-3; torch's defaults otherwise) and
the plain update: no Nesterov, no centering, no AMSGrad. Each has its own parameters.

Method
------
Everything runs in one process. Each optimizer takes a few warm-up steps (the first step
allocates the state; with ``impl="flat"`` it also moves the parameters, gradients and
state into flat buffers, and the second compiles the kernel for a bucket of at least
``trainlab.optim.flat.COMPILE_MIN_NUMEL`` elements: the first three steps are timed
together and reported, never counted in ms/step), then a calibration sets ``N``, the
number of steps one repeat times, so that a repeat lasts about ``--target-ms``. Then
come ``--rounds`` rounds; in each round every optimizer of the layout times ``N``
consecutive steps with ``time.perf_counter``, one optimizer after the other (interleaved,
so a slow spell of a noisy machine hits all of them alike). The figure reported is the
median over the rounds of (repeat time / N).

A stream triad ``a = b + s·c`` (``torch.add(b, c, alpha=s, out=a)``, 12 bytes per element:
read b and c, write a) is timed in the same rounds, twice: on three float32 arrays of
``--triad-mib`` MiB each (default 256, meant to exceed the last-level cache: the memory
bandwidth), and on three arrays as large as the layout's parameters (the bandwidth
attainable at that working set, which may sit partly in cache).

The run also reports how many cores other processes used meanwhile (from /proc/stat): on
a busy 2-core machine torch's multi-threaded kernels (fused, the triad) wait for the
core another process holds and can take ten times as long. Rerun when that figure is high.

How to read the table
---------------------
``ms/step``: the median time of one step. ``× base``: ms/step divided by the baseline's
ms/step for the same optimizer and layout. The baseline is torch's fused kernel
(``fused=True``); for RMSprop, which has none, it is torch's ``foreach``. 1.00 is as fast
as the baseline, 3.0 takes three times as long. ``GB/s``: the bytes an ideal single pass
must move per step, divided by the step time. Per element: SGD with momentum reads p, g, b
and writes p, b (5 × 4 bytes); RMSProp reads p, g, s and writes p, s (5 × 4 bytes); Adam
and AdamW read p, g, m, v and write p, m, v (7 × 4 bytes). Compare it with the triads'
GB/s: an implementation near the triad of its layout is bound by memory; one far below it
loses time to extra passes over memory, temporaries or per-tensor overhead.

Targets (issue 9)
-----------------
``speed-up`` = the baseline's ms/step ÷ trainlab ``flat``'s. On 1000×1K: SGD-momentum and
Adam ≥ 3 (against torch fused), RMSProp ≥ 2 (against torch foreach); on 10×1M:
SGD-momentum and Adam ≥ 1, RMSProp ≥ 2. The report ends with each one, met or missed,
and flat's GB/s as a fraction of the triad of its layout.

Run ``python bench/optim_step.py`` (about a minute and a half on 2 cores), ``--quick``
for a smoke test, ``--json PATH`` to save the results.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from trainlab import optim as tl

LR = 1e-3
MOMENTUM = 0.9
DTYPE_BYTES = 4  # float32

#: Optimizer → (trainlab class and kwargs, torch class and kwargs, tensor passes per step).
OPTIMIZERS: dict[str, tuple[type, dict, type, dict, int]] = {
    "SGD-momentum": (tl.SGD, {"momentum": MOMENTUM}, torch.optim.SGD, {"momentum": MOMENTUM}, 5),
    "RMSProp": (tl.RMSProp, {"convention": "torch"}, torch.optim.RMSprop, {}, 5),
    "Adam": (tl.Adam, {}, torch.optim.Adam, {}, 7),
    "AdamW": (tl.AdamW, {}, torch.optim.AdamW, {}, 7),
}
TRAINLAB_IMPLS = ("reference", "foreach", "flat", "auto")
TORCH_IMPL_KWARGS = {
    "forloop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}
DEFAULT_SIZES = "10x1M,1000x1K"
#: (layout, optimizer) → the speed-up of trainlab flat over the baseline that issue 9 asks for.
TARGETS = {
    ("1000x1K", "SGD-momentum"): 3.0,
    ("1000x1K", "Adam"): 3.0,
    ("1000x1K", "RMSProp"): 2.0,
    ("10x1M", "SGD-momentum"): 1.0,
    ("10x1M", "Adam"): 1.0,
    ("10x1M", "RMSProp"): 2.0,
}
SUFFIXES = {"": 1, "K": 1024, "M": 1024**2}
FIRST_STEPS = 3  # timed apart: they include one-time costs (flat: the compile)


@dataclass
class Case:
    """One timed thing: an optimizer step on one layout, or the triad."""

    size: str
    optimizer: str
    lib: str
    impl: str
    bytes_per_step: int
    run: Callable[[], object] | None = field(repr=False)
    steps: int = 1
    samples_ms: list[float] = field(default_factory=list)
    #: the first FIRST_STEPS steps (state allocation; flat: layout, then the compile)
    first_s: float = 0.0


# --- set-up ------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"10x1M"`` → (10, 1048576): number of tensors, elements per tensor."""
    count, _, numel = text.strip().upper().partition("X")
    if not numel:
        raise argparse.ArgumentTypeError(f"size must look like 10x1M, got {text!r}")
    suffix = numel[-1] if numel[-1] in "KM" else ""
    return int(count), int(numel[: len(numel) - len(suffix)]) * SUFFIXES[suffix]


def make_params(n_tensors: int, numel: int, seed: int) -> list[torch.Tensor]:
    """Float32 parameters with random gradients, set once."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(n_tensors):
        p = torch.randn(numel, generator=gen).requires_grad_()
        p.grad = torch.randn(numel, generator=gen)
        params.append(p)
    return params


def torch_impls(cls: type) -> list[str]:
    """torch's implementations of ``cls`` that run on the CPU, probed on a tiny tensor."""
    impls = ["forloop", "foreach"]
    if "fused" in inspect.signature(cls.__init__).parameters:
        p = torch.zeros(4, requires_grad=True)
        p.grad = torch.ones(4)
        try:
            cls([p], lr=LR, fused=True).step()
            impls.append("fused")
        except (RuntimeError, TypeError, ValueError):
            pass
    return impls


def baseline_impl(cls: type) -> str:
    """The torch implementation ratios are taken against: fused, else foreach."""
    return "fused" if "fused" in torch_impls(cls) else "foreach"


def fresh_grads_step(opt, params: list[torch.Tensor]) -> Callable[[], object]:
    """A step preceded by giving every parameter a gradient tensor other than last step's.

    As after ``zero_grad(set_to_none=True)`` and backward, which make new gradient tensors
    at every step: trainlab's ``flat`` then copies them into its flat buffer. The tensors
    alternate between two sets with the same values, so every step computes the same
    thing; every implementation pays the same assignments.
    """
    pools = [[p.grad for p in params], [p.grad.clone() for p in params]]
    turn = [0]

    def run():
        turn[0] ^= 1
        for p, g in zip(params, pools[turn[0]]):
            p.grad = g
        return opt.step()

    return run


def optimizer_cases(
    size: str, n_tensors: int, numel: int, seed: int, fresh_grads: bool = False
) -> list[Case]:
    """Every optimizer × implementation on one layout, each with its own parameters."""
    cases = []
    for name, (tl_cls, tl_kw, t_cls, t_kw, passes) in OPTIMIZERS.items():
        nbytes = passes * n_tensors * numel * DTYPE_BYTES
        variants = [("trainlab", i, tl_cls, {**tl_kw, "impl": i}) for i in TRAINLAB_IMPLS]
        variants += [
            ("torch", i, t_cls, {**t_kw, **TORCH_IMPL_KWARGS[i]}) for i in torch_impls(t_cls)
        ]
        for lib, impl, cls, kwargs in variants:
            seed += 1
            params = make_params(n_tensors, numel, seed)
            opt = cls(params, lr=LR, **kwargs)
            run = fresh_grads_step(opt, params) if fresh_grads else opt.step
            cases.append(Case(size, name, lib, impl, nbytes, run))
    return cases


def triad_case(size: str, n: int) -> Case:
    """The stream triad a = b + s·c on three float32 tensors of ``n`` elements each."""
    a, b, c = torch.empty(n), torch.rand(n), torch.rand(n)
    run = functools.partial(torch.add, b, c, alpha=3.0, out=a)
    nbytes = n * DTYPE_BYTES
    label = f"{nbytes / 2**20:g} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:g} KiB"
    return Case(size, "triad", "torch", label, 3 * nbytes, run)


# --- timing ------------------------------------------------------------------------------


def time_steps(run: Callable[[], object], steps: int) -> float:
    """Seconds for ``steps`` consecutive calls."""
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return time.perf_counter() - start


def calibrate(case: Case, args: argparse.Namespace) -> None:
    """Warm up (``args.warmup`` steps, cut short past 10 repeats' time), then choose how
    many steps one repeat times (about ``args.target_ms``)."""
    case.first_s = time_steps(case.run, FIRST_STEPS)
    start, done = time.perf_counter(), FIRST_STEPS
    while done < args.warmup and (done < 2 or time.perf_counter() - start < args.target_ms / 100):
        case.run()
        done += 1
    per_step = max(time_steps(case.run, 1), 1e-9)
    case.steps = max(1, min(args.max_steps, math.ceil(args.target_ms / 1e3 / per_step)))


def measure(cases: Sequence[Case], args: argparse.Namespace) -> None:
    """Calibrate every case, then time them in interleaved rounds.

    Rounds stop early (after at least 3) once ``args.budget_s`` has passed, which bounds
    the run time when a busy machine makes every step slow.
    """
    start = time.perf_counter()
    for case in cases:
        calibrate(case, args)
    for i in range(args.rounds):
        if i >= 3 and time.perf_counter() - start > args.budget_s:
            break
        for case in cases:
            case.samples_ms.append(time_steps(case.run, case.steps) / case.steps * 1e3)


# --- results -----------------------------------------------------------------------------


def row(case: Case) -> dict:
    """The result of one case: median ms, achieved GB/s, the samples."""
    ms = statistics.median(case.samples_ms)
    out = asdict(replace(case, run=None))
    out.pop("run")
    return {**out, "ms": ms, "gbps": case.bytes_per_step / (ms / 1e3) / 1e9}


def add_ratios(rows: list[dict]) -> None:
    """Each optimizer row gets ``baseline`` and ``ratio`` = ms / baseline's ms."""
    base_impl = {name: baseline_impl(spec[2]) for name, spec in OPTIMIZERS.items()}
    base_ms = {
        (r["size"], r["optimizer"]): r["ms"]
        for r in rows
        if r["lib"] == "torch" and r["impl"] == base_impl.get(r["optimizer"])
    }
    for r in rows:
        if r["optimizer"] in OPTIMIZERS:
            r["baseline"] = f"torch {base_impl[r['optimizer']]}"
            r["ratio"] = r["ms"] / base_ms[(r["size"], r["optimizer"])]


def auto_check(rows: list[dict]) -> list[dict]:
    """Per layout and optimizer: trainlab auto's time against the fastest other impl."""
    out = []
    for size in dict.fromkeys(r["size"] for r in rows if r["optimizer"] in OPTIMIZERS):
        for name in OPTIMIZERS:
            ms = {
                r["impl"]: r["ms"]
                for r in rows
                if r["size"] == size and r["optimizer"] == name and r["lib"] == "trainlab"
            }
            best = min(TRAINLAB_IMPLS[:-1], key=ms.__getitem__)
            out.append(
                {
                    "size": size,
                    "optimizer": name,
                    "faster": best,
                    "auto_over_faster": ms["auto"] / ms[best],
                    **{k: ms[k] for k in TRAINLAB_IMPLS},
                }
            )
    return out


def target_check(rows: list[dict], triads: list[dict]) -> list[dict]:
    """Per layout and optimizer: trainlab flat's speed-up over the baseline, and its target."""
    triad = {t["size"]: t["gbps"] for t in triads}
    out = []
    for r in rows:
        if r["lib"] == "trainlab" and r["impl"] == "flat":
            target = TARGETS.get((r["size"], r["optimizer"]))
            speedup = 1 / r["ratio"]
            out.append(
                {
                    "size": r["size"],
                    "optimizer": r["optimizer"],
                    "baseline": r["baseline"],
                    "speedup": speedup,
                    "target": target,
                    "met": None if target is None else speedup >= target,
                    "gbps": r["gbps"],
                    "of_triad": r["gbps"] / triad[r["size"]],
                    "first_s": r["first_s"],
                }
            )
    return out


def machine() -> dict:
    """What the figures were measured on, and how busy it was when the run began."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


HEAD = "layout    optimizer     lib       impl         ms/step  × base    GB/s  baseline"


def format_row(r: dict) -> str:
    return (
        f"{r['size']:<9} {r['optimizer']:<13} {r['lib']:<9} {r['impl']:<10} "
        f"{r['ms']:>9.3f} {r['ratio']:>7.2f} {r['gbps']:>7.1f}  {r['baseline']}"
    )


def format_check(c: dict) -> str:
    times = "  ".join(f"{k} {c[k]:.3f}" for k in TRAINLAB_IMPLS)
    verdict = f"faster: {c['faster']}, auto/faster = {c['auto_over_faster']:.2f}"
    return f"  {c['size']:<9} {c['optimizer']:<13} {times} ms  → {verdict}"


def format_target(c: dict) -> str:
    verdict = "" if c["target"] is None else f"target ≥ {c['target']:g}: "
    verdict += "" if c["met"] is None else ("met" if c["met"] else "MISSED")
    return (
        f"  {c['size']:<9} {c['optimizer']:<13} {c['speedup']:5.2f}× {c['baseline']:<14}"
        f" {c['gbps']:6.1f} GB/s = {c['of_triad']:4.0%} of the triad   first {FIRST_STEPS}"
        f" steps {c['first_s']:6.2f} s   {verdict}"
    )


def print_report(results: dict, file=sys.stdout) -> None:
    """The machine, the results table, the triads and the auto check, as plain text."""
    m = results["machine"]
    print(f"{m['date']}  {m['cpu']}  nproc {m['nproc']}  torch {m['torch']}", end="", file=file)
    print(f" ({m['torch_threads']} threads)\n", file=file)
    print(HEAD, "-" * len(HEAD), sep="\n", file=file)
    for r in results["results"]:
        print(format_row(r), file=file)
    print("\nstream triad a = b + s·c (3 arrays):", file=file)
    for t in results["triads"]:
        print(f"  {t['size']:<9} {t['impl']:>10} per array  {t['gbps']:6.1f} GB/s", file=file)
    print("\ntrainlab impl='auto' against the fastest of the others:", file=file)
    for c in results["auto_check"]:
        print(format_check(c), file=file)
    print(
        "\ntrainlab impl='flat': speed-up over the baseline (baseline ms ÷ flat ms), GB/s"
        " against the triad on arrays of the layout's size, time of the first steps (flat"
        " layout; compile where the bucket is large):",
        file=file,
    )
    for c in results["targets"]:
        print(format_target(c), file=file)
    others = m["other_processes_cores"]
    print(f"\n{results['wall_s']:.0f} s", end="", file=file)
    if others is not None:
        print(f"; other processes used {others:.2f} cores on average meanwhile", end="", file=file)
        if others > 0.1:
            print(
                " (noisy: multi-threaded kernels such as fused and the triad may stall)",
                end="",
                file=file,
            )
    print(file=file)


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument(
        "--quick", action="store_true", help="few rounds and short repeats (smoke test)"
    )
    ap.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help=f"comma-separated TENSORSxNUMEL (default {DEFAULT_SIZES})",
    )
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--rounds", type=int, help="timed repeats per case (default 11; quick 3)")
    ap.add_argument("--target-ms", type=float, help="duration of one repeat (default 60; quick 5)")
    ap.add_argument("--triad-mib", type=int, help="MiB per triad array (default 256; quick 8)")
    ap.add_argument("--budget-s", type=float, help="stop a layout's rounds (after 3) past this")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--fresh-grads",
        action="store_true",
        help="before each step, give every parameter its gradient tensor again (as backward"
        " does after zero_grad(set_to_none=True)): flat then copies them into its buffer",
    )
    args = ap.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (3 if quick else 11)
    args.target_ms = args.target_ms or (5.0 if quick else 60.0)
    args.triad_mib = args.triad_mib or (8 if quick else 256)
    args.budget_s = args.budget_s or (5.0 if quick else 40.0)
    args.warmup = 2 if quick else 5
    args.max_steps = 20 if quick else 500
    return args


def run_benchmark(args: argparse.Namespace) -> tuple[list[Case], list[Case]]:
    """Measure every layout, one at a time; return (optimizer cases, triad cases).

    Each layout's rounds also time the large triad and a triad whose arrays hold as many
    elements as the layout's parameters (the bandwidth attainable at that working set).
    """
    big = triad_case(f"{args.triad_mib}MiB", args.triad_mib * 2**20 // DTYPE_BYTES)
    done, triads = [], [big]
    for i, text in enumerate(args.sizes.split(",")):
        n_tensors, numel = parse_size(text)
        cases = optimizer_cases(
            text.strip(), n_tensors, numel, seed=args.seed + 1000 * i, fresh_grads=args.fresh_grads
        )
        triads.append(triad_case(text.strip(), n_tensors * numel))
        measure([*cases, big, triads[-1]], args)
        done += [replace(c, run=None) for c in cases]  # frees the parameters and state
        triads[-1] = replace(triads[-1], run=None)
    return done, triads


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    t = os.times()
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), t.user + t.system


def others_load(before, after, wall: float) -> float | None:
    """Cores used on average by other processes between two :func:`cpu_seconds` readings."""
    if before is None or after is None:
        return None
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the report, optionally write JSON; return the results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    start, cpu0 = time.perf_counter(), cpu_seconds()
    cases, triads = run_benchmark(args)
    wall = time.perf_counter() - start
    info["other_processes_cores"] = others_load(cpu0, cpu_seconds(), wall)
    rows = [row(c) for c in cases]
    add_ratios(rows)
    results = {
        "machine": info,
        "settings": vars(args),
        "results": rows,
        "triad": row(triads[0]),
        "triads": [row(t) for t in triads],
        "auto_check": auto_check(rows),
        "targets": target_check(rows, [row(t) for t in triads[1:]]),
        "wall_s": wall,
    }
    print_report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
