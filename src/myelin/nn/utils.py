"""Gradient utilities (``torch.nn.utils``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from myelin import ops
from myelin.tensor import Tensor

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _params(parameters) -> list:
    if isinstance(parameters, Tensor):
        return [parameters]
    return [p for p in parameters if p._grad is not None]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0
) -> Tensor:
    """Scale the gradients so that their global L2 norm is at most ``max_norm``.

    Returns the total norm before clipping, as a 0-d float64 Tensor
    (``torch.nn.utils.clip_grad_norm_``; only ``norm_type=2`` is supported).
    """
    if norm_type != 2.0:
        raise ValueError(f"clip_grad_norm_ supports norm_type=2 only, got {norm_type}")
    max_norm = float(max_norm)
    if not max_norm >= 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    params = [p for p in _params(parameters) if p._grad is not None]
    if not params:
        return Tensor(np.asarray(0.0))
    total = ops.global_norm([p._grad for p in params])
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 and math.isfinite(total):
        for p in params:
            p._grad *= p._grad.dtype.type(coef)
    return Tensor(np.asarray(total))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]``."""
    c = float(clip_value)
    for p in _params(parameters):
        np.clip(p._grad, -c, c, out=p._grad)
