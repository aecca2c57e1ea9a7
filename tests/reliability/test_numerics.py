"""Numerical trouble: float16 and bfloat16 parameters with every optimizer, and gradients
or losses that are not finite.

An optimizer keeps the state of a float16/bfloat16 parameter in float32 and computes its
update in float32 (ε = 1e-8 underflows to 0 in float16, and so does g² for |g| < 2⁻¹²):
a half-precision step must be the float32 step, rounded — never a NaN.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from trainlab import optim
from trainlab.data import TensorLoader
from trainlab.train import NonFiniteLossError, Trainer
from trainlab.train.trainer import MAX_SKIPPED_IN_A_ROW

HALF = [torch.float16, torch.bfloat16]
#: each optimizer of the lecture at a learning rate that trains the toy problem below
OPTIMIZERS = {"sgd": 0.05, "momentum": 0.05, "rmsprop": 0.01, "adam": 0.01, "adamw": 0.01}
IMPLS = ["reference", "foreach", "flat"]


def _ulp(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_half_precision_step_is_the_float32_step_rounded(name, dtype, impl):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(64, generator=gen).to(dtype)
    # zeros (0/0 without care), tiny values (g² underflows in float16) and ordinary ones
    grads = [
        torch.cat(
            [
                torch.zeros(16),
                1e-5 * torch.randn(16, generator=gen),
                torch.randn(32, generator=gen),
            ]
        ).to(dtype)
        for _ in range(3)
    ]
    half = torch.nn.Parameter(start.clone())
    full = torch.nn.Parameter(start.float())
    opt_half = optim.create(name, [half], lr=OPTIMIZERS[name], impl=impl)
    opt_full = optim.create(name, [full], lr=OPTIMIZERS[name], impl="reference")
    for t, g in enumerate(grads, start=1):
        half.grad, full.grad = g.clone(), g.float()
        opt_half.step()
        opt_full.step()
        assert half.dtype == dtype and torch.isfinite(half).all()
        if t == 1:  # from the same start: exactly the float32 result, rounded
            assert torch.equal(half, full.detach().to(dtype))
        else:  # each step rounds once more, by at most half a unit in the last place
            bound = t * _ulp(dtype) * full.detach().abs().max().item()
            torch.testing.assert_close(half.float(), full.detach(), rtol=0, atol=bound)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_half_precision_parameters_train_without_nan(name, dtype):
    """With the default implementation (the step test above covers each of them)."""
    torch.manual_seed(0)
    X = torch.randn(256, 8)
    y = X @ torch.randn(8)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    model = model.to(dtype)
    unused = torch.nn.Parameter(torch.zeros(4, dtype=dtype))  # its gradient is always 0
    opt = optim.create(name, [*model.parameters(), unused], lr=OPTIMIZERS[name])
    losses = []
    for _ in range(40):
        i = torch.randint(0, 256, (32,))
        loss = ((model(X[i].to(dtype)).squeeze(1).float() - y[i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        unused.grad = torch.zeros_like(unused)
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.equal(unused, torch.zeros_like(unused))
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    for state in opt.state.values():
        assert all(v.dtype == torch.float32 for k, v in state.items() if k != "step")


@pytest.mark.parametrize("impl", IMPLS)
def test_the_float32_state_of_half_parameters_survives_a_state_dict_round_trip(impl):
    gen = torch.Generator().manual_seed(1)
    grads = [(1e-4 * torch.randn(32, generator=gen)).half() for _ in range(6)]

    def run(resume_at: int | None) -> torch.Tensor:
        p = torch.nn.Parameter(torch.ones(32, dtype=torch.float16))
        opt = optim.Adam([p], lr=1e-3, impl=impl)
        for t, g in enumerate(grads):
            if t == resume_at:
                saved = opt.state_dict()
                opt = optim.Adam([p], lr=1e-3, impl=impl)
                opt.load_state_dict(saved)
                assert opt.state[p]["exp_avg_sq"].dtype == torch.float32
            p.grad = g.clone()
            opt.step()
        return p.detach().clone()

    assert torch.equal(run(None), run(3))


def _trainer(callbacks=(), lr=0.05):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = optim.Adam(model.parameters(), lr=lr)
    sched = optim.schedule.scheduler(opt, optim.schedule.cosine(100))
    return Trainer(model, opt, "classification", scheduler=sched, callbacks=callbacks, device="cpu")


def _blobs(n=64):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    return torch.randn(n, 4, generator=gen) + 2.0 * y[:, None].float(), y


class _Spoil:
    """Makes the gradient of the first layer's weight ``value`` at the given steps, and
    records the weights, the learning rate and the optimizer's step after every step."""

    def __init__(self, value: float, steps: set[int]):
        self.value, self.steps = value, steps
        self.weights, self.lrs, self.opt_steps = [], [], []

    def on_fit_start(self, trainer) -> None:
        weight = trainer.model[0].weight

        def hook(g: torch.Tensor) -> torch.Tensor:
            return torch.full_like(g, self.value) if trainer.step + 1 in self.steps else g

        weight.register_hook(hook)

    def on_batch_end(self, trainer, loss: float) -> None:
        self.weights.append([p.detach().clone() for p in trainer.model.parameters()])
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])
        state = trainer.optimizer.state[trainer.model[0].weight]
        self.opt_steps.append(state.get("step"))


@pytest.mark.parametrize("value", [math.inf, math.nan], ids=["inf", "nan"])
def test_a_step_with_a_non_finite_gradient_is_skipped_counted_and_warned(value):
    spoil = _Spoil(value, {3})
    trainer = _trainer([spoil])
    X, y = _blobs()
    with pytest.warns(RuntimeWarning) as caught:
        trainer.fit(TensorLoader(X, y, batch_size=16, seed=0), epochs=2)
    messages = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert messages == [
        "step 3 (epoch 1) skipped: the gradient of 0.weight is not finite; 1 step(s) skipped so far"
    ]
    assert trainer.skipped_steps == 1 and trainer.step == 8
    for before, after in zip(spoil.weights[1], spoil.weights[2]):  # step 3 changed nothing
        assert torch.equal(before, after)
    assert spoil.opt_steps[:4] == [1, 2, 2, 3]  # not even the optimizer's step count
    assert spoil.lrs[2] < spoil.lrs[1]  # the schedule went on
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert trainer.state_dict()["skipped_steps"] == 1


def test_non_finite_gradients_step_after_step_stop_the_run_with_advice():
    trainer = _trainer([_Spoil(math.inf, set(range(2, 100)))])
    X, y = _blobs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(NonFiniteLossError) as err:
            trainer.fit(TensorLoader(X, y, batch_size=16, seed=0), epochs=5)
    assert str(err.value).startswith(
        f"the gradient was not finite for {MAX_SKIPPED_IN_A_ROW} steps in a row (0.weight) "
        f"at epoch 3, step {1 + MAX_SKIPPED_IN_A_ROW} (lr "
    )
    assert "lower it 3–10× (e.g. --set optimizer.lr=0.0167)" in str(err.value)
    assert len([w for w in caught if "skipped" in str(w.message)]) == MAX_SKIPPED_IN_A_ROW - 1
    assert trainer.skipped_steps == MAX_SKIPPED_IN_A_ROW
