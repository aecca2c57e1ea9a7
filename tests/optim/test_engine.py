"""The engine: implementations agree, the torch.optim contract holds, bad input is refused."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainlab import optim
from trainlab.errors import HyperparameterError

import transcriptions as T

ALL_SWITCHES = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, lr_in_buffer=True, decoupled=True, weight_decay=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.8, dampening=0.2)),
    (optim.RMSProp, dict(lr=0.01)),
    (optim.RMSProp, dict(lr=0.01, centered=True, momentum=0.9, eps_in_sqrt=True)),
    (optim.RMSProp, dict(lr=0.01, momentum=0.9, lr_in_buffer=True, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, eps_hat=True, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, amsgrad_corrected_max=True, eps_in_sqrt=True)),
    (optim.Adam, dict(lr=0.01, bias_correction=False)),
    (optim.AdamW, dict(lr=0.01)),
]
IDS = [f"{c.__name__}-{i}" for i, (c, _) in enumerate(ALL_SWITCHES)]


def _params(seed=0, dtypes=(torch.float32,)):
    """A mixed bag: many shapes, several dtypes, so foreach has several buckets."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3,), (4, 5), (2, 3, 4), (1,), (17,), (6, 6)]
    return [torch.randn(s, generator=gen).to(dt).requires_grad_() for dt in dtypes for s in shapes]


def _train(cls, kw, params, steps=30, skip_every=0, seed=0):
    gen = torch.Generator().manual_seed(seed + 100)
    opt = cls(params, **kw)
    for t in range(steps):
        for i, p in enumerate(params):
            # some parameters get no gradient on some steps: their step counts drift apart
            if skip_every and (t + i) % skip_every == 0:
                p.grad = None
            else:
                p.grad = (torch.randn(p.shape, generator=gen) + 0.1 * p.detach()).to(p.dtype)
        opt.step()
    return opt


@pytest.mark.parametrize(("cls", "kw"), ALL_SWITCHES, ids=IDS)
def test_foreach_equals_reference(cls, kw):
    ref = _params(dtypes=(torch.float32, torch.float64))
    fe = [p.detach().clone().requires_grad_() for p in ref]
    _train(cls, dict(kw, impl="reference"), ref, skip_every=4)
    _train(cls, dict(kw, impl="foreach"), fe, skip_every=4)
    for a, b in zip(fe, ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("n_tensors", [3, 100])
def test_auto_equals_reference(n_tensors):
    gen = torch.Generator().manual_seed(0)
    ref = [torch.randn(4, generator=gen).requires_grad_() for _ in range(n_tensors)]
    auto = [p.detach().clone().requires_grad_() for p in ref]
    _train(optim.Adam, dict(lr=0.01, impl="reference"), ref)
    _train(optim.Adam, dict(lr=0.01, impl="auto"), auto)
    for a, b in zip(auto, ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)


# --- properties -----------------------------------------------------------------------------
unit = st.floats(0.0, 0.99)
shapes = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=shapes,
    lr=st.floats(1e-4, 0.5),
    b1=unit,
    b2=st.floats(0.5, 0.999),
    eps=st.floats(1e-8, 1e-2),
    wd=st.floats(0.0, 0.1),
    switches=st.fixed_dictionaries(
        {
            k: st.booleans()
            for k in (
                "bias_correction",
                "eps_hat",
                "amsgrad",
                "decoupled",
                "eps_in_sqrt",
                "amsgrad_corrected_max",
            )
        }
    ),
    seed=st.integers(0, 2**16),
)
def test_adam_equals_its_equation_for_any_hyperparameters(
    shape, lr, b1, b2, eps, wd, switches, seed
):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=shape)
    grads = [rng.normal(size=shape) for _ in range(10)]
    kw = dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, **switches)
    for impl in ("reference", "foreach"):
        got = T.run_torch(lambda p, impl=impl: optim.Adam(p, impl=impl, **kw), w0, grads)
        np.testing.assert_allclose(got, T.adam(w0, grads, **kw), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes,
    lr=st.floats(1e-4, 0.5),
    rho=unit,
    eps=st.floats(1e-8, 1e-2),
    momentum=st.one_of(st.just(0.0), unit),
    wd=st.floats(0.0, 0.1),
    switches=st.fixed_dictionaries(
        {k: st.booleans() for k in ("eps_in_sqrt", "centered", "decoupled", "lr_in_buffer")}
    ),
    seed=st.integers(0, 2**16),
)
def test_rmsprop_equals_its_equation_for_any_hyperparameters(
    shape, lr, rho, eps, momentum, wd, switches, seed
):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=shape)
    grads = [rng.normal(size=shape) for _ in range(10)]
    if switches["centered"]:
        # √(s − ḡ²) near 0 turns rounding into large relative differences (ρ = 0 makes
        # the variance 0 ± rounding): keep the comparison well conditioned
        rho, eps = max(rho, 0.1), max(eps, 1e-3)
    kw = dict(lr=lr, rho=rho, eps=eps, momentum=momentum, weight_decay=wd, **switches)
    got = T.run_torch(lambda p: optim.RMSProp(p, **kw), w0, grads)
    np.testing.assert_allclose(got, T.rmsprop(w0, grads, **kw), rtol=1e-8, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes,
    lr=st.floats(1e-4, 0.5),
    momentum=st.one_of(st.just(0.0), unit),
    dampening=st.floats(0.0, 1.0),
    wd=st.floats(0.0, 0.1),
    switches=st.fixed_dictionaries(
        {k: st.booleans() for k in ("nesterov", "decoupled", "lr_in_buffer")}
    ),
    seed=st.integers(0, 2**16),
)
def test_sgd_equals_its_equation_for_any_hyperparameters(
    shape, lr, momentum, dampening, wd, switches, seed
):
    if switches["nesterov"]:
        dampening, momentum = 0.0, max(momentum, 0.1)
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=shape)
    grads = [rng.normal(size=shape) for _ in range(10)]
    kw = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd, **switches)
    got = T.run_torch(lambda p: optim.SGD(p, **kw), w0, grads)
    np.testing.assert_allclose(got, T.sgd(w0, grads, **kw), rtol=1e-9, atol=1e-12)


