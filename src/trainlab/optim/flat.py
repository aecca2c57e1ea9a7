"""``impl="flat"``: one contiguous buffer per (param group, device, dtype).

At a group's first step the parameters that take part (those with a gradient, or with
state from earlier steps) are copied into one flat buffer per device and dtype, and each
parameter's ``.data`` becomes a view of its slice; the same is done for the gradients
(``p.grad`` becomes a view of a flat gradient buffer) and for every state tensor
(``exp_avg`` …, still one tensor per parameter in ``optimizer.state``, now views). The
family's ``update`` is then called **once** on the three flat buffers: no per-tensor
overhead, and the whole bucket is one element-wise pass.

That pass is

* compiled for buckets of at least :data:`COMPILE_MIN_NUMEL` elements: ``update`` runs
  on :class:`KernelTensor` objects, which record it as straight-line element-wise code,
  and ``torch.compile`` turns that into one fused kernel (inductor writes a C++/OpenMP
  loop on a CPU, Triton on a GPU) that reads p, g and the state once and writes them
  once. The numbers the equation computed (``lr``, ``1 − β₁``, the bias corrections …)
  are arguments of the kernel, not constants in it, so a schedule changing them never
  recompiles it; compiling takes seconds, once per process and switch combination, and
  is logged (logger ``trainlab.optim.flat``, level INFO);
* eager otherwise, or when compiling is unavailable or fails (a warning, no error): the
  same ``update`` called on the flat tensors, in slices of :data:`EAGER_CHUNK_NUMEL`
  elements so that its temporaries stay in cache.

Every step starts by checking the layout, cheaply, and repairs it when the user changed
something under it:

* a gradient that is not its view (after ``zero_grad(set_to_none=True)`` backward
  allocates new ones) is copied into the flat gradient buffer; when the same tensors come
  back at the next step (the loop keeps its gradients: ``zero_grad(set_to_none=False)``),
  ``p.grad`` is pointed at its view, and backward accumulates into the buffer from then on;
* a parameter whose ``.data`` was replaced, a parameter of the group that gets its first
  gradient, a state key that a switch turned on, or a state dict just loaded: the layout
  is rebuilt from the per-parameter tensors;
* parameters without a gradient at this step are left alone exactly as ``reference``
  leaves them: the pass then runs over the runs of consecutive parameters that have one
  and share a step count (several slices instead of one buffer; same results).
"""

from __future__ import annotations

import linecache
import logging
import operator
import time
import warnings
from typing import Any

import torch

from trainlab.errors import first_line

from ._precision import state_dtype

__all__ = [
    "step_flat",
    "zero_flat_grads",
    "KernelTensor",
    "COMPILE_MIN_NUMEL",
    "EAGER_CHUNK_NUMEL",
]

_log = logging.getLogger(__name__)

#: Buckets of at least this many elements (2 MiB of float32) run the compiled kernel.
#: Measured on a 2-core CPU (docs/performance.md): at 1M elements the compiled Adam
#: pass takes 0.6 ms against 0.9–1.0 ms eager; below that the eager pass stays in cache
#: and the saving would not repay seconds of compiling. Set it to ``math.inf`` to never
#: compile, 0 to always.
COMPILE_MIN_NUMEL: float = 2**19

#: The eager pass works on slices of this many elements (1 MiB of float32), so that the
#: temporaries of the equation (``s.sqrt()``, ``g.add(p)`` …) stay in cache instead of
#: streaming through memory: Adam on 10M elements, one thread, took 28–30 ms in slices of
#: 64K–256K elements against 54 ms in one piece.
EAGER_CHUNK_NUMEL = 2**18


