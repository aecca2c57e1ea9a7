"""The search space of a study: config keys → distributions, sampled define-by-run.

A space maps dotted config keys to one of::

    optimizer.lr: loguniform(1e-4, 1e-1)     # log-uniform on [a, b]
    model.dropout: uniform(0.0, 0.6)         # uniform on [a, b]
    train.batch_size: int(32, 256)           # integers a..b
    optimizer.name: [sgd, momentum, adam]    # a list: one of the choices

Spaces are conditional where the config is: an optimizer hyperparameter is only sampled
when the sampled optimizer takes it (``optimizer.momentum`` for ``momentum``/``nesterov``/
``rmsprop``, not for ``adam``), so one space can compare optimizers fairly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Distribution",
    "parse_space",
    "sample",
    "default_params",
    "decode_params",
    "LECTURE_DEFAULTS",
]

_CALL = re.compile(r"^\s*(loguniform|uniform|int)\s*\(\s*([^,]+?)\s*,\s*([^)]+?)\s*\)\s*$")

#: The lecture's defaults, tried first ("first try defaults that work well on many tasks").
LECTURE_DEFAULTS: dict[str, Any] = {
    "optimizer.name": "adam",
    "optimizer.lr": 1e-3,
    "optimizer.betas": [0.9, 0.999],
    "optimizer.momentum": 0.9,
    "optimizer.rho": 0.9,
    "model.dropout": 0.5,
}


@dataclass(frozen=True)
class Distribution:
    """One key's distribution: ``kind`` is loguniform, uniform, int or choice."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high

    def midpoint(self) -> Any:
        if self.kind == "choice":
            return self.choices[0]
        if self.kind == "loguniform":
            return math.sqrt(self.low * self.high)
        if self.kind == "int":
            return int(round((self.low + self.high) / 2))
        return (self.low + self.high) / 2

    def encode(self, value: Any) -> Any:
        """The value as Optuna stores it: a list choice (``model.hidden: [[64], [128]]``)
        becomes its JSON text, since Optuna's storages keep only scalars."""
        if self.kind == "choice" and isinstance(value, (list, tuple)):
            return json.dumps(list(value))
        return value

    def decode(self, value: Any) -> Any:
        if self.kind == "choice" and isinstance(value, str) and value.startswith("["):
            return json.loads(value)
        return value

    def suggest(self, trial: Any, key: str) -> Any:
        if self.kind == "choice":
            return self.decode(
                trial.suggest_categorical(key, [self.encode(c) for c in self.choices])
            )
        if self.kind == "int":
            return trial.suggest_int(key, int(self.low), int(self.high))
        return trial.suggest_float(key, self.low, self.high, log=self.kind == "loguniform")


def _number(text: str, key: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"tune.space.{key}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"tune.space.{key}: {text!r} is not a finite number")
    return value


def parse_space(space: dict[str, Any]) -> dict[str, Distribution]:
    """Check and parse a ``tune.space`` mapping; errors name the key.

    Raises
    ------
    ValueError
        An unknown distribution, bounds out of order, a log bound ≤ 0, or an empty list.
    """
    parsed: dict[str, Distribution] = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            if not spec:
                raise ValueError(f"tune.space.{key}: the list of choices is empty")
            choices = tuple(tuple(c) if isinstance(c, list) else c for c in spec)
            parsed[key] = Distribution("choice", choices=choices)
            continue
        match = _CALL.match(str(spec))
        if not match:
            raise ValueError(
                f"tune.space.{key}: must be loguniform(a, b), uniform(a, b), int(a, b) or a "
                f"list of choices; got {spec!r}"
            )
        kind, a, b = match.group(1), _number(match.group(2), key), _number(match.group(3), key)
        if not a < b:
            raise ValueError(f"tune.space.{key}: needs a < b in {kind}({a:g}, {b:g})")
        if kind == "loguniform" and a <= 0:
            raise ValueError(f"tune.space.{key}: loguniform needs a > 0, got {a:g}")
        if kind == "int" and (a != int(a) or b != int(b)):
            raise ValueError(f"tune.space.{key}: int(a, b) needs whole numbers")
        parsed[key] = Distribution(kind, a, b)
    return parsed


def _unlist(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _applicable(space: dict[str, Distribution], name: str, accepts: Any):
    """The keys to sample once the optimizer is ``name`` (optimizer.name itself excluded):
    an optimizer hyperparameter the optimizer does not take is left out — the space is
    conditional."""
    for key, dist in space.items():
        section, _, leaf = key.partition(".")
        if key == "optimizer.name" or (
            section == "optimizer" and leaf not in ("lr", "convention") and not accepts(name, leaf)
        ):
            continue
        yield key, dist


def sample(
    trial: Any, space: dict[str, Distribution], accepts: Any, base_optimizer: str
) -> dict[str, Any]:
    """Suggest a value for every key of ``space`` that applies; returns key → value.

    ``accepts(optimizer_name, hyperparameter)`` tells whether an optimizer takes a
    hyperparameter; ``optimizer.*`` keys it does not take are not sampled.
    """
    params: dict[str, Any] = {}
    name = base_optimizer
    if "optimizer.name" in space:  # first: the other optimizer keys depend on it
        name = space["optimizer.name"].suggest(trial, "optimizer.name")
        params["optimizer.name"] = name
    for key, dist in _applicable(space, name, accepts):
        params[key] = _unlist(dist.suggest(trial, key))
    return params


def default_params(
    space: dict[str, Distribution], base: dict[str, Any], accepts: Any, base_optimizer: str
) -> dict[str, Any]:
    """The trial tried first: the lecture's defaults where a key is searched, else the
    config's own value (if the space contains it), else the middle of the range — as
    Optuna stores them (see :meth:`Distribution.encode`), ready for ``enqueue_trial``."""
    params: dict[str, Any] = {}
    name = base_optimizer
    if "optimizer.name" in space:
        dist = space["optimizer.name"]
        name = (
            "adam"
            if dist.contains("adam")
            else (base_optimizer if dist.contains(base_optimizer) else dist.midpoint())
        )
        params["optimizer.name"] = name
    for key, dist in _applicable(space, name, accepts):
        candidates = [LECTURE_DEFAULTS.get(key), base.get(key)]
        value = next(
            (
                c
                for c in candidates
                if c is not None and dist.contains(tuple(c) if isinstance(c, list) else c)
            ),
            dist.midpoint(),
        )
        params[key] = dist.encode(_unlist(value))
    return params


def decode_params(space: dict[str, Distribution], params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored parameters (``trial.params``) → config values."""
    return {k: space[k].decode(v) if k in space else v for k, v in params.items()}
