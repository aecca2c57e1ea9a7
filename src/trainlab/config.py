"""The experiment config: a YAML file, ``--set key=value`` overrides, one pydantic schema.

Everything is checked before any work starts. A mistake gives one line naming the key's
path and what it accepts, e.g.::

    config error: model.hiden: unknown key; did you mean 'hidden'?
    config error: optimizer.lr: must be in [0, ∞), got -0.1
    config error: model.norm: must be one of 'none', 'batch', …; got 'bn'

The ranges of the optimizers' hyperparameters are not written here a second time: the
optimizer itself is built on a dummy parameter, so the config accepts exactly what the
optimizer accepts.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainlab import init as init_schemes
from trainlab import models, optim, preprocess
from trainlab import nn as tl_nn
from trainlab.atomic import write_atomic
from trainlab.errors import HyperparameterError, UserError
from trainlab.optim import schedule as schedules
from trainlab.space import parse_space

__all__ = [
    "ConfigError",
    "Config",
    "DataConfig",
    "SplitConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "EarlyStoppingConfig",
    "TrainConfig",
    "load_config",
    "parse_overrides",
    "apply_overrides",
    "save_config",
    "config_dict",
]


class ConfigError(UserError, ValueError):
    """A config the user has to fix; ``str(err)`` is one line naming the key."""


#: Seeds are what every generator accepts: NumPy's legacy seeding and Optuna's samplers
#: take 0 … 2**32 − 1 (torch takes more).
_SEEDS = {"ge": 0, "lt": 2**32}

#: Hyperparameters are applied to float32 tensors: a larger number overflows in the step.
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Section):
    val: float = Field(0.15, ge=0.0, lt=1.0, description="fraction for validation")
    test: float = Field(
        0.15,
        ge=0.0,
        lt=1.0,
        description="fraction for test (ignored when the dataset has a canonical test split)",
    )
    stratify: bool = True

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test must be < 1, got {self.val} + {self.test}")
        return self


class DataConfig(_Section):
    dataset: str = Field(
        "mnist1d", description="built-in name, or a path: .csv, .npz, image folder"
    )
    target: str | None = Field(None, description="CSV: the target column (default: last)")
    task: Literal["auto", "classification", "regression"] = "auto"
    split: SplitConfig = SplitConfig()
    preprocess: list[str] = Field(default_factory=list)

    @field_validator("preprocess")
    @classmethod
    def _known_preprocessors(cls, steps: list[str]) -> list[str]:
        for step in steps:
            if step not in preprocess.NAMES:
                allowed = ", ".join(repr(n) for n in preprocess.NAMES)
                raise ValueError(f"must be a list of {allowed}; got {step!r}")
        return steps


class ModelConfig(_Section):
    kind: Literal[models.NAMES] = "mlp"
    hidden: list[int] | None = Field(None, description="hidden widths (default per kind)")
    channels: list[int] | None = Field(None, description="conv channels (cnn1d, cnn2d)")
    stride: int | None = Field(None, ge=1, description="conv stride (cnn1d)")
    kernel_size: int | list[int] | None = Field(
        None, description="conv kernel size, or one per conv layer (default per kind)"
    )
    activation: Literal[models.ACTIVATIONS] = "relu"
    norm: Literal[tl_nn.NORM_NAMES] = "none"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    dropout_mode: Literal[tl_nn.DROPOUT_MODES] = "inverted"
    init: str = "default"

    @field_validator("hidden", "channels", "kernel_size")
    @classmethod
    def _positive_sizes(cls, value: int | list[int] | None) -> int | list[int] | None:
        sizes = value
        if isinstance(sizes, int):
            sizes = [sizes]
        if sizes is not None and any(s < 1 for s in sizes):
            raise ValueError(f"sizes must be positive integers, got {sizes}")
        return value

    @field_validator("init")
    @classmethod
    def _known_init(cls, name: str) -> str:
        if name not in init_schemes.NAMES:
            raise ValueError(_one_of(init_schemes.NAMES, name))
        return name

    @model_validator(mode="after")
    def _the_kind_has_these_options(self) -> ModelConfig:
        accepted = models.OPTIONS[self.kind]
        for key in sorted(self.model_fields_set - {"kind"}):
            if key not in accepted:
                raise _KeyProblem(
                    key,
                    f"model kind {self.kind!r} has no option {key} "
                    f"(its options: {', '.join(accepted)})",
                )
        return self

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`trainlab.models.create`: the kind's options that
        are given or have a default here."""
        opts = self.model_dump(exclude={"kind"})
        accepted = models.OPTIONS[self.kind]
        return {k: v for k, v in opts.items() if v is not None and k in accepted}


