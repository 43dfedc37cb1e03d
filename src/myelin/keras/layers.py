"""Keras-style layers (https://keras.io/api/layers/): ``Dense``, ``Dropout``, ``Activation``,
``Flatten``, ``ReLU``.

``Dense`` holds its weights in PyTorch's layout, ``weight`` ``(units, in_features)`` and ``bias``
``(units,)``, so ``state_dict()`` keys and shapes are those of an ``nn.Linear``; it learns its
input size from ``input_shape``/``input_dim``, from the model (see
:class:`myelin.keras.Sequential`) or from its first call.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING

import numpy as np

from myelin import _random, serialization
from myelin.nn import Dropout as _TorchDropout
from myelin.nn import Flatten, Module, Parameter, ReLU
from myelin.nn import functional as F
from myelin.tensor import Tensor, _float_dtype

if TYPE_CHECKING:
    from collections.abc import Sequence

    from myelin._typing import DTypeLike, TensorLike

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "ReLU"]

# Keras' leaky_relu activation function defaults to a slope of 0.2
# (https://keras.io/api/layers/activations/#leakyrelu-function).
LEAKY_SLOPE = 0.2

_FUSED = {None: None, "linear": None, "relu": "relu", "leaky_relu": "leaky_relu"}
_FUSED.update(sigmoid="sigmoid", tanh="tanh")
ACTIVATIONS = (*_FUSED, "softmax")


def _activation_name(activation, owner: str):
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{owner}: activation must be one of {list(ACTIVATIONS)}, got {activation!r}"
        )
    return None if activation == "linear" else activation


# ---------------------------------------------------------------- initializers

# Keras' VarianceScaling initializers (https://keras.io/api/layers/initializers/):
# (scale, mode, distribution). A truncated normal is cut at two standard deviations, and its
# standard deviation is divided by 0.8796... (that of a unit normal cut at +-2) to keep the
# requested variance.
_VARIANCE_SCALING = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}
_TRUNCATED_STD = 0.87962566103423978
INITIALIZERS = (*_VARIANCE_SCALING, "zeros", "ones", "random_normal", "random_uniform")
INITIALIZERS += ("truncated_normal",)


def _truncated_normal(rng: np.random.Generator, std: float, shape: tuple) -> np.ndarray:
    """N(0, std^2) samples, each redrawn until it lies within two standard deviations."""
    out = rng.normal(0.0, std, shape)
    bad = np.abs(out) > 2.0 * std
    while bad.any():
        out[bad] = rng.normal(0.0, std, int(bad.sum()))
        bad = np.abs(out) > 2.0 * std
    return out


def _initial_values(name: str, shape: tuple, fan_in: int, fan_out: int) -> np.ndarray:
    """Float64 values of Keras' initializer ``name`` for a tensor with those fans."""
    rng = _random.get_rng()
    if name == "zeros":
        return np.zeros(shape)
    if name == "ones":
        return np.ones(shape)
    if name == "random_normal":
        return rng.normal(0.0, 0.05, shape)
    if name == "random_uniform":
        return rng.uniform(-0.05, 0.05, shape)
    if name == "truncated_normal":
        return _truncated_normal(rng, 0.05, shape)
    scale, mode, distribution = _VARIANCE_SCALING[name]
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale / n)
        return rng.uniform(-limit, limit, shape)
    return _truncated_normal(rng, math.sqrt(scale / n) / _TRUNCATED_STD, shape)


def _check_initializer(value, name: str) -> str:
    if value not in INITIALIZERS:
        raise ValueError(f"Dense: {name} must be one of {list(INITIALIZERS)}, got {value!r}")
    return value


def _positive_int(value, name: str, owner: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}") from None
    if v <= 0:
        raise ValueError(f"{owner}: {name} must be positive, got {v}")
    return v


# ---------------------------------------------------------------- Dense


def _dense_arguments(
    units,
    activation,
    use_bias,
    kernel_initializer,
    bias_initializer,
    input_shape,
    input_dim,
    in_features,
    dtype,
    name,
) -> dict:
    """Dense's constructor arguments, checked and normalised; ``in_features`` is the input
    size they give (from in_features, input_shape or input_dim), or None."""
    units = _positive_int(units, "units", "Dense")
    owner = f"Dense({units})"
    if not isinstance(use_bias, (bool, np.bool_)):
        raise TypeError(f"{owner}: use_bias must be True or False, got {use_bias!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{owner}: name must be a str or None, got {type(name).__name__}")
    shape = _input_shape(input_shape, input_dim, owner)
    if in_features is not None:
        in_features = _positive_int(in_features, "in_features", owner)
        if shape is not None and shape[-1] != in_features:
            raise ValueError(f"{owner}: in_features={in_features} contradicts input_shape={shape}")
    elif shape is not None:
        in_features = shape[-1]
    return {
        "units": units,
        "activation": _activation_name(activation, owner),
        "use_bias": bool(use_bias),
        "kernel_initializer": _check_initializer(kernel_initializer, "kernel_initializer"),
        "bias_initializer": _check_initializer(bias_initializer, "bias_initializer"),
        "dtype": _float_dtype(dtype),
        "name": name,
        "input_shape": shape,
        "in_features": in_features,
    }


