"""``myelin.optim``: optimizers on the fused C updates of :mod:`myelin.ops`, and
``lr_scheduler`` (https://pytorch.org/docs/stable/optim.html)."""

from myelin.optim import lr_scheduler
from myelin.optim.adam import Adam, AdamW
from myelin.optim.optimizer import Optimizer
from myelin.optim.rmsprop import RMSprop
from myelin.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