_OPTIMIZER_CLASS = optim.CLASSES  # name → class; its DEFAULTS name its hyperparameters


class OptimizerConfig(_Section):
    """``name`` and ``lr``; any other key is a hyperparameter of that optimizer."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: Literal[optim.NAMES] = "adam"
    lr: float | Literal["auto"] | None = Field(
        None,
        description="learning rate; default: the optimizer's (or its convention's); "
        "'auto': the LR finder",
    )
    convention: Literal[optim.CONVENTIONS] | None = None

    def hyperparameters(self) -> dict[str, Any]:
        """Keyword arguments for :func:`trainlab.optim.create` (without ``lr='auto'``)."""
        hyper = dict(self.model_extra or {})
        if self.lr not in (None, "auto"):
            hyper["lr"] = self.lr
        if self.convention is not None:
            hyper["convention"] = self.convention
        if "betas" in hyper and isinstance(hyper["betas"], list):
            hyper["betas"] = tuple(hyper["betas"])
        return hyper

    @model_validator(mode="after")
    def _the_optimizer_accepts_it(self) -> OptimizerConfig:
        cls = _OPTIMIZER_CLASS[self.name]
        accepted = set(cls.DEFAULTS) | {"convention"}
        for key in self.model_extra or {}:
            if key not in accepted:
                raise _KeyProblem(key, f"not a hyperparameter of {self.name}", sorted(accepted))
        hyper = self.hyperparameters()
        if self.lr == "auto":
            hyper["lr"] = 1e-3  # a stand-in: the finder sets it
        elif self.lr is None and cls is optim.SGD:
            raise _KeyProblem("lr", f"{self.name} needs a learning rate (no default)")
        try:
            optim.create(self.name, [torch.zeros(1, requires_grad=True)], **hyper)
        except HyperparameterError as err:
            # an element of a pair (betas[1]) is reported under its config key (betas)
            raise _KeyProblem(err.key.partition("[")[0], err.problem) from None
        except (ValueError, TypeError) as err:
            raise ValueError(str(err)) from None
        for key, value in hyper.items():
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and abs(v) > _FLOAT32_MAX for v in numbers):
                raise _KeyProblem(
                    key, f"{value} is too large for float32 (at most {_FLOAT32_MAX:.2g})"
                )
        return self


class ScheduleConfig(_Section):
    """``name`` and the schedule's parameters (see :mod:`trainlab.optim.schedule`).

    Steps count optimizer steps (batches). ``cosine`` and ``one_cycle`` take their
    ``total_steps`` from the run's length when it is not given; ``warmup`` is followed by
    a cosine decay over the rest of the run.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: Literal[schedules.NAMES] = "constant"

    def build(self, total_steps: int) -> schedules.Schedule:
        """The schedule for a run of ``total_steps`` optimizer steps."""
        params = dict(self.model_extra or {})
        if self.name in ("cosine", "one_cycle"):
            params.setdefault("total_steps", total_steps)
        if self.name == "warmup":
            warm = params.get("warmup_steps", max(1, total_steps // 20))
            params.setdefault("warmup_steps", warm)
            # a warmup_steps that is no int is named by schedules.warmup, not a TypeError here
            rest = max(1, total_steps - warm) if isinstance(warm, int) else 1
            params["after"] = schedules.cosine(rest, final=params.pop("final", 0.0))
        return schedules.create(self.name, **params)

    @model_validator(mode="after")
    def _the_schedule_accepts_it(self) -> ScheduleConfig:
        try:
            self.build(total_steps=1000)
        except ValueError as err:
            raise ValueError(str(err)) from None
        return self


_METRICS = ("loss", "accuracy", "mse", "r2")


def _logged_metric(metric: str | None) -> str | None:
    """A metric name as metrics.jsonl logs it: train_ or val_ and one of _METRICS."""
    names = [f"{split}_{m}" for split in ("train", "val") for m in _METRICS]
    if metric is not None and metric not in names:
        raise ValueError(_one_of(names, metric))
    return metric


class EarlyStoppingConfig(_Section):
    patience: int = Field(10, ge=1, description="epochs without improvement before stopping")
    metric: str = Field("val_loss", description="a key of metrics.jsonl, e.g. val_accuracy")
    min_delta: float = Field(0.0, ge=0.0)

    _a_logged_metric = field_validator("metric")(lambda cls, m: _logged_metric(m))


class TrainConfig(_Section):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(100, ge=1)
    early_stopping: EarlyStoppingConfig | None = None
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    deterministic: bool = Field(
        True, description="deterministic kernels: a resumed run equals an uninterrupted one"
    )
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    monitor: str | None = Field(
        None,
        description="the metric that picks the best epoch "
        "(default: val_accuracy for classification, val_loss for "
        "regression)",
    )

    _a_logged_metric = field_validator("monitor")(lambda cls, m: _logged_metric(m))

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if device != "auto" and not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps; got {device!r}")
        return device


class TuneConfig(_Section):
    """The study of ``trainlab tune``: what to search, how, and how to finish."""

    trials: int = Field(20, ge=1, description="trials to complete (pruned ones count)")
    timeout: float | None = Field(None, gt=0, description="seconds; stop starting trials after")
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="config key → loguniform(a, b) | uniform(a, b) | int(a, b) | [choices]",
    )
    metric: str | None = Field(
        None, description="default: val_accuracy (classification), val_loss (regression)"
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="default: from the metric (losses are minimized)"
    )
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    defaults: bool = Field(True, description="try the lecture's defaults first, once")
    seed: int | None = Field(
        None, **_SEEDS, description="the sampler's seed (default: the config's)"
    )
    final: Literal["train", "train+val"] = Field(
        "train", description="what the winner is retrained on before the one test evaluation"
    )

    _a_logged_metric = field_validator("metric")(lambda cls, m: _logged_metric(m))

    @field_validator("space")
    @classmethod
    def _a_valid_space(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key in space:
            if not _is_config_key(key):
                raise ValueError(f"{key!r} is not a config key (e.g. optimizer.lr, model.dropout)")
        parse_space(space)
        return space

    @model_validator(mode="after")
    def _grid_needs_lists(self) -> TuneConfig:
        if self.sampler == "grid":
            ranges = [k for k, v in self.space.items() if not isinstance(v, list)]
            if ranges:
                raise ValueError(
                    f"sampler grid needs a list of choices for every key; "
                    f"{', '.join(ranges)} are ranges"
                )
        if not self.space:
            raise ValueError("space is empty: name at least one config key to search")
        return self


def _is_config_key(key: str) -> bool:
    """Whether a dotted key names a setting of the config (optimizer hyperparameters of
    any optimizer count)."""
    parts = key.split(".")
    if parts[0] == "optimizer" and len(parts) == 2:
        return any(parts[1] in cls.DEFAULTS for cls in _OPTIMIZER_CLASS.values()) or parts[1] in (
            "name",
            "lr",
            "convention",
        )
    if parts[0] == "tune":
        return False
    model: Any = Config
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        annotation = fields[part].annotation
        args = getattr(annotation, "__args__", ())
        model = next(
            (c for c in (annotation, *args) if isinstance(c, type) and issubclass(c, BaseModel)),
            None,
        )
    return model is None  # a leaf, not a whole section


class Config(_Section):
    """The whole experiment. Every section has defaults; a file sets what differs."""

    name: str = "run"
    seed: int = Field(0, **_SEEDS)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig | None = Field(None, description="hyperparameter search (trainlab tune)")

    @field_validator("name")
    @classmethod
    def _usable_as_a_directory_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ValueError(f"must use only letters, digits, '.', '_' and '-'; got {name!r}")
        return name


# --- errors ---------------------------------------------------------------------------------


class _KeyProblem(ValueError):
    """Raised inside a validator to point at a key below the section being validated."""

    def __init__(self, key: str, problem: str, allowed: list[str] | None = None):
        self.key, self.problem, self.allowed = key, problem, allowed
        super().__init__(f"{key}: {problem}")


def _one_of(allowed, got) -> str:
    return f"must be one of {', '.join(repr(a) for a in allowed)}; got {got!r}"


def _fields_at(loc: tuple) -> list[str]:
    """The valid keys of the section at ``loc`` (for 'did you mean')."""
    model: Any = Config
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            return []
    return list(model.model_fields)


_TYPE_TAGS = re.compile(
    r"^(float|int|str|bool|list\[.*\]|dict\[.*\]|literal\[.*\]|none|"
    r"function-.*|tuple\[.*\])$",
    re.IGNORECASE,
)


#: What other frameworks call a hyperparameter trainlab names otherwise (Keras, optax,
#: torch's RMSprop), for "did you mean" where the spelling is too far off for difflib.
_SYNONYMS = {
    "learning_rate": "lr",
    "epsilon": "eps",
    "beta1": "betas",
    "beta2": "betas",
    "beta_1": "betas",
    "beta_2": "betas",
    "b1": "betas",
    "b2": "betas",
    "alpha": "rho",
}


def _closest(key: str, allowed: list[str]) -> str | None:
    """The allowed key the user most likely meant by ``key``, if any."""
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return close[0]
    synonym = _SYNONYMS.get(key.lower())
    return synonym if synonym in allowed else None


def _in_another_section(key: str, section: tuple) -> str | None:
    """``train.epochs`` for an ``epochs`` written at the top level or in another section."""
    for name in Config.model_fields:
        dotted = f"{name}.{key}"
        if (name,) != tuple(section) and _is_config_key(dotted):
            return dotted
    return None


def _describe(error: dict) -> str:
    # A union (lr: float | 'auto') puts the member's type in the path: drop it. The key of
    # an unknown-key error is the user's own word, even one that reads like a type ("int").
    parts = [str(p) for p in error["loc"]]
    last = [parts.pop()] if error["type"] == "extra_forbidden" and parts else []
    loc = tuple(p for p in parts if not _TYPE_TAGS.match(p)) + tuple(last)
    path = ".".join(loc)
    ctx = error.get("ctx", {})
    inner = ctx.get("error")
    if isinstance(inner, _KeyProblem):
        path = ".".join((*loc, inner.key))
        text = inner.problem
        close = _closest(inner.key, inner.allowed or [])
        if close:
            text += f"; did you mean {close!r}?"
        elif inner.allowed:
            text += f" (allowed: {', '.join(inner.allowed)})"
        return f"{path}: {text}"
    kind = error["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        close = _closest(loc[-1], fields) or _in_another_section(loc[-1], loc[:-1])
        hint = f"did you mean {close!r}?" if close else f"allowed: {', '.join(fields)}"
        return f"{path}: unknown key; {hint}"
    if kind == "literal_error":
        return f"{path}: must be {ctx.get('expected')}; got {error.get('input')!r}"
    msg = error["msg"]
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    msg = msg[0].lower() + msg[1:] if msg[:1].isupper() and msg[1:2].islower() else msg
    if kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        return f"{path}: {msg[0].lower() + msg[1:]}; got {error.get('input')!r}"
    if kind == "model_type" or kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{path}: {msg[0].lower() + msg[1:]}; got {error.get('input')!r}"
    return f"{path}: {msg}" if path else msg


def _validate(raw: dict, source: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        errors = err.errors()
        # A union (lr: float | 'auto') reports one error per member: keep the first per key.
        seen, lines = set(), []
        for e in errors:
            text = _describe(e)
            key = text.split(":", 1)[0]
            if key not in seen:
                seen.add(key)
                lines.append(text)
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise ConfigError(f"{source}: {lines[0]}{more}") from None


# --- loading, overrides, saving -------------------------------------------------------------


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a config means the number."""
    return float(value) if isinstance(value, str) and _FLOAT.fullmatch(value) else value


def _numbers(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _numbers(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_numbers(v) for v in tree]
    return _number(tree)


# What PyYAML's constructors let through besides YAMLError: ``!!int x`` (ValueError),
# ``!!float`` with no value (IndexError); and an alias inside its own anchor (``&a [*a]``),
# a cyclic list that _numbers cannot finish (RecursionError).
_YAML_SLIPS = (ValueError, IndexError, TypeError, OverflowError, RecursionError)


def parse_overrides(pairs: list[str]) -> dict:
    """``["optimizer.lr=0.01", "model.hidden=[64, 64]"]`` → a nested dict of typed values.

    Values are read as YAML (numbers, booleans, lists, null); ``1e-3`` is a number.
    """
    tree: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"--set {pair!r}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01"
            )
        try:
            value = _numbers(yaml.safe_load(text)) if text.strip() else None
        except (yaml.YAMLError, *_YAML_SLIPS):
            value = text  # not YAML: the text itself, which the schema then judges
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: {part} is set to a value and has no keys")
        node[parts[-1]] = value
    return tree


def apply_overrides(raw: dict, overrides: dict) -> dict:
    """Merge ``overrides`` into ``raw`` (a nested dict), returning a new dict."""
    merged = dict(raw)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = apply_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or none: all defaults), apply ``--set`` overrides, validate.

    Raises
    ------
    ConfigError
        A missing or unreadable file, bad YAML (with its line), or an invalid key or value.
    """
    raw: Any = {}
    source = "config" if path is None else str(path)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = _numbers(yaml.safe_load(p.read_text(encoding="utf-8")))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or "invalid YAML"
            raise ConfigError(f"{p}:{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config {p}: {err}") from None
        except RecursionError:
            raise ConfigError(
                f"{p}: nested too deeply, or an alias (*name) used inside its own anchor (&name)"
            ) from None
        except _YAML_SLIPS as err:
            raise ConfigError(
                f"{p}: a tagged value (!!int, !!float, …) is invalid: {err}"
            ) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{p}: the top level must be a mapping of sections (data, model, "
                f"optimizer, …), got {type(raw).__name__}"
            )
    if overrides:
        raw = apply_overrides(raw, parse_overrides(overrides))
        source += " with --set"
    return _validate(raw, source)


def config_dict(config: Config) -> dict:
    """The resolved config as plain data that validates back into the same config: the
    model section keeps only the options its kind has (a linear model has no activation)."""
    data = config.model_dump(mode="json")
    accepted = models.OPTIONS[config.model.kind]
    data["model"] = {
        k: v for k, v in data["model"].items() if k == "kind" or (k in accepted and v is not None)
    }
    return data


def save_config(config: Config, path: str | Path) -> None:
    """Write the fully resolved config (every default filled in) as YAML.

    The model section keeps only the options its kind has (a linear model has no
    activation), so the file loads back as it is.
    """
    write_atomic(path, yaml.safe_dump(config_dict(config), sort_keys=False))
