"""Drop-in for torch.optim where trainlab replaces it, and for Keras where it claims to.

* ``maximize`` ascends exactly as torch's does (``g ← −g`` first), in every optimizer and
  every ``impl`` (the compiled flat kernel and trainlab.sweep's stacked update included),
  whether it comes from the constructor, a param group or a loaded torch state dict;
* a trainlab state dict loads into its torch.optim counterpart and a torch one into
  trainlab, and either continues with the same steps; a group whose update torch has no
  equation for makes the torch optimizer raise instead of stepping otherwise; state dicts
  written before torch's names were added still load;
* Keras' ``SGD(nesterov=True)`` with momentum 0 builds and matches real Keras 3.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
import torch

from trainlab import optim
from trainlab.errors import HyperparameterError
from trainlab.optim import flat as flat_impl
from trainlab.optim._engine import TORCH_SWITCHES, TRAINLAB_ONLY
from trainlab.sweep.optim import StackedOptimizer

import transcriptions as T

CASES = T.TORCH_CASES
IDS = [f"{case[0].__name__}-{i}" for i, case in enumerate(CASES)]
IMPLS = ("reference", "foreach", "flat")


def _params(dtype=torch.float64) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]


def _grads(params, steps: int, seed: int = 1) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params] for _ in range(steps)
    ]


def _run(opt, params, grads) -> None:
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()


def _groups(params) -> list[dict]:
    """Two param groups (the second with its own lr), to check that each is translated."""
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.003}]


def _saved(opt) -> dict:
    """``opt.state_dict()`` as written to a file and read back by a careful reader."""
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _assert_same(ours, theirs) -> None:
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# --- maximize ------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_maximize_ascends_w_to_1_1_as_torch_does(impl):
    w = torch.tensor([1.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1, maximize=True, impl=impl)
    w.grad = torch.tensor([1.0])
    opt.step()
    assert w.item() == pytest.approx(1.1, abs=1e-6)  # torch.optim.SGD: 1.1; descending: 0.9


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), CASES, ids=IDS)
def test_maximize_equals_torch_step_for_step(ours, kw, theirs, tkw, impl):
    a, b = _params(), _params()
    mine = ours(a, maximize=True, convention="torch", impl=impl, **kw)
    torchs = theirs(b, maximize=True, **tkw)
    for step in _grads(a, 8):
        for p, q, g in zip(a, b, step):
            p.grad, q.grad = g.clone(), g.clone()
        mine.step()
        torchs.step()
        _assert_same(a, b)


@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), CASES, ids=IDS)
def test_maximize_in_the_recorded_flat_kernel_equals_torch(ours, kw, theirs, tkw, monkeypatch):
    """The code the flat kernel records, run as Python (torch.compile stubbed out)."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    monkeypatch.setattr(flat_impl, "_COMPILED", {})
    monkeypatch.setattr(flat_impl, "_compile_failed", False)
    monkeypatch.setattr(flat_impl, "COMPILE_MIN_NUMEL", 0)
    a, b = _params(), _params()
    _run(ours(a, maximize=True, convention="torch", impl="flat", **kw), a, _grads(a, 6))
    _run(theirs(b, maximize=True, **tkw), b, _grads(b, 6))
    _assert_same(a, b)
    assert len(flat_impl._COMPILED) == 1 and "= -t1" in next(iter(flat_impl._COMPILED))


def test_maximize_in_the_compiled_flat_kernel_equals_torch(monkeypatch):
    """One real compile (a few seconds): Adam with L2 decay, ascending."""
    monkeypatch.setattr(flat_impl, "_COMPILED", {})
    monkeypatch.setattr(flat_impl, "_compile_failed", False)
    monkeypatch.setattr(flat_impl, "COMPILE_MIN_NUMEL", 0)
    a, b = _params(), _params()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compile failure fails the test
        _run(optim.Adam(a, lr=0.01, weight_decay=0.1, maximize=True, impl="flat"), a, _grads(a, 5))
    _run(torch.optim.Adam(b, lr=0.01, weight_decay=0.1, maximize=True), b, _grads(b, 5))
    _assert_same(a, b)
    assert len(flat_impl._COMPILED) == 1


@pytest.mark.parametrize("impl", IMPLS)
def test_maximize_set_in_a_param_group_ascends_that_group_only(impl):
    a, b = _params(), _params()
    groups = [{"params": a[:2], "maximize": True}, {"params": a[2:]}]
    torch_groups = [{"params": b[:2], "maximize": True}, {"params": b[2:]}]
    _run(optim.Adam(groups, lr=0.01, impl=impl), a, _grads(a, 5))
    _run(torch.optim.Adam(torch_groups, lr=0.01), b, _grads(b, 5))
    _assert_same(a, b)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), CASES, ids=IDS)
