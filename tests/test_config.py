"""The config: defaults, overrides, and one-line errors naming the key."""

from __future__ import annotations

import pytest

from trainlab.config import Config, ConfigError, load_config, parse_overrides, save_config


def _write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_an_empty_config_is_all_defaults(tmp_path):
    config = load_config(_write(tmp_path, ""))
    assert config == Config()
    assert config.optimizer.name == "adam" and config.optimizer.lr is None  # Adam's own 1e-3


def test_overrides_are_typed_and_dotted():
    tree = parse_overrides(
        ["optimizer.lr=1e-3", "model.hidden=[64, 32]", "data.split.stratify=false", "seed=7"]
    )
    assert tree == {
        "optimizer": {"lr": 1e-3},
        "model": {"hidden": [64, 32]},
        "data": {"split": {"stratify": False}},
        "seed": 7,
    }


def test_overrides_win_over_the_file(tmp_path):
    path = _write(tmp_path, "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n")
    config = load_config(path, ["optimizer.lr=0.01"])
    assert config.optimizer.lr == 0.01
    assert config.optimizer.hyperparameters() == {"momentum": 0.9, "lr": 0.01}


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("model: {hiden: [10]}", [], r"model\.hiden: unknown key; did you mean 'hidden'\?"),
        ("optimzer: {lr: 0.1}", [], r"optimzer: unknown key; did you mean 'optimizer'\?"),
        ("", ["optimizer.lr=-0.1"], r"optimizer\.lr: must be in \[0, ∞\), got -0.1"),
        ("", ["optimizer.name=adagrad"], r"optimizer\.name: must be 'sgd', .*got 'adagrad'"),
        ("", ["optimizer.rho=0.9"], r"optimizer\.rho: not a hyperparameter of adam"),
        ("optimizer: {name: rmsprop, rho: 1.0}", [], r"optimizer\.rho: must be in \[0, 1\)"),
        ("optimizer: {betas: [0.9, 1.5]}", [], r"optimizer\.betas: must be in \[0, 1\)"),
        ("train: {epochs: ten}", [], r"train\.epochs: .*valid integer.*got 'ten'"),
        ("train: {epochs: 0}", [], r"train\.epochs: .*greater than or equal to 1"),
        ("model: {norm: bn}", [], r"model\.norm: must be 'none', 'batch'.*got 'bn'"),
        ("model: {dropout: 1.0}", [], r"model\.dropout: .*less than 1"),
        ("model: {init: glorot}", [], r"model\.init: must be one of 'default'.*got 'glorot'"),
        ("data: {preprocess: [stdz]}", [], r"data\.preprocess: .*'standardize'.*got 'stdz'"),
        ("data: {split: {val: 0.6, test: 0.5}}", [], r"data\.split: val \+ test must be < 1"),
        ("schedule: {name: step}", [], r"schedule: .*step_size"),
        ("train: {device: gpu}", [], r"train\.device: must be auto, cpu, cuda"),
        ("name: 'my run/1'", [], r"name: must use only letters"),
        ("tune: {trials: 3}", [], r"tune: space is empty"),
    ],
)
def test_bad_configs_fail_with_one_line_naming_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(_write(tmp_path, text), overrides)
    assert "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: line 2"):
        load_config(_write(tmp_path, "name: x\nmodel: hidden: 3\n"))


def test_a_top_level_list_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_a_malformed_override_is_refused():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["optimizer.lr"])


def test_the_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["optimizer.name=momentum", "optimizer.lr=0.05", "seed=3"])
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config
    text = (tmp_path / "resolved.yaml").read_text()
    assert "batch_size: 100" in text  # every default is written out


def test_schedules_take_the_run_length():
    config = load_config(None, ["schedule.name=cosine"])
    schedule = config.schedule.build(total_steps=50)
    assert schedule(0) == 1.0 and schedule(50) == pytest.approx(0.0, abs=1e-12)


def test_a_model_option_its_kind_lacks_is_refused_and_a_linear_config_round_trips(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.hidden: model kind 'linear' has no option"):
        load_config(None, ["model.kind=linear", "model.hidden=[8]"])
    config = load_config(None, ["model.kind=linear"])
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    """PyYAML reads 1e-7 as a string; a config means the number."""
    config = load_config(_write(tmp_path, "optimizer: {name: adam, eps: 1e-7, lr: 3e-4}\n"))
    assert config.optimizer.hyperparameters() == {"eps": 1e-7, "lr": 3e-4}


def test_a_convention_sets_the_learning_rate_when_the_config_gives_none():
    config = load_config(None, ["optimizer.name=rmsprop", "optimizer.convention=torch"])
    assert "lr" not in config.optimizer.hyperparameters()  # torch's RMSprop default, 1e-2
    with pytest.raises(ConfigError, match=r"optimizer\.lr: sgd needs a learning rate"):
        load_config(None, ["optimizer.name=sgd"])


def test_a_union_value_error_names_the_key_plainly():
    with pytest.raises(ConfigError, match=r"optimizer\.lr: input should be a valid number"):
        load_config(None, ["optimizer.lr=fast"])
