"""Building a run's pieces from a config, in one place (fit, tune, sweep, lr-find)."""

from __future__ import annotations

import pytest
import torch

from trainlab.config import ConfigError, load_config
from trainlab.data import DataError
from trainlab.train.build import (
    EVAL_BATCH,
    build,
    check_metrics,
    early_stopping,
    eval_loader,
    load_dataset,
)
from trainlab.train.callbacks import EarlyStopping

from tables import write_table_config, write_table_csv


@pytest.fixture
def config(tmp_path):
    return load_config(write_table_config(tmp_path, write_table_csv(tmp_path)))


def test_build_gives_loaders_only_for_the_parts_asked(config):
    pieces = build(config, parts=("train", "val"))
    assert set(pieces.loaders) == {"train", "val"}
    assert pieces.loaders["val"].batch_size >= EVAL_BATCH


def test_the_trainer_gets_the_schedule_and_early_stopping_first(tmp_path, config):
    config = load_config(
        write_table_config(tmp_path, write_table_csv(tmp_path)),
        ["train.early_stopping={metric: val_loss, patience: 2}", "schedule.name=cosine"],
    )
    pieces = build(config)
    marker = object()
    trainer = pieces.trainer([marker])
    assert isinstance(trainer.callbacks[0], EarlyStopping) and trainer.callbacks[1] is marker
    assert trainer.scheduler is not None


def test_no_early_stopping_unless_the_config_asks(config):
    assert early_stopping(config) is None


def test_a_metric_the_run_does_not_log_names_its_key(config):
    config = config.model_copy(deep=True)
    config.train.monitor = "val_r2"
    with pytest.raises(ConfigError, match=r"train.monitor: 'val_r2' is not logged"):
        check_metrics(config, "classification", has_val=True)
    config.train.monitor = None
    assert check_metrics(config, "classification", has_val=False) == "train_loss"


def test_an_unknown_dataset_names_the_key(config):
    config = config.model_copy(deep=True)
    config.data.dataset = "no-such-data"
    with pytest.raises(DataError, match="data.dataset"):
        load_dataset(config)


def test_eval_loader_keeps_the_samples_in_order(config):
    pieces = build(config)
    loader = eval_loader(pieces.loaders["train"])
    X = torch.cat([x for x, _ in loader])
    assert torch.equal(X, pieces.loaders["train"].X) and loader.batch_size == EVAL_BATCH
