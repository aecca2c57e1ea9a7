"""impl="flat": one buffer per (group, device, dtype), same results as reference.

Most tests run the eager pass (small buckets never compile); one test compiles a kernel,
once, to show that it agrees with reference and that changing hyperparameters between
steps does not recompile it.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch

from trainlab import optim
from trainlab.optim import flat as flat_impl

# Every family, convention and switch that changes the equation's branches.
CASES = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.8, dampening=0.2)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, convention="keras")),
    (optim.RMSProp, dict(lr=0.01)),
    (optim.RMSProp, dict(convention="torch", weight_decay=0.1)),
    (optim.RMSProp, dict(lr=0.01, centered=True, momentum=0.9, eps_in_sqrt=True)),
    (optim.RMSProp, dict(lr=0.01, momentum=0.9, weight_decay=0.1, convention="keras")),
    (optim.RMSProp, dict(lr=0.01, momentum=0.5, centered=True, convention="optax")),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1, convention="keras")),
    (optim.Adam, dict(lr=0.01, amsgrad=True, eps_in_sqrt=True, convention="optax")),
    (optim.Adam, dict(lr=0.01, convention="lecture")),
    (optim.AdamW, dict(lr=0.01)),
    (optim.AdamW, dict(lr=0.01, amsgrad=True, convention="keras")),
]
IDS = [f"{c.__name__}-{i}" for i, (c, _) in enumerate(CASES)]


def _same(a, b):
    """``a`` equals ``b`` to 1e-6 relative: element by element, or within 1e-6 of the
    tensor's largest magnitude (for entries near zero, where float32 rounding in another
    order makes an element's relative difference meaningless)."""
    if not isinstance(b, torch.Tensor):
        assert a == b
        return
    scale = b.detach().abs().max().item() if b.numel() else 0.0
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * scale)


def _params(seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3,), (4, 5), (2, 3, 4), (), (17,), (6, 6)]
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]


def _clone(params):
    return [p.detach().clone().requires_grad_() for p in params]


def _train(opt, params, steps, seed=1, skip_every=0, fresh=True, sched=None):
    """``steps`` steps on a fixed gradient stream. ``fresh``: each step's gradient is a new
    tensor (as after ``zero_grad(set_to_none=True)``); otherwise it is written into the
    existing one (as backward does after ``zero_grad(set_to_none=False)``)."""
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        for i, p in enumerate(params):
            g = torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.1 * p.detach()
            if skip_every and (t + i) % skip_every == 0:
                p.grad = None
            elif fresh or p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)
        opt.step()
        if sched is not None:
            sched.step()
    return opt


def _pair(cls, kw, dtype=torch.float32, **train):
    """Train the same parameters with reference and with flat; return both (params, opt)."""
    out = []
    for impl in ("reference", "flat"):
        params = _params(dtype=dtype)
        opt = cls(params, impl=impl, **kw)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)  # lr changes every step
        out.append((params, _train(opt, params, 12, sched=sched, **train)))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_flat_equals_reference(cls, kw, dtype):
    (ref, ref_opt), (flat, flat_opt) = _pair(cls, kw, dtype)
    for a, b in zip(flat, ref):
        _same(a, b)
    for a, b in zip(flat, ref):
        for key, value in ref_opt.state[b].items():
            _same(flat_opt.state[a][key], value)


@pytest.mark.parametrize(("cls", "kw"), [CASES[2], CASES[7], CASES[12]], ids=["sgd", "rms", "adam"])
def test_parameters_without_gradient_at_some_steps_are_left_alone_as_in_reference(cls, kw):
    # each parameter misses every 5th step, at different steps: their step counts differ
    (ref, ref_opt), (flat, flat_opt) = _pair(cls, kw, skip_every=5)
    for a, b in zip(flat, ref):
        _same(a, b)
        assert flat_opt.state[a]["step"] == ref_opt.state[b]["step"]
    assert len({ref_opt.state[p]["step"] for p in ref}) > 1  # the case this test is about