class KernelTensor:
    """Stands for a tensor while ``update`` runs, and records what is done to it.

    Its methods are those of :class:`~trainlab.optim.TensorList` (the tensor methods the
    equations use). Instead of computing, each appends one line of element-wise Python to
    a :class:`_Kernel`; the numbers it is given (``lr``, ``1 − β₁``, the bias corrections
    already computed in Python …) become arguments of that code, not constants, so a
    schedule changing them never recompiles it, and the per-step scalar arithmetic stays
    out of the per-element loop.
    """

    __slots__ = ("kernel", "name")

    def __init__(self, kernel: _Kernel, name: str):
        self.kernel, self.name = kernel, name

    def _set(self, expr: str) -> KernelTensor:
        self.name = self.kernel.let(expr)
        return self

    def _new(self, expr: str) -> KernelTensor:
        return KernelTensor(self.kernel, self.kernel.let(expr))

    def _arg(self, x: Any, factor: Any = None) -> str:
        """``x`` (a KernelTensor or a number), times ``factor`` when given, as an expression."""
        if not isinstance(x, KernelTensor):
            return self.kernel.scalar(x if factor is None else x * factor)
        return x.name if factor is None else f"{x.name} * {self.kernel.scalar(factor)}"

    # in place -------------------------------------------------------------------------
    def mul_(self, other: Any) -> KernelTensor:
        return self._set(f"{self.name} * {self._arg(other)}")

    def div_(self, other: Any) -> KernelTensor:
        return self._set(f"{self.name} / {self._arg(other)}")

    def add_(self, other: Any, alpha: Any = None) -> KernelTensor:
        return self._set(f"{self.name} + {self._arg(other, alpha)}")

    def sub_(self, other: KernelTensor) -> KernelTensor:
        return self._set(f"{self.name} - {other.name}")

    def lerp_(self, end: KernelTensor, weight: Any) -> KernelTensor:
        return self._set(f"{self.name} + ({end.name} - {self.name}) * {self.kernel.scalar(weight)}")

    def addcmul_(self, a: KernelTensor, b: KernelTensor, value: Any = None) -> KernelTensor:
        return self._set(f"{self.name} + {a.name} * {self._arg(b, value)}")

    def addcdiv_(self, a: KernelTensor, b: KernelTensor, value: Any = None) -> KernelTensor:
        return self._set(f"{self.name} + {a.name} / {self._arg(b, value)}")

    def sqrt_(self) -> KernelTensor:
        return self._set(f"torch.sqrt({self.name})")

    def clamp_min_(self, low: float) -> KernelTensor:
        return self._set(f"torch.clamp_min({self.name}, {self.kernel.scalar(low)})")

    def copy_(self, other: KernelTensor) -> KernelTensor:
        return self._set(other.name)

    def maximum_(self, other: KernelTensor) -> KernelTensor:
        return self._set(f"torch.maximum({self.name}, {other.name})")

    # out of place ---------------------------------------------------------------------
    def add(self, other: Any, alpha: Any = None) -> KernelTensor:
        return self._new(f"{self.name} + {self._arg(other, alpha)}")

    def div(self, other: Any) -> KernelTensor:
        return self._new(f"{self.name} / {self._arg(other)}")

    def neg(self) -> KernelTensor:
        return self._new(f"-{self.name}")

    def sqrt(self) -> KernelTensor:
        return self._new(f"torch.sqrt({self.name})")

    def addcmul(self, a: KernelTensor, b: KernelTensor, value: Any = None) -> KernelTensor:
        return self._new(f"{self.name} + {a.name} * {self._arg(b, value)}")


class _Kernel:
    """One call of ``update``, recorded by its :class:`KernelTensor` objects as straight-line code.

    ``source()`` is a Python function of the buffers ``t0, t1, …`` and the numbers
    ``s0, s1, …`` that computes every new value out of place and ends by copying the new
    values into the buffers the equation changed in place. Its text depends only on which
    branches of the equation ran (the switches, ``step == 1`` …), never on the numbers:
    one compiled kernel serves every step.
    """

    def __init__(self, buffers: list[torch.Tensor]):
        self.buffers = buffers
        self.lines: list[str] = []
        self.scalars: list[float] = []

    def tensor(self, i: int) -> KernelTensor:
        return KernelTensor(self, f"t{i}")

    def let(self, expr: str) -> str:
        name = f"v{len(self.lines)}"
        self.lines.append(f"{name} = {expr}")
        return name

    def scalar(self, x: Any) -> str:
        self.scalars.append(float(x))
        return f"s{len(self.scalars) - 1}"

    def source(self, results: list[KernelTensor]) -> str:
        args = [f"t{i}" for i in range(len(self.buffers))] + ["scalars"]
        body = [f"s{j} = scalars[{j}]" for j in range(len(self.scalars))]
        body += self.lines
        body += [f"t{i}.copy_({r.name})" for i, r in enumerate(results) if r.name != f"t{i}"]
        return "\n    ".join([f"def kernel({', '.join(args)}):", *body, "return None\n"])


