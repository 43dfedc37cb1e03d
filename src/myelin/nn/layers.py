"""Layers: ``Linear`` (with an optional fused activation), activations, ``Dropout``, ``Flatten``,
``Identity``, ``Sequential`` (after ``torch.nn``)."""

from __future__ import annotations

import math
import numbers
import operator
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from myelin.nn import functional as F
from myelin.nn import init
from myelin.nn.module import Module, Parameter
from myelin.tensor import Tensor, _float_dtype

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from myelin._typing import DTypeLike, TensorLike

__all__ = [
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
]


def _positive_int(value, name: str, owner: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}") from None
    if v <= 0:
        raise ValueError(f"{owner}: {name} must be positive, got {v}")
    return v


def _int(value, name: str, owner: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}") from None


def _bool(value, name: str, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def _slope(value, owner: str) -> float:
    """A leaky_relu slope: a finite real number >= 0 (what the kernels take)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: negative_slope must be a real number, got {type(value).__name__}"
        )
    slope = float(value)
    if not (math.isfinite(slope) and slope >= 0.0):
        raise ValueError(f"{owner}: negative_slope must be finite and >= 0, got {value!r}")
    return slope


class Linear(Module):
    """``y = activation(x @ weight.T + bias)`` (``torch.nn.Linear``), one fused GEMM.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    activation : None, "relu", "leaky_relu", "sigmoid" or "tanh"
        Applied inside the GEMM's epilogue (myelin's addition; PyTorch has none).
    negative_slope : float
        The slope of "leaky_relu": a finite number >= 0.
    dtype : float32 (default) or float64

    Notes
    -----
    ``weight`` is ``(out_features, in_features)`` and both it and ``bias`` start as PyTorch's:
    U(-1/sqrt(in_features), 1/sqrt(in_features)). Input ``(..., in_features)``, output
    ``(..., out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str | None = None,
        *,
        negative_slope: float = 0.01,
        dtype: DTypeLike | None = None,
    ) -> None:
        super().__init__()
        shapes = self._parameter_shapes(
            in_features, out_features, bias, activation, negative_slope=negative_slope
        )
        self.out_features, self.in_features = shapes["weight"]
        self.activation = activation
        self.negative_slope = float(negative_slope)
        dt = _float_dtype(dtype)
        self.weight = Parameter(np.empty(shapes["weight"], dt))
        self.bias = Parameter(np.empty(shapes["bias"], dt)) if "bias" in shapes else None
        self.reset_parameters()

    @classmethod
    def _parameter_shapes(
        cls,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str | None = None,
        *,
        negative_slope: float = 0.01,
        dtype: DTypeLike | None = None,
    ) -> dict:
        """Check the constructor's arguments and return the shape of each parameter that
        ``Linear(...)`` creates, creating none (``load_model`` checks a file's config against
        its weights with it before building the layer)."""
        n_in = _positive_int(in_features, "in_features", "Linear")
        n_out = _positive_int(out_features, "out_features", "Linear")
        if not isinstance(activation, (str, type(None))) or activation not in F.ACTIVATIONS:
            raise ValueError(
                f"Linear: activation must be one of {list(F.ACTIVATIONS)}, got {activation!r}"
            )
        _slope(negative_slope, "Linear")
        _float_dtype(dtype)
        shapes: dict[str, tuple[int, ...]] = {"weight": (n_out, n_in)}
        if _bool(bias, "bias", "Linear"):
            shapes["bias"] = (n_out,)
        return shapes

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) for the weight, U(+-1/sqrt(fan_in))
        for the bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: TensorLike) -> Tensor:
        xt = x if isinstance(x, Tensor) else F._float_input(x, "input", like=self.weight)
        if xt.ndim == 0 or xt.shape[-1] != self.in_features:
            raise ValueError(
                f"{self._signature()} got input of shape {tuple(xt.shape)}; expected "
                f"(..., {self.in_features})"
            )
        return F.linear(
            xt,
            self.weight,
            self.bias,
            self.activation,
            negative_slope=self.negative_slope,
        )

    def _signature(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "activation": self.activation,
            "negative_slope": self.negative_slope,
        }

    def extra_repr(self) -> str:
        s = (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        return s


class _Activation(Module):
    """A parameter-free elementwise module; ``fused_name`` lets Sequential fuse it into a
    preceding Linear."""

    fused_name: str | None = None

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {}


class ReLU(_Activation):
    """``max(x, 0)`` elementwise (``torch.nn.ReLU``)."""

    fused_name = "relu"

    def forward(self, x: TensorLike) -> Tensor:
        return F.relu(x)


class LeakyReLU(_Activation):
    """``x`` for x > 0, ``negative_slope * x`` otherwise (``torch.nn.LeakyReLU``)."""

    fused_name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = _slope(negative_slope, "LeakyReLU")

    def forward(self, x: TensorLike) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {"negative_slope": self.negative_slope}

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))`` elementwise (``torch.nn.Sigmoid``)."""

    fused_name = "sigmoid"

    def forward(self, x: TensorLike) -> Tensor:
        return F.sigmoid(x)


class Tanh(_Activation):
    """``tanh(x)`` elementwise (``torch.nn.Tanh``)."""

    fused_name = "tanh"

    def forward(self, x: TensorLike) -> Tensor:
        return F.tanh(x)


class Softmax(_Activation):
    """Softmax along ``dim`` (``torch.nn.Softmax``); outputs are probabilities."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = -1 if dim is None else _int(dim, "dim", type(self).__name__)

    def forward(self, x: TensorLike) -> Tensor:
        return F.softmax(x, self.dim)

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {"dim": self.dim}

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``log(softmax(x))`` along ``dim`` (``torch.nn.LogSoftmax``)."""

    def forward(self, x: TensorLike) -> Tensor:
        return F.log_softmax(x, self.dim)


class Dropout(Module):
    """Inverted dropout (``torch.nn.Dropout``): in training mode zero each element with
    probability ``p`` and scale the others by ``1/(1-p)``; the identity in eval mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p: float = float(p)

    def forward(self, x: TensorLike) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one (``torch.nn.Flatten``; batch kept)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = _int(start_dim, "start_dim", "Flatten")
        self.end_dim = _int(end_dim, "end_dim", "Flatten")

    def forward(self, x: TensorLike) -> Tensor:
        x = x if isinstance(x, Tensor) else F._float_input(x, "input")
        return x.flatten(self.start_dim, self.end_dim)

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}


