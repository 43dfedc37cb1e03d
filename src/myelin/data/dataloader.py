"""``DataLoader``, its samplers and ``default_collate`` (after ``torch.utils.data``,
https://pytorch.org/docs/stable/data.html).

A batch of a ``TensorDataset``, or of a ``Subset`` of one (nested or not), is cut from each stored
array with one fancy-indexing call on the batch's index array; any other dataset is read sample by
sample and the samples are stacked by the collate function.
"""

from __future__ import annotations

import collections.abc
import itertools
import numbers
import operator
from typing import TYPE_CHECKING

import numpy as np

from myelin import _random
from myelin._autograd import is_grad_enabled
from myelin.data.dataset import Subset, TensorDataset, _check_map_style, _native
from myelin.tensor import Tensor, stack

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence, Sized
    from typing import Any

    from myelin._typing import GeneratorLike
    from myelin.data.dataset import Dataset

__all__ = [
    "BatchSampler",
    "DataLoader",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "default_collate",
]


def _check_bool(value, name: str, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r}")
    return bool(value)


def _check_positive_int(value, name: str, owner: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a positive int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{owner}: {name} must be a positive int, got {value!r} ({type(value).__name__})"
        ) from None
    if v <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {v}")
    return v


# ---------------------------------------------------------------- samplers


# Indices a sampler hands on at a time: RandomSampler's draws with replacement, and the pieces
# read from a sampler without _epoch_chunks or _epoch_indices. An epoch of any length then holds
# at most this many indices (512 KiB) besides one permutation of the data source.
_CHUNK = 1 << 16


