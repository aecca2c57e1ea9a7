"""Property tests: whatever a config file, a ``--set`` override or a CSV file holds, the
parser accepts it or raises its documented one-line error (ConfigError, DataError), and
nothing else escapes.

The strategies mix arbitrary text with the pieces that trip parsers: the schema's own keys
and names, YAML anchors, tags and flow collections, special floats, quotes, NUL bytes and
byte-order marks. The examples are derandomized and bounded (the default profile of
tests/conftest.py), so a failure reproduces; ``--hypothesis-profile=explore`` searches
afresh. What these tests found is in tests/data/bad/ ("found by fuzzing").
"""

from __future__ import annotations

import inspect
import string
import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from trainlab import init, preprocess
from trainlab.config import (
    Config,
    ConfigError,
    ScheduleConfig,
    apply_overrides,
    load_config,
    parse_overrides,
)
from trainlab.data import BUILTINS, DataError, load_csv
from trainlab.optim import CLASSES
from trainlab.optim import schedule as schedules


def _schema(model: type[BaseModel] = Config, prefix: str = "") -> tuple[list[str], set[str]]:
    """Every dotted key of the config schema (sections included) and every name its
    Literal types allow."""
    keys, names = [], set()
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        todo = [field.annotation]
        while todo:
            annotation = todo.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                more_keys, more_names = _schema(annotation, f"{prefix}{name}.")
                keys += more_keys
                names |= more_names
            elif typing.get_origin(annotation) is typing.Literal:
                names |= {a for a in typing.get_args(annotation) if isinstance(a, str)}
            else:
                todo += typing.get_args(annotation)
    return keys, names


_SCHEMA_KEYS, _SCHEMA_NAMES = _schema()
_SCHEDULE_NAMES = typing.get_args(ScheduleConfig.model_fields["name"].annotation)
_KEYS = sorted(
    set(_SCHEMA_KEYS)
    | {f"optimizer.{k}" for cls in CLASSES.values() for k in cls.DEFAULTS}
    | {
        f"schedule.{p}"
        for name in _SCHEDULE_NAMES
        for p in inspect.signature(getattr(schedules, name)).parameters
    }
)
_NAMES = sorted(_SCHEMA_NAMES | set(init.NAMES) | set(preprocess.NAMES) | set(BUILTINS))

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from([*_NAMES, "1e-3", ".nan", "-.inf", "[]", "cuda:1", "0.5"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_YAML_TOKENS = st.sampled_from(
    [
        *(k.split(".")[-1] for k in _KEYS),
        *_NAMES,
        ":", ": ", "\n", "\n  ", "- ", "{", "}", "[", "]", ", ", "&a ", "*a", "!!binary ",
        "!!python/object:os.system ", "!!float ", "!!int ", "!!set ", "!!timestamp ", "? ",
        "|", ">", "'", '"', "#", "%YAML 1.1\n", "---\n", "...", "~", "null", "true", "1e-3",
        ".nan", "-.inf", "0x1F", "2020-01-01", "<<: *a", "\t", "\\", "\x00", "\ufeff", "é",
        "1" * 30,
    ]
)  # fmt: skip
_YAMLISH = st.lists(_YAML_TOKENS | st.text(max_size=4), max_size=25).map("".join)
_BOUND = st.sampled_from(["0", "1", "-1", "1e-3", "1e400", "nan", "inf", "x", "", "2.5"])
_SPACE = st.dictionaries(
    st.sampled_from(_KEYS) | st.text(max_size=6),
    _VALUES
    | st.builds(
        "{}({}, {})".format,
        st.sampled_from(["loguniform", "uniform", "int", "normal"]),
        _BOUND,
        _BOUND,
    ),
    max_size=3,
)

_fuzz = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _nested(key: str, value):
    tree = value
    for part in reversed(key.split(".")):
        tree = {part: tree}
    return tree


def _load_or_config_error(path: Path | None, overrides: list[str] | None = None) -> None:
    try:
        load_config(path, overrides)
    except ConfigError as err:
        assert "\n" not in str(err)


@_fuzz
@given(text=_YAMLISH | st.text(max_size=60))
def test_any_config_text_loads_or_raises_a_one_line_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_or_config_error(path)


@_fuzz
@given(
    sections=st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES), max_size=4),
    space=st.none() | _SPACE,
)
def test_any_values_under_the_real_keys_load_or_raise_a_config_error(tmp_path, sections, space):
    raw: dict = {} if space is None else {"tune": {"space": space}}
    for key, value in sections:
        raw = apply_overrides(raw, _nested(key, value))
    path = tmp_path / "c.yaml"
    text = yaml.safe_dump(raw, allow_unicode=True)
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_or_config_error(path)


@_fuzz
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(_KEYS) | st.text(string.ascii_lowercase + "._=", max_size=12),
            st.sampled_from(["=", "", "=="]),
            _YAMLISH | st.text(max_size=12),
        ),
        max_size=4,
    )
)
def test_any_override_strings_apply_or_raise_a_config_error(pairs):
    overrides = [key + sep + value for key, sep, value in pairs]
    try:
        tree = parse_overrides(overrides)
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    merged = apply_overrides({"model": {"kind": "mlp"}, "seed": 1}, tree)
    assert all(merged[k] is v for k, v in tree.items() if not isinstance(v, dict))
    _load_or_config_error(None, overrides)


_CSV_TOKENS = st.sampled_from(
    [
        ",", "\n", "\r\n", "\r", '"', '""', " ", "\t", ";", "a", "b", "y", "label", "0", "1",
        "2", "1.5", "-3e2", "nan", "NaN", "inf", "-Infinity", "1e400", "1_0", "x", "\ufeff",
        "\x00", "é", "١",
    ]
)  # fmt: skip
_CSV_TEXT = st.lists(_CSV_TOKENS, max_size=40).map("".join)


@_fuzz
@given(
    content=_CSV_TEXT.map(str.encode) | st.binary(max_size=64),
    task=st.sampled_from(["auto", "classification", "regression"]),
)
def test_any_bytes_in_a_csv_load_or_raise_a_one_line_data_error(tmp_path, content, task):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    try:
        ds = load_csv(path, task=task)
    except DataError as err:
        assert "\n" not in str(err) and str(err).startswith(str(path))
    else:
        assert len(ds.X) == len(ds.y) > 0 and ds.X.isfinite().all()
        assert ds.task in ("classification", "regression")
