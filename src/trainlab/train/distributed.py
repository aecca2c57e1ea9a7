"""Training on several processes with PyTorch's own engine: ``torchrun`` + DDP.

``torchrun`` (or ``trainlab fit --nproc N``, which starts it) runs one process per rank and
sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. This
module reads them, initializes the process group (gloo on the CPU, NCCL on GPUs) and gives
the Trainer what it needs: which rank this is, the device of the rank, and collectives.

Semantics trainlab keeps across process counts:

* ``train.batch_size`` is the **global** batch: every rank takes its share of each batch of
  the one epoch order every rank draws (:meth:`trainlab.data.TensorLoader.shard`), and each
  rank's loss is weighted by its share of the batch, so the averaged gradient is the
  gradient of the global batch's mean loss — a run on N processes equals the run on one
  (up to floating-point summation order).
* Metrics are sums all-reduced over ranks: the same numbers as one process would log.
* Rank 0 alone writes (logs, checkpoints, summary, report); every rank takes part in the
  collectives (training, evaluation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "World",
    "world",
    "requested",
    "init",
    "shutdown",
    "is_main",
    "all_reduce_sum",
    "broadcast_object",
    "barrier",
    "on_main",
    "rank_device",
    "ENV_VARS",
]

#: The variables torchrun sets for every process it starts.
ENV_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on its
    machine. ``World(0, 1, 0)`` is a plain single-process run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def requested() -> bool:
    """Whether this process was started by torchrun for a run of more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def world() -> World:
    """The initialized process group's world, or the single-process one."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        return World(dist.get_rank(), dist.get_world_size(), local)
    return World()


def init(device: torch.device | str | None = None, timeout_s: float = 1800.0) -> World:
    """Join the process group torchrun describes (idempotent; a no-op without torchrun).

    The backend is NCCL when ``device`` is a CUDA device, gloo otherwise. On CUDA, the
    rank's GPU is ``cuda:LOCAL_RANK`` (see :func:`rank_device`).

    Raises
    ------
    RuntimeError
        When the environment is incomplete (a variable of :data:`ENV_VARS` missing).
    """
    if not requested():
        return World()
    if dist.is_initialized():
        return world()
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: start "
            "distributed runs with torchrun (or trainlab fit --nproc N)"
        )
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return world()


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for a CUDA device under torchrun,
    the device itself otherwise."""
    if device.type == "cuda" and requested():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 and in a single-process run."""
    return world().main


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (nothing to do in a single process)."""
    if world().distributed:
        if dist.get_backend() == "nccl" and not tensor.is_cuda:  # NCCL reduces GPU tensors
            on_gpu = tensor.cuda()
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            tensor.copy_(on_gpu)
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable value; rank 0's own is returned there)."""
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank is here."""
    if world().distributed:
        dist.barrier()


def on_main(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on rank 0 only and give every rank its result — or raise its exception
    on every rank, so a check that fails on rank 0 stops all ranks alike."""
    if not world().distributed:
        return fn(*args, **kwargs)
    outcome: tuple[str, Any] = ("ok", None)
    if world().main:
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except Exception as err:  # sent to the other ranks, raised everywhere
            outcome = ("error", err)
    kind, value = broadcast_object(outcome)
    if kind == "error":
        raise value
    return value