# --- the torch.optim.Optimizer contract -----------------------------------------------------
@pytest.mark.parametrize(("cls", "kw"), ALL_SWITCHES, ids=IDS)
def test_state_dict_round_trip_resumes_exactly(cls, kw):
    straight = _params(seed=1)
    _train(cls, kw, straight, steps=20, seed=7)

    first = _params(seed=1)
    opt = _train(cls, kw, first, steps=10, seed=7)
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    second = [p.clone().requires_grad_() for p in saved["params"]]
    resumed = cls(second, **kw)
    resumed.load_state_dict(saved["opt"])
    # the remaining 10 steps with the same gradient stream
    gen = torch.Generator().manual_seed(7 + 100)
    for t in range(20):
        for p in second:
            g = torch.randn(p.shape, generator=gen)
            if t >= 10:
                p.grad = (g + 0.1 * p.detach()).to(p.dtype)
        if t >= 10:
            resumed.step()
    for a, b in zip(second, straight):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_param_groups_keep_their_own_hyperparameters():
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((3,), 0.9))
    torch.testing.assert_close(b.detach(), torch.full((3,), 0.5))
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[0]["momentum"] == 0.0


def test_a_bad_param_group_is_refused_and_not_kept():
    opt = optim.Adam([torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="betas\\[1\\]"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "betas": (0.9, 1.0)})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=1.0, momentum=0.9),
        lambda p: optim.Adam(p, lr=1.0),
        lambda p: optim.RMSProp(p, lr=1.0, momentum=0.5),
    ],
)
def test_torch_lr_schedulers_drive_the_learning_rate(make):
    w = torch.zeros(2, requires_grad=True)
    opt = make([w])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(6):
        w.grad = torch.ones(2)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: optim.Adam(p, lr=0.1),
        lambda p: optim.RMSProp(p, lr=0.1, momentum=0.9),
    ],
)
def test_one_cycle_cycles_momentum_or_beta1(make):
    w = torch.zeros(2, requires_grad=True)
    opt = make([w])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    for _ in range(9):
        w.grad = torch.ones(2)
        opt.step()
        sched.step()
    group = opt.param_groups[0]
    momentum = group["betas"][0] if "betas" in group else group["momentum"]
    assert 0.85 <= momentum <= 0.95 and group["lr"] < 0.1


