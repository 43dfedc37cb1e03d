"""``DistributedSampler``: each process of a data-parallel job reads its own shard of a dataset
(``torch.utils.data.distributed.DistributedSampler``,
https://pytorch.org/docs/stable/data.html#torch.utils.data.distributed.DistributedSampler).
"""

from __future__ import annotations

import operator

import numpy as np

from myelin.data.dataloader import Sampler, _check_bool
from myelin.data.dataset import _check_map_style

__all__ = ["DistributedSampler"]


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"DistributedSampler: {name} must be an int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(
            f"DistributedSampler: {name} must be an int, got {type(value).__name__} {value!r}"
        ) from None
    if v < low:
        raise ValueError(f"DistributedSampler: {name} must be >= {low}, got {v}")
    return v


def shard_indices(
    n: int, num_replicas: int, rank: int, shuffle: bool, seed: int, epoch: int, drop_last: bool
) -> np.ndarray:
    """The indices of ``range(n)`` that ``rank`` reads in ``epoch``: one permutation drawn from
    ``(seed, epoch)`` (the same on every rank), cut into ``num_replicas`` interleaved shards of
    equal length (the tail is dropped, or padded with indices from the start)."""
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    if drop_last:
        per_rank = n // num_replicas
        order = order[: per_rank * num_replicas]
    else:
        per_rank = -(-n // num_replicas)
        pad = per_rank * num_replicas - n
        if pad and n:
            order = np.concatenate([order, np.resize(order, pad)])
    return order[rank::num_replicas]


class DistributedSampler(Sampler):
    """The indices one rank reads in an epoch of data-parallel training.

    Every rank draws the same permutation of the dataset from ``(seed, epoch)`` and keeps every
    ``num_replicas``-th index starting at ``rank``: the shards are disjoint and together cover
    the dataset. Each shard has ``ceil(len(dataset) / num_replicas)`` indices (the permutation is
    padded with its own first indices so that every rank runs the same number of steps), or
    ``floor`` with ``drop_last=True``. Call :meth:`set_epoch` at the start of each epoch to
    reshuffle (``fit`` does it for a DataLoader built on this sampler).

    Parameters
    ----------
    dataset : Dataset
    num_replicas : int, optional
        The number of ranks; ``myelin.distributed.world_size()`` when None.
    rank : int, optional
        This rank; ``myelin.distributed.rank()`` when None.
    shuffle : bool
        Permute the indices each epoch (else the shards are ``rank, rank + num_replicas, ...``).
    seed : int
        Shared by all ranks; the permutation of epoch ``e`` depends only on ``(seed, e)``.
    drop_last : bool
        Drop the tail that does not divide evenly instead of padding.

    >>> sampler = DistributedSampler(train_ds, seed=0)
    >>> loader = DataLoader(train_ds, batch_size=64, sampler=sampler)
    >>> for epoch in range(epochs):
    ...     sampler.set_epoch(epoch)
    ...     for x, y in loader: ...
    """

    def __init__(
        self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False
    ) -> None:
        _check_map_style(dataset, "DistributedSampler: dataset")
        if num_replicas is None or rank is None:
            from myelin import distributed

            if num_replicas is None:
                num_replicas = distributed.world_size()
            if rank is None:
                rank = distributed.rank()
        self.num_replicas = _check_int(num_replicas, "num_replicas", 1)
        self.rank = _check_int(rank, "rank", 0)
        if self.rank >= self.num_replicas:
            raise ValueError(
                f"DistributedSampler: rank must be in [0, {self.num_replicas - 1}] for "
                f"num_replicas={self.num_replicas}, got {self.rank}"
            )
        self.dataset = dataset
        self.shuffle = _check_bool(shuffle, "shuffle", "DistributedSampler")
        self.seed = _check_int(seed, "seed", 0)
        self.drop_last = _check_bool(drop_last, "drop_last", "DistributedSampler")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` from now on (the same call on every rank)."""
        self.epoch = _check_int(epoch, "epoch", 0)

    @property
    def num_samples(self) -> int:
        """Indices this rank gets per epoch (the same on every rank)."""
        n, r = len(self.dataset), self.num_replicas
        return n // r if self.drop_last else -(-n // r)

    def _epoch_indices(self) -> np.ndarray:
        return shard_indices(
            len(self.dataset),
            self.num_replicas,
            self.rank,
            self.shuffle,
            self.seed,
            self.epoch,
            self.drop_last,
        )

    def __iter__(self):
        return iter(self._epoch_indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
