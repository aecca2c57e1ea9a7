"""Batched sweeps: train dozens of small models of one architecture at once.

K models — different seeds, learning rates, momenta, β's, weight decays, dropout rates,
initializations, optimizers — are trained as one batched computation
(:class:`SweepTrainer` on a :class:`StackedModel` and a :class:`StackedOptimizer`), each
exactly as its own sequential :class:`~trainlab.train.Trainer` run would train it, up to
float rounding. :func:`sweep` runs a config's grid of variants and writes per-model run
directories and a table (the CLI renders the report); :func:`fit_many` and
:func:`train_together` train given configs together (what ``trainlab compare`` and
``trainlab tune --batch`` use).
See docs/sweep.md.
"""

from .optim import PerModel, StackedOptimizer
from .run import VARIABLE, SweepError, fit_many, sweep, train_together
from .stack import ArchitectureError, StackedModel
from .trainer import SweepTrainer

__all__ = [
    "ArchitectureError",
    "PerModel",
    "StackedModel",
    "StackedOptimizer",
    "SweepTrainer",
    "SweepError",
    "VARIABLE",
    "fit_many",
    "sweep",
    "train_together",
]
