"""The lecture's optimizers, exact, with the conventions of torch, Keras and optax.

Each optimizer states its update equation in its docstring and is a
``torch.optim.Optimizer``: param groups, ``state_dict``, torch LR schedulers, closures.
``convention="lecture" | "torch" | "keras" | "optax"`` sets every switch and default
as that framework does, so a run from another framework can be reproduced step for
step; ``impl="auto" | "flat" | "reference" | "foreach"`` chooses how the one equation is
applied (``auto`` is ``flat``: one contiguous buffer per param group, see
:mod:`trainlab.optim.flat`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainlab.errors import HyperparameterError, check_choice

from . import flat, schedule
from ._engine import CONVENTIONS, IMPLEMENTATIONS, Optimizer, TensorList
from .adam import Adam, AdamW
from .rmsprop import RMSProp
from .sgd import SGD

__all__ = [
    "SGD",
    "RMSProp",
    "Adam",
    "AdamW",
    "Optimizer",
    "TensorList",
    "CONVENTIONS",
    "IMPLEMENTATIONS",
    "NAMES",
    "CLASSES",
    "create",
    "flat",
    "schedule",
]

#: Optimizer names as a config names them. ``momentum`` and ``nesterov`` are SGD with
#: ρ = 0.9 unless ``momentum=`` says otherwise (the lecture's usual value).
NAMES = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")

#: The class behind each name; ``CLASSES[name].DEFAULTS`` lists the hyperparameters it takes.
CLASSES: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": SGD,
    "nesterov": SGD,
    "rmsprop": RMSProp,
    "adam": Adam,
    "adamw": AdamW,
}


def create(name: str, params: Iterable, **hyper: Any) -> Optimizer:
    """Build an optimizer by its config name, e.g. ``create("adam", model.parameters(), lr=1e-3)``.

    Raises
    ------
    HyperparameterError
        For an unknown name (the message lists :data:`NAMES`) or a bad hyperparameter; its
        ``key`` and ``problem`` name the culprit (a ``ValueError``).
    """
    check_choice("name", name, NAMES, owner="optimizer")
    if CLASSES[name] is SGD and hyper.get("lr") is None:
        raise HyperparameterError(f"optimizer {name!r}", "lr", "is required (SGD has no default)")
    if name in ("momentum", "nesterov"):
        hyper.setdefault("momentum", 0.9)
        if name == "nesterov":
            hyper["nesterov"] = True
    return CLASSES[name](params, **hyper)
