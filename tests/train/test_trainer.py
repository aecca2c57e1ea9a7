"""The Trainer, its checkpoints and its guard."""

from __future__ import annotations

import errno
import math

import pytest
import torch

from trainlab import optim
from trainlab.data import TensorLoader
from trainlab.train import (
    Checkpoint,
    CheckpointError,
    EarlyStopping,
    NonFiniteLossError,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)
from trainlab.train import checkpoint as checkpoint_module


def _blobs(n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, 4, generator=gen) + 2.0 * y[:, None].float()
    return X, y


def _trainer(callbacks=(), lr=0.05, loss=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = optim.Adam(model.parameters(), lr=lr)
    return Trainer(model, opt, task="classification", callbacks=callbacks, loss=loss, device="cpu")


def test_fit_learns_separable_blobs_and_logs_every_epoch():
    X, y = _blobs()
    trainer = _trainer()
    history = trainer.fit(
        TensorLoader(X, y, batch_size=32, seed=0),
        TensorLoader(X, y, batch_size=100, shuffle=False),
        epochs=5,
    )
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["val_accuracy"] > 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(
        history[-1]
    )


def test_evaluate_is_exact_over_unequal_batches():
    X, y = _blobs(n=103)
    trainer = _trainer()
    whole = trainer.evaluate([(X, y)])
    batched = trainer.evaluate(TensorLoader(X, y, batch_size=10, shuffle=False))
    assert whole["accuracy"] == batched["accuracy"]
    assert whole["loss"] == pytest.approx(batched["loss"], rel=1e-6)


def test_regression_reports_mse_and_r2():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(300, 3, generator=gen)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.01 * torch.randn(300, generator=gen)
    model = torch.nn.Linear(3, 1)
    trainer = Trainer(
        model, optim.Adam(model.parameters(), lr=0.05), task="regression", device="cpu"
    )
    trainer.fit(TensorLoader(X, y, batch_size=30, seed=0), epochs=30)
    metrics = trainer.evaluate([(X, y)])
    assert metrics["r2"] > 0.99 and metrics["mse"] == pytest.approx(metrics["loss"])


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    X, y = _blobs()
    stopper = EarlyStopping("train_loss", patience=2, min_delta=1e9)  # nothing counts
    trainer = _trainer(callbacks=[stopper])
    trainer.fit(TensorLoader(X, y, batch_size=50, seed=0), epochs=20)
    assert trainer.epoch == 3 and stopper.stopped_epoch == 3


def test_non_finite_loss_stops_with_advice_and_keeps_the_last_good_checkpoint(tmp_path):
    X, y = _blobs()
    holder = {}

    def explodes_in_epoch_3(out, target):
        loss = torch.nn.functional.cross_entropy(out, target)
        return loss * math.inf if holder["trainer"].epoch >= 2 else loss

    ckpt = Checkpoint(tmp_path, metric="train_loss")
    trainer = _trainer(callbacks=[ckpt], loss=explodes_in_epoch_3)
    holder["trainer"] = trainer
    with pytest.raises(NonFiniteLossError, match=r"inf at epoch 3.*lower it 3–10×"):
        trainer.fit(TensorLoader(X, y, batch_size=50, seed=0), epochs=5)
    last = load_checkpoint(ckpt.last)
    assert last["trainer"]["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in last["trainer"]["model"].values())


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.ones(3)}, path)

    def disk_full(obj, f):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    with pytest.raises(
        CheckpointError,
        match=r"last\.pt: No space left on device; the "
        "previous checkpoint is intact",
    ):
        save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_truncated_checkpoint_is_a_clear_error_naming_the_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"corrupted checkpoint .*last\.pt"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_a_checkpoint_carrying_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"refusing checkpoint .*evil\.pt"):
        load_checkpoint(path)


def test_trainer_state_round_trip_continues_identically():
    X, y = _blobs()

    def run(split_at=None):
        trainer = _trainer()
        loader = TensorLoader(X, y, batch_size=32, seed=1)
        if split_at is None:
            trainer.fit(loader, epochs=4)
            return trainer
        trainer.fit(loader, epochs=split_at)
        state = trainer.state_dict()
        torch.manual_seed(1234)  # disturb the global RNG: the state must restore it
        resumed = _trainer()
        loader2 = TensorLoader(X, y, batch_size=32, seed=1)
        resumed.load_state_dict(state, train_loader=loader2)
        resumed.fit(loader2, epochs=4)
        return resumed

    straight, resumed = run(), run(split_at=2)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]