def test_maximize_of_a_loaded_torch_state_dict_is_honoured(ours, kw, theirs, tkw, impl):
    a = _params()
    torchs = theirs(a, maximize=True, **tkw)
    _run(torchs, a, _grads(a, 3))
    b = [p.detach().clone().requires_grad_() for p in a]
    mine = ours(b, impl=impl, **kw)  # built to descend: the state dict says ascend
    mine.load_state_dict(_saved(torchs))
    assert all(group["maximize"] for group in mine.param_groups)
    later = _grads(a, 4, seed=2)
    _run(torchs, a, later)
    _run(mine, b, later)
    _assert_same(b, a)


def test_maximize_must_be_true_or_false():
    with pytest.raises(HyperparameterError, match="Adam: maximize must be true or false"):
        optim.Adam(_params(), maximize="yes")
    opt = optim.SGD(_params()[:1], lr=0.1)
    with pytest.raises(ValueError, match="SGD: maximize must be true or false"):
        opt.add_param_group({"params": _params()[1:], "maximize": 1})


def test_maximize_is_no_hyperparameter_of_a_run_config():
    """A run's loss is minimized: the config does not offer maximize (torch's keyword)."""
    assert all("maximize" not in cls.DEFAULTS for cls in optim.CLASSES.values())
    assert TORCH_SWITCHES == {"maximize": False}


@pytest.mark.parametrize(
    ("cls", "kw"),
    [
        (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
        (optim.RMSProp, dict(lr=0.01, centered=True, momentum=0.9)),
        (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ],
)
def test_the_stacked_sweep_update_ascends_like_each_optimizer(cls, kw):
    """trainlab.sweep runs the same equations on [K, P] rows: model 0 ascends, model 1
    descends with another learning rate, each exactly as its own optimizer."""
    n = 7
    gen = torch.Generator().manual_seed(4)
    init = torch.randn(2, n, generator=gen, dtype=torch.float64)
    grads = [torch.randn(2, n, generator=gen, dtype=torch.float64) for _ in range(6)]
    settings = [dict(kw, maximize=True), dict(kw, lr=kw["lr"] / 2)]
    makers = [cls([torch.zeros(n, dtype=torch.float64, requires_grad=True)], **s) for s in settings]
    stacked = StackedOptimizer(makers, None, n, dtype=torch.float64)
    rows = init.clone()
    for g in grads:
        stacked.step(rows, g)
    for k, s in enumerate(settings):
        w = init[k].clone().requires_grad_()
        _run(cls([w], **s), [w], [[g[k]] for g in grads])
        torch.testing.assert_close(rows[k], w.detach(), rtol=1e-12, atol=1e-14)


# --- state dicts across the libraries ------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), CASES, ids=IDS)
def test_a_trainlab_state_dict_loads_into_torch_and_continues_identically(
    ours, kw, theirs, tkw, impl
):
    a = _params()
    mine = ours(_groups(a), convention="torch", impl=impl, **kw)
    _run(mine, a, _grads(a, 3))
    b = [p.detach().clone().requires_grad_() for p in a]
    torchs = theirs(_groups(b), **tkw)
    torchs.load_state_dict(_saved(mine))
    later = _grads(a, 4, seed=2)
    _run(mine, a, later)
    _run(torchs, b, later)
    _assert_same(b, a)
    assert [g["lr"] for g in torchs.param_groups] == [g["lr"] for g in mine.param_groups]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), CASES, ids=IDS)
def test_a_torch_state_dict_loads_into_trainlab_and_continues_identically(
    ours, kw, theirs, tkw, impl
):
    a = _params()
    torchs = theirs(_groups(a), **tkw)
    _run(torchs, a, _grads(a, 3))
    b = [p.detach().clone().requires_grad_() for p in a]
    mine = ours(_groups(b), lr=1.0, impl=impl)  # the state dict's values win
    mine.load_state_dict(_saved(torchs))
    later = _grads(a, 4, seed=2)
    _run(torchs, a, later)
    _run(mine, b, later)
    _assert_same(b, a)
    group = mine.param_groups[0]
    assert "alpha" not in group and "foreach" not in group and group["impl"] == impl


