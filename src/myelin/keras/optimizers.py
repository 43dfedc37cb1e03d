"""Keras-style optimizers (https://keras.io/api/optimizers/): ``Adam``, ``AdamW``, ``SGD``,
``RMSprop`` with Keras' argument names and defaults.

They are created without parameters, as in Keras; ``build(parameters)`` returns the matching
:mod:`myelin.optim` optimizer over them (``compile`` calls it once the model's parameters
exist). Keras and PyTorch write the same updates with a few differences in where epsilon goes
(Keras' Adam adds it to ``sqrt(v)`` before bias correction, its RMSprop inside the square
root); the optimizers built here use PyTorch's placement, which differs by terms of the order of
``epsilon``. Keras' ``weight_decay`` is decoupled (``w -= lr * weight_decay * w``), which is
PyTorch's AdamW; for SGD without momentum it equals PyTorch's ``weight_decay``.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

from myelin import optim

if TYPE_CHECKING:
    from collections.abc import Iterable

    from myelin.tensor import Tensor

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop"]


def _real(value, name: str, owner: str, low: float = 0.0, high: float | None = None) -> float:
    """``value`` as a float in ``[low, high)``; TypeError/ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if math.isnan(v) or v < low or (high is not None and v >= high):
        bounds = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: {name} must be {bounds}, got {value!r}")
    return v


def _flag(value, name: str, owner: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return value


class Optimizer:
    """Base of the Keras-style optimizer specs: holds the options, builds a
    :class:`myelin.optim.Optimizer` with :meth:`build`."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _real(learning_rate, "learning_rate", type(self).__name__)

    def build(self, parameters: Iterable[Tensor]) -> optim.Optimizer:
        """The :mod:`myelin.optim` optimizer over ``parameters`` (an iterable of Parameters,
        e.g. ``model.parameters()``) with these options."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments (Keras' ``get_config``)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Adam(Optimizer):
    """Adam (``keras.optimizers.Adam``, https://keras.io/api/optimizers/adam/); builds
    :class:`myelin.optim.Adam`, or :class:`myelin.optim.AdamW` when ``weight_decay`` is set
    (Keras' weight decay is decoupled)."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        weight_decay: float | None = None,
    ) -> None:
        super().__init__(learning_rate)
        owner = type(self).__name__
        self.beta_1 = _real(beta_1, "beta_1", owner, high=1.0)
        self.beta_2 = _real(beta_2, "beta_2", owner, high=1.0)
        self.epsilon = _real(epsilon, "epsilon", owner)
        self.amsgrad = _flag(amsgrad, "amsgrad", owner)
        self.weight_decay = (
            None if weight_decay is None else _real(weight_decay, "weight_decay", owner)
        )

    def build(self, parameters: Iterable[Tensor]) -> optim.Optimizer:
        cls = optim.AdamW if self.weight_decay else optim.Adam
        return cls(
            parameters,
            lr=self.learning_rate,
            betas=(self.beta_1, self.beta_2),
            eps=self.epsilon,
            weight_decay=self.weight_decay or 0.0,
            amsgrad=self.amsgrad,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (``keras.optimizers.AdamW``,
    https://keras.io/api/optimizers/adamw/); builds :class:`myelin.optim.AdamW`."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (``keras.optimizers.SGD``,
    https://keras.io/api/optimizers/sgd/); builds :class:`myelin.optim.SGD` (Keras' velocity
    ``v = momentum * v - lr * g`` is PyTorch's buffer times ``-lr``: the same steps).
    ``weight_decay`` needs ``momentum=0``, where Keras' decoupled decay and PyTorch's coincide.
    """

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
    ) -> None:
        super().__init__(learning_rate)
        owner = type(self).__name__
        self.momentum = _real(momentum, "momentum", owner)
        self.nesterov = _flag(nesterov, "nesterov", owner)
        if nesterov and not self.momentum:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.weight_decay = (
            None if weight_decay is None else _real(weight_decay, "weight_decay", owner)
        )
        if self.weight_decay and self.momentum:
            raise ValueError(
                "SGD: weight_decay with momentum is not supported (Keras decays the weights "
                "outside the momentum, myelin.optim.SGD inside it); use momentum=0, or "
                "myelin.optim.SGD(params, lr, momentum, weight_decay=...) for PyTorch's rule"
            )

    def build(self, parameters: Iterable[Tensor]) -> optim.Optimizer:
        return optim.SGD(
            parameters,
            lr=self.learning_rate,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay or 0.0,
        )


class RMSprop(Optimizer):
    """RMSprop (``keras.optimizers.RMSprop``, https://keras.io/api/optimizers/rmsprop/); builds
    :class:`myelin.optim.RMSprop` with ``alpha=rho``. Keras' decoupled ``weight_decay`` has no
    PyTorch counterpart here and is not accepted."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
    ) -> None:
        super().__init__(learning_rate)
        owner = type(self).__name__
        self.rho = _real(rho, "rho", owner, high=1.0)
        self.momentum = _real(momentum, "momentum", owner)
        self.epsilon = _real(epsilon, "epsilon", owner)
        self.centered = _flag(centered, "centered", owner)

    def build(self, parameters: Iterable[Tensor]) -> optim.Optimizer:
        return optim.RMSprop(
            parameters,
            lr=self.learning_rate,
            alpha=self.rho,
            eps=self.epsilon,
            momentum=self.momentum,
            centered=self.centered,
        )