def test_gradients_written_in_place_equal_fresh_gradients():
    (ref, _), (flat, _) = _pair(optim.Adam, dict(lr=0.01), fresh=False)
    for a, b in zip(flat, ref):
        _same(a, b)


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_parameters_gradients_and_state_are_views_of_one_buffer_each():
    params = _params()
    opt = _train(optim.Adam(params, impl="flat"), params, 2, fresh=False)  # kept gradients
    for get in (lambda p: p, lambda p: p.grad, lambda p: opt.state[p]["exp_avg"]):
        assert len({_storage(get(p)) for p in params}) == 1
    total = sum(p.numel() for p in params)
    assert params[0].untyped_storage().nbytes() == 4 * total
    # state_dict keeps the per-parameter format of the other implementations
    ref = _params()
    ref_opt = _train(optim.Adam(ref, impl="reference"), ref, 2)
    ours, theirs = opt.state_dict(), ref_opt.state_dict()
    assert ours["param_groups"] == [dict(g, impl="flat") for g in theirs["param_groups"]]
    for i, st in theirs["state"].items():
        assert ours["state"][i].keys() == st.keys()
        assert ours["state"][i]["step"] == st["step"]
        assert ours["state"][i]["exp_avg"].shape == st["exp_avg"].shape


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_backward_loop_with_zero_grad_equals_reference(set_to_none):
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(0)), torch.randn(16, 2)
    models = {}
    for impl in ("reference", "flat"):
        model = _model()
        opt = optim.Adam(model.parameters(), lr=0.01, impl=impl)
        for _ in range(6):
            opt.zero_grad(set_to_none=set_to_none)
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        models[impl] = (model, opt)
    for a, b in zip(models["flat"][0].parameters(), models["reference"][0].parameters()):
        _same(a, b)
    model, opt = models["flat"]
    buffer = opt._flat[id(opt.param_groups[0])].buckets[0].grad.untyped_storage().data_ptr()
    in_buffer = [_storage(p.grad) == buffer for p in model.parameters()]
    opt.zero_grad(set_to_none=set_to_none)
    grads = [p.grad for p in model.parameters()]
    if set_to_none:
        # backward's new gradients were copied into the buffer, and left as they were
        assert not any(in_buffer) and all(g is None for g in grads)
    else:
        # kept from step to step, the gradients became views: backward accumulates into
        # the flat buffer, and zero_grad zeroes it
        assert all(in_buffer) and all(g is not None and not g.any() for g in grads)
        assert {_storage(g) for g in grads} == {buffer}


def _saved(opt) -> dict:
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize(
    ("first", "second"),
    [("flat", "reference"), ("reference", "flat"), ("flat", "flat"), ("torch", "flat"),
     ("flat", "torch")],
)  # fmt: skip
def test_state_dicts_round_trip_between_flat_reference_and_torch(first, second):
    def make(impl, params):
        if impl == "torch":
            return torch.optim.Adam(params, lr=0.01, weight_decay=0.1)
        return optim.Adam(params, lr=0.01, weight_decay=0.1, impl=impl)

    straight = _params()
    _train(make("reference", straight), straight, 10)
    params = _params()
    opt = _train(make(first, params), params, 5)
    resumed = _clone(params)
    opt2 = make(second, resumed)
    opt2.load_state_dict(_saved(opt))
    gen = torch.Generator().manual_seed(1)
    for t in range(10):  # the same gradient stream, steps 6–10 on the resumed optimizer
        grads = [torch.randn(p.shape, generator=gen) for p in resumed]
        if t >= 5:
            for p, g in zip(resumed, grads):
                p.grad = g + 0.1 * p.detach()
            opt2.step()
    for a, b in zip(resumed, straight):
        _same(a, b)


def test_a_param_group_added_later_is_flattened_and_stepped():
    ref, flat = _params(), _params()
    opts = [optim.SGD(ref[:3], lr=0.1, momentum=0.9, impl="reference")]
    opts.append(optim.SGD(flat[:3], lr=0.1, momentum=0.9, impl="flat"))
    for params, opt in zip((ref, flat), opts):
        _train(opt, params[:3], 3)
        opt.add_param_group({"params": params[3:], "lr": 0.05})
        _train(opt, params, 4, seed=2)
    for a, b in zip(flat, ref):
        _same(a, b)
    assert len({_storage(p) for p in flat[3:]}) == 1 and _storage(flat[3]) != _storage(flat[0])


