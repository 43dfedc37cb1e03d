"""``Normalize``: standardise features with statistics fitted on the training data
(scikit-learn's ``StandardScaler``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from myelin.tensor import Tensor, _to_array

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from myelin._typing import TensorLike

__all__ = ["Normalize"]


class Normalize:
    """Standardise each feature to mean 0 and standard deviation 1: ``(x - mean_) / std_``.

    The statistics come from ``fit`` on the training data only and are then applied unchanged to
    validation, test and serving data (feeding unnormalised features is a classic mistake, and so
    is fitting the scaler on the data it is evaluated on). Mirrors scikit-learn's
    ``StandardScaler``:
    https://scikit-learn.org/stable/modules/generated/sklearn.preprocessing.StandardScaler.html

    Attributes
    ----------
    mean_ : ndarray of float64, shape ``x.shape[1:]``
        Per-feature mean over axis 0 of the data given to ``fit``.
    std_ : ndarray of float64, shape ``x.shape[1:]``
        Per-feature population standard deviation (``ddof=0``, as ``StandardScaler``); a feature
        with standard deviation 0 gets 1, so it is only centred.

    Notes
    -----
    ``transform`` returns the kind it is given: a Tensor (differentiable) for a Tensor, an ndarray
    for an ndarray or list. A floating-point input keeps its dtype (float32 stays float32);
    integers become float32 in a Tensor and float64 in an ndarray. ``norm(x)`` is
    ``norm.transform(x)``.

    Examples
    --------
    >>> norm = Normalize().fit(x_train)
    >>> x_train, x_val = norm.transform(x_train), norm.transform(x_val)
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    # ------------------------------------------------------------ fitting

    def fit(self, x: TensorLike) -> Normalize:
        """Compute ``mean_`` and ``std_`` over axis 0 of ``x`` (shape ``(N, ...)``, N >= 1);
        returns ``self``."""
        arr = self._array(x, "fit")
        if arr.shape[0] == 0:
            raise ValueError(f"Normalize.fit: x has no samples (shape {arr.shape})")
        mean = np.asarray(np.mean(arr, axis=0, dtype=np.float64))
        std = np.array(np.std(arr, axis=0, dtype=np.float64))
        std[std == 0] = 1.0
        self.mean_, self.std_ = mean, std
        return self

    def fit_transform(self, x: TensorLike):
        """``fit(x)``, then ``transform(x)``."""
        return self.fit(x).transform(x)

    # ------------------------------------------------------------ applying

    def transform(self, x: TensorLike):
        """``(x - mean_) / std_``, of the kind and (float) dtype of ``x``."""
        return self._apply(x, "transform", inverse=False)

    def inverse_transform(self, x: TensorLike):
        """``x * std_ + mean_``: undo ``transform``, of the kind and (float) dtype of ``x``."""
        return self._apply(x, "inverse_transform", inverse=True)

    def __call__(self, x: TensorLike):
        return self.transform(x)

    def _apply(self, x, what: str, inverse: bool):
        if self.mean_ is None:
            raise RuntimeError(
                f"Normalize.{what}: not fitted yet; call fit(x) on the training data first"
            )
        arr = self._array(x, what)
        if arr.shape[1:] != self.mean_.shape:
            raise ValueError(
                f"Normalize.{what}: fitted on {self._describe(self.mean_.shape)}, got x of shape "
                f"{arr.shape} with {self._describe(arr.shape[1:])}"
            )
        is_tensor = isinstance(x, Tensor)
        if arr.dtype.kind == "f":
            dt = arr.dtype.newbyteorder("=")  # a big-endian input gives native numbers
        else:
            dt = np.dtype(np.float32 if is_tensor else np.float64)
        mean, std = self.mean_.astype(dt), self.std_.astype(dt)  # type: ignore[union-attr]
        if is_tensor:
            xt = x.to(dt)
            return xt * Tensor(std) + Tensor(mean) if inverse else (xt - Tensor(mean)) / Tensor(std)
        xa = arr.astype(dt, copy=False)
        return xa * std + mean if inverse else (xa - mean) / std

    @staticmethod
    def _describe(feature_shape: tuple) -> str:
        if len(feature_shape) == 0:
            return "one value per sample"
        if len(feature_shape) == 1:
            return f"{feature_shape[0]} features"
        return f"features of shape {feature_shape}"

    @staticmethod
    def _array(x, what: str) -> np.ndarray:
        try:
            arr = _to_array(x)
        except TypeError as exc:
            raise TypeError(f"Normalize.{what}: x could not be read as numbers: {exc}") from None
        if arr.ndim == 0:
            raise ValueError(
                f"Normalize.{what}: x must have a sample dimension first, got a scalar"
            )
        return arr

    # ------------------------------------------------------------ state

    def state_dict(self) -> OrderedDict:
        """The fitted statistics: ``{"mean": mean_, "std": std_}`` (copies)."""
        if self.mean_ is None:
            raise RuntimeError("Normalize.state_dict: not fitted yet; call fit(x) first")
        return OrderedDict(mean=self.mean_.copy(), std=self.std_.copy())  # type: ignore[union-attr]

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore ``mean_`` and ``std_`` from the output of ``state_dict()``."""
        try:
            keys = set(state_dict.keys())
        except AttributeError:
            raise TypeError(
                "Normalize.load_state_dict: state_dict must be a mapping, got "
                f"{type(state_dict).__name__}"
            ) from None
        if keys != {"mean", "std"}:
            raise ValueError(
                f"Normalize.load_state_dict: expected the keys ['mean', 'std'], got {sorted(keys)}"
            )
        mean = np.array(_to_array(state_dict["mean"]), dtype=np.float64)
        std = np.array(_to_array(state_dict["std"]), dtype=np.float64)
        if mean.shape != std.shape:
            raise ValueError(
                f"Normalize.load_state_dict: mean has shape {mean.shape} but std has {std.shape}"
            )
        if not np.all(std > 0):
            raise ValueError("Normalize.load_state_dict: std must be positive everywhere")
        self.mean_, self.std_ = mean, std

    def __repr__(self) -> str:
        if self.mean_ is None:
            return "Normalize()"
        return f"Normalize(fitted on {self._describe(self.mean_.shape)})"
