"""Hyperparameter tuning done right: defaults first, search on validation, test once."""

from trainlab.space import Distribution, default_params, parse_space, sample

from .storage import TuneError, open_storage
from .study import format_tune_summary, tune

__all__ = [
    "Distribution",
    "default_params",
    "parse_space",
    "sample",
    "TuneError",
    "format_tune_summary",
    "open_storage",
    "tune",
]