def test_closure_is_called_and_its_loss_returned():
    w = torch.tensor([3.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.25)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        calls.append(loss.item())
        return loss

    loss = opt.step(closure)
    assert calls == [9.0] and loss.item() == 9.0
    assert w.item() == pytest.approx(3.0 - 0.25 * 6.0)


def test_zero_grad_clears_gradients():
    w = torch.ones(2, requires_grad=True)
    opt = optim.Adam([w])
    (w.sum()).backward()
    opt.zero_grad()
    assert w.grad is None


def test_parameters_without_gradient_are_untouched_and_get_no_state():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1, weight_decay=0.1, decoupled=True)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and b not in opt.state
    assert opt.state[a]["step"] == 1


def test_sparse_gradients_get_a_clear_error():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = optim.Adam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


def test_complex_parameters_get_a_clear_error():
    with pytest.raises(ValueError, match="complex parameters.*view_as_real"):
        optim.SGD([torch.zeros(2, dtype=torch.complex64, requires_grad=True)], lr=0.1)


def test_centered_rmsprop_never_takes_the_root_of_a_negative_variance():
    """With ρ = 0, s − ḡ² = g² − g² is 0 exactly but can round below 0: no NaN."""
    w = torch.zeros(1000, dtype=torch.float64, requires_grad=True)
    opt = optim.RMSProp([w], rho=0.0, centered=True)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        w.grad = torch.randn(1000, generator=gen, dtype=torch.float64) * 1e3
        opt.step()
    assert torch.isfinite(w).all()


def test_complex_gradient_gets_a_clear_error():
    w = torch.zeros(2, requires_grad=True)
    opt = optim.RMSProp([w])
    w.grad_dtype = None  # torch refuses a complex gradient on a real tensor unless told
    w.grad = torch.zeros(2, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="complex gradients"):
        opt.step()


