"""``RMSprop``: gradient scaled by a running RMS, optionally centered and with momentum."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from myelin import ops
from myelin.optim.optimizer import Optimizer, _check_bool, _check_real

if TYPE_CHECKING:
    from myelin._typing import ParamsT


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop``,
    https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html).

    Each step, with ``g`` the gradient (negated when ``maximize``): ``g += weight_decay * p``,
    ``s = alpha * s + (1 - alpha) * g**2``; centered: ``a = alpha * a + (1 - alpha) * g`` and
    ``d = sqrt(s - a**2) + eps``, else ``d = sqrt(s) + eps``; with momentum
    ``b = momentum * b + g / d`` and ``p -= lr * b``, else ``p -= lr * g / d``.
    One fused kernel call per parameter (:func:`myelin.ops.rmsprop_step`).

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Tensors to optimize, or parameter groups (see :class:`Optimizer`).
    lr : float
        Learning rate, >= 0.
    alpha : float
        Smoothing constant of the squared-gradient average, >= 0.
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        L2 penalty, >= 0.
    momentum : float
        Momentum factor, >= 0.
    centered : bool
        Normalise by the estimated variance of the gradient instead of its second moment.
    maximize : bool
        Maximize the objective instead of minimizing it.

    State per parameter: ``step`` (int), ``square_avg``, ``momentum_buffer`` (when
    ``momentum > 0``) and ``grad_avg`` (when centered).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        _check_real(group["lr"], "lr", 0.0)
        _check_real(group["alpha"], "alpha", 0.0)
        _check_real(group["eps"], "eps", 0.0)
        _check_real(group["weight_decay"], "weight_decay", 0.0)
        _check_real(group["momentum"], "momentum", 0.0)
        group["centered"] = _check_bool(group["centered"], "centered")
        group["maximize"] = _check_bool(group["maximize"], "maximize")

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        if group["maximize"]:
            grad = -grad
        state.setdefault("step", 0)
        square_avg = self._buffer(state, "square_avg", param)
        buf = self._buffer(state, "momentum_buffer", param) if group["momentum"] > 0 else None
        gavg = self._buffer(state, "grad_avg", param) if group["centered"] else None
        ops.rmsprop_step(
            param,
            grad,
            square_avg,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            momentum_buffer=buf,
            grad_avg=gavg,
        )
        state["step"] += 1