def test_frozen_and_gradientless_parameters_are_not_moved_updated_or_given_state():
    model = _model()
    model[0].weight.requires_grad_(False)
    unused = torch.nn.Parameter(torch.ones(4))
    params = [*model.parameters(), unused]
    opt = optim.AdamW(params, lr=0.1, weight_decay=0.5, impl="flat")
    frozen_before, storage = model[0].weight.detach().clone(), _storage(model[0].weight)
    model(torch.randn(3, 6)).sum().backward()
    opt.step()
    opt.step()
    assert torch.equal(model[0].weight, frozen_before) and torch.equal(unused, torch.ones(4))
    assert _storage(model[0].weight) == storage  # not moved into the buffer either
    assert model[0].weight not in opt.state and unused not in opt.state
    assert opt.state[model[2].weight]["step"] == 2
    # a parameter that gets its first gradient later joins the buffer, then steps as reference
    unused.grad = torch.ones(4)
    opt.step()
    expected = torch.ones(4) * (1 - 0.1 * 0.5) - 0.1 * 1 / (1 + 1e-8)  # AdamW's first step
    torch.testing.assert_close(unused.detach(), expected)
    assert opt.state[unused]["step"] == 1 and _storage(unused) == _storage(model[2].weight)


def test_replacing_parameter_data_is_noticed_and_the_buffer_rebuilt():
    ref, flat = _params(), _params()
    opts = [optim.Adam(ref, lr=0.01, impl="reference"), optim.Adam(flat, lr=0.01, impl="flat")]
    for params, opt in zip((ref, flat), opts):
        _train(opt, params, 3)
        params[1].data = params[1].data * 2  # e.g. module.to() or a hand-made reset
        _train(opt, params, 3, seed=2)
    for a, b in zip(flat, ref):
        _same(a, b)
    assert len({_storage(p) for p in flat}) == 1


def test_mixed_dtypes_and_channels_last_parameters():
    gen = torch.Generator().manual_seed(0)
    conv = torch.randn(4, 3, 3, 3, generator=gen).to(memory_format=torch.channels_last)
    make = [
        lambda: conv.clone().requires_grad_(),
        lambda: torch.randn(5, generator=gen).double().requires_grad_(),
        lambda: torch.randn(2, 2, generator=gen).requires_grad_(),
    ]
    flat = [m() for m in make]
    ref = _clone(flat)
    _train(optim.RMSProp(ref, lr=0.01, momentum=0.9, impl="reference"), ref, 5)
    _train(optim.RMSProp(flat, lr=0.01, momentum=0.9, impl="flat"), flat, 5)
    for a, b in zip(flat, ref):
        _same(a, b)
    assert flat[0].is_contiguous(memory_format=torch.channels_last)  # its layout is kept
    assert _storage(flat[0]) == _storage(flat[2]) != _storage(flat[1])  # a buffer per dtype


def test_large_buffers_are_stepped_in_chunks_with_the_same_results(monkeypatch):
    monkeypatch.setattr(flat_impl, "EAGER_CHUNK_NUMEL", 7)  # not a divisor of any size here
    (ref, _), (flat, _) = _pair(optim.Adam, dict(lr=0.01, amsgrad=True))
    for a, b in zip(flat, ref):
        _same(a, b)


def test_sparse_gradients_are_refused_before_anything_changes():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    lin = torch.nn.Linear(3, 1)
    opt = optim.Adam([*lin.parameters(), *emb.parameters()], impl="flat")
    lin(emb(torch.tensor([1, 2]))).sum().backward()
    before = [p.detach().clone() for p in lin.parameters()]
    with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(lin.parameters(), before))
    # a sparse gradient arriving after the buffers exist is refused too
    opt2 = optim.Adam(emb.parameters(), impl="flat")
    emb.weight.grad = torch.zeros(10, 3)
    opt2.step()
    emb.weight.grad = torch.eye(10, 3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt2.step()


def test_complex_parameters_are_refused_with_flat_too():
    with pytest.raises(ValueError, match="complex parameters.*view_as_real"):
        optim.Adam([torch.zeros(2, dtype=torch.complex64, requires_grad=True)], impl="flat")


def test_auto_is_flat_and_small_buckets_never_compile(monkeypatch):
    monkeypatch.setattr(flat_impl, "_COMPILED", {})
    params = _params()
    opt = _train(optim.Adam(params), params, 3)
    assert opt.param_groups[0]["impl"] == "auto" and opt._flat
    assert len({_storage(p) for p in params}) == 1
    assert flat_impl._COMPILED == {}


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(flat_impl, "_COMPILED", {})
    monkeypatch.setattr(flat_impl, "_compile_failed", False)
    monkeypatch.setattr(flat_impl, "COMPILE_MIN_NUMEL", 0)
    ref, flat = _params(), _params()
    _train(optim.Adam(ref, lr=0.01, impl="reference"), ref, 3)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*runs eagerly"):
        _train(optim.Adam(flat, lr=0.01, impl="flat"), flat, 3)
    for a, b in zip(flat, ref):
        _same(a, b)
    assert flat_impl._compile_failed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("cls", "kw"), CASES, ids=IDS)