#: Kernel source → its compiled function.
_COMPILED: dict[str, Any] = {}
_compile_failed = False  # once the compiler failed, every flat pass runs eagerly


def _compiled(source: str):
    """The compiled kernel for ``source`` (built on first use)."""
    if source not in _COMPILED:
        namespace: dict[str, Any] = {"torch": torch}
        filename = f"<trainlab.optim flat kernel {len(_COMPILED)}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own code
        # A fresh function per source gives each kernel its own compile cache. dynamic=True:
        # one kernel for every buffer length. The numbers come in one float64 tensor: as
        # Python floats, dynamo turns some into constants (and recompiles when they change).
        _COMPILED[source] = torch.compile(namespace["kernel"], dynamic=True, fullgraph=True)
        _log.info("impl='flat': compiling a kernel (first call) for\n%s", source)
    return _COMPILED[source]


def _scalar_dtype(dtype: torch.dtype) -> torch.dtype:
    # The numbers in the precision eager arithmetic uses for a Python float with a tensor
    # of this dtype (float32 for float32 and half precision), so the compiled loop stays
    # in that precision: float64 numbers would make it compute, at half the vector width,
    # in float64.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _run_compiled(opt, group, p, g, state, step) -> bool:
    """One compiled pass of ``opt.update``; False when the compiler is not available."""
    global _compile_failed
    if _compile_failed:
        return False
    buffers = [p, g, *state.values()]
    kernel = _Kernel(buffers)
    tensors = [kernel.tensor(i) for i in range(len(buffers))]
    state_in = dict(zip(state, tensors[2:]))
    opt.update(tensors[0], tensors[1], dict(state_in), group, step)
    # The names the recorded values ended under (g keeps its own: no equation changes it).
    results = [tensors[0], tensors[1], *state_in.values()]
    source = kernel.source(results)
    new = source not in _COMPILED
    start = time.perf_counter()
    try:
        scalars = torch.tensor(kernel.scalars, dtype=_scalar_dtype(p.dtype), device=p.device)
        _compiled(source)(*buffers, scalars)
    except Exception as err:  # noqa: BLE001 - a compiler failure must never stop training
        _compile_failed = True
        warnings.warn(
            f"trainlab.optim: torch.compile failed ({type(err).__name__}: {first_line(err)}); "
            "impl='flat' runs eagerly from now on",
            RuntimeWarning,
            stacklevel=5,
        )
        return False
    if new:
        _log.info("impl='flat': kernel compiled in %.1f s", time.perf_counter() - start)
    return True


def _run_eager(opt, group, p, g, state, step) -> None:
    """The same ``update`` on the flat tensors, slice by slice."""
    n = p.numel()
    if n <= EAGER_CHUNK_NUMEL:
        opt.update(p, g, state, group, step)
        return
    for lo in range(0, n, EAGER_CHUNK_NUMEL):
        hi = min(lo + EAGER_CHUNK_NUMEL, n)
        opt.update(p[lo:hi], g[lo:hi], {k: v[lo:hi] for k, v in state.items()}, group, step)


# --- the layout ---------------------------------------------------------------------------


