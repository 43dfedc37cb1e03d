"""``SGD``: stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from myelin import ops
from myelin.optim.optimizer import Optimizer, _check_bool, _check_real

if TYPE_CHECKING:
    from myelin._typing import ParamsT


class SGD(Optimizer):
    """Stochastic gradient descent (``torch.optim.SGD``,
    https://pytorch.org/docs/stable/generated/torch.optim.SGD.html).

    With ``g`` the gradient (negated when ``maximize``), each step computes
    ``g += weight_decay * p``; with momentum ``b = g`` on the first step, then
    ``b = momentum * b + (1 - dampening) * g``, and ``g = g + momentum * b`` (Nesterov) or
    ``g = b``; finally ``p -= lr * g``. One fused kernel call per parameter
    (:func:`myelin.ops.sgd_step`).

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Tensors to optimize, or parameter groups (see :class:`Optimizer`).
    lr : float
        Learning rate, >= 0.
    momentum : float
        Momentum factor, >= 0.
    dampening : float
        Dampening of the momentum.
    weight_decay : float
        L2 penalty, >= 0.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    maximize : bool
        Maximize the objective instead of minimizing it.

    State per parameter: ``momentum_buffer`` (only when ``momentum != 0``).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        _check_real(group["lr"], "lr", 0.0)
        _check_real(group["momentum"], "momentum", 0.0)
        _check_real(group["dampening"], "dampening")
        _check_real(group["weight_decay"], "weight_decay", 0.0)
        group["nesterov"] = _check_bool(group["nesterov"], "nesterov")
        group["maximize"] = _check_bool(group["maximize"], "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def _update_group(self, params: list, group: dict) -> None:
        """All of a group's ready parameters in one multi-tensor call."""
        if group["maximize"]:
            super()._update_group(params, group)
            return
        datas = [p._data for p in params]
        bufs, firsts = None, [False] * len(params)
        if group["momentum"] != 0:
            states = [self.state.get(p, {}) for p in params]
            firsts = [s.get("momentum_buffer") is None for s in states]
            bufs = [
                s["momentum_buffer"] if "momentum_buffer" in s else np.zeros_like(d)
                for s, d in zip(states, datas, strict=True)
            ]
        try:
            self._multi(datas, params, bufs, firsts, group)
        except (TypeError, ValueError):
            # a gradient or parameter the kernel cannot take as it is: one by one, with copies
            super()._update_group(params, group)
            return
        if bufs is not None:
            for p, s, b in zip(params, states, bufs, strict=True):
                s["momentum_buffer"] = b
                self.state[p] = s

    @staticmethod
    def _multi(datas, params, bufs, firsts, group) -> None:
        ops.sgd_step_multi(
            datas,
            [p._grad for p in params],
            bufs,
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"],
            first_steps=firsts,
        )

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        if group["maximize"]:
            grad = -grad
        buf = None
        first = False
        if group["momentum"] != 0:
            first = state.get("momentum_buffer") is None
            buf = self._buffer(state, "momentum_buffer", param)
        ops.sgd_step(
            param,
            grad,
            buf,
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"],
            first_step=first,
        )
