"""docs/config.md cannot fall behind the config schema.

Every dotted key path of :class:`trainlab.config.Config` (walked from ``model_fields``,
into every nested section, the optional ``train.early_stopping`` included), every
hyperparameter of every optimizer, every parameter of every schedule, and every allowed
value of a choice must appear in the reference; each documented default must be the
schema's.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from trainlab import init, optim, preprocess
from trainlab.config import Config, ScheduleConfig
from trainlab.optim import schedule as schedules
from trainlab.train import TASK_METRICS

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def _members(annotation) -> list:
    """The annotation and, for a union (``X | None``), its members."""
    return [annotation, *typing.get_args(annotation)]


def _section(annotation) -> type[BaseModel] | None:
    """The config section a field holds, if it is one (also when it is optional)."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _walk(model: type[BaseModel], prefix: str = ""):
    """(dotted path, field) for every key of ``model``, sections before their keys."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path, field
        section = _section(field.annotation)
        if section is not None:
            yield from _walk(section, f"{path}.")


KEYS = dict(_walk(Config))


@pytest.fixture(scope="module")
def doc() -> str:
    assert DOC.exists(), "docs/config.md is missing"
    return DOC.read_text(encoding="utf-8")


def test_the_walk_reaches_nested_and_optional_sections():
    assert {"name", "data.split.val", "optimizer.lr", "tune"} <= set(KEYS)
    assert {"train.early_stopping", "train.early_stopping.patience"} <= set(KEYS)


@pytest.mark.parametrize("path", list(KEYS))
def test_every_config_key_is_documented(doc, path):
    assert f"`{path}`" in doc, f"docs/config.md does not document `{path}`"


def _optimizer_classes() -> dict[str, type]:
    dummy = [torch.zeros(1, requires_grad=True)]
    return {name: type(optim.create(name, dummy, lr=1e-3)) for name in optim.NAMES}


@pytest.mark.parametrize("name", optim.NAMES)
def test_every_optimizer_hyperparameter_is_documented(doc, name):
    cls = _optimizer_classes()[name]
    missing = [k for k in cls.DEFAULTS if f"`optimizer.{k}`" not in doc]
    assert not missing, f"docs/config.md lacks {name}'s hyperparameters {missing}"


def _schedule_names() -> tuple[str, ...]:
    return typing.get_args(ScheduleConfig.model_fields["name"].annotation)


@pytest.mark.parametrize("name", _schedule_names())
def test_every_schedule_parameter_is_documented(doc, name):
    params = set(inspect.signature(getattr(schedules, name)).parameters)
    if name == "warmup":  # the config sets `after` (a cosine) and takes that cosine's `final`
        params = params - {"after"} | {"final"}
    assert f"`{name}`" in doc
    missing = sorted(p for p in params if f"`schedule.{p}`" not in doc)
    assert not missing, f"docs/config.md lacks the {name} schedule's parameters {missing}"


def _choices() -> dict[str, tuple]:
    """Allowed values of every choice: the Literal fields, and those checked by validators."""
    choices = {}
    for path, field in KEYS.items():
        for member in _members(field.annotation):
            if typing.get_origin(member) is typing.Literal:
                choices[path] = typing.get_args(member)
    metrics = {m for names in TASK_METRICS.values() for m in names}
    logged = tuple(f"{split}_{m}" for split in ("train", "val") for m in sorted(metrics))
    choices.update(
        {
            "data.preprocess": preprocess.NAMES,
            "model.init": init.NAMES,
            "train.monitor": logged,
            "train.early_stopping.metric": logged,
        }
    )
    return choices


@pytest.mark.parametrize(("path", "values"), list(_choices().items()))
def test_every_allowed_value_is_documented(doc, path, values):
    missing = [v for v in values if isinstance(v, str) and f"`{v}`" not in doc]
    assert not missing, f"docs/config.md lacks the values {missing} of `{path}`"


def _documented_default(doc: str, path: str) -> str | None:
    """The default cell of the reference row ``| `path` | type | default | … |``."""
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] == f"`{path}`":
            return cells[2]
    return None


def _as_yaml(value) -> str:
    if isinstance(value, bool) or isinstance(value, list):
        return json.dumps(value)
    return str(value)


@pytest.mark.parametrize(
    "path",
    [
        p
        for p, f in KEYS.items()
        if f.get_default(call_default_factory=True) is not None and _section(f.annotation) is None
    ],
)
def test_documented_defaults_are_the_schemas(doc, path):
    default = KEYS[path].get_default(call_default_factory=True)
    cell = _documented_default(doc, path)
    assert cell is not None, f"docs/config.md has no reference row for `{path}`"
    assert f"`{_as_yaml(default)}`" in cell, f"`{path}`: the schema's default is {default!r}"


def test_the_documented_full_default_config_is_the_schemas(doc):
    import yaml

    block = re.search(r"```yaml\n(name: run\n.*?)```", doc, re.DOTALL)
    assert block, "docs/config.md lost its resolved default config"
    documented = yaml.safe_load(block.group(1))
    assert Config.model_validate(documented) == Config()
    assert set(documented) == set(Config.model_fields)
