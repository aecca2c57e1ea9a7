"""The batched trainer's per-model fates and the model kinds it stacks.

Every claim is checked against the sequential Trainer: early stopping at each model's
own epoch, a diverging model stopped as the Trainer stops it while the others go on
untouched, models leaving the stack once they stop, regression metrics, convolutional
models (the wide path's convolutions, pooling and norms), and any other nn.Module (the
``vmap`` path).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab import models, optim
from trainlab.data import TensorLoader
from trainlab.nn import Dropout
from trainlab.sweep import ArchitectureError, StackedModel, SweepTrainer
from trainlab.train import EarlyStopping, NonFiniteLossError, Trainer

TOL = 1e-5


def _classification(n=60, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    return X, (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()


def _run_both(make, X, y, val, epochs, callbacks=lambda i: [], stops=None, task="classification"):
    """Sequential Trainer runs and one SweepTrainer of the same models; returns
    (sequential models, their histories, errors), (batched models, sweep)."""
    n = len(make)
    seq, hist, errors = [], [], []
    for i in range(n):
        model, opt = make[i]()
        trainer = Trainer(model, opt, task=task, callbacks=callbacks(i), device="cpu")
        try:
            trainer.fit(TensorLoader(X, y, 10, seed=i), val, epochs=epochs)
            errors.append(None)
        except NonFiniteLossError as err:
            errors.append(str(err))
        seq.append(model)
        hist.append(trainer.history)
    built, states = [], []
    for i in range(n):
        built.append(make[i]())
        states.append(torch.get_rng_state())
    sweep = SweepTrainer(
        [m for m, _ in built],
        [o for _, o in built],
        task=task,
        rng_states=states,
        early_stopping=stops,
        device="cpu",
    )
    return (seq, hist, errors), ([m for m, _ in built], sweep)


def _assert_same(a: nn.Module, b: nn.Module, tol=TOL):
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        if x.is_floating_point():
            assert (x - y).abs().max().item() <= tol, key


def _mlp(seed, lr, name="sgd", **kw):
    def make():
        torch.manual_seed(seed)
        model = models.create("mlp", (6,), 3, hidden=[8], **kw)
        return model, optim.create(name, model.parameters(), lr=lr)

    return make


def test_each_model_stops_early_at_its_own_epoch_and_leaves_the_stack():
    X, y = _classification()
    val = TensorLoader(*_classification(30, seed=1), batch_size=30, shuffle=False)
    make = [_mlp(0, 0.5), _mlp(1, 0.05), _mlp(2, 1e-4)]
    patience = [1, 2, 3]
    (seq, hist, _), (bat, sweep) = _run_both(
        make,
        X,
        y,
        val,
        epochs=12,
        callbacks=lambda i: [EarlyStopping("val_loss", patience[i], 0.01)],
        stops=[EarlyStopping("val_loss", p, 0.01) for p in patience],
    )
    sizes = []
    sweep.fit([TensorLoader(X, y, 10, seed=i) for i in range(3)], val, epochs=12,
              on_epoch_end=lambda k, logs: sizes.append(sweep.stack.K) and None)  # fmt: skip
    lengths = [len(h) for h in hist]
    assert lengths == [len(h) for h in sweep.histories]
    assert len(set(lengths)) > 1 and min(lengths) < 12  # they did stop, at different epochs
    assert sweep.status == ["early_stopped" if n < 12 else "completed" for n in lengths]
    # once a model stopped, the stack no longer computes it
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]
    for s, b, hs, hb in zip(seq, bat, hist, sweep.histories):
        _assert_same(s, b)
        for es, eb in zip(hs, hb):
            assert math.isclose(es["val_loss"], eb["val_loss"], rel_tol=TOL, abs_tol=TOL)


def test_a_diverging_model_is_stopped_as_the_trainer_stops_it_and_the_others_go_on():
    X, y = _classification()
    make = [_mlp(0, 0.1), _mlp(1, 1e12), _mlp(2, 0.05)]
    (seq, hist, errors), (bat, sweep) = _run_both(make, X, y, None, epochs=4)
    sweep.fit([TensorLoader(X, y, 10, seed=i) for i in range(3)], epochs=4)
    assert errors[1] is not None and errors[0] is errors[2] is None
    assert sweep.status == ["completed", "diverged", "completed"]
    assert "the training loss became" in sweep.errors[1]
    # the failed epoch is logged as the Trainer logs it
    assert [h["epoch"] for h in sweep.histories[1]] == [h["epoch"] for h in hist[1]]
    last_seq, last_bat = hist[1][-1], sweep.histories[1][-1]
    assert set(last_bat) == set(last_seq) == {"epoch", "train_loss", "lr"}
    assert not math.isfinite(last_bat["train_loss"]) and last_bat["lr"] == last_seq["lr"]
    _assert_same(seq[0], bat[0])
    _assert_same(seq[2], bat[2])


def test_a_hook_stops_a_model_with_its_reason():
    X, y = _classification()
    make = [_mlp(0, 0.1), _mlp(1, 0.1)]
    _, (_, sweep) = _run_both(make, X, y, None, epochs=3)
    sweep.fit(TensorLoader(X, y, 10, seed=0), epochs=3,
              on_epoch_end=lambda k, logs: "pruned" if k == 0 else None)  # fmt: skip
    assert sweep.status == ["pruned", "completed"]
    assert [len(h) for h in sweep.histories] == [1, 3]


def test_regression_models_have_the_trainers_metrics():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 4, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(50, generator=g)

    def make(seed, lr):
        def build():
            torch.manual_seed(seed)
            model = models.create("mlp", (4,), 1, hidden=[8], dropout=0.1)
            return model, optim.create("adam", model.parameters(), lr=lr)

        return build

    val = TensorLoader(X[:20], y[:20], batch_size=20, shuffle=False)
    (seq, hist, _), (bat, sweep) = _run_both(
        [make(0, 1e-2), make(1, 3e-3)], X, y, val, epochs=3, task="regression"
    )
    sweep.fit([TensorLoader(X, y, 10, seed=i) for i in range(2)], val, epochs=3)
    for s, b, hs, hb in zip(seq, bat, hist, sweep.histories):
        _assert_same(s, b)
        assert {"train_mse", "train_r2", "val_mse", "val_r2"} <= set(hb[-1])
        for key in ("train_loss", "train_r2", "val_mse", "val_r2"):
            assert math.isclose(hs[-1][key], hb[-1][key], rel_tol=TOL, abs_tol=TOL), key


@pytest.mark.parametrize(
    ("kind", "shape", "options"),
    [
        ("cnn1d", (16,), {"channels": [4, 4], "norm": "layer", "dropout": 0.2}),
        ("cnn1d", (16,), {"channels": [4], "norm": "instance", "hidden": [8]}),
        ("cnn2d", (1, 6, 6), {"channels": [3], "hidden": [8], "norm": "batch"}),
    ],
)
def test_convolutional_models_trained_together_equal_their_sequential_runs(kind, shape, options):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, *shape, generator=g)
    y = (X.flatten(1).mean(1) > 0).long()

    def make(seed, lr):
        def build():
            torch.manual_seed(seed)
            model = models.create(kind, shape, 2, **options)
            return model, optim.create("momentum", model.parameters(), lr=lr)

        return build

    (seq, _, _), (bat, sweep) = _run_both([make(0, 0.05), make(1, 0.02)], X, y, None, epochs=2)
    assert sweep.stack.steps is not None  # the wide path, not vmap
    sweep.fit([TensorLoader(X, y, 10, seed=i) for i in range(2)], epochs=2)
    for s, b in zip(seq, bat):
        _assert_same(s, b)


class _Residual(nn.Module):
    """Not an nn.Sequential: the stack runs it through vmap."""

    def __init__(self):
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.drop = Dropout(0.3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        return self.out(self.drop(h + torch.tanh(self.hidden(h))))


def test_any_module_is_stacked_through_vmap_and_equals_its_sequential_runs():
    X, y = _classification()

    def make(seed, lr):
        def build():
            torch.manual_seed(seed)
            model = _Residual()
            return model, optim.create("adam", model.parameters(), lr=lr)

        return build

    (seq, _, _), (bat, sweep) = _run_both([make(0, 1e-2), make(1, 3e-3)], X, y, None, epochs=3)
    assert sweep.stack.steps is None
    sweep.fit([TensorLoader(X, y, 10, seed=i) for i in range(2)], epochs=3)
    for s, b in zip(seq, bat):
        _assert_same(s, b)


def test_models_of_different_architectures_are_refused_naming_the_difference():
    a = models.create("mlp", (6,), 3, hidden=[8])
    b = models.create("mlp", (6,), 3, hidden=[9])
    with pytest.raises(ArchitectureError, match="model 1 has another architecture"):
        StackedModel([a, b])


def test_dropout_masks_drawn_by_several_threads_are_still_each_models_own():
    X, y = _classification()
    make = [
        _mlp(s, 0.05, "momentum", dropout=p) for s, p in [(0, 0.3), (1, 0.0), (2, 0.5), (3, 0.2)]
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the masks are shared out among two threads
    try:
        (seq, _, _), (bat, sweep) = _run_both(make, X, y, None, epochs=2)
        sweep.fit([TensorLoader(X, y, 10, seed=i) for i in range(4)], epochs=2)
    finally:
        torch.set_num_threads(threads)
    for s, b in zip(seq, bat):
        _assert_same(s, b)  # a wrong mask would move the weights by far more