def test_the_recorded_kernel_of_every_case_equals_reference(cls, kw, dtype, monkeypatch):
    """The code KernelTensor records, run as plain Python (torch.compile stubbed out):
    every branch of every equation is transcribed right. The compiler itself is tested
    once, below."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    monkeypatch.setattr(flat_impl, "_COMPILED", {})
    monkeypatch.setattr(flat_impl, "_compile_failed", False)
    monkeypatch.setattr(flat_impl, "COMPILE_MIN_NUMEL", 0)
    (ref, ref_opt), (flat, flat_opt) = _pair(cls, kw, dtype)
    for a, b in zip(flat, ref):
        _same(a, b)
        for key, value in ref_opt.state[b].items():
            _same(flat_opt.state[a][key], value)
    assert len(flat_impl._COMPILED) == 1  # steps 2–12 ran the kernel (step 1 is eager)


def test_the_compiled_kernel_equals_reference_and_is_not_recompiled_by_a_schedule(monkeypatch):
    """One compile (a few seconds). OneCycleLR changes lr and β₁ at every step."""
    import torch._dynamo  # imported by the compile itself; here for reset() and counters

    torch._dynamo.reset()
    monkeypatch.setattr(flat_impl, "COMPILE_MIN_NUMEL", 0)
    monkeypatch.setattr(flat_impl, "_COMPILED", {})
    monkeypatch.setattr(flat_impl, "_compile_failed", False)
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    results = {}
    for impl in ("reference", "flat"):
        params = _params()
        opt = optim.Adam(params, lr=0.01, weight_decay=0.1, impl=impl)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=20)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a compile failure fails the test
            _train(opt, params, 8, sched=sched)
        results[impl] = params
    for a, b in zip(results["flat"], results["reference"]):
        _same(a, b)
    assert len(flat_impl._COMPILED) == 1  # one kernel source for all 8 steps
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - frames == 1  # compiled once
    (source,) = flat_impl._COMPILED
    assert "0.9" not in source and "def kernel(" in source  # the numbers are arguments


def test_a_deep_copy_steps_like_the_original_on_buffers_of_its_own():
    params = _params()
    opt = _train(optim.SGD(params, lr=0.1, momentum=0.9, impl="flat"), params, 3)
    clone = copy.deepcopy(opt)
    copies = clone.param_groups[0]["params"]
    _train(opt, params, 2, seed=2)
    _train(clone, copies, 2, seed=2)
    for a, b in zip(copies, params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert _storage(copies[0]) != _storage(params[0]) and clone.convention is None


def test_switching_impl_between_steps_keeps_the_results():
    ref, flat = _params(), _params()
    _train(optim.Adam(ref, lr=0.01, amsgrad=True, impl="reference"), ref, 9)
    opt = optim.Adam(flat, lr=0.01, amsgrad=True, impl="flat")
    gen = torch.Generator().manual_seed(1)
    impls = ["flat"] * 3 + ["reference"] * 2 + ["flat"] * 2 + ["foreach", "flat"]
    for impl in impls:
        opt.param_groups[0]["impl"] = impl
        for p in flat:
            p.grad = torch.randn(p.shape, generator=gen) + 0.1 * p.detach()
        opt.step()
    for a, b in zip(flat, ref):
        _same(a, b)