class Sampler:
    """The base of samplers: iterating one yields dataset indices (``torch.utils.data.Sampler``).

    A subclass implements ``__iter__`` (and ``__len__`` for ``len(loader)``). myelin's own
    samplers also give an epoch as int64 arrays (``_epoch_chunks``, or ``_epoch_indices`` for
    one array), which the ``DataLoader`` uses instead of iterating index by index.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.Sampler
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1`` (``torch.utils.data.SequentialSampler``).

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.SequentialSampler
    """

    def __init__(self, data_source: Sized) -> None:
        _check_map_style(data_source, "SequentialSampler: data_source")
        self.data_source = data_source

    def _epoch_indices(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self):
        return iter(self._epoch_indices().tolist())

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """The indices of ``data_source`` in random order (``torch.utils.data.RandomSampler``).

    Parameters
    ----------
    data_source : Dataset
    replacement : bool
        Draw ``num_samples`` indices independently (with repeats) instead of a permutation.
    num_samples : int, optional
        Indices per epoch; ``len(data_source)`` by default. Without replacement, more than
        ``len(data_source)`` chains fresh permutations. Indices are drawn as the iteration
        reaches them, some 65536 at a time, so any ``num_samples`` starts at once in bounded
        memory.
    generator : myelin.Generator, optional
        The default generator (seeded by ``myelin.manual_seed``) when None. Every epoch draws
        anew from it, so epochs differ and a seeded run repeats exactly.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.RandomSampler
    """

    def __init__(
        self,
        data_source: Sized,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: GeneratorLike = None,
    ) -> None:
        _check_map_style(data_source, "RandomSampler: data_source")
        self.data_source = data_source
        self.replacement = _check_bool(replacement, "replacement", "RandomSampler")
        if num_samples is not None:
            num_samples = _check_positive_int(num_samples, "num_samples", "RandomSampler")
        self._num_samples = num_samples
        _random.get_rng(generator)  # validates the type now rather than at the first epoch
        self.generator = generator

    @property
    def num_samples(self) -> int:
        """Indices drawn per epoch: ``num_samples`` if given, else ``len(data_source)``."""
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _epoch_chunks(self):
        """The epoch's indices as an iterator of int64 arrays, drawn as they are needed (as
        PyTorch's sampler does): with replacement ``_CHUNK`` at a time (in one draw when
        ``num_samples <= _CHUNK``), without it whole permutations of ``data_source``, about
        ``_CHUNK`` indices' worth (at least one) at a time. The first array is drawn now, the
        rest on demand, so an epoch of any ``num_samples`` starts at once and holds one chunk
        at a time. A seeded generator repeats the sequence exactly."""
        # The rng is looked up every epoch: manual_seed replaces the default generator's state.
        rng = _random.get_rng(self.generator)
        n, k = len(self.data_source), self.num_samples
        if n == 0:
            if self._num_samples is not None:
                raise ValueError("RandomSampler: cannot draw samples from an empty data_source")
            return iter(())
        if self.replacement:
            step = _CHUNK

            def draw(size):
                return rng.integers(0, n, size=size, dtype=np.int64)
        else:
            step = n * max(1, _CHUNK // n)  # whole permutations, about _CHUNK indices

            def draw(size):
                perms = [rng.permutation(n) for _ in range(-(-size // n))]
                return np.concatenate(perms)[:size].astype(np.int64, copy=False)

        first = draw(min(step, k))

        def rest():
            yield first
            for start in range(step, k, step):
                yield draw(min(step, k - start))

        return rest()

    def _epoch_indices(self) -> np.ndarray:
        """The whole epoch as one int64 array (``num_samples`` of them: for small epochs)."""
        chunks = list(self._epoch_chunks())
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)

    def __iter__(self):
        chunks = self._epoch_chunks()
        return itertools.chain.from_iterable(chunk.tolist() for chunk in chunks)

    def __len__(self) -> int:
        return self.num_samples


def _sampler_chunks(sampler):
    """One epoch of ``sampler`` as an iterator of int64 arrays: its own chunks or epoch array
    where it has them, else its indices read ``_CHUNK`` at a time."""
    if hasattr(sampler, "_epoch_chunks"):
        return sampler._epoch_chunks()
    if hasattr(sampler, "_epoch_indices"):
        return iter((sampler._epoch_indices(),))
    it = iter(sampler)

    def pieces():
        while True:
            piece = np.fromiter(
                (operator.index(i) for i in itertools.islice(it, _CHUNK)), dtype=np.int64
            )
            if piece.size == 0:
                return
            yield piece

    return pieces()


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``
    (``torch.utils.data.BatchSampler``).

    Parameters
    ----------
    sampler : Sampler or iterable of int
    batch_size : int
        Positive.
    drop_last : bool
        Drop the last batch when it is shorter than ``batch_size``.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.BatchSampler
    """

    def __init__(self, sampler: Sampler | Sequence[int], batch_size: int, drop_last: bool) -> None:
        self.sampler = sampler
        self.batch_size = _check_positive_int(batch_size, "batch_size", "BatchSampler")
        self.drop_last = _check_bool(drop_last, "drop_last", "BatchSampler")

    def _epoch_batches(self):
        """The epoch's batches as int64 arrays: views into the sampler's chunks, a batch across
        chunks joined from its pieces."""
        b = self.batch_size
        pending, have = [], 0  # the pieces of a batch begun in earlier chunks
        for chunk in _sampler_chunks(self.sampler):
            start, n = 0, chunk.shape[0]
            if have:
                start = min(b - have, n)
                pending.append(chunk[:start])
                have += start
                if have < b:
                    continue
                yield np.concatenate(pending)
                pending, have = [], 0
            stop = start + (n - start) // b * b
            for s in range(start, stop, b):
                yield chunk[s : s + b]
            if stop < n:
                pending, have = [chunk[stop:]], n - stop
        if have and not self.drop_last:
            yield np.concatenate(pending)

    def __iter__(self):
        for batch in self._epoch_batches():
            yield batch.tolist()

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# ---------------------------------------------------------------- collate


def _stack_arrays(arrays: list, what: str) -> np.ndarray:
    """The arrays stacked along a new first axis, in the machine's byte order (samples read
    from a big-endian file included)."""
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"default_collate: the {what} of a batch have different shapes {sorted(shapes)}; "
            "stack needs equal shapes"
        )
    return _native(np.stack(arrays))


def default_collate(batch: Sequence[Any]):
    """Stack a list of samples into a batch (``torch.utils.data.default_collate``).

    Parameters
    ----------
    batch : list
        Samples of one structure: each a Tensor, an ndarray, a number, a string, or a tuple,
        list or dict of those (nested).

    Returns
    -------
    The same structure with each leaf stacked along a new first axis: Tensors and ndarrays
    into a Tensor of their dtype; Python ints into int64, Python floats into float64 (as PyTorch
    does) and bools into bool Tensors; NumPy scalars keep their dtype; strings stay a list. A
    tuple of samples gives a tuple (a named tuple keeps its type), a dict a dict.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.default_collate
    """
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        raise TypeError(f"default_collate: batch must be a list of samples, got {type(batch)}")
    if len(batch) == 0:
        raise ValueError("default_collate: batch is empty")
    elem = batch[0]
    if isinstance(elem, Tensor):
        if not all(isinstance(s, Tensor) for s in batch):
            raise TypeError("default_collate: a batch mixes Tensors with other types")
        if is_grad_enabled() and any(s.requires_grad for s in batch):
            return stack(batch)
        return Tensor(_stack_arrays([s._data for s in batch], "tensors"))
    if isinstance(elem, np.ndarray):
        arrays = [np.asarray(s) for s in batch]
        if any(a.dtype.kind not in "biuf" for a in arrays):
            raise TypeError(
                f"default_collate: arrays of dtype {elem.dtype} cannot form a Tensor; "
                "expected bool, integer or floating-point"
            )
        return Tensor(_stack_arrays(arrays, "arrays"))
    if isinstance(elem, np.generic) and elem.dtype.kind in "biuf":
        return Tensor(np.array(batch, dtype=elem.dtype))
    if isinstance(elem, bool):
        return Tensor(np.array(batch, dtype=np.bool_))
    if isinstance(elem, numbers.Integral):
        return Tensor(np.array(batch, dtype=np.int64))
    if isinstance(elem, numbers.Real):
        return Tensor(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        return type(elem)({key: default_collate([s[key] for s in batch]) for key in elem})  # type: ignore[call-arg]
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(s) != size for s in batch):
            raise ValueError(
                "default_collate: the samples of a batch are sequences of different lengths "
                f"{sorted({len(s) for s in batch})}"
            )
        fields = [default_collate(list(column)) for column in zip(*batch, strict=True)]
        if isinstance(elem, tuple):
            return type(elem)(*fields) if hasattr(elem, "_fields") else tuple(fields)
        return fields
    raise TypeError(
        "default_collate: samples must be Tensors, ndarrays, numbers, strings, or tuples, lists "
        f"or dicts of them; got {type(elem).__name__}"
    )


# ---------------------------------------------------------------- loader


def _tensor_source(dataset):
    """``(tensors, rows)`` when every sample of ``dataset`` is ``tuple(t[rows[i]] for t in
    tensors)`` (a TensorDataset, possibly under Subsets; ``rows`` None for the identity),
    else None. Subclasses that override ``__getitem__`` take the generic path."""
    rows = None
    while isinstance(dataset, Subset) and type(dataset).__getitem__ is Subset.__getitem__:
        idx = np.asarray(dataset.indices, dtype=np.int64)
        rows = idx if rows is None else idx[rows]
        dataset = dataset.dataset
    if isinstance(dataset, TensorDataset) and (
        type(dataset).__getitem__ is TensorDataset.__getitem__
    ):
        return dataset.tensors, rows
    return None


class DataLoader:
    """Iterate over a dataset in batches (``torch.utils.data.DataLoader``).

    Parameters
    ----------
    dataset : Dataset
        A map-style dataset (with ``__getitem__`` and ``__len__``).
    batch_size : int
        Samples per batch (positive). Default 1.
    shuffle : bool
        Visit the samples in a fresh random order every epoch (a ``RandomSampler``).
    drop_last : bool
        Drop the last batch when it is shorter than ``batch_size``.
    generator : myelin.Generator, optional
        The source of the shuffling; the default generator (seeded by ``myelin.manual_seed``)
        when None.
    sampler : Sampler or iterable of int, optional
        The order of the indices; excludes ``shuffle``.
    batch_sampler : BatchSampler or iterable of lists of int, optional
        Gives whole batches of indices; excludes ``batch_size``, ``shuffle``, ``sampler`` and
        ``drop_last``.
    collate_fn : callable, optional
        Turns a list of samples into a batch; :func:`default_collate` when None.
    num_workers, pin_memory, persistent_workers
        Accepted for PyTorch compatibility and ignored: batches are cut in this process (one
        fancy-indexing call per tensor is faster than handing batches between processes).

    Iterating yields one batch per step: for a ``TensorDataset`` (or a ``Subset`` of one) a tuple
    of Tensors cut with one fancy-indexing call per stored tensor, dtypes kept (int64 labels
    stay int64); for other datasets ``collate_fn`` of the list of samples. ``len(loader)`` is the
    number of batches per epoch.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.DataLoader
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = False,
        *,
        drop_last: bool = False,
        generator: GeneratorLike = None,
        sampler: Sampler | Sequence[int] | None = None,
        batch_sampler: Sampler | Sequence[Sequence[int]] | None = None,
        collate_fn: Callable[[list], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        _check_map_style(dataset, "DataLoader: dataset")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers must be an int >= 0, got {num_workers!r}")
        shuffle = _check_bool(shuffle, "shuffle", "DataLoader")
        drop_last = _check_bool(drop_last, "drop_last", "DataLoader")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(
                f"DataLoader: collate_fn must be callable, got {type(collate_fn).__name__}"
            )
        _random.get_rng(generator)  # a wrong type fails here, not at the first epoch
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler excludes batch_size, shuffle, sampler and drop_last"
                )
            batch_size = None
        else:
            batch_size = _check_positive_int(batch_size, "batch_size", "DataLoader")
            if sampler is not None and shuffle:
                raise ValueError("DataLoader: sampler excludes shuffle=True; give one or the other")
            if sampler is None:
                if shuffle:
                    sampler = RandomSampler(dataset, generator=generator)
                else:
                    sampler = SequentialSampler(dataset)
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.generator = generator
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.collate_fn = default_collate if collate_fn is None else collate_fn

    def _index_batches(self):
        bs = self.batch_sampler
        if hasattr(bs, "_epoch_batches"):
            yield from bs._epoch_batches()
            return
        for batch in bs:
            yield np.asarray(batch, dtype=np.int64)

    def __iter__(self):
        source = _tensor_source(self.dataset) if self.collate_fn is default_collate else None
        if source is not None:
            tensors, rows = source
            for idx in self._index_batches():
                take = idx if rows is None else rows[idx]
                yield tuple(t[take] for t in tensors)
            return
        for idx in self._index_batches():
            yield self.collate_fn([self.dataset[i] for i in idx.tolist()])

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, "
            f"batch_size={self.batch_size}, batches={len(self)})"
        )
