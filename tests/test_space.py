"""The search space: parsing, conditional sampling, the defaults trial."""

from __future__ import annotations

import optuna
import pytest

from trainlab.config import ConfigError, load_config
from trainlab.space import default_params, parse_space, sample
from trainlab.tune.workers import _accepts

SPACE = {
    "optimizer.name": ["sgd", "momentum", "adam"],
    "optimizer.lr": "loguniform(1e-4, 1e-1)",
    "optimizer.momentum": "uniform(0.5, 0.99)",
    "model.dropout": "uniform(0.0, 0.6)",
    "train.batch_size": "int(16, 128)",
    "model.hidden": [[64], [128, 128]],
}


def test_a_space_parses_every_kind_of_distribution():
    parsed = parse_space(SPACE)
    assert parsed["optimizer.lr"].kind == "loguniform" and parsed["optimizer.lr"].low == 1e-4
    assert parsed["train.batch_size"].kind == "int"
    assert parsed["model.hidden"].choices == ((64,), (128, 128))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lognormal(1, 2)", "must be loguniform"),
        ("uniform(1, 0)", "needs a < b"),
        ("loguniform(0, 1)", "loguniform needs a > 0"),
        ("int(1.5, 4)", "whole numbers"),
        ([], "empty"),
    ],
)
def test_a_bad_distribution_names_its_key(spec, message):
    with pytest.raises(ValueError, match=f"tune.space.optimizer.lr: .*{message}"):
        parse_space({"optimizer.lr": spec})


def test_momentum_is_sampled_only_for_optimizers_that_take_it():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = parse_space(SPACE)
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = sample(trial, space, _accepts, "adam")
        name = params["optimizer.name"]
        assert ("optimizer.momentum" in params) == (name in ("sgd", "momentum"))
        seen.add(name)
        study.tell(trial, 0.0)
    assert seen == {"sgd", "momentum", "adam"}


def test_the_defaults_trial_uses_the_lectures_defaults_where_searched():
    params = default_params(parse_space(SPACE), {"train.batch_size": 100}, _accepts, "adam")
    assert params["optimizer.name"] == "adam" and params["optimizer.lr"] == 1e-3
    assert params["model.dropout"] == 0.5 and params["train.batch_size"] == 100
    assert params["model.hidden"] == "[64]"  # a list choice, stored as its JSON text
    assert "optimizer.momentum" not in params  # adam takes none
    momentum = default_params(
        parse_space({"optimizer.momentum": "uniform(0.5, 0.99)"}), {}, _accepts, "momentum"
    )
    assert momentum == {"optimizer.momentum": 0.9}


def test_the_tune_section_is_checked_before_any_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tune:\n  space:\n    optimizer.lrr: uniform(0, 1)\n")
    with pytest.raises(ConfigError, match="tune.space: 'optimizer.lrr' is not a config key"):
        load_config(path)
    path.write_text("tune:\n  sampler: grid\n  space:\n    optimizer.lr: uniform(0, 1)\n")
    with pytest.raises(ConfigError, match="grid needs a list of choices"):
        load_config(path)
