"""Keras-style utilities (https://keras.io/api/utils/): ``set_random_seed``,
``to_categorical``."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import numpy as np

from myelin._random import manual_seed

if TYPE_CHECKING:
    from myelin._typing import ArrayLike, DTypeLike

__all__ = ["set_random_seed", "to_categorical"]

set_random_seed = manual_seed
"""Seed myelin's default generator (initialisation, dropout, ``fit``'s shuffling)
(``keras.utils.set_random_seed``); an alias of :func:`myelin.manual_seed`."""


def to_categorical(
    x: ArrayLike, num_classes: int | None = None, dtype: DTypeLike = "float32"
) -> np.ndarray:
    """One-hot rows for integer class labels (``keras.utils.to_categorical``,
    https://keras.io/api/utils/python_utils/#tocategorical-function).

    ``x`` of shape ``(...)`` (a trailing axis of size 1 is dropped, as Keras does) gives
    ``(..., num_classes)``; ``num_classes`` defaults to ``max(x) + 1``.
    """
    y = np.asarray(x)
    if y.dtype.kind == "f" and y.size and not np.all(y == np.round(y)):
        raise ValueError("to_categorical: x must hold integer class labels, got fractions")
    if y.dtype.kind not in "iuf" and y.size:
        raise TypeError(f"to_categorical: x must hold integer labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    num_classes = operator.index(num_classes)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"to_categorical: labels must be in [0, {num_classes}), got values in "
            f"[{y.min()}, {y.max()}]"
        )
    out = np.zeros((*y.shape, num_classes), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out
