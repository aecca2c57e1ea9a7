"""Smoke test of bench/train_loop.py on synthetic data: the PyTorch loops run interleaved
and the rows report ratios to the plain loop. No timing thresholds."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    added = [name for name in ("train_loop", "optim_step") if name not in sys.modules]
    sys.path.insert(0, str(BENCH))  # train_loop imports optim_step's helpers
    try:
        yield importlib.import_module("train_loop")
    finally:
        sys.path.remove(str(BENCH))
        for name in added:
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def setup(bench):
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(150, 40, generator=gen), torch.randint(0, 10, (150,), generator=gen)
    config = bench.example_config("mlp", "cpu")
    return bench.Setup("mlp", config, X, y, n_classes=10, device=torch.device("cpu"))


def test_plain_and_trainer_loops_are_timed_epoch_by_epoch(bench, setup):
    rows = bench.measure(setup, ["plain", "trainer-torch-adam"], epochs=4, rounds=2)
    assert [r["loop"] for r in rows] == ["plain", "trainer-torch-adam"]
    for r in rows:
        assert r["epochs_timed"] == 2  # 2 epochs a round, the first one of each not counted
        assert all(s > 0 for s in r["epoch_s"])
        assert math.isclose(r["ms_per_step"] * r["steps_per_s"], 1e3)
        assert r["x_plain"] > 0
    assert rows[0]["x_plain"] == 1.0
    assert setup.steps_per_epoch == 2


def test_every_loop_trains_the_example_model(bench, setup):
    model = bench.new_model(setup)
    # 40-100-100-10 with batch norm: no bias in fc1, fc2 (the norm's β is their shift)
    assert bench.trainable_parameters(model) == 15_410
    with pytest.raises(SystemExit):
        bench.parse_args(["--loops", "plain,tensorflow"])


def test_a_missing_extra_is_a_note_not_an_error(bench, setup, monkeypatch, capsys):
    monkeypatch.setattr(bench, "available", lambda loop: loop not in bench.EXTRAS)
    monkeypatch.setattr(bench, "load_setup", lambda name, device: setup)
    monkeypatch.setattr(bench, "optimizer_step_ms", lambda setup: {"torch Adam": 0.1})
    results = bench.main(["--models", "mlp", "--loops", "plain,keras", "--epochs", "2"])
    out = capsys.readouterr().out
    assert "note: keras skipped: keras is not installed" in out
    assert [r["loop"] for r in results["models"][0]["rows"]] == ["plain"]
    assert "torch Adam 0.100 ms" in out
