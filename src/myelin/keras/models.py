"""Keras-style models (https://keras.io/api/models/): ``Sequential``, ``load_model``,
``save_model``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from myelin import nn, serialization
from myelin.keras.layers import Activation, Dense
from myelin.nn import Module

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Sequential", "load_model", "save_model"]

load_model = serialization.load_model
save_model = serialization.save_model

# Layers whose output has the shape of their input.
_SAME_SHAPE = (
    nn.Dropout,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softmax,
    nn.Identity,
    Activation,
)


def _flatten_shape(layer: nn.Flatten, shape: tuple) -> tuple | None:
    """One sample's shape after ``layer`` (None when it would merge the batch axis)."""
    n = len(shape) + 1  # with the batch axis
    start = layer.start_dim + n if layer.start_dim < 0 else layer.start_dim
    end = layer.end_dim + n if layer.end_dim < 0 else layer.end_dim
    if not 0 < start <= end < n:
        return None
    return (*shape[: start - 1], math.prod(shape[start - 1 : end]), *shape[end:])


def _propagate(layers, shape: tuple) -> None:
    """Walk ``layers`` with one sample's input ``shape``: build each unbuilt ``Dense`` for the
    features it receives and check the built ones; stop at a layer whose output shape is
    unknown (the Dense layers after it build on their first call)."""
    for i, layer in enumerate(layers):
        if isinstance(layer, (Dense, nn.Linear)):
            expected = layer.in_features
            if expected is not None and expected != shape[-1]:
                raise ValueError(
                    f"{layer._signature()} (layer {i}) expects inputs of shape "
                    f"(None, ..., {expected}) but receives (None, {', '.join(map(str, shape))})"
                )
            if isinstance(layer, Dense):
                layer.build(shape[-1])
                shape = (*shape[:-1], layer.units)
            else:
                shape = (*shape[:-1], layer.out_features)
        elif isinstance(layer, nn.Flatten):
            shape = _flatten_shape(layer, shape)  # type: ignore[assignment]
            if shape is None:
                return
        elif not isinstance(layer, _SAME_SHAPE):
            return


class Sequential(nn.Sequential):
    """A stack of layers (``keras.Sequential``, https://keras.io/api/models/sequential/).

    Parameters
    ----------
    layers : list of Module, optional
        Added in order with :meth:`add`.
    name : str, optional

    Notes
    -----
    When the first layer knows the input (``Dense(..., input_shape=(10,))`` or
    ``input_dim=10``), each ``Dense`` whose input size is unknown is built as it is added,
    walking the list (a ``Dense`` turns the feature count into its ``units``; ``Dropout`` and
    activations keep it), and a layer that cannot take the features it gets raises ValueError.
    Otherwise the ``Dense`` layers build on the first call. This is an ``nn.Sequential``:
    ``compile``/``fit``/``evaluate``/``predict``/``save``, ``parameters()`` and
    ``state_dict()`` (keys ``"0.weight"``, ``"0.bias"``, ...) work as for any Module.
    """

    def __init__(self, layers: Iterable[Module] | None = None, name: str | None = None) -> None:
        super().__init__()
        self.name = name
        if layers is None:
            return
        if isinstance(layers, Module) or not isinstance(layers, (list, tuple)):
            raise TypeError(
                f"Sequential: layers must be a list of layers, got {type(layers).__name__} "
                f"(write keras.Sequential([layer1, layer2, ...]))"
            )
        for layer in layers:
            self.add(layer)

    @property
    def layers(self) -> list:
        """The layers, in order."""
        return list(self)

    def add(self, layer: Module) -> None:
        """Append ``layer`` (``keras.Sequential.add``), building it if the input size is
        known."""
        if not isinstance(layer, Module):
            raise TypeError(
                f"Sequential.add: layer must be a Module (e.g. layers.Dense(10)), got "
                f"{type(layer).__name__}"
            )
        layers = [*self, layer]
        shape = getattr(layers[0], "input_shape", None)
        if shape is not None:
            _propagate(layers, tuple(shape))
        self.append(layer)
