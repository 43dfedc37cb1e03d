"""Learning-rate schedulers (``torch.optim.lr_scheduler``,
https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate).

A scheduler rewrites ``group["lr"]`` of its optimizer's parameter groups; call ``step()`` once
per epoch, after the optimizer's steps. The epoch-indexed schedulers compute each learning rate
from its closed form at ``last_epoch``, so a long run accumulates no rounding drift.
"""

from __future__ import annotations

import bisect
import copy
import math
import numbers
import operator
from typing import TYPE_CHECKING

from myelin.optim.optimizer import Optimizer, _check_real

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "MultiStepLR",
    "ReduceLROnPlateau",
    "StepLR",
]


def _check_int(value, name: str, low: int | None = None) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if low is not None and v < low:
        raise ValueError(f"invalid {name}: {value} (expected {name} >= {low})")
    return v


def _check_optimizer(optimizer) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a myelin.optim.Optimizer, got {type(optimizer).__name__}"
        )
    return optimizer


class LRScheduler:
    """Base class of the epoch-indexed schedulers (``torch.optim.lr_scheduler.LRScheduler``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.LRScheduler.html).

    On construction it records each group's ``initial_lr`` (its current ``lr``, unless resuming
    with ``last_epoch >= 0``), keeps them in ``base_lrs`` and applies the learning rate of epoch
    0. Subclasses define ``get_lr()``: the learning rates at ``last_epoch``.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose learning rates are scheduled.
    last_epoch : int
        The index of the last epoch when resuming; -1 to start afresh.

    Attributes
    ----------
    optimizer : Optimizer
    last_epoch : int
        The epoch whose learning rates are in effect (0 after construction).
    base_lrs : list of float
        The initial learning rate of each group.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self.optimizer = _check_optimizer(optimizer)
        last_epoch = _check_int(last_epoch, "last_epoch", -1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"param_groups[{i}] has no 'initial_lr', needed to resume a schedule at "
                        f"last_epoch={last_epoch}; start with last_epoch=-1 instead"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list = []
        self.step()

    def get_lr(self) -> list:
        """The learning rate of each group at ``last_epoch``."""
        raise NotImplementedError(f"{type(self).__name__} does not define get_lr()")

    def step(self, epoch: int | None = None) -> None:
        """Advance to the next epoch (or to ``epoch``) and set each group's ``lr``."""
        if epoch is None:
            self.last_epoch += 1
        else:
            self.last_epoch = _check_int(epoch, "epoch", 0)
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list:
        """The learning rate of each group set by the last ``step()`` (a list, one per group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute but the optimizer (``LRScheduler.state_dict``)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore attributes saved by :meth:`state_dict`."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        if "optimizer" in state_dict:
            raise ValueError("state_dict has an 'optimizer' entry; a scheduler's state has none")
        self.__dict__.update(copy.deepcopy(dict(state_dict)))


_LRScheduler = LRScheduler


class StepLR(LRScheduler):
    """Decay the learning rate by ``gamma`` every ``step_size`` epochs
    (``torch.optim.lr_scheduler.StepLR``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.StepLR.html):
    ``lr = base_lr * gamma ** (epoch // step_size)``.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Period of the decay, in epochs (>= 1).
    gamma : float
        Multiplicative factor of the decay.
    last_epoch : int
        See :class:`LRScheduler`.

    Examples
    --------
    >>> scheduler = StepLR(optimizer, step_size=10, gamma=0.5)
    >>> for epoch in range(30):
    ...     train_one_epoch()
    ...     scheduler.step()
    >>> scheduler.get_last_lr()[0]
    """

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ):
        self.step_size = _check_int(step_size, "step_size", 1)
        self.gamma = _check_real(gamma, "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        k = self.last_epoch // self.step_size
        return [base * self.gamma**k for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Decay the learning rate by ``gamma`` at each milestone epoch
    (``torch.optim.lr_scheduler.MultiStepLR``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiStepLR.html):
    ``lr = base_lr * gamma ** (number of milestones <= epoch)``; a milestone listed twice
    counts twice, as in PyTorch.

    Parameters
    ----------
    optimizer : Optimizer
    milestones : iterable of int
        Epochs at which to decay (any order).
    gamma : float
        Multiplicative factor of the decay.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ):
        try:
            items = list(milestones)
        except TypeError:
            raise TypeError(
                f"milestones must be an iterable of ints, got {type(milestones).__name__}"
            ) from None
        self.milestones = sorted(_check_int(m, f"milestones[{i}]", 0) for i, m in enumerate(items))
        self.gamma = _check_real(gamma, "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        k = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base * self.gamma**k for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Decay the learning rate by ``gamma`` every epoch
    (``torch.optim.lr_scheduler.ExponentialLR``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ExponentialLR.html):
    ``lr = base_lr * gamma ** epoch``.

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        Multiplicative factor of the decay.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = _check_real(gamma, "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base learning rate to ``eta_min`` over ``T_max`` epochs
    (``torch.optim.lr_scheduler.CosineAnnealingLR``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CosineAnnealingLR.html):
    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``. Past ``T_max``
    the curve continues (rising back over the next ``T_max`` epochs); there are no restarts.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Number of epochs of the descent (>= 1).
    eta_min : float
        Minimum learning rate.
    last_epoch : int
        See :class:`LRScheduler`.
    """

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ):
        self.T_max = _check_int(T_max, "T_max", 1)
        self.eta_min = _check_real(eta_min, "eta_min")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        c = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


