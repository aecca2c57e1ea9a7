"""The Trainer's hot loop: metrics summed on the device equal the per-batch definition,
nothing is read back per batch but the loss, and unused batch hooks cost nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainlab import optim
from trainlab.data import TensorLoader
from trainlab.train import Callback, EarlyStopping, Trainer
from trainlab.train.metrics import MetricSums


def _blobs(n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    X = torch.randn(n, 4, generator=gen) + 1.5 * y[:, None].float()
    return X, y


def _recording_loss(record: list):
    """Cross-entropy that also records, per batch, what the old Trainer summed on the host:
    the loss as a float, the number of correct predictions and the batch size."""

    def loss(out, y):
        value = F.cross_entropy(out, y)
        record.append((value.item(), (out.argmax(dim=1) == y).sum().item(), len(y)))
        return value

    return loss


def _trainer(loss, callbacks=()):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=0.05)
    return Trainer(model, opt, loss=loss, callbacks=callbacks, device="cpu")


@pytest.mark.parametrize("fold_batches", [64, 3])  # one fold per epoch, or several
def test_epoch_metrics_equal_the_per_batch_definition(monkeypatch, fold_batches):
    monkeypatch.setattr(MetricSums, "FOLD_BATCHES", fold_batches)
    record: list = []
    X, y = _blobs(n=200)  # batches of 30: the last one has 20
    trainer = _trainer(_recording_loss(record))
    history = trainer.fit(TensorLoader(X, y, batch_size=30, seed=0), epochs=2)
    per_epoch = len(record) // 2
    for epoch, logs in enumerate(history):
        batches = record[epoch * per_epoch : (epoch + 1) * per_epoch]
        n = sum(size for _, _, size in batches)
        assert n == 200
        assert logs["train_accuracy"] == sum(c for _, c, _ in batches) / n
        expected_loss = sum(value * size for value, _, size in batches) / n
        assert logs["train_loss"] == pytest.approx(expected_loss, rel=1e-12)


def test_regression_sums_equal_float64_metrics_over_the_whole_split(monkeypatch):
    monkeypatch.setattr(MetricSums, "FOLD_BATCHES", 2)
    gen = torch.Generator().manual_seed(1)
    sums = MetricSums("regression")
    preds, targets, loss_sum = [], [], 0.0
    for size in (7, 30, 30, 13, 1):
        out = torch.randn(size, 1, generator=gen)  # a model's N × 1 output
        y = 3.0 + 2.0 * torch.randn(size, generator=gen)
        loss = F.mse_loss(out.reshape(y.shape), y)
        sums.update(out, y, loss)
        preds.append(out.reshape(-1).double().numpy())
        targets.append(y.double().numpy())
        loss_sum += loss.item() * size
    pred, y = np.concatenate(preds), np.concatenate(targets)
    sse = ((pred - y) ** 2).sum()
    metrics = sums.result()
    assert metrics["mse"] == pytest.approx(sse / len(y), rel=1e-12)
    assert metrics["r2"] == pytest.approx(1 - sse / ((y - y.mean()) ** 2).sum(), rel=1e-9)
    assert metrics["loss"] == pytest.approx(loss_sum / len(y), rel=1e-12)


def test_totals_are_one_device_tensor_in_field_order():
    sums = MetricSums("classification")
    out = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]])  # predicts 0, 1, 0
    sums.update(out[:2], torch.tensor([0, 0]), torch.tensor(0.5))  # 1 correct
    sums.update(out[2:], torch.tensor([0]), torch.tensor(0.25))  # 1 correct
    totals = sums.totals()
    assert totals.dtype == torch.float64 and totals.shape == (len(MetricSums.FIELDS),)
    assert dict(zip(MetricSums.FIELDS, totals.tolist())) == {
        "n": 3.0,
        "loss": 0.5 * 2 + 0.25 * 1,
        "correct": 2.0,
        "sse": 0.0,
        "sum_y": 0.0,
        "sum_y2": 0.0,
    }
    assert sums.result() == {"loss": 1.25 / 3, "accuracy": 2 / 3}


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_adding_batches_reads_nothing_back_to_the_host(task):
    # Meta tensors have no data: any .item(), .tolist() or bool() on them raises.
    sums = MetricSums(task, device="meta")
    for size in (100, 100, 37) * 30:  # several folds
        out = torch.empty(size, 3 if task == "classification" else 1, device="meta")
        y = torch.empty(size, dtype=torch.long if task == "classification" else torch.float32)
        sums.update(out, y.to("meta"), torch.empty((), device="meta"))
    assert sums.totals().device.type == "meta" and sums.totals().shape == (6,)


def test_batch_hooks_get_every_step_loss_and_inherited_no_ops_are_not_called(monkeypatch):
    calls = {"no-op": 0}

    def counted_no_op(self, trainer, loss):
        calls["no-op"] += 1

    monkeypatch.setattr(Callback, "on_batch_end", counted_no_op)

    class Recorder:  # any object with the hook, no base class needed
        def __init__(self):
            self.losses: list = []

        def on_batch_end(self, trainer, loss):
            self.losses.append(loss)

    class EpochOnly(Callback):
        def on_epoch_end(self, trainer, logs):
            pass

    record: list = []
    recorder = Recorder()
    X, y = _blobs()
    callbacks = [EarlyStopping("train_loss", patience=100), EpochOnly(), recorder]
    trainer = _trainer(_recording_loss(record), callbacks=callbacks)
    trainer.fit(TensorLoader(X, y, batch_size=50, seed=0), epochs=2)
    assert len(recorder.losses) == trainer.step == 8
    assert all(type(v) is float for v in recorder.losses)
    assert recorder.losses == [value for value, _, _ in record]
    assert calls["no-op"] == 0