# --- bad hyperparameters ----------------------------------------------------------------------
BAD = [
    (optim.SGD, dict(lr=-0.1), r"SGD: lr must be in \[0, ∞\), got -0.1"),
    (optim.SGD, dict(lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    (optim.SGD, dict(lr=0.1, momentum=-0.5), r"momentum must be in \[0, 1\)"),
    (optim.SGD, dict(lr=0.1, nesterov=True), r"SGD: nesterov needs momentum > 0"),
    (optim.SGD, dict(lr=None), r"SGD: lr is required"),
    (optim.SGD, dict(lr="fast"), r"lr must be a number in \[0, ∞\), got 'fast'"),
    (optim.SGD, dict(lr=0.1, weight_decay=-1), r"weight_decay must be in \[0, ∞\)"),
    (optim.RMSProp, dict(rho=1.0), r"RMSProp: rho must be in \[0, 1\), got 1.0"),
    (optim.RMSProp, dict(rho=-0.1), r"rho must be in \[0, 1\)"),
    (optim.RMSProp, dict(eps=0.0), r"eps must be in \(0, ∞\), got 0.0"),
    (optim.RMSProp, dict(momentum=1.5), r"momentum must be in \[0, 1\)"),
    (optim.RMSProp, dict(lr=float("nan")), r"lr must be in \[0, ∞\), got nan"),
    (optim.Adam, dict(betas=(1.0, 0.999)), r"Adam: betas\[0\] must be in \[0, 1\), got 1.0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), r"betas\[1\] must be in \[0, 1\)"),
    (optim.Adam, dict(betas=0.9), r"betas must be a pair"),
    (optim.Adam, dict(eps=-1e-8), r"eps must be in \(0, ∞\)"),
    (optim.AdamW, dict(lr=-1), r"AdamW: lr must be in \[0, ∞\)"),
    (
        optim.Adam,
        dict(convention="tensorflow"),
        r"convention must be one of lecture, torch, keras, optax; got 'tensorflow'",
    ),
    (optim.Adam, dict(impl="cuda"), r"impl must be one of reference, foreach, flat, auto"),
    (optim.Adam, dict(amsgrad=3), r"Adam: amsgrad must be true or false, got 3"),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov="yes"), r"nesterov must be true or false"),
    (optim.RMSProp, dict(centered=1), r"RMSProp: centered must be true or false, got 1"),
]


@pytest.mark.parametrize(("cls", "kw", "message"), BAD)
def test_bad_hyperparameters_raise_value_error_naming_parameter_and_range(cls, kw, message):
    with pytest.raises(ValueError, match=message):
        cls([torch.zeros(2, requires_grad=True)], **kw)


def test_a_refused_hyperparameter_is_a_typed_error_carrying_owner_key_and_problem():
    with pytest.raises(HyperparameterError) as error:
        optim.Adam([torch.zeros(2, requires_grad=True)], betas=(0.9, 1.5))
    assert (error.value.owner, error.value.key) == ("Adam", "betas[1]")
    assert error.value.problem == "must be in [0, 1), got 1.5"
    with pytest.raises(HyperparameterError) as error:
        optim.create("sgd", [torch.zeros(2, requires_grad=True)])
    assert error.value.key == "lr" and "required" in error.value.problem


def test_create_builds_by_config_name():
    w = [torch.zeros(2, requires_grad=True)]
    assert isinstance(optim.create("adamw", w), optim.AdamW)
    nesterov = optim.create("nesterov", w, lr=0.1)
    assert nesterov.param_groups[0]["nesterov"] and nesterov.param_groups[0]["momentum"] == 0.9
    assert optim.create("momentum", w, lr=0.1, momentum=0.5).param_groups[0]["momentum"] == 0.5
    with pytest.raises(ValueError, match="sgd, momentum, nesterov, rmsprop, adam, adamw"):
        optim.create("adagrad", w)


def test_each_optimizer_states_its_equation():
    for cls in (optim.SGD, optim.RMSProp, optim.Adam, optim.AdamW):
        assert "w_{t+1}" in cls.__doc__ or "w ←" in cls.__doc__


def test_training_a_model_reduces_its_loss():
    """An end-to-end sanity check: each optimizer fits a small regression."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=gen)
    y = x @ torch.randn(5, 1, generator=gen) + 0.01 * torch.randn(256, 1, generator=gen)
    for make in (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
        lambda p: optim.RMSProp(p, lr=0.01),
        lambda p: optim.Adam(p, lr=0.05),
    ):
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 1)
        opt = make(model.parameters())
        first = None
        for _ in range(200):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            first = first if first is not None else loss.item()
        assert loss.item() < 0.01 * first and math.isfinite(loss.item())


def test_a_torch_sgd_state_dict_loads_and_continues_identically():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(4, generator=gen).requires_grad_()
    theirs = torch.optim.SGD([a], lr=0.1, momentum=0.9)
    grads = [torch.randn(4, generator=gen) for _ in range(8)]
    for g in grads[:4]:
        a.grad = g.clone()
        theirs.step()
    b = a.detach().clone().requires_grad_()
    ours = optim.SGD([b], lr=0.1, momentum=0.9, convention="torch")
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    for g in grads[4:]:
        a.grad, b.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("cls", "kw", "switch"),
    [
        (optim.SGD, dict(lr=0.1), ("momentum", 0.9)),
        (optim.RMSProp, dict(), ("centered", True)),
        (optim.Adam, dict(), ("amsgrad", True)),
    ],
)
def test_a_switch_turned_on_mid_run_gets_its_state(cls, kw, switch):
    w = torch.ones(3, requires_grad=True)
    opt = cls([w], **kw)
    w.grad = torch.ones(3)
    opt.step()
    opt.param_groups[0][switch[0]] = switch[1]
    w.grad = torch.ones(3)
    opt.step()
    assert torch.isfinite(w).all() and len(opt.state[w]) > 1


def test_create_keeps_an_explicit_nesterov_and_needs_an_sgd_learning_rate():
    w = [torch.zeros(2, requires_grad=True)]
    assert optim.create("momentum", w, lr=0.1, nesterov=True).param_groups[0]["nesterov"]
    with pytest.raises(ValueError, match="lr is required"):
        optim.create("sgd", w)