class ReduceLROnPlateau(LRScheduler):
    """Reduce the learning rate when a monitored metric stops improving
    (``torch.optim.lr_scheduler.ReduceLROnPlateau``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html).

    ``step(metrics)`` takes the monitored value once per epoch. A value is an improvement when
    it beats the best so far by ``threshold`` (relative: ``best * (1 - threshold)`` in "min"
    mode, ``best * (1 + threshold)`` in "max"; absolute: ``best -/+ threshold``). After more
    than ``patience`` epochs without improvement each group's lr becomes
    ``max(lr * factor, min_lr)`` (unless that changes it by less than ``eps``), then
    ``cooldown`` epochs pass during which bad epochs are not counted.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}
        Whether the metric should decrease (a loss) or increase (an accuracy).
    factor : float
        Multiplier of the learning rate, in [0, 1).
    patience : int
        Epochs without improvement tolerated before a reduction (>= 0).
    threshold : float
        Minimum change counted as an improvement (>= 0).
    threshold_mode : {"rel", "abs"}
    cooldown : int
        Epochs to wait after a reduction before counting bad epochs again (>= 0).
    min_lr : float or list of float
        Lower bound of the lr, for all groups or one per group.
    eps : float
        Smallest change of lr applied; smaller reductions are skipped.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.optimizer = _check_optimizer(optimizer)
        self.factor = _check_real(factor, "factor", 0.0, 1.0, high_open=True)
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"expected {n} min_lrs (one per param group), got {len(min_lr)}")
            self.min_lrs = [_check_real(v, f"min_lr[{i}]", 0.0) for i, v in enumerate(min_lr)]
        else:
            self.min_lrs = [_check_real(min_lr, "min_lr", 0.0)] * n
        self.patience = _check_int(patience, "patience", 0)
        self.cooldown = _check_int(cooldown, "cooldown", 0)
        self.threshold = _check_real(threshold, "threshold", 0.0)
        self.eps = _check_real(eps, "eps", 0.0)
        self.mode = mode
        self.threshold_mode = threshold_mode
        self._init_is_better()
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self.best = self.mode_worse
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _init_is_better(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {self.threshold_mode!r}")
        self.mode_worse = math.inf if self.mode == "min" else -math.inf

    @property
    def in_cooldown(self) -> bool:
        """True while the cooldown after a reduction lasts."""
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether ``a`` improves on ``best`` by more than the threshold."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < best * (1.0 - self.threshold)
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (1.0 + self.threshold)
        return a > best + self.threshold

    def get_lr(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, metrics: float, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record this epoch's value of the monitored metric; reduce the lr after a plateau.

        Parameters
        ----------
        metrics : float
            The monitored value (a number, 0-d array or one-element Tensor).
        """
        if isinstance(metrics, (str, bytes)) or not (
            isinstance(metrics, numbers.Real) or hasattr(metrics, "__float__")
        ):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__}")
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else _check_int(epoch, "epoch", 0)
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._init_is_better()
