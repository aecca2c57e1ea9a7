"""Each optimizer equals its equation, each framework's convention equals that framework."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from trainlab import optim

import transcriptions as T

SHAPES = [(), (7,), (3, 4), (2, 3, 5)]
STEPS = 50
TOL = {torch.float32: dict(rtol=2e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


_run = T.run_torch


def _problem(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    w0 = rng.normal(size=shape).astype(np_dtype)
    grads = [rng.normal(size=shape).astype(np_dtype) for _ in range(STEPS)]
    return w0, grads


SGD_CASES = [
    dict(lr=0.05),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9, lr_in_buffer=True, nesterov=True),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01, decoupled=True),
]
RMSPROP_CASES = [
    dict(lr=0.01, rho=0.9, eps=1e-8),
    dict(lr=0.01, rho=0.99, eps=1e-6, eps_in_sqrt=True),
    dict(lr=0.01, rho=0.9, eps=1e-8, centered=True, momentum=0.9),
    dict(lr=0.01, rho=0.9, eps=1e-7, centered=True, eps_in_sqrt=True, weight_decay=0.1),
    dict(
        lr=0.01,
        rho=0.9,
        eps=1e-7,
        momentum=0.5,
        lr_in_buffer=True,
        decoupled=True,
        weight_decay=0.1,
    ),
]
ADAM_CASES = [
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8),
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, bias_correction=False),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, eps_hat=True),
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, amsgrad=True, weight_decay=0.1),
    dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, amsgrad=True, amsgrad_corrected_max=True),
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-6, eps_in_sqrt=True, weight_decay=0.1, decoupled=True),
]
EQUATIONS = (
    [(optim.SGD, T.sgd, kw) for kw in SGD_CASES]
    + [(optim.RMSProp, T.rmsprop, kw) for kw in RMSPROP_CASES]
    + [(optim.Adam, T.adam, kw) for kw in ADAM_CASES]
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("cls", "equation", "kw"), EQUATIONS)
def test_reference_equals_numpy_transcription_of_its_equation(cls, equation, kw, shape, dtype):
    w0, grads = _problem(shape, dtype)
    got = _run(lambda p: cls(p, impl="reference", **kw), w0, grads, dtype)
    np.testing.assert_allclose(got, equation(w0, grads, **kw), **TOL[dtype])


# --- torch ----------------------------------------------------------------------------------
TORCH_CASES = T.TORCH_CASES


def _losses_and_params(opt_cls, kw, params, steps=STEPS, seed=0):
    """Train a small least-squares problem; gradients depend on the parameters."""
    gen = torch.Generator().manual_seed(seed)
    xs = [
        torch.randn(16, params[0].shape[1], generator=gen, dtype=params[0].dtype)
        for _ in range(steps)
    ]
    opt = opt_cls(params, **kw)
    for x in xs:
        opt.zero_grad()
        loss = sum(((x @ p.T) ** 2).mean() + p.sum() * 0.1 for p in params)
        loss.backward()
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), TORCH_CASES)
def test_torch_convention_equals_torch_optim(ours, kw, theirs, tkw, dtype):
    gen = torch.Generator().manual_seed(1)
    init = [torch.randn(4, 6, generator=gen, dtype=dtype) for _ in range(3)]
    a = _losses_and_params(
        lambda p, **k: ours(p, convention="torch", **k),
        kw,
        [w.clone().requires_grad_() for w in init],
    )
    b = _losses_and_params(theirs, tkw, [w.clone().requires_grad_() for w in init])
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


def test_torch_rmsprop_defaults_are_torchs():
    opt = optim.RMSProp([torch.zeros(1, requires_grad=True)], convention="torch")
    t = torch.optim.RMSprop([torch.zeros(1, requires_grad=True)])
    group, tgroup = opt.param_groups[0], t.param_groups[0]
    assert (group["lr"], group["rho"], group["eps"]) == (
        tgroup["lr"],
        tgroup["alpha"],
        tgroup["eps"],
    )


def test_a_torch_adam_state_dict_loads_and_continues_identically():
    gen = torch.Generator().manual_seed(3)
    init = torch.randn(5, 3, generator=gen)
    a, b = init.clone().requires_grad_(), init.clone().requires_grad_()
    theirs = torch.optim.Adam([a], lr=0.01)
    grads = [torch.randn(5, 3, generator=gen) for _ in range(10)]
    for g in grads[:5]:
        a.grad = g.clone()
        theirs.step()
    b.data.copy_(a.detach())
    ours = optim.Adam([b], lr=0.01, convention="torch")
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))  # as if saved and loaded
    for g in grads[5:]:
        a.grad, b.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)


# --- Keras 3 --------------------------------------------------------------------------------
KERAS_CASES = [
    (
        lambda p: optim.SGD(p, lr=0.01, momentum=0.9, convention="keras"),
        lambda w, g: T.keras_sgd(w, g, momentum=0.9),
    ),
    (
        lambda p: optim.SGD(
            p, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01, convention="keras"
        ),
        lambda w, g: T.keras_sgd(w, g, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    (lambda p: optim.RMSProp(p, convention="keras"), lambda w, g: T.keras_rmsprop(w, g)),
    (
        lambda p: optim.RMSProp(p, centered=True, momentum=0.9, convention="keras"),
        lambda w, g: T.keras_rmsprop(w, g, centered=True, momentum=0.9),
    ),
    (
        lambda p: optim.RMSProp(p, weight_decay=0.1, convention="keras"),
        lambda w, g: T.keras_rmsprop(w, g, weight_decay=0.1),
    ),
    (lambda p: optim.Adam(p, convention="keras"), lambda w, g: T.keras_adam(w, g)),
    (
        lambda p: optim.Adam(p, amsgrad=True, lr=0.01, convention="keras"),
        lambda w, g: T.keras_adam(w, g, learning_rate=0.01, amsgrad=True),
    ),
    (
        lambda p: optim.AdamW(p, convention="keras"),
        lambda w, g: T.keras_adam(w, g, weight_decay=0.004),
    ),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("make", "keras"), KERAS_CASES)
def test_keras_convention_equals_keras_update_formulas(make, keras, dtype):
    w0, grads = _problem((3, 4), dtype, seed=2)
    np.testing.assert_allclose(_run(make, w0, grads, dtype), keras(w0, grads), **TOL[dtype])


def test_keras_lr_in_buffer_differs_from_torch_under_a_schedule():
    """With a changing lr the Keras buffer keeps old learning rates: the two forms differ."""
    w0, grads = _problem((5,), torch.float64, seed=4)
    finals = []
    for lr_in_buffer in (False, True):
        w = torch.tensor(w0, requires_grad=True)
        opt = optim.SGD([w], lr=0.1, momentum=0.9, lr_in_buffer=lr_in_buffer)
        for t, g in enumerate(grads):
            opt.param_groups[0]["lr"] = 0.1 / (1 + t)
            w.grad = torch.tensor(g)
            opt.step()
        finals.append(w.detach().numpy())
    assert np.abs(finals[0] - finals[1]).max() > 1e-3


# --- optax ----------------------------------------------------------------------------------
OPTAX_CASES = [
    (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, convention="optax"),
        lambda w, g: T.optax_sgd(w, g, 0.05, momentum=0.9, nesterov=True),
    ),
    (
        lambda p: optim.RMSProp(p, lr=0.01, convention="optax"),
        lambda w, g: T.optax_rmsprop(w, g, 0.01),
    ),
    (
        lambda p: optim.RMSProp(p, lr=0.01, centered=True, momentum=0.9, convention="optax"),
        lambda w, g: T.optax_rmsprop(w, g, 0.01, centered=True, momentum=0.9),
    ),
    (lambda p: optim.Adam(p, lr=0.01, convention="optax"), lambda w, g: T.optax_adam(w, g, 0.01)),
    (
        lambda p: optim.Adam(p, lr=0.01, amsgrad=True, convention="optax"),
        lambda w, g: T.optax_adam(w, g, 0.01, amsgrad=True),
    ),
    (
        lambda p: optim.AdamW(p, lr=0.01, convention="optax"),
        lambda w, g: T.optax_adam(w, g, 0.01, weight_decay=1e-4),
    ),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("make", "optax"), OPTAX_CASES)
def test_optax_convention_equals_optax_update_rules(make, optax, dtype):
    w0, grads = _problem((3, 4), dtype, seed=5)
    np.testing.assert_allclose(_run(make, w0, grads, dtype), optax(w0, grads), **TOL[dtype])


# --- the lecture ----------------------------------------------------------------------------
def test_lecture_adam_has_no_bias_correction():
    opt = optim.Adam([torch.zeros(1, requires_grad=True)], convention="lecture")
    assert opt.param_groups[0]["bias_correction"] is False


def test_explicit_arguments_win_over_the_convention():
    opt = optim.Adam([torch.zeros(1, requires_grad=True)], convention="keras", eps=1e-8)
    assert opt.param_groups[0]["eps"] == 1e-8 and opt.param_groups[0]["eps_hat"] is True


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_adam_with_beta1_zero_and_no_bias_correction_is_rmsprop(shape):
    """Claim C7, exactly: with β₁ = 0 the moving average of g is g itself."""
    w0, grads = _problem(shape, torch.float32, seed=6)
    adam = _run(
        lambda p: optim.Adam(p, lr=0.01, betas=(0.0, 0.95), eps=1e-6, bias_correction=False),
        w0,
        grads,
        torch.float32,
    )
    rms = _run(lambda p: optim.RMSProp(p, lr=0.01, rho=0.95, eps=1e-6), w0, grads, torch.float32)
    np.testing.assert_array_equal(adam, rms)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.999])
def test_adam_bias_correction_is_the_moving_average_weight_sum(beta):
    """Claim C5: fed g = 1, s_n = Σ_k (1−ρ)ρ^{n−k} = 1 − ρⁿ, the divisor Adam corrects by."""
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = optim.Adam([w], lr=0.0, betas=(beta, beta))
    for n in range(1, 30):
        w.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        state = opt.state[w]
        weight_sum = sum((1 - beta) * beta ** (n - k) for k in range(1, n + 1))
        torch.testing.assert_close(
            state["exp_avg_sq"], torch.full((3,), weight_sum, dtype=torch.float64)
        )
        assert weight_sum == pytest.approx(1 - beta**n, rel=1e-12)
        # corrected, the moving average of a constant is that constant: unbiased
        torch.testing.assert_close(
            state["exp_avg"] / (1 - beta**n), torch.ones(3, dtype=torch.float64)
        )


def test_optax_rmsprop_momentum_keeps_the_learning_rate_inside_the_trace():
    """Under a schedule, optax's chain (scale by lr, then trace) differs from torch's."""
    w0, grads = _problem((4,), torch.float64, seed=8)
    lrs = [0.05 * 0.9**t for t in range(len(grads))]

    def optax_scheduled(w, grads):  # optax.rmsprop(schedule, momentum=0.9), transcribed
        w, nu, trace = w.copy(), np.zeros_like(w), np.zeros_like(w)
        for lr, g in zip(lrs, grads):
            nu = 0.1 * g**2 + 0.9 * nu
            trace = -lr * g / np.sqrt(nu + 1e-8) + 0.9 * trace
            w = w + trace
        return w

    w = torch.tensor(w0, requires_grad=True)
    opt = optim.RMSProp([w], lr=0.05, momentum=0.9, convention="optax")
    for lr, g in zip(lrs, grads):
        opt.param_groups[0]["lr"] = lr
        w.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(w.detach().numpy(), optax_scheduled(w0, grads), rtol=1e-10)
