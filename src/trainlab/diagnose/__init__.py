"""Diagnosis: read a good learning rate and the health of a run off its curves."""

from .curves import Finding, diagnose
from .health import HealthReport, LayerHealth, SanityResult, health, overfit_one_batch
from .lr_find import LRFinderResult, lr_find

__all__ = [
    "Finding",
    "diagnose",
    "HealthReport",
    "LayerHealth",
    "SanityResult",
    "health",
    "overfit_one_batch",
    "LRFinderResult",
    "lr_find",
]
