"""``Adam`` and ``AdamW``: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from myelin import ops
from myelin.optim.optimizer import Optimizer, _check_betas, _check_bool, _check_real

if TYPE_CHECKING:
    from myelin._typing import ParamsT


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``, https://pytorch.org/docs/stable/generated/torch.optim.Adam.html).

    Each step, with ``g`` the gradient (negated when ``maximize``) and ``t`` the step number:
    ``g += weight_decay * p`` (or ``p *= 1 - lr * weight_decay`` when
    ``decoupled_weight_decay``), ``m = beta1 * m + (1 - beta1) * g``,
    ``v = beta2 * v + (1 - beta2) * g**2``, ``v_max = max(v_max, v)`` with amsgrad, then
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v or v_max) / sqrt(1 - beta2**t) + eps)``.
    One fused kernel call per parameter (:func:`myelin.ops.adam_step`).

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Tensors to optimize, or parameter groups (see :class:`Optimizer`).
    lr : float
        Learning rate, >= 0.
    betas : tuple of float
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        L2 penalty (or decoupled decay rate), >= 0.
    amsgrad : bool
        Use the maximum of past second moments (AMSGrad).
    maximize : bool
        Maximize the objective instead of minimizing it.
    decoupled_weight_decay : bool
        Decay the weights directly (AdamW) instead of adding an L2 term to the gradient.

    State per parameter: ``step`` (int), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
    ``max_exp_avg_sq``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        _check_real(group["lr"], "lr", 0.0)
        group["betas"] = _check_betas(group["betas"])
        _check_real(group["eps"], "eps", 0.0)
        _check_real(group["weight_decay"], "weight_decay", 0.0)
        for name in ("amsgrad", "maximize", "decoupled_weight_decay"):
            group[name] = _check_bool(group[name], name)

    def _update_group(self, params: list, group: dict) -> None:
        """All of a group's parameters in one multi-tensor call. The lists of arrays are kept
        between steps (a plan) while the parameters, their data arrays and the state stay the
        same objects."""
        if group["maximize"]:
            super()._update_group(params, group)
            return
        amsgrad = group["amsgrad"]
        plan = self._plans.get(id(group))
        inputs = None if plan is None else _plan_inputs(plan, params, self.state, amsgrad)
        if inputs is None:
            plan = self._plan(params, amsgrad)
            self._plans[id(group)] = plan
            inputs = _plan_inputs(plan, params, self.state, amsgrad)
        assert plan is not None and inputs is not None  # a new plan describes its parameters
        _, datas, m, v, vmax, states, _, _ = plan
        grads, steps = inputs
        try:
            ops.adam_step_multi(
                datas,
                grads,
                m,
                v,
                steps=steps,
                lr=group["lr"],
                betas=group["betas"],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
                amsgrad=amsgrad,
                max_exp_avg_sqs=vmax,
            )
        except (TypeError, ValueError):
            # a gradient or parameter the kernel cannot take as it is: one by one, with copies
            super()._update_group(params, group)
            return
        for s, step in zip(states, steps, strict=True):
            s["step"] = step

    def _plan(self, params: list, amsgrad: bool) -> tuple:
        states, datas = [], []
        for p in params:
            s = self.state[p]
            s.setdefault("step", 0)
            d = p._data
            self._buffer(s, "exp_avg", d)
            self._buffer(s, "exp_avg_sq", d)
            if amsgrad:
                self._buffer(s, "max_exp_avg_sq", d)
            states.append(s)
            datas.append(d)
        m = [s["exp_avg"] for s in states]
        v = [s["exp_avg_sq"] for s in states]
        vmax = [s["max_exp_avg_sq"] for s in states] if amsgrad else None
        return list(params), datas, m, v, vmax, states, self.state, amsgrad

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        if group["maximize"]:
            grad = -grad
        state.setdefault("step", 0)
        exp_avg = self._buffer(state, "exp_avg", param)
        exp_avg_sq = self._buffer(state, "exp_avg_sq", param)
        vmax = self._buffer(state, "max_exp_avg_sq", param) if group["amsgrad"] else None
        step = state["step"] + 1
        ops.adam_step(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            step=step,
            lr=group["lr"],
            betas=group["betas"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            amsgrad=group["amsgrad"],
            max_exp_avg_sq=vmax,
        )
        state["step"] = step


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``,
    https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html).

    Same as :class:`Adam` with ``decoupled_weight_decay=True``: each step first scales the
    parameter by ``1 - lr * weight_decay``, and the gradient carries no L2 term.

    Parameters
    ----------
    params : iterable of Tensor or of dict
        Tensors to optimize, or parameter groups (see :class:`Optimizer`).
    lr : float
        Learning rate, >= 0.
    betas : tuple of float
        Decay rates of the moment estimates, each in [0, 1).
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        Decoupled weight decay rate, >= 0 (default 1e-2).
    amsgrad : bool
        Use the maximum of past second moments (AMSGrad).
    maximize : bool
        Maximize the objective instead of minimizing it.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )


def _plan_inputs(plan: tuple, params: list, state, amsgrad: bool) -> tuple | None:
    """The gradients and next step numbers of ``params`` if the plan still describes them (same
    tensors, data arrays, state objects and buffers; a load_state_dict or an assignment to
    ``p.data`` makes a new plan), else None. One pass over the parameters."""
    old_params, datas, m, v, vmax, states, old_state, old_amsgrad = plan
    if old_state is not state or old_amsgrad != amsgrad or len(old_params) != len(params):
        return None
    get = state.get
    grads, steps = [], []
    for p, q, d, s, mi, vi in zip(params, old_params, datas, states, m, v, strict=True):
        if (
            p is not q
            or p._data is not d
            or get(p) is not s
            or s.get("exp_avg") is not mi
            or s.get("exp_avg_sq") is not vi
        ):
            return None
        grads.append(p._grad)
        steps.append(s["step"] + 1)
    if amsgrad:
        for s, wi in zip(states, vmax, strict=True):
            if s.get("max_exp_avg_sq") is not wi:
                return None
    return grads, steps