def test_a_torch_adam_with_l2_decay_continues_as_l2_in_a_trainlab_adamw():
    """torch's decoupled_weight_decay=False is trainlab's decoupled=False, whatever the
    optimizer it is loaded into would default to (AdamW: decoupled)."""
    a = _params()
    torchs = torch.optim.Adam(a, lr=0.01, weight_decay=0.1)
    _run(torchs, a, _grads(a, 3))
    b = [p.detach().clone().requires_grad_() for p in a]
    mine = optim.AdamW(b)
    mine.load_state_dict(_saved(torchs))
    assert mine.param_groups[0]["decoupled"] is False
    later = _grads(a, 3, seed=2)
    _run(torchs, a, later)
    _run(mine, b, later)
    _assert_same(b, a)


def test_a_torch_rmsprop_state_dict_replaces_a_keras_convention_with_torchs():
    """A loaded group is the saved group, as in torch: its equation is torch's even in an
    optimizer built with convention="keras" (eps_in_sqrt, lr_in_buffer, decoupled)."""
    a = _params()
    torchs = torch.optim.RMSprop(a, lr=0.01, momentum=0.9, weight_decay=0.01)
    _run(torchs, a, _grads(a, 3))
    b = [p.detach().clone().requires_grad_() for p in a]
    mine = optim.RMSProp(b, convention="keras")
    mine.load_state_dict(_saved(torchs))
    group = mine.param_groups[0]
    assert (group["rho"], group["eps_in_sqrt"], group["lr_in_buffer"]) == (0.99, False, False)
    later = _grads(a, 3, seed=2)
    _run(torchs, a, later)
    _run(mine, b, later)
    _assert_same(b, a)


NOT_IN_TORCH = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, convention="keras"), torch.optim.SGD, "lr_in_buffer"),
    (optim.SGD, dict(lr=0.1, weight_decay=0.1, decoupled=True), torch.optim.SGD, "decoupled"),
    (optim.RMSProp, dict(convention="keras"), torch.optim.RMSprop, "eps_in_sqrt"),
    (optim.RMSProp, dict(momentum=0.9, convention="optax"), torch.optim.RMSprop, "lr_in_buffer"),
    (optim.Adam, dict(convention="keras"), torch.optim.Adam, "eps_hat"),
    (optim.Adam, dict(convention="lecture"), torch.optim.Adam, "bias_correction=False"),
    (optim.Adam, dict(eps_in_sqrt=True), torch.optim.Adam, "eps_in_sqrt"),
    (optim.AdamW, dict(amsgrad=True, convention="optax"), torch.optim.AdamW, "amsgrad_corrected"),
]


@pytest.mark.parametrize(("ours", "kw", "theirs", "switch"), NOT_IN_TORCH)
def test_torch_refuses_to_step_an_update_it_has_no_equation_for(ours, kw, theirs, switch):
    a = _params()
    mine = ours(a, **kw)
    _run(mine, a, _grads(a, 2))
    torchs = theirs([p.detach().clone().requires_grad_() for p in a], lr=0.01)
    torchs.load_state_dict(_saved(mine))
    before = [p.detach().clone() for p in torchs.param_groups[0]["params"]]
    for p in torchs.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    message = rf"param group 0 was saved by trainlab\.optim\..*{switch}"
    with pytest.raises(ValueError, match=message):
        torchs.step()
    _assert_same(torchs.param_groups[0]["params"], before)  # nothing moved


@pytest.mark.parametrize(("ours", "kw", "theirs", "switch"), NOT_IN_TORCH)
def test_a_trainlab_only_state_dict_resumes_in_trainlab(ours, kw, theirs, switch):
    a = _params()
    mine = ours(a, **kw)
    _run(mine, a, _grads(a, 3))
    b = [p.detach().clone().requires_grad_() for p in a]
    resumed = ours(b, **kw)
    resumed.load_state_dict(_saved(mine))
    assert TRAINLAB_ONLY not in resumed.param_groups[0]
    later = _grads(a, 3, seed=2)
    _run(mine, a, later)
    _run(resumed, b, later)
    _assert_same(b, a)


def test_keras_convention_sgd_without_momentum_or_decay_is_torchs_and_loads():
    """lr_in_buffer and decoupled change nothing without momentum and decay."""
    a = _params()
    mine = optim.SGD(a, lr=0.1, convention="keras")
    _run(mine, a, _grads(a, 2))
    assert TRAINLAB_ONLY not in mine.state_dict()["param_groups"][0]


