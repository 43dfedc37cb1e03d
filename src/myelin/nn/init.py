"""Parameter initialisation in place (``torch.nn.init``); draws from myelin's seedable generator."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from myelin import _random
from myelin.tensor import Tensor, mark_modified

if TYPE_CHECKING:
    from myelin._typing import GeneratorLike

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


def _target(tensor) -> np.ndarray:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor must be a myelin Tensor, got {type(tensor).__name__}")
    if tensor._data.dtype.kind != "f":
        raise TypeError(f"tensor must be floating-point, got dtype {tensor._data.dtype}")
    return tensor._data


def _fans(a: np.ndarray) -> tuple[int, int]:
    if a.ndim < 2:
        raise ValueError(
            f"fan in and fan out need a tensor of at least 2 dimensions, got shape {a.shape}"
        )
    receptive = math.prod(a.shape[2:])
    return a.shape[1] * receptive, a.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for ``nonlinearity`` (``torch.nn.init.calculate_gain``)."""
    if nonlinearity in ("linear", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fill(tensor, values: np.ndarray | float) -> Tensor:
    a = _target(tensor)
    a[...] = values
    mark_modified(tensor)
    return tensor


def uniform_(
    tensor: Tensor | np.ndarray, a: float = 0.0, b: float = 1.0, generator: GeneratorLike = None
) -> Tensor:
    """Fill with samples of U(a, b)."""
    arr = _target(tensor)
    return _fill(tensor, _random.get_rng(generator).uniform(a, b, arr.shape))


def normal_(
    tensor: Tensor | np.ndarray,
    mean: float = 0.0,
    std: float = 1.0,
    generator: GeneratorLike = None,
) -> Tensor:
    """Fill with samples of N(mean, std^2)."""
    arr = _target(tensor)
    return _fill(tensor, _random.get_rng(generator).normal(mean, std, arr.shape))


def constant_(tensor: Tensor | np.ndarray, val: float) -> Tensor:
    """Fill with ``val`` in place."""
    return _fill(tensor, val)


def zeros_(tensor: Tensor | np.ndarray) -> Tensor:
    """Fill with zeros in place."""
    return _fill(tensor, 0.0)


def ones_(tensor: Tensor | np.ndarray) -> Tensor:
    """Fill with ones in place."""
    return _fill(tensor, 1.0)


def _fan(arr: np.ndarray, mode: str) -> int:
    fan_in, fan_out = _fans(arr)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")


def kaiming_uniform_(
    tensor: Tensor | np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: GeneratorLike = None,
) -> Tensor:
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)``."""
    fan = _fan(_target(tensor), mode)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Tensor | np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: GeneratorLike = None,
) -> Tensor:
    """He normal: N(0, std^2) with ``std = gain / sqrt(fan)``."""
    fan = _fan(_target(tensor), mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(
    tensor: Tensor | np.ndarray, gain: float = 1.0, generator: GeneratorLike = None
) -> Tensor:
    """Glorot uniform: U(-b, b) with ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(_target(tensor))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(
    tensor: Tensor | np.ndarray, gain: float = 1.0, generator: GeneratorLike = None
) -> Tensor:
    """Glorot normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(_target(tensor))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return normal_(tensor, 0.0, std, generator)