def _input_shape(input_shape, input_dim, owner: str) -> tuple | None:
    """One sample's shape from Dense's input_shape / input_dim (checked to agree), or None."""
    shape = None
    if input_shape is not None:
        try:
            shape = tuple(operator.index(n) for n in input_shape)
        except TypeError:
            raise TypeError(
                f"{owner}: input_shape must be a tuple of ints (one sample's shape, e.g. "
                f"(10,)), got {str(input_shape)[:80]}"
            ) from None
        if not shape or min(shape) <= 0:
            raise ValueError(
                f"{owner}: input_shape must be a non-empty tuple of positive ints, got "
                f"{str(input_shape)[:80]}"
            )
    if input_dim is not None:
        dim = _positive_int(input_dim, "input_dim", owner)
        if shape is not None and shape[-1] != dim:
            raise ValueError(f"{owner}: input_dim={dim} contradicts input_shape={shape}")
        shape = shape or (dim,)
    return shape


class Dense(Module):
    """``activation(x @ weight.T + bias)`` (``keras.layers.Dense``,
    https://keras.io/api/layers/core_layers/dense/).

    Parameters
    ----------
    units : int
        Output features.
    activation : None, "linear", "relu", "leaky_relu", "sigmoid", "tanh" or "softmax"
        All but "softmax" run inside the GEMM's epilogue; "softmax" follows it along the last
        axis. "leaky_relu" has Keras' slope 0.2.
    use_bias : bool
    kernel_initializer, bias_initializer : str
        Keras' initializer names: "glorot_uniform" (default of the kernel), "glorot_normal",
        "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "zeros" (default of the
        bias), "ones", "random_normal", "random_uniform", "truncated_normal". Fans are Keras'
        (``fan_in = in_features``, ``fan_out = units``); draws come from myelin's generator,
        so :func:`myelin.manual_seed` makes them reproducible.
    input_shape : tuple of int, optional
        The shape of one sample (no batch axis), Keras' way to give a model's input; the layer
        is built at once with ``in_features = input_shape[-1]``.
    input_dim : int, optional
        Same as ``input_shape=(input_dim,)``.
    in_features : int, optional
        The input size, if known (what ``get_config`` records once the layer is built).
    dtype : float32 (default) or float64
    name : str, optional

    Attributes
    ----------
    weight : Parameter ``(units, in_features)``, once built (PyTorch's layout: Keras' kernel
        transposed)
    bias : Parameter ``(units,)``, once built, if ``use_bias``
    split_activation : "softmax", "sigmoid" or None
        The output activation that a loss on logits may split off (see :meth:`forward_logits`).

    Input ``(..., in_features)``, output ``(..., units)``. An unbuilt layer builds itself on its
    first call from the input's last dimension.
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        *,
        input_shape: int | Sequence[int] | None = None,
        input_dim: int | None = None,
        in_features: int | None = None,
        dtype: DTypeLike | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        args = _dense_arguments(
            units,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            input_shape,
            input_dim,
            in_features,
            dtype,
            name,
        )
        self.units = args["units"]
        self.activation = args["activation"]
        self.use_bias = args["use_bias"]
        self.kernel_initializer = args["kernel_initializer"]
        self.bias_initializer = args["bias_initializer"]
        self.dtype = args["dtype"]
        self.name = args["name"]
        self.in_features: int | None = None
        self.input_shape = args["input_shape"]
        if args["in_features"] is not None:
            self.build(args["in_features"])

    @classmethod
    def _parameter_shapes(
        cls,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        *,
        input_shape: int | Sequence[int] | None = None,
        input_dim: int | None = None,
        in_features: int | None = None,
        dtype: DTypeLike | None = None,
        name: str | None = None,
    ) -> dict:
        """Check the constructor's arguments and return the shape of each parameter that
        ``Dense(...)`` creates (none while the input size is unknown), creating none
        (``load_model`` checks a file's config against its weights with it before building
        the layer)."""
        args = _dense_arguments(
            units,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            input_shape,
            input_dim,
            in_features,
            dtype,
            name,
        )
        n_in, n_out = args["in_features"], args["units"]
        if n_in is None:
            return {}
        shapes: dict[str, tuple[int, ...]] = {"weight": (n_out, n_in)}
        if args["use_bias"]:
            shapes["bias"] = (n_out,)
        return shapes

    @property
    def built(self) -> bool:
        """Whether the weights exist (the input size is known)."""
        return self.in_features is not None

    @property
    def split_activation(self) -> str | None:
        """The output activation a loss on logits may split off: "softmax", "sigmoid" or None."""
        return self.activation if self.activation in ("softmax", "sigmoid") else None

    def build(self, input_shape: int | Sequence[int]) -> None:
        """Create ``weight`` and ``bias`` for inputs of shape ``(..., in_features)``
        (``input_shape`` an int or a shape whose last entry is ``in_features``)."""
        n = input_shape if isinstance(input_shape, (int, np.integer)) else tuple(input_shape)[-1]
        n = _positive_int(n, "in_features", self._signature())
        if self.built:
            if n != self.in_features:
                raise ValueError(
                    f"{self._signature()} is built for {self.in_features} input features, "
                    f"cannot rebuild it for {n}"
                )
            return
        weight = _initial_values(self.kernel_initializer, (self.units, n), n, self.units)
        self.weight = Parameter(weight.astype(self.dtype))
        if self.use_bias:
            bias = _initial_values(self.bias_initializer, (self.units,), self.units, self.units)
            self.bias: Parameter | None = Parameter(bias.astype(self.dtype))
        else:
            self.bias = None
        self.in_features = n

    def _input(self, x) -> Tensor:
        if not isinstance(x, Tensor):
            x = F._float_input(x, "input", like=self.weight if self.built else None)
            if not self.built and x.dtype != self.dtype:
                x = Tensor(x._data.astype(self.dtype))
        if x.ndim == 0:
            raise ValueError(f"{self._signature()} got a scalar input; expected (..., features)")
        if not self.built:
            self.build(x.shape[-1])
        elif x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self._signature()} got input of shape {tuple(x.shape)}; expected "
                f"(..., {self.in_features})"
            )
        return x

    def forward_logits(self, x: TensorLike) -> Tensor:
        """``x @ weight.T + bias``: the output before the activation (what a loss on logits
        takes when :attr:`split_activation` is set)."""
        return F.linear(self._input(x), self.weight, self.bias)

    def forward(self, x: TensorLike) -> Tensor:
        x = self._input(x)
        if self.activation == "softmax":
            return F.softmax(F.linear(x, self.weight, self.bias), dim=-1)
        return F.linear(
            x, self.weight, self.bias, _FUSED[self.activation], negative_slope=LEAKY_SLOPE
        )

    def _signature(self) -> str:
        return f"Dense({self.units})"

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        config = {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "in_features": self.in_features,
            "dtype": self.dtype.name,
        }
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        if self.name is not None:
            config["name"] = self.name
        return config

    def extra_repr(self) -> str:
        s = f"units={self.units}"
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        s += f", in_features={self.in_features}" if self.built else ", unbuilt"
        return s if self.use_bias else s + ", use_bias=False"


# ---------------------------------------------------------------- the others


class Dropout(_TorchDropout):
    """Inverted dropout with Keras' argument name (``keras.layers.Dropout``,
    https://keras.io/api/layers/regularization_layers/dropout/): in training zero each input
    with probability ``rate`` and scale the others by ``1 / (1 - rate)``; identity in eval."""

    def __init__(self, rate: float) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be a number in [0, 1), got {rate!r}")
        super().__init__(p=float(rate))

    @property
    def rate(self) -> float:
        """The drop probability (Keras' name for ``p``)."""
        return self.p

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {"rate": self.p}

    def extra_repr(self) -> str:
        return f"rate={self.p}"


class Activation(Module):
    """An activation applied elementwise (``keras.layers.Activation``,
    https://keras.io/api/layers/core_layers/activation/).

    Parameters
    ----------
    activation : "linear", "relu", "leaky_relu" (slope 0.2), "sigmoid", "tanh" or "softmax"
        (along the last axis)
    """

    def __init__(self, activation: str) -> None:
        super().__init__()
        if activation is None:
            activation = "linear"
        _activation_name(activation, "Activation")
        self.activation = activation

    def forward(self, x: TensorLike) -> Tensor:
        a = self.activation
        if a == "linear":
            return x if isinstance(x, Tensor) else F._float_input(x, "input")
        if a == "softmax":
            return F.softmax(x, dim=-1)
        if a == "leaky_relu":
            return F.leaky_relu(x, LEAKY_SLOPE)
        return {"relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh}[a](x)

    def get_config(self) -> dict:
        """The constructor arguments, as ``save_model`` stores them."""
        return {"activation": self.activation}

    def extra_repr(self) -> str:
        return repr(self.activation)


for _cls in (Dense, Dropout, Activation):
    serialization.register_layer(_cls, f"keras.{_cls.__name__}")
