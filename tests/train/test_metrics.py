"""What a run measures: the metric names, which epoch is best, which task a history is.
(The exact sums over a split, MetricSums, are tested with the Trainer's loop in
test_trainer_loop.py.)"""

from __future__ import annotations

import math

import pytest

from trainlab.train.metrics import (
    TASK_METRICS,
    default_monitor,
    history_best,
    infer_task,
    minimize,
)


def test_losses_and_errors_are_minimized_accuracies_and_r2_maximized():
    assert minimize("val_loss") and minimize("train_mse")
    assert not minimize("val_accuracy") and not minimize("val_r2")


def test_the_best_epoch_skips_nan_and_takes_the_first_of_ties():
    history = [
        {"epoch": 1, "val_accuracy": 0.5},
        {"epoch": 2, "val_accuracy": math.nan},
        {"epoch": 3, "val_accuracy": 0.8},
        {"epoch": 4, "val_accuracy": 0.8},
    ]
    assert history_best(history, "val_accuracy") == (3, 0.8)
    assert history_best(history, "val_loss") is None


@pytest.mark.parametrize(
    ("task", "has_val", "monitor"),
    [
        ("classification", True, "val_accuracy"),
        ("regression", True, "val_loss"),
        ("classification", False, "train_loss"),
    ],
)
def test_the_default_monitor_of_each_task(task, has_val, monitor):
    assert default_monitor(task, has_val) == monitor
    assert monitor.split("_", 1)[1] in TASK_METRICS[task]


def test_the_task_of_a_history_is_read_from_its_metric_names():
    assert infer_task([{"epoch": 1, "train_loss": 1, "val_accuracy": 0.3}]) == "classification"
    assert infer_task([{"epoch": 1, "train_loss": 1}, {"train_r2": 0.2}]) == "regression"
    assert infer_task([{"epoch": 1, "train_loss": 1}]) is None
