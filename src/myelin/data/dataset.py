"""Map-style datasets: ``Dataset``, ``TensorDataset``, ``Subset``, ``ConcatDataset`` and
``random_split`` (after ``torch.utils.data``, https://pytorch.org/docs/stable/data.html)."""

from __future__ import annotations

import bisect
import math
import numbers
import operator
import warnings
from typing import TYPE_CHECKING

import numpy as np

from myelin import _random
from myelin.tensor import Tensor, as_tensor

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from myelin._typing import GeneratorLike, TensorLike

__all__ = ["ConcatDataset", "Dataset", "Subset", "TensorDataset", "random_split"]


class Dataset:
    """The base of map-style datasets (``torch.utils.data.Dataset``).

    A subclass maps an index in ``[0, len(dataset))`` to one sample with ``__getitem__`` and
    says how many samples it holds with ``__len__``. ``a + b`` is ``ConcatDataset([a, b])``.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.Dataset
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __add__(self, other) -> ConcatDataset:
        return ConcatDataset([self, other])


def _native(x):
    """An ndarray in the machine's byte order (a copy when it is not, else ``x`` itself); any
    other ``x`` as is. The kernels read native numbers only."""
    if isinstance(x, np.ndarray) and not x.dtype.isnative:
        return x.astype(x.dtype.newbyteorder("="))
    return x


def _as_index(index):
    """A Tensor index as its ndarray; anything else as is (NumPy indexing rules apply)."""
    return index._data if isinstance(index, Tensor) else index


class TensorDataset(Dataset):
    """Samples are the rows of tensors sharing their first dimension
    (``torch.utils.data.TensorDataset``).

    Parameters
    ----------
    *tensors : Tensor, ndarray or nested list
        Stored as myelin Tensors (ndarrays without a copy, unless their byte order is not the
        machine's: a big-endian array, read from a file say, is copied into native order once
        here; lists with myelin's defaults, float32 for floats and int64 for ints). All must
        have the same size ``N`` in dimension 0.

    ``dataset[i]`` is the tuple ``(t[i] for t in tensors)``; ``i`` may be an int, a slice or an
    integer index array (list, ndarray or Tensor), which gives a tuple of batches in one
    fancy-indexing call per tensor. Dtypes are kept (labels made with ``.long()`` stay int64).

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.TensorDataset
    """

    def __init__(self, *tensors: TensorLike) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor, got none")
        stored = []
        for k, t in enumerate(tensors):
            try:
                t = as_tensor(_native(t))
            except TypeError as exc:
                raise TypeError(
                    f"TensorDataset: tensor {k} could not be converted: {exc}"
                ) from None
            if t.ndim == 0:
                raise ValueError(
                    f"TensorDataset: tensor {k} is 0-dimensional; each tensor needs a first "
                    "dimension indexing the samples"
                )
            stored.append(t)
        sizes = [t.shape[0] for t in stored]
        if any(n != sizes[0] for n in sizes):
            raise ValueError(
                "TensorDataset: all tensors must have the same size in dimension 0, got sizes "
                f"{sizes}"
            )
        self.tensors = tuple(stored)

    def __getitem__(self, index) -> tuple:
        index = _as_index(index)
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
        return f"TensorDataset({shapes})"


def _index_array(indices, name: str) -> np.ndarray:
    """``indices`` (list, range, ndarray or Tensor of ints) as a 1-D int64 ndarray."""
    if isinstance(indices, Tensor):
        indices = indices._data
    arr = np.asarray(indices)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be a 1-D sequence of integers, got "
            f"{type(indices).__name__} of dtype {arr.dtype} and shape {arr.shape}"
        )
    return arr.astype(np.int64, copy=False)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order (``torch.utils.data.Subset``).

    Parameters
    ----------
    dataset : Dataset
        Any map-style dataset (an object with ``__getitem__`` and ``__len__``).
    indices : sequence of int
        Positions in ``dataset``, each in ``[-len(dataset), len(dataset))``; kept as the list
        ``subset.indices``.

    ``subset[i]`` is ``dataset[indices[i]]``. A slice or an index array is forwarded as one
    index array, so it works when ``dataset`` accepts index arrays (a ``TensorDataset`` or a
    ``Subset`` of one do).

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.Subset
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray) -> None:
        _check_map_style(dataset, "Subset: dataset")
        arr = _index_array(indices, "Subset: indices")
        n = len(dataset)
        if arr.size and (arr.min() < -n or arr.max() >= n):
            bad = arr[(arr < -n) | (arr >= n)][0]
            raise ValueError(
                f"Subset: index {int(bad)} is out of range for a dataset of {n} samples"
            )
        self.dataset = dataset
        self.indices = arr.tolist()

    def __getitem__(self, index):
        index = _as_index(index)
        if isinstance(index, numbers.Integral) or (
            isinstance(index, np.ndarray) and index.ndim == 0
        ):
            return self.dataset[self.indices[operator.index(index)]]
        return self.dataset[np.asarray(self.indices, dtype=np.int64)[index]]

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"Subset({len(self)} of {type(self.dataset).__name__})"


def _check_map_style(dataset, name: str) -> None:
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(
            f"{name} must be a map-style dataset (with __getitem__ and __len__), got "
            f"{type(dataset).__name__}"
        )


class ConcatDataset(Dataset):
    """Several datasets one after the other (``torch.utils.data.ConcatDataset``).

    Parameters
    ----------
    datasets : iterable of Dataset
        At least one map-style dataset.

    ``concat[i]`` finds the dataset holding sample ``i`` by bisecting ``cumulative_sizes``;
    negative indices count from the end.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.ConcatDataset
    """

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        try:
            datasets = list(datasets)
        except TypeError:
            raise TypeError(
                f"ConcatDataset: datasets must be an iterable of datasets, got "
                f"{type(datasets).__name__}"
            ) from None
        if not datasets:
            raise ValueError("ConcatDataset: datasets must not be empty")
        for k, d in enumerate(datasets):
            _check_map_style(d, f"ConcatDataset: datasets[{k}]")
        self.datasets = datasets
        total, sizes = 0, []
        for d in datasets:
            total += len(d)
            sizes.append(total)
        self.cumulative_sizes = sizes

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        try:
            i = operator.index(_as_index(index))
        except TypeError:
            raise TypeError(
                f"ConcatDataset indices must be integers, got {type(index).__name__}"
            ) from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a dataset of {n} samples")
        if i < 0:
            i += n
        k = bisect.bisect_right(self.cumulative_sizes, i)
        start = self.cumulative_sizes[k - 1] if k > 0 else 0
        return self.datasets[k][i - start]

    def __repr__(self) -> str:
        return f"ConcatDataset({len(self.datasets)} datasets, {len(self)} samples)"


def _split_lengths(lengths, n: int) -> list[int]:
    """Integer lengths summing to ``n``, from integer lengths or fractions summing to 1."""
    try:
        lengths = list(lengths)
    except TypeError:
        raise TypeError(
            f"random_split: lengths must be a sequence of ints or fractions, got "
            f"{type(lengths).__name__}"
        ) from None
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    for v in lengths:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(
                f"random_split: lengths must be ints or fractions, got {v!r} "
                f"({type(v).__name__}) in {lengths}"
            )
    if all(isinstance(v, numbers.Integral) for v in lengths):
        out = [int(v) for v in lengths]
        if any(v < 0 for v in out):
            raise ValueError(f"random_split: lengths must be non-negative, got {out}")
        if sum(out) != n:
            raise ValueError(
                f"random_split: lengths {out} sum to {sum(out)}; expected the length of the "
                f"dataset, {n} (or fractions summing to 1)"
            )
        return out
    fracs = [float(v) for v in lengths]
    if any(not 0.0 <= f <= 1.0 for f in fracs):
        raise ValueError(f"random_split: fractions must lie in [0, 1], got {fracs}")
    total = math.fsum(fracs)
    if not (math.isclose(total, 1.0) and total <= 1.0 + 1e-12):
        raise ValueError(
            f"random_split: fractions {fracs} sum to {total}; expected 1 "
            f"(or integer lengths summing to {n})"
        )
    # PyTorch's rule: floor every share, then hand out the remainder one by one, round robin.
    out = [math.floor(n * f) for f in fracs]
    for k in range(n - sum(out)):
        out[k % len(out)] += 1
    for k, v in enumerate(out):
        if v == 0:
            warnings.warn(
                f"random_split: split {k} has length 0 ({fracs[k]} of {n} samples)",
                UserWarning,
                stacklevel=3,
            )
    return out


def random_split(
    dataset: Dataset, lengths: Sequence[int | float], generator: GeneratorLike = None
) -> list[Subset]:
    """Split ``dataset`` at random into non-overlapping ``Subset``\\ s
    (``torch.utils.data.random_split``).

    Parameters
    ----------
    dataset : Dataset
        Any map-style dataset.
    lengths : sequence of int or of float
        Integer lengths summing to ``len(dataset)``, or fractions in ``[0, 1]`` summing to 1:
        each split then gets ``floor(len(dataset) * fraction)`` samples and the remainder is
        handed out one sample at a time, round robin from the first split (PyTorch's rule).
        Integer lengths are always lengths (PyTorch also reads ints summing to 1 as fractions).
    generator : myelin.Generator, optional
        The source of the permutation; the default generator (seeded by
        ``myelin.manual_seed``) when None.

    Returns
    -------
    list of Subset
        One per length, together a permutation of ``range(len(dataset))``.

    See https://pytorch.org/docs/stable/data.html#torch.utils.data.random_split
    """
    _check_map_style(dataset, "random_split: dataset")
    n = len(dataset)
    sizes = _split_lengths(lengths, n)
    perm = _random.get_rng(generator).permutation(n)
    bounds = np.cumsum([0, *sizes])
    return [Subset(dataset, perm[bounds[k] : bounds[k + 1]]) for k in range(len(sizes))]
