"""Each of K models trained together equals its own sequential Trainer run.

The claim of trainlab.sweep, checked after 100 steps (10 epochs of 10 batches): same seed,
hyperparameters, schedule and batch order → the same weights, buffers and history, to
1e-5 in float32. One stack holds all four families (SGD, momentum/Nesterov, RMSProp,
Adam/AdamW) with per-model learning rates, momenta, ρ, β's and weight decays, three data
orders, and dropout rates that differ per model (0 included: that model has no Dropout).

Every weight, buffer and metric is compared, batch norm with RMSProp and Adam included:
trainlab's builders give a Linear that a batch norm normalizes no bias (it would cancel, its
gradient 0 in exact arithmetic, and an adaptive optimizer would move it by rounding noise
divided by its own RMS — steps of about lr that no two implementations, or thread counts,
take alike). :func:`test_a_bias_before_a_batch_norm_only_follows_rounding_noise` shows why.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainlab import models, optim
from trainlab.data import TensorLoader
from trainlab.nn import BatchNorm1d
from trainlab.optim import schedule as schedules
from trainlab.sweep import SweepTrainer
from trainlab.train import Trainer

TOL = 1e-5
EPOCHS, BATCH, N = 10, 10, 100  # 100 steps

CASES = [
    ("sgd", {"lr": 0.05}),
    ("sgd", {"lr": 0.02, "weight_decay": 1e-3}),
    ("momentum", {"lr": 0.05, "momentum": 0.9}),
    ("nesterov", {"lr": 0.02, "momentum": 0.8}),
    ("rmsprop", {"lr": 1e-3}),
    ("rmsprop", {"lr": 3e-3, "rho": 0.8, "momentum": 0.5}),
    ("adam", {"lr": 1e-2}),
    ("adam", {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 1e-3}),
    ("adamw", {"lr": 3e-3}),
]
ADAPTIVE = ("rmsprop", "adam", "adamw")

ARCHITECTURES = {
    "dropout": lambda i: {"hidden": [16, 16], "dropout": (0.0, 0.2, 0.4)[i % 3]},
    "dropout_scale_at_test": lambda i: {
        "hidden": [16, 16],
        "dropout": (0.3, 0.0, 0.1)[i % 3],
        "dropout_mode": "scale_at_test",
    },
    "batch_norm": lambda i: {"hidden": [16, 16], "norm": "batch", "dropout": 0.2},
}


def _data():
    g = torch.Generator().manual_seed(123)
    X = torch.randn(N, 12, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long() + (X[:, 2] > 1).long()
    Xv = torch.randn(40, 12, generator=g)
    yv = (Xv[:, 0] + 0.5 * Xv[:, 1] > 0).long() + (Xv[:, 2] > 1).long()
    return X, y, TensorLoader(Xv, yv, batch_size=20, shuffle=False)


def _make(i: int, arch: str):
    """Model i as its run builds it: seeded, then the model, then the optimizer."""
    name, hyper = CASES[i]
    torch.manual_seed(i % 3)
    model = models.create("mlp", (12,), 3, **ARCHITECTURES[arch](i))
    opt = optim.create(name, model.parameters(), **hyper)
    return model, opt, torch.get_rng_state()


def _schedule():
    return schedules.cosine(total_steps=EPOCHS * N // BATCH, final=0.1)


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def trained(request):
    arch = request.param
    X, y, val = _data()
    sequential = []
    for i in range(len(CASES)):
        model, opt, _ = _make(i, arch)
        trainer = Trainer(
            model, opt, scheduler=optim.schedule.scheduler(opt, _schedule()), device="cpu"
        )
        history = trainer.fit(TensorLoader(X, y, BATCH, seed=i % 3), val, epochs=EPOCHS)
        sequential.append((model, history))
    built = [_make(i, arch) for i in range(len(CASES))]
    sweep = SweepTrainer(
        [m for m, _, _ in built],
        [o for _, o, _ in built],
        schedules=[_schedule()] * len(CASES),
        rng_states=[s for _, _, s in built],
        device="cpu",
    )
    loaders = [TensorLoader(X, y, BATCH, seed=s) for s in range(3)]
    sweep.fit([loaders[i % 3] for i in range(len(CASES))], val, epochs=EPOCHS)
    return arch, sequential, [m for m, _, _ in built], sweep


def test_every_model_trained_together_has_the_weights_of_its_sequential_run(trained):
    arch, sequential, batched, _ = trained
    for i, ((seq, _), bat) in enumerate(zip(sequential, batched)):
        name = CASES[i][0]
        seq_state, bat_state = seq.state_dict(), bat.state_dict()
        assert seq_state.keys() == bat_state.keys()
        for key, value in seq_state.items():
            diff = (value.double() - bat_state[key].double()).abs().max().item()
            assert diff <= TOL, f"model {i} ({name}, {arch}): {key} differs by {diff:.2e}"


def test_every_model_trained_together_has_the_history_of_its_sequential_run(trained):
    arch, sequential, _, sweep = trained
    for i, ((_, seq_history), bat_history) in enumerate(zip(sequential, sweep.histories)):
        assert len(seq_history) == len(bat_history) == EPOCHS
        for s, b in zip(seq_history, bat_history):
            assert set(s) == set(b)
            for key in s:
                if key == "seconds":
                    continue
                assert math.isclose(s[key], b[key], rel_tol=TOL, abs_tol=TOL), (i, key)


def test_a_bias_before_a_batch_norm_only_follows_rounding_noise():
    """Why the builders give such a layer no bias: its gradient is 0 up to rounding, yet
    Adam, which divides a gradient by its own RMS, moves it about as far as a real weight."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(12, 16), BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    X, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    opt = optim.Adam(net.parameters(), lr=1e-2)
    start = net[0].bias.detach().clone()
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        assert net[0].bias.grad.abs().max() < 1e-6 * net[0].weight.grad.abs().max()
        opt.step()
    assert (net[0].bias.detach() - start).abs().max() > 5e-3  # ~lr per step, sign by noise
    assert models.mlp(12, 3, hidden=[16], norm="batch").fc1.bias is None
    assert models.mlp(12, 3, hidden=[16], norm="layer").fc1.bias is not None
