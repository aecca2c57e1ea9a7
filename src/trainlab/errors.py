"""Errors a user can fix, and the one checker of choices and ranges.

Every error that means "fix your input" (a config key, a data file, a run directory, a
checkpoint, a search space) derives from :class:`UserError`: ``str(err)`` is one line that
names the culprit and what is allowed, and the CLI prints that line and exits with status
2 — no traceback. Each subclass keeps the built-in base its callers expect
(``ConfigError`` is still a ``ValueError``), so ``except ValueError`` goes on working.

A hyperparameter that a component refuses raises :class:`HyperparameterError`, which
carries its owner, key and problem as attributes, so a config reads the key from the
error instead of parsing its text.

This module imports nothing from trainlab: every layer may raise these.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = [
    "UserError",
    "HyperparameterError",
    "WriteError",
    "check_choice",
    "check_range",
    "did_you_mean",
    "first_line",
]


class UserError(Exception):
    """A mistake the user can fix; ``str(err)`` is one line naming the culprit."""

    #: The CLI's exit status for every user error.
    exit_status = 2


class HyperparameterError(UserError, ValueError):
    """A hyperparameter ``key`` of ``owner`` (``"Adam"``, ``"cosine"``) is refused.

    ``str(err)`` reads ``"Adam: eps must be in (0, ∞), got 0"``; :attr:`key` and
    :attr:`problem` (``"eps"``, ``"must be in (0, ∞), got 0"``) let a config name its own
    key (``optimizer.eps``) without parsing the message."""

    def __init__(self, owner: str | None, key: str, problem: str):
        self.owner, self.key, self.problem = owner, key, problem
        prefix = f"{owner}: " if owner else ""
        super().__init__(f"{prefix}{key} {problem}")

    def __reduce__(self):  # picklable across worker processes, like other exceptions
        return type(self), (self.owner, self.key, self.problem)


class WriteError(UserError, OSError):
    """A file could not be written (full disk, no permission); the message names it."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error shows of a cause that may span many lines."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def did_you_mean(value: Any, allowed: Iterable[Any]) -> str:
    """``"; did you mean 'hidden'?"`` for the closest allowed name, or ``""``."""
    names = [str(a) for a in allowed]
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_choice(key: str, value: Any, allowed: Iterable[Any], owner: str | None = None) -> Any:
    """``value`` when it is one of ``allowed``.

    Raises
    ------
    HyperparameterError
        ``"<owner>: <key> must be one of a, b, c; got 'x'"`` (with a "did you mean").
    """
    allowed = tuple(allowed)
    if value in allowed:
        return value
    listed = ", ".join(str(a) for a in allowed)
    hint = did_you_mean(value, allowed) if isinstance(value, str) else ""
    raise HyperparameterError(owner, key, f"must be one of {listed}; got {value!r}{hint}")


def check_range(
    key: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    owner: str | None = None,
) -> Any:
    """``value`` when it is a real number (an int with ``integer``) in the interval from
    ``low`` to ``high`` (each end closed unless ``*_open``; an infinite end is always
    open); booleans are refused. An integral number (a NumPy int too) is returned as an
    ``int`` with ``integer``; otherwise ``value`` is returned as given.

    Raises
    ------
    HyperparameterError
        ``"<owner>: <key> must be in [0, 1), got 1.5"``; ``"… must be a number in [0, ∞),
        got 'fast'"``; with ``integer`` and the interval [1, ∞): ``"… must be a positive
        int, got 0"``.
    """
    if integer:
        ok_type = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok_type else value
    else:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok_type:
            try:  # numpy and torch scalars
                value = float(value) if not isinstance(value, (bool, str)) else value
                ok_type = isinstance(value, float)
            except (TypeError, ValueError):
                ok_type = False
    low_open = low_open or low == -math.inf
    high_open = high_open or high == math.inf
    interval = f"{'(' if low_open else '['}{_end(low)}, {_end(high)}{')' if high_open else ']'}"
    if integer and (low, low_open, high) == (1, False, math.inf):
        wanted, wanted_type = "a positive int", "a positive int"
    else:
        wanted = f"in {interval}"
        wanted_type = f"{'an int' if integer else 'a number'} in {interval}"
    if not ok_type:
        raise HyperparameterError(owner, key, f"must be {wanted_type}, got {value!r}")
    inside = (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high
    )
    if not inside or math.isnan(value):  # NaN fails every comparison: refused too
        raise HyperparameterError(owner, key, f"must be {wanted}, got {value!r}")
    return value


def _end(x: float) -> str:
    if x == math.inf:
        return "∞"
    if x == -math.inf:
        return "-∞"
    return f"{x:g}"