class _Bucket:
    """The parameters of one group on one device with one dtype, and their flat buffers."""

    __slots__ = (
        *("params", "states", "grads", "ptrs", "bounds"),
        *("param", "grad", "state", "step", "fresh_ids"),
    )

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.bounds: list[tuple[int, int]] = []  # [offset, offset + numel) of each parameter
        self.grads: list[torch.Tensor] = []  # the gradient views
        self.ptrs: list[int] = []  # data_ptr of each parameter's view, to notice a swap
        self.states: list[dict] = []  # each parameter's state dict
        self.param = self.grad = torch.empty(0)
        self.state: dict[str, torch.Tensor] = {}  # key → flat state buffer
        self.step: int | None = None  # the common step count, when the fast path applies
        self.fresh_ids: list[int] = []  # id() of the gradients last copied in


class _Layout:
    """One param group's buckets, and the group's parameters that are in none."""

    __slots__ = ("group", "params", "keys", "buckets", "others")

    def __init__(self, group: dict, keys: tuple[str, ...]):
        self.group = group
        self.params = list(group["params"])  # to notice a parameter added or replaced
        self.keys = keys
        self.buckets: list[_Bucket] = []
        self.others: list[torch.Tensor] = []


def _dense_stride(p: torch.Tensor) -> tuple[int, ...]:
    """Strides for ``p`` laid out densely (its own when it is dense: channels_last stays)."""
    return torch.empty_like(p, device="meta").stride()


def _build(opt, group: dict, keys: tuple[str, ...]) -> _Layout:
    """Move the group's parameters, gradients and state into flat buffers."""
    layout = _Layout(group, keys)
    by_kind: dict[tuple, list[torch.Tensor]] = {}
    for p in group["params"]:
        if p.grad is None and not opt.state.get(p):
            layout.others.append(p)  # no gradient yet, no state: nothing to move
            continue
        if p.grad is not None:
            opt._check_grad(p, p.grad)
        by_kind.setdefault((p.device, p.dtype), []).append(p)
    for (device, dtype), params in by_kind.items():
        b = _Bucket(params)
        total = 0
        for p in params:
            b.bounds.append((total, total + p.numel()))
            total += p.numel()
        b.param = torch.empty(total, dtype=dtype, device=device)
        b.grad = torch.zeros(total, dtype=dtype, device=device)
        sdtype = state_dtype(dtype)  # float32 for float16/bfloat16 (_precision.py)
        b.state = {k: torch.zeros(total, dtype=sdtype, device=device) for k in keys}
        for p, (lo, _) in zip(params, b.bounds):
            shape, stride = p.shape, _dense_stride(p)
            view = b.param.as_strided(shape, stride, lo)
            view.copy_(p.detach())
            p.data = view
            b.ptrs.append(p.data_ptr())
            gview = b.grad.as_strided(shape, stride, lo)
            if p.grad is not None:
                gview.copy_(p.grad)
                p.grad = gview
            b.grads.append(gview)
            state = opt.state[p]
            for k, buf in b.state.items():
                if k in state:  # missing keys get their (zero) view when the parameter steps
                    buf.as_strided(shape, stride, lo).copy_(state[k])
                    state[k] = buf.as_strided(shape, stride, lo)
            b.states.append(state)
        b.step = _common_step(b, keys)
        layout.buckets.append(b)
    return layout


def _common_step(b: _Bucket, keys: tuple[str, ...]) -> int | None:
    """The step count all of ``b``'s parameters share, if they also hold every state key."""
    steps = {s.get("step") for s in b.states}
    if len(steps) != 1 or None in steps or any(k not in s for s in b.states for k in keys):
        return None
    return steps.pop()


def _stale(opt, layout: _Layout | None, group: dict, keys: tuple[str, ...]) -> bool:
    """Whether the layout no longer matches the group (and must be rebuilt)."""
    if layout is None or layout.group is not group:
        return True
    params = group["params"]
    if len(params) != len(layout.params) or not all(map(operator.is_, params, layout.params)):
        return True
    if not set(keys) <= set(layout.keys):
        return True
    if any(p.grad is not None for p in layout.others):
        return True
    # a parameter whose .data was replaced (model.to(), p.data = …) no longer is its view
    return any([p.data_ptr() for p in b.params] != b.ptrs for b in layout.buckets)


