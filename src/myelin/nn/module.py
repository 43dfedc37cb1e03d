"""``Module`` and ``Parameter``: the containers every layer and model is built from
(after ``torch.nn.Module``)."""

from __future__ import annotations

import sys
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from myelin.tensor import Tensor, _to_array, clear_grad, mark_modified

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from myelin._typing import FileLike, TensorLike

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable (``requires_grad=True`` by default)."""

    __slots__ = ()

    def __init__(self, data: TensorLike, requires_grad: bool = True) -> None:
        arr = _to_array(data)
        if arr.dtype.kind != "f":
            raise TypeError(f"a Parameter holds floating-point numbers, got dtype {arr.dtype}")
        super().__init__(arr, requires_grad=requires_grad)


class Module:
    """Base class of layers and models (``torch.nn.Module``).

    Assigning a :class:`Parameter` or a Module to an attribute registers it; ``parameters()``,
    ``state_dict()``, ``train()``/``eval()`` and ``zero_grad()`` then walk the tree. Subclasses
    define ``forward``; calling the module calls it. Keras-style ``compile``/``fit``/
    ``evaluate``/``predict`` work on any Module (see :mod:`myelin.training`).
    """

    # bumped by every change to any module's attributes, parameters or submodules: what a
    # module derives from its structure (Sequential's fused plan) is valid while it stays put
    _generation = 0

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------ registration

    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called: call "
                f"super().__init__() first in {type(self).__name__}.__init__"
            )
        modules = self.__dict__["_modules"]
        Module._generation += 1
        if isinstance(value, Parameter):
            modules.pop(name, None)
            self.__dict__.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            self.__dict__.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter {name!r} "
                    f"(a Parameter or None is expected)"
                )
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule {name!r}")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        d = self.__dict__
        if "_parameters" in d:
            if name in d["_parameters"]:
                return d["_parameters"][name]
            if name in d["_modules"]:
                return d["_modules"][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        Module._generation += 1
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` under ``name`` (as ``self.name = param`` does); None registers a slot."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"param must be a Parameter or None, got {type(param).__name__}")
        Module._generation += 1
        self._parameters[name] = param

    def add_module(self, name: str, module: Module | None) -> None:
        """Add the child ``module`` under ``name`` (as ``self.name = module`` does)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"module must be a Module or None, got {type(module).__name__}")
        Module._generation += 1
        self._modules[name] = module

    # ------------------------------------------------------------ calling

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation of the module, run by ``module(*args)``; subclasses define it.

        Layers take and return float32 or float64 Tensors (ndarrays and nested lists are
        converted); the shapes are given in each layer's class docstring.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ traversal

    def named_modules(
        self, memo: set[int] | None = None, prefix: str = ""
    ) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, module)`` for this module and every descendant, each once, parents
        before their children (depth first, children in registration order).

        The walk keeps its own stack, so a deep tree cannot overflow the C stack; one nested
        deeper than the recursion limit (``sys.getrecursionlimit()``) raises RecursionError,
        as a recursive walk in Python would."""
        if memo is None:
            memo = set()
        limit = sys.getrecursionlimit()
        stack = [(prefix, self, 0)]
        while stack:
            name, m, depth = stack.pop()
            if id(m) in memo:
                continue
            memo.add(id(m))
            yield name, m
            children = [(k, c) for k, c in m._modules.items() if c is not None]
            if children and depth >= limit:
                raise RecursionError(
                    f"{type(self).__name__}: the module tree is nested more than {limit} deep "
                    f"(the recursion limit, sys.getrecursionlimit())"
                )
            for k, c in reversed(children):
                stack.append((f"{name}.{k}" if name else k, c, depth + 1))

    def modules(self) -> Iterator[Module]:
        """Yield this module and every descendant, each once."""
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, module)`` for the direct children."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        """Yield the direct children."""
        for _, m in self.named_children():
            yield m

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(name, parameter)`` with PyTorch's dotted names (``"net.0.weight"``)."""
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for pname, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Yield every parameter once, in registration order (what optimizers take)."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every child, recursively, then on ``self``; returns ``self``
        (``torch.nn.Module.apply``: a module registered twice is visited twice).

        The walk keeps its own stack; a tree nested deeper than the recursion limit raises
        RecursionError, as a recursive walk in Python would."""
        # a walk that visits a parent before its children, last child first, reversed: every
        # child before its parent, and the children in order
        order = []
        stack = [(self, 0)]
        limit = sys.getrecursionlimit()
        while stack:
            m, depth = stack.pop()
            order.append(m)
            children = [c for c in m._modules.values() if c is not None]
            if children and depth >= limit:
                raise RecursionError(
                    f"{type(self).__name__}.apply: the module tree is nested more than {limit} "
                    f"deep (the recursion limit, sys.getrecursionlimit())"
                )
            stack.extend((c, depth + 1) for c in children)
        for m in reversed(order):
            fn(m)
        return self

    # ------------------------------------------------------------ modes and gradients

    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active); returns ``self``."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode (dropout off); returns ``self``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` on every parameter (False freezes them); returns ``self``."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter (to None, or to zeros in place)."""
        for p in self.parameters():
            clear_grad(p, set_to_none)

    # ------------------------------------------------------------ state

    def state_dict(self) -> OrderedDict:
        """Every parameter by its dotted name, as ndarray copies (PyTorch's keys and layouts)."""
        return OrderedDict((k, p._data.copy()) for k, p in self.named_parameters())

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy values (ndarrays, Tensors, lists, or torch tensors via ``.numpy()``) into the
        parameters in place. With ``strict``, missing or unexpected keys raise KeyError; a shape
        mismatch always raises ValueError. Returns ``(missing_keys, unexpected_keys)``."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        values = {}
        for k, p in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v._data if isinstance(v, Tensor) else np.asarray(v)
            if arr.shape != p._data.shape:
                raise ValueError(
                    f"load_state_dict: {k!r} has shape {arr.shape} in the state_dict but "
                    f"{p._data.shape} in the model"
                )
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {k!r} has dtype {arr.dtype}; expected floats")
            values[k] = arr
        for k, arr in values.items():
            np.copyto(own[k]._data, arr, casting="unsafe")
            mark_modified(own[k])
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ Keras-style training

    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Sequence[str] = ()):
        """Configure ``fit``: see :func:`myelin.training.compile`."""
        from myelin import training

        return training.compile(self, optimizer, loss, metrics)

    def fit(self, x: Any = None, y: Any = None, **kwargs: Any):
        """Train; see :func:`myelin.training.fit`. Returns a ``History``."""
        from myelin import training

        return training.fit(self, x, y, **kwargs)

    def evaluate(self, x: Any = None, y: Any = None, **kwargs: Any):
        """Loss and metrics on ``(x, y)``; see :func:`myelin.training.evaluate`."""
        from myelin import training

        return training.evaluate(self, x, y, **kwargs)

    def predict(self, x: Any, batch_size: int = 32, **kwargs: Any) -> np.ndarray:
        """Outputs for ``x`` in eval mode without a graph; see :func:`myelin.training.predict`."""
        from myelin import training

        return training.predict(self, x, batch_size=batch_size, **kwargs)

    def save(self, path: FileLike) -> None:
        """Save architecture (JSON) and weights in one ``.npz``; see
        :func:`myelin.serialization.save_model`. Reload with :func:`myelin.load_model`."""
        from myelin import serialization

        serialization.save_model(self, path)

    # ------------------------------------------------------------ repr

    def extra_repr(self) -> str:
        """The settings shown inside the module's ``repr`` (``in_features=3, ...``)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}({extra}" if extra else f"{type(self).__name__}("
        return head + "\n  " + "\n  ".join(lines) + "\n)"
