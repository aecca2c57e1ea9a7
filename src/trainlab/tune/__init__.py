"""Hyperparameter tuning done right: defaults first, search on validation, test once."""

from trainlab.space import Distribution, default_params, parse_space, sample

from .study import TuneError, format_tune_summary, open_storage, tune

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
