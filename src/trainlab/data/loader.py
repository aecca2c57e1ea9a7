"""Mini-batches from tensors in memory, in a reproducible order that can resume mid-epoch."""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["TensorLoader"]

# The permutation of epoch e comes from a generator seeded with seed·_SEED_STRIDE + e, so
# (seed, epoch) pairs do not collide for fewer than a million epochs.
_SEED_STRIDE = 1_000_003


class TensorLoader:
    """Iterate over (xb, yb) mini-batches by indexing in-memory tensors.

    A batch is ``X[idx], y[idx]`` for a slice ``idx`` of the epoch's sample order: one
    indexing operation, no per-sample collate, and the batches stay on the tensors' device.
    The order of epoch e is ``torch.randperm`` drawn from a ``torch.Generator`` seeded with
    ``seed · 1_000_003 + e`` (or ``0..N−1`` without shuffling), so it depends on
    (seed, e) only, never on the global random state.

    The loader remembers where it is: ``epoch`` (whose order the next iteration uses) and
    ``position`` (batches of that epoch already yielded). Iterating starts at ``position``;
    an iteration that runs to the end of the epoch moves on to epoch + 1, position 0; one
    that is abandoned early (``break``) leaves the position where it stopped, and the next
    iteration continues from there. :meth:`state_dict` and :meth:`load_state_dict` save and
    restore the two, so a resumed run yields exactly the batches that were still to come.

    Distributed training (:meth:`shard`): every rank draws the same order, cuts it into the
    same global batches of ``batch_size`` samples, and takes its share of each batch
    (``torch.tensor_split``: shares differ by at most one sample). ``batch_size`` stays the
    global batch, so the batches, and with them the training, do not depend on the
    number of processes; :attr:`batch_samples` is the global size of the batch last
    yielded, from which the Trainer weights each rank's loss. A last batch with fewer
    samples than ranks is dropped (a rank would get none).

    Parameters
    ----------
    X, y : torch.Tensor
        Inputs and targets with the same first dimension (NumPy arrays are converted).
    batch_size : int
        Samples per batch; the last batch of an epoch may be smaller.
    shuffle : bool
        Draw a fresh order for every epoch; if ``False``, every epoch is 0..N−1.
    seed : int
        Seed of the orders.
    drop_last : bool
        Drop the last batch of an epoch if it is smaller than ``batch_size``.

    Examples
    --------
    >>> loader = TensorLoader(torch.randn(10, 3), torch.arange(10), batch_size=4, seed=0)
    >>> len(loader), [len(yb) for _, yb in loader]
    (3, [4, 4, 2])
    """

    def __init__(
        self,
        X: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        X, y = torch.as_tensor(X), torch.as_tensor(y)
        if len(X) != len(y):
            raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.X, self.y = X, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.position = 0
        self.rank, self.world_size = 0, 1
        self.batch_samples = 0  # global size of the batch last yielded

    def shard(self, rank: int, world_size: int) -> TensorLoader:
        """Yield rank ``rank``'s share of every batch from now on (see the class notes);
        ``shard(0, 1)`` is the whole batch again. Returns the loader itself."""
        if not (isinstance(world_size, numbers.Integral) and world_size >= 1):
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if not (isinstance(rank, numbers.Integral) and 0 <= rank < world_size):
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank!r}")
        self.rank, self.world_size = int(rank), int(world_size)
        return self

    def __len__(self) -> int:
        """Number of (global) batches in one epoch."""
        n = len(self.X)
        if self.drop_last:
            return n // self.batch_size
        full, rest = divmod(n, self.batch_size)
        return full + (0 < rest and rest >= self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch ``epoch``'s order, from its first batch.

        Setting the epoch the loader is already in keeps its position, so calling
        ``set_epoch(e)`` after :meth:`load_state_dict` restored epoch e mid-way is safe.
        """
        if not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def order(self, epoch: int) -> Tensor:
        """The sample order of ``epoch`` (an int64 permutation of 0..N−1, on the CPU)."""
        # every rank draws this same order; __iter__ takes the rank's share of each batch
        n = len(self.X)
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator()
        generator.manual_seed((self.seed * _SEED_STRIDE + epoch) % 2**63)
        return torch.randperm(n, generator=generator)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, order = self.epoch, self.order(self.epoch)
        if self.X.device != order.device:
            order = order.to(self.X.device)
        size = self.batch_size
        for b in range(self.position, len(self)):
            idx = order[b * size : (b + 1) * size]
            self.batch_samples = len(idx)
            if self.world_size > 1:
                idx = torch.tensor_split(idx, self.world_size)[self.rank]
            # Counted before the yield: inside the loop body, state_dict() already treats
            # this batch as consumed.
            self.position = b + 1
            yield self.X[idx], self.y[idx]
        self.epoch, self.position = epoch + 1, 0

    def state_dict(self) -> dict:
        """Where the loader is: ``epoch``, ``position`` and the settings they depend on."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "n_samples": len(self.X),
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`: the next iteration skips ``position`` batches.

        Raises
        ------
        ValueError
            If the saved settings (seed, batch size, number of samples, shuffle, drop_last)
            differ from this loader's: the position would then point at other samples.
        """
        mine = self.state_dict()
        for key in ("seed", "batch_size", "n_samples", "shuffle", "drop_last"):
            if key in state and state[key] != mine[key]:
                raise ValueError(
                    f"cannot resume: the saved loader had {key}={state[key]!r}, this one "
                    f"has {key}={mine[key]!r}"
                )
        epoch, position = state["epoch"], state["position"]
        if not 0 <= position <= len(self):
            raise ValueError(f"position must be in 0..{len(self)}, got {position}")
        self.epoch, self.position = int(epoch), int(position)

    def __repr__(self) -> str:
        return (
            f"TensorLoader(n_samples={len(self.X)}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
            f"epoch={self.epoch}, position={self.position})"
        )