@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), CASES, ids=IDS)
def test_a_state_dict_written_before_torchs_names_still_loads(ours, kw, theirs, tkw):
    """A checkpoint of an earlier trainlab: no alpha, decoupled_weight_decay, maximize."""
    a = _params()
    mine = ours(_groups(a), convention="torch", **kw)
    _run(mine, a, _grads(a, 3))
    old = _saved(mine)
    for group in old["param_groups"]:
        for key in ("alpha", "decoupled_weight_decay", "maximize", TRAINLAB_ONLY):
            group.pop(key, None)
    b = [p.detach().clone().requires_grad_() for p in a]
    resumed = ours(_groups(b), convention="torch", **kw)
    resumed.load_state_dict(old)
    later = _grads(a, 3, seed=2)
    _run(mine, a, later)
    _run(resumed, b, later)
    _assert_same(b, a)


def test_a_param_group_written_for_torch_takes_torchs_names():
    w, v = _params()[:2]
    opt = optim.RMSProp([{"params": [w], "alpha": 0.5}])
    opt.add_param_group({"params": [v], "alpha": 0.7, "rho": 0.7})
    assert [g["rho"] for g in opt.param_groups] == [0.5, 0.7]
    assert all("alpha" not in g for g in opt.param_groups)
    with pytest.raises(HyperparameterError, match="RMSProp: alpha is torch's name of rho"):
        opt.add_param_group({"params": [torch.zeros(1)], "alpha": 0.5, "rho": 0.9})
    assert not optim.AdamW([{"params": [w], "decoupled_weight_decay": False}]).param_groups[0][
        "decoupled"
    ]


def test_a_trainlab_rmsprop_state_dict_names_rho_alpha_as_torch_does():
    opt = optim.RMSProp(_params(), rho=0.8)
    group = opt.state_dict()["param_groups"][0]
    assert group["alpha"] == group["rho"] == 0.8
    assert "alpha" not in opt.param_groups[0]  # one live value: rho


# --- Keras: SGD(nesterov=True) with momentum 0 ---------------------------------------------
def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras  # the dev extra installs it; ~5 s to import

    assert keras.backend.backend() == "torch"
    return keras


def _keras_sgd(w0: np.ndarray, grads: list[np.ndarray], **kw) -> np.ndarray:
    keras = _keras()
    v = keras.Variable(w0.copy(), dtype="float64")
    opt = keras.optimizers.SGD(**kw)
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g, dtype="float64"), v)])
    return keras.ops.convert_to_numpy(v)


@pytest.mark.parametrize("weight_decay", [None, 0.0625])
def test_keras_nesterov_without_momentum_builds_and_equals_real_keras(weight_decay):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5,))
    grads = [rng.normal(size=(5,)) for _ in range(6)]
    # lr and λ exact in float32: Keras keeps them in float32 variables
    theirs = _keras_sgd(
        w0, grads, learning_rate=0.125, momentum=0.0, nesterov=True, weight_decay=weight_decay
    )
    ours = T.run_torch(
        lambda p: optim.SGD(
            p, lr=0.125, nesterov=True, weight_decay=weight_decay, convention="keras"
        ),
        w0,
        grads,
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    transcribed = T.keras_sgd(w0, grads, 0.125, nesterov=True, weight_decay=weight_decay)
    np.testing.assert_allclose(ours, transcribed, rtol=1e-12, atol=1e-14)


def test_keras_own_golden_values_for_nesterov_without_momentum():
    """keras/src/optimizers/sgd_test.py, test_correctness_with_golden, on trainlab."""
    x = torch.ones(10, requires_grad=True)
    opt = optim.SGD([x], lr=0.01, nesterov=True, convention="keras")
    golden = [1 - 1e-4 - 1e-3 * i * np.arange(1, 11) for i in range(5)]
    x.grad = torch.full((10,), 0.01)
    opt.step()
    for expected in golden:
        np.testing.assert_allclose(x.detach().numpy(), expected, rtol=5e-4, atol=5e-4)
        x.grad = torch.arange(1, 11, dtype=torch.float32) / 10
        opt.step()
    assert x[0].item() == pytest.approx(0.9949, abs=5e-5)  # and the step after the last row


def test_torchs_form_still_refuses_nesterov_without_momentum_as_torch_does():
    with pytest.raises(ValueError, match="nesterov needs momentum > 0"):
        optim.SGD(_params(), lr=0.1, nesterov=True, convention="torch")
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        torch.optim.SGD(_params(), lr=0.1, nesterov=True)
