"""Loss modules (``torch.nn``'s), on logits where PyTorch's are."""

from __future__ import annotations

from typing import TYPE_CHECKING

from myelin.nn import functional as F
from myelin.nn.module import Module

if TYPE_CHECKING:
    from myelin._typing import TensorLike

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "MSELoss", "NLLLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {list(_REDUCTIONS)}, "
                f"got {reduction!r}"
            )
        self.reduction = reduction

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {"reduction": self.reduction}

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits ``(N, C)`` against integer labels ``(N,)``
    (``torch.nn.CrossEntropyLoss``), fused in one kernel with its gradient.

    Parameters
    ----------
    ignore_index : int
        Rows with this label are skipped (default -100, as PyTorch).
    reduction : "mean", "sum" or "none"
    label_smoothing : float in [0, 1]
    """

    def __init__(
        self,
        weight: TensorLike | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        if weight is not None:
            raise NotImplementedError("CrossEntropyLoss: per-class weight is not supported")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: TensorLike, target: TensorLike):
        return F.cross_entropy(
            input,
            target,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {
            "ignore_index": self.ignore_index,
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
        }


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (``torch.nn.NLLLoss``)."""

    def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.ignore_index = int(ignore_index)

    def forward(self, input: TensorLike, target: TensorLike):
        return F.nll_loss(input, target, self.ignore_index, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy on logits, stable (``torch.nn.BCEWithLogitsLoss``).
    Use this rather than a Sigmoid layer followed by :class:`BCELoss`."""

    def forward(self, input: TensorLike, target: TensorLike):
        return F.binary_cross_entropy_with_logits(input, target, self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities in [0, 1] (``torch.nn.BCELoss``)."""

    def forward(self, input: TensorLike, target: TensorLike):
        return F.binary_cross_entropy(input, target, self.reduction)


class MSELoss(_Loss):
    """Mean squared error (``torch.nn.MSELoss``)."""

    def forward(self, input: TensorLike, target: TensorLike):
        return F.mse_loss(input, target, self.reduction)