class Identity(Module):
    """Returns its input (``torch.nn.Identity``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: TensorLike):
        return x if isinstance(x, Tensor) else F._float_input(x, "input")

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {}


class Sequential(Module):
    """Modules applied in order (``torch.nn.Sequential``); indexable, sliceable, iterable.

    A ``Linear`` directly followed by ``ReLU``, ``LeakyReLU``, ``Sigmoid`` or ``Tanh`` runs as one
    fused kernel call (same numbers, one pass fewer over memory).
    """

    def __init__(self, *modules: Module | Mapping[str, Module]) -> None:
        super().__init__()
        self._workspace = F.Workspace()  # reused buffers of the fused Linear runs
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self._add(str(name), m)
        else:
            for i, m in enumerate(modules):
                self._add(str(i), m)

    def _add(self, name: str, m) -> None:
        if not isinstance(m, Module):
            raise TypeError(
                f"Sequential: element {name} is a {type(m).__name__}, not a Module "
                f"(did you forget to instantiate it, e.g. nn.ReLU()?)"
            )
        self.add_module(name, m)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end; returns ``self``."""
        self._add(str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(mods[idx]))
        try:
            return mods[operator.index(idx)][1]
        except IndexError:
            raise IndexError(
                f"index {idx} is out of range for Sequential of length {len(mods)}"
            ) from None

    def forward(self, x: TensorLike):
        for step in self._steps():
            if type(step) is tuple:
                x = _run_chain(step[0], x, self.__dict__.get("_workspace"), step[1])
            else:
                x = step(x)
        return x

    def _steps(self) -> list:
        """The forward's steps (see _fuse), kept until a module of the program changes."""
        plan = self.__dict__.get("_plan")
        if plan is None or plan[0] != Module._generation:
            plan = (Module._generation, self._fuse())
            self.__dict__["_plan"] = plan  # not through __setattr__: that would bump it
        return plan[1]

    def _single_chain(self) -> F._Chain | None:
        """The F._Chain when the whole forward is one run of Linear layers whose features chain
        (activations fused), else None: fit's compiled step runs such a model without recording
        a graph."""
        if type(self).forward is not Sequential.forward:
            return None  # a subclass with its own forward
        steps = self._steps()
        if len(steps) != 1 or type(steps[0]) is not tuple or steps[0][1] is not None:
            return None
        return steps[0][0]

    def _fuse(self) -> list:
        """The forward as steps: modules to call, and ``(chain, mismatch)`` pairs: the F._Chain
        of a run of Linear layers (each with the activation module that follows it fused in),
        and the error to raise if their features do not chain (else None). Kept until a module
        of the program changes (``Module._generation``)."""
        mods = [m for m in self._modules.values() if m is not None]
        steps, i, n = [], 0, len(mods)
        while i < n:
            if type(mods[i]) is not Linear:
                steps.append(mods[i])
                i += 1
                continue
            chain: list = []
            mismatch = None
            while i < n and type(mods[i]) is Linear:
                lin = mods[i]
                act, slope = lin.activation, lin.negative_slope
                i += 1
                if act is None and i < n and type(mods[i]) in _FUSABLE:
                    nxt = mods[i]
                    act = nxt.fused_name
                    if type(nxt) is LeakyReLU:
                        slope = nxt.negative_slope
                    i += 1
                params = lin._parameters
                if chain and mismatch is None and chain[-1][4].out_features != lin.in_features:
                    prev = chain[-1][4]
                    mismatch = (
                        f"{lin._signature()} got input of shape (..., {prev.out_features}); "
                        f"expected (..., {lin.in_features})"
                    )
                chain.append((params["weight"], params.get("bias"), act, slope, lin))
            steps.append((F._Chain(chain), mismatch))
        return steps


def _run_chain(chain: F._Chain, x, workspace, mismatch: str | None = None) -> Tensor:
    first = chain.layers[0][4]
    xt = x if type(x) is Tensor else F._float_input(x, "input", like=first.weight)
    d = xt._data
    if d.ndim == 0 or d.shape[-1] != first.in_features:
        raise ValueError(
            f"{first._signature()} got input of shape {tuple(d.shape)}; expected "
            f"(..., {first.in_features})"
        )
    if mismatch is not None:
        raise ValueError(mismatch)
    return F._linear_chain(xt, chain, workspace)


_FUSABLE = (ReLU, LeakyReLU, Sigmoid, Tanh)