# --- the step -----------------------------------------------------------------------------


def step_flat(opt, group: dict) -> None:
    """Apply ``opt.update`` to ``group`` with flat buffers (the ``"flat"`` implementation)."""
    keys = tuple(opt.state_keys(group))
    layout = opt._flat.get(id(group))
    if _stale(opt, layout, group, keys):
        layout = opt._flat[id(group)] = _build(opt, group, keys)
    for b in layout.buckets:
        _step_bucket(opt, group, b, keys)


def _step_bucket(opt, group: dict, b: _Bucket, keys: tuple[str, ...]) -> None:
    grads = [p.grad for p in b.params]
    if all(map(operator.is_, grads, b.grads)):  # the usual case: every gradient is its view
        active = None  # all
    else:
        # Gradient tensors of their own (after zero_grad(set_to_none=True) backward makes
        # new ones): check them, copy them into the flat buffer.
        fresh = [i for i, (g, v) in enumerate(zip(grads, b.grads)) if g is not None and g is not v]
        if any(grads[i].layout is not torch.strided or grads[i].dtype.is_complex for i in fresh):
            for i in fresh:
                opt._check_grad(b.params[i], grads[i])  # raises, naming the culprit
        if fresh:
            torch._foreach_copy_([b.grads[i] for i in fresh], [grads[i] for i in fresh])
        # The same tensors as at the last step: the loop keeps its gradients and backward
        # accumulates into them (zero_grad(set_to_none=False)): make them views, so that
        # nothing is copied from now on. New ones at every step are not worth pointing
        # back (zero_grad(set_to_none=True) drops them again).
        ids = [id(grads[i]) for i in fresh]
        if ids == b.fresh_ids:
            for i in fresh:
                b.params[i].grad = b.grads[i]
            ids = []
        b.fresh_ids = ids
        active = [g is not None for g in grads]
    state = {k: b.state[k] for k in keys}
    if b.step is not None and (active is None or all(active)):  # one pass over the buffers
        b.step += 1
        for s in b.states:
            s["step"] += 1
        if b.param.numel() < COMPILE_MIN_NUMEL or not _run_compiled(
            opt, group, b.param, b.grad, state, b.step
        ):
            _run_eager(opt, group, b.param, b.grad, state, b.step)
        return
    # Some parameters have no gradient, or step counts differ: step the runs of
    # consecutive active parameters that share a step count, each as one slice.
    runs: list[list[int]] = []  # [first offset, end offset, step]
    for i, on in enumerate(active or [True] * len(b.params)):
        if not on:
            continue
        s = b.states[i]
        if "step" not in s:  # new; or loaded from torch.optim.SGD, which keeps no step count
            s["step"] = 1 if s else 0
        lo, hi = b.bounds[i]
        for k in keys:
            if k not in s:
                s[k] = b.state[k].as_strided(b.grads[i].shape, b.grads[i].stride(), lo)
        s["step"] += 1
        if runs and runs[-1][1] == lo and runs[-1][2] == s["step"]:  # extends the run
            runs[-1][1] = hi
        else:
            runs.append([lo, hi, s["step"]])
    for lo, hi, step in runs:
        _run_eager(
            opt, group, b.param[lo:hi], b.grad[lo:hi], {k: v[lo:hi] for k, v in state.items()}, step
        )
    b.step = _common_step(b, keys)


def zero_flat_grads(opt) -> set[int]:
    """Zero the flat gradient buffers whose parameters' grads are all views (or None).

    Returns the ids of the parameters done, for ``zero_grad(set_to_none=False)`` to skip.
    """
    done: set[int] = set()
    for layout in opt._flat.values():
        for b in layout.buckets:
            if all(p.grad is None or p.grad is v for p, v in zip(b.params, b.grads)):
                b.grad.zero_()
                done.update(map(id, b.params))
    return done
