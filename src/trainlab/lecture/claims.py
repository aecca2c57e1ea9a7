"""The lecture's claims as experiments: each measures its claim and gives a verdict.

An experiment is a function ``experiment(out_dir: Path, quick: bool) -> ClaimResult``
registered in :data:`EXPERIMENTS` under its claim ("C1" … "C15"). It writes its figures
(PNG) into ``out_dir`` and says honestly what it found: a claim that does not hold on the
data is reported so — the verdict comes from the numbers, never from the claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ClaimResult", "VERDICTS", "EXPERIMENTS", "register", "verdict_from"]

VERDICTS = ("held", "did not hold", "inconclusive")


@dataclass
class ClaimResult:
    """What one experiment found.

    ``numbers`` are the measured values (JSON-serializable) that decide the verdict;
    ``summary`` says in one or two sentences what was measured and why the verdict.
    """

    claim: str
    title: str
    verdict: str
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # file names inside out_dir
    seconds: float = 0.0  # the experiment's wall time, measured by run_lecture

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}; got {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean(asdict(self))


#: claim → experiment, in the lecture's order.
EXPERIMENTS: dict[str, Callable[[Path, bool], ClaimResult]] = {}


def register(claim: str) -> Callable:
    """Decorator: ``@register("C3")`` adds an experiment to :data:`EXPERIMENTS`."""

    def add(fn: Callable[[Path, bool], ClaimResult]) -> Callable[[Path, bool], ClaimResult]:
        EXPERIMENTS[claim] = fn
        return fn

    return add


def verdict_from(held: bool | None) -> str:
    """``True`` → held, ``False`` → did not hold, ``None`` → inconclusive."""
    if held is None:
        return "inconclusive"
    return "held" if held else "did not hold"
