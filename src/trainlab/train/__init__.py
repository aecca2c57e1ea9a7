"""Training: the Trainer, its callbacks, atomic checkpoints, and runs from a config."""

from .callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    MetricsLog,
    Progress,
    StopOnSignal,
    TensorBoard,
)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .metrics import TASK_METRICS, history_best
from .trainer import NonFiniteLossError, Trainer, resolve_device

__all__ = [
    "Trainer",
    "NonFiniteLossError",
    "TASK_METRICS",
    "history_best",
    "resolve_device",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "MetricsLog",
    "Progress",
    "TensorBoard",
    "StopOnSignal",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]
