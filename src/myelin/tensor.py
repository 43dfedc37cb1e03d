"""``myelin.Tensor``: an ndarray with reverse-mode autograd, and the tensor constructors.

A Tensor owns one NumPy array (``.data``; ``np.asarray(t)`` returns it without a copy). Ops on
tensors compute with NumPy or, for the heavy ones, with :mod:`myelin.ops` (the C kernels), and
when grad mode is on and an input requires grad they record one graph node per op.
Semantics follow PyTorch: ``requires_grad``, ``.grad`` accumulating across ``backward()`` calls,
``dim``/``keepdim`` arguments, float32 as the default dtype.
"""

from __future__ import annotations

import builtins
import numbers
import operator
import reprlib
import sys
from collections import namedtuple
from typing import TYPE_CHECKING

import numpy as np

from myelin import _autograd, _random, ops
from myelin._autograd import is_grad_enabled, unbroadcast

if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from myelin._typing import DTypeLike, GeneratorLike, TensorLike

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
long = int64
bool_ = np.dtype(np.bool_)

_DEFAULT_FLOAT = float32
_FLOATS = (float32, float64)

MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _to_array(data, dtype=None) -> np.ndarray:
    """``data`` as an ndarray: Python floats become float32, ints int64 (PyTorch's defaults);
    ndarrays and NumPy scalars keep their dtype unless ``dtype`` says otherwise."""
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, np.generic):
        # a NumPy scalar, e.g. what arithmetic on 0-d arrays returns (np.float64 is a float)
        arr = np.asarray(data)
    else:
        try:
            arr = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"data could not be converted to a tensor: {exc}") from None
        if dtype is None:
            if arr.dtype.kind == "f":
                arr = arr.astype(_DEFAULT_FLOAT)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"data has dtype {arr.dtype}; a tensor holds bool, integer or floating-point numbers"
        )
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    if not arr.dtype.isnative:
        arr = _native(arr)
    return arr


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the machine's byte order: a copy of a big-endian (on x86/ARM) array, with the
    same values. Every array a Tensor holds is native, so that the kernels, which read memory as
    native numbers, never see another byte order."""
    return arr.astype(arr.dtype.newbyteorder("="))


def as_tensor(x: TensorLike, dtype: DTypeLike | None = None) -> Tensor:
    """``x`` (Tensor, ndarray, nested list or number) as a Tensor, sharing memory when it can."""
    if isinstance(x, Tensor):
        if dtype is None or x._data.dtype == np.dtype(dtype):
            return x
        return x.to(dtype)
    return Tensor(_to_array(x, dtype))


def _make(
    data: np.ndarray,
    parents: tuple,
    backward,
    saved: tuple = (),
    output: bool = False,
    view_of: Tensor | None = None,
) -> Tensor:
    """The output tensor of an op: records ``backward`` when any parent needs a gradient.

    ``saved`` lists the tensors (parents) whose values ``backward`` reads, and ``output`` says
    whether it reads the output's: their versions are kept with the graph node and checked
    by ``backward()`` (``_autograd.check_versions``), which refuses to run on values an in-place
    op changed since. ``view_of``: the output is a view of that tensor's memory (it shares its
    version counter).
    """
    if is_grad_enabled():
        for p in parents:
            if p is not None and p.requires_grad:
                out = Tensor(data)
                if view_of is not None:
                    out._version_counter = view_of._version_counter
                out.requires_grad = True
                # (None in saved: not saved; its version -1 is never compared)
                versions = (
                    [-1 if t is None else t._version_counter[0] for t in saved] if saved else ()
                )
                out_version = out._version_counter[0] if output else -1
                out._ctx = (parents, backward, saved, versions, out_version)
                return out
    out = Tensor(data)
    if view_of is not None:
        out._version_counter = view_of._version_counter
    return out


def mark_modified(t: Tensor) -> None:
    """Record that ``t``'s values changed in place (its version goes up by one): what every
    in-place op, optimizer step and state load calls, so that a backward() that needs the old
    values raises instead of using the new ones."""
    t._version_counter[0] += 1


def _operand(x, like: Tensor) -> Tensor:
    """The other operand of a binary op: numbers keep ``like``'s dtype (NumPy 2 rules)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and not isinstance(x, bool):
        return Tensor(np.asarray(x, dtype=like._data.dtype if like.is_floating_point() else None))
    return Tensor(_to_array(x))


def _check_axis(dim, ndim: int):
    """``dim`` of a reduction (None, an int or a flat tuple of ints) with negative entries
    made positive. A tuple's entries must be ints: a nested tuple is a TypeError, found
    without recursing (however deep it nests)."""
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        for d in dim:
            if isinstance(d, (tuple, list)):
                raise TypeError(
                    f"dim must be an int, a tuple of ints or None, got a {type(dim).__name__} "
                    f"holding a {type(d).__name__}: {reprlib.repr(dim)}"
                )
        return tuple(_check_dim(d, ndim, "dim", _AXIS) for d in dim)
    return _check_dim(dim, ndim, "dim", _AXIS)


_AXIS = "an int, a tuple of ints or None"


def _check_dim(dim, ndim: int, name: str = "dim", expected: str = "an int") -> int:
    """One dimension index ``dim`` (an int in [-ndim, ndim)) as a non-negative int; TypeError
    or IndexError naming ``name`` otherwise."""
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(
            f"{name} must be {expected}, got {type(dim).__name__} {reprlib.repr(dim)}"
        ) from None
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise IndexError(f"{name} {d} is out of range for a tensor of {ndim} dimensions")
    return d % max(ndim, 1)


def _expand_reduced(g: np.ndarray, shape: tuple, dim, keepdim: bool) -> np.ndarray:
    """Reshape the gradient of a reduction over ``dim`` so it broadcasts back to ``shape``."""
    if dim is None:
        return np.reshape(g, (1,) * len(shape))
    if not keepdim:
        dims = dim if isinstance(dim, tuple) else (dim,)
        g = np.expand_dims(g, tuple(sorted(dims)))
    return g


class Tensor:
    """An n-dimensional array with autograd (``torch.Tensor``).

    Parameters
    ----------
    data : array_like
        Wrapped without a copy when it is already an ndarray.
    requires_grad : bool
        Record ops on this tensor so that ``backward()`` fills its ``.grad``.

    Notes
    -----
    Build tensors with :func:`myelin.tensor`, :func:`myelin.from_numpy`, :func:`zeros`,
    :func:`randn`, ... ``np.asarray(t)`` gives the data without a copy. The data is always in
    the machine's byte order: a big-endian array is converted (copied) when a tensor is made
    from it or assigned to ``.data``.

    As in PyTorch, ``backward()`` raises RuntimeError ("one of the variables needed for
    gradient computation has been modified by an inplace operation") when values that a
    recorded op needs for its gradient were changed in place after the forward pass: by an
    in-place operator or method (``+=``, ``zero_``, ``copy_``, item assignment, a NumPy
    ufunc's ``out=``), an assignment to ``.data``, an optimizer step or ``load_state_dict``.
    Each tensor counts such changes (``_version``; views share the count). Writes straight into
    the NumPy array (``t.numpy()[...] = ...``, ``t.data[...] = ...``) cannot be seen, as in
    PyTorch.
    """

    # _spare: the gradient array zero_grad() released, which the next backward may write again
    # when nothing else holds it (see clear_grad and nn.functional.linear_chain)
    # _version_counter: the version of the tensor's memory, in a one-element list (cheap to
    # make, as every op makes a tensor) that views of one memory share (reshape, detach, basic
    # indexing): every in-place change through myelin adds one (see _version)
    __slots__ = (
        "_data",
        "_grad",
        "requires_grad",
        "_ctx",
        "_retain",
        "_spare",
        "_version_counter",
        "__weakref__",
    )

    def __init__(self, data: TensorLike, requires_grad: bool = False) -> None:
        self._version_counter = [0]
        if isinstance(data, np.ndarray):
            self._data = data if data.dtype.isnative else _native(data)
        else:
            self._data = _to_array(data)
            if isinstance(data, Tensor) and self._data is data._data:
                self._version_counter = data._version_counter  # one memory: one count
        self._grad: np.ndarray | None = None
        # (parents, backward, saved tensors, their versions, the output's version or -1)
        self._ctx: tuple | None = None
        self._retain = False
        self._spare: np.ndarray | None = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------ basics

    @property
    def data(self) -> np.ndarray:
        """The underlying ndarray (no copy); assigning replaces it."""
        return self._data

    @data.setter
    def data(self, value: TensorLike) -> None:
        self._data = _to_array(value)
        # new values: a graph node that saved the old ones refuses to run on these. The new
        # memory is no longer a view's: the tensor gets a counter of its own, one version on
        self._version_counter = [self._version_counter[0] + 1]

    @property
    def _version(self) -> int:
        """How many in-place changes the tensor's memory has seen (``torch.Tensor._version``).

        Tensor in-place operators and methods (``+=``, ``zero_``, ``copy_``, item assignment,
        ...), assignments to ``.data``, optimizer steps and ``load_state_dict`` add one;
        ``backward()`` compares it with the version a graph node saved and raises
        RuntimeError if they differ. Writes straight into the NumPy array (``t.numpy()``,
        ``t.data[...] = ...``, or any other ndarray over the same memory) cannot be seen, as
        in PyTorch."""
        return self._version_counter[0]

    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient, a Tensor of this tensor's shape, or None."""
        return None if self._grad is None else Tensor(self._grad)

    @grad.setter
    def grad(self, value: TensorLike | None) -> None:
        if value is None:
            self._grad = None
            return
        g = _to_array(value)
        if g.shape != self._data.shape:
            raise ValueError(f"grad has shape {g.shape}; expected {self._data.shape}")
        self._grad = np.array(g, dtype=self._data.dtype, copy=True)

    @property
    def shape(self) -> tuple:
        """The shape, a tuple of ints (as ``torch.Size`` is)."""
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of the data (``myelin.float32`` by default)."""
        return self._data.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self._data.ndim

    @property
    def is_leaf(self) -> bool:
        """True for a tensor that no recorded op produced (parameters, inputs)."""
        return self._ctx is None

    @property
    def T(self) -> Tensor:
        """The tensor with its axes reversed (``.T``)."""
        return self.permute(*reversed(range(self.ndim)))

    def dim(self) -> int:
        """The number of dimensions (``ndim``)."""
        return self._data.ndim

    def size(self, dim: builtins.int | None = None):
        """The shape, or its entry at ``dim``."""
        if dim is None:
            return self._data.shape
        return self._data.shape[_check_dim(dim, self.ndim)]

    def numel(self) -> int:
        """The number of elements."""
        return self._data.size

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != self._data.dtype:
            if copy is False:
                raise ValueError("a copy is needed to convert the tensor to the requested dtype")
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # ndarray (op) Tensor lands here: arithmetic stays a differentiable Tensor op; any other
        # ufunc runs on the data and returns plain NumPy.
        op = _UFUNC_OPS.get(ufunc)
        if op is not None and method == "__call__" and not kwargs and len(inputs) == 2:
            a, b = inputs
            # a number (NumPy scalars too) takes the tensor's dtype, as on the left (_operand)
            return op(a if isinstance(a, Tensor) else _operand(a, b), b)
        # what the ufunc writes into: out=, or the first operand of ufunc.at (np.add.at(t, ...))
        written = inputs[0] if method == "at" and inputs else kwargs.get("out")
        inputs = tuple(_unwrap(x) for x in inputs)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        result = getattr(ufunc, method)(*inputs, **kwargs)
        _mark_tensors(written)
        return result

    def __array_function__(self, func, types, args, kwargs):
        # NumPy functions (np.sum, np.mean, np.concatenate, ...) see the data and return NumPy.
        result = func(*_unwrap(args), **_unwrap(kwargs))
        # the tensors a NumPy function wrote into: its out= and, for the functions that write
        # into their first argument, that one
        _mark_tensors(kwargs.get("out"))
        if func in _WRITES_FIRST and args:
            _mark_tensors(args[0])
        return result

    def numpy(self) -> np.ndarray:
        """The data as an ndarray sharing memory with the tensor (``torch.Tensor.numpy``)."""
        if self.requires_grad:
            raise RuntimeError(
                "numpy() of a tensor that requires grad: call .detach().numpy() instead"
            )
        return self._data

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise ValueError(
                f"item() needs a tensor with one element, got shape {self._data.shape}"
            )
        return self._data.reshape(()).item()

    def tolist(self):
        """The data as nested Python lists of numbers."""
        return self._data.tolist()

    def is_floating_point(self) -> bool:
        """True for float32 and float64 tensors."""
        return self._data.dtype.kind == "f"

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", prefix="tensor(")
        extra = ""
        if self._data.dtype != _DEFAULT_FLOAT and self._data.dtype != int64:
            extra += f", dtype={self._data.dtype}"
        if self._ctx is not None:
            extra += ", grad_fn=<recorded>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise ValueError(
                f"the truth value of a tensor with {self._data.size} elements is ambiguous"
            )
        return bool(self._data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only one-element integer tensors can be used as an index")
        return int(self._data.reshape(()))

    __hash__ = object.__hash__

    # ------------------------------------------------------------ autograd

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (floating-point tensors only); returns ``self``."""
        if requires_grad and self._data.dtype.kind != "f":
            raise RuntimeError(
                f"only floating-point tensors can require gradients, got dtype {self._data.dtype}"
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be turned off on a leaf tensor")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor during ``backward()``."""
        self._retain = True

    def backward(
        self, gradient: TensorLike | None = None, retain_graph: bool | None = None
    ) -> None:
        """Compute the gradient of this tensor with respect to every leaf that requires grad,
        adding it to their ``.grad`` (``torch.Tensor.backward``).

        Parameters
        ----------
        gradient : array_like, optional
            d(something)/d(self); may be omitted for a one-element tensor (taken as 1).
        retain_graph : bool, optional
            Keep the graph's saved arrays so that backward() can run through it again; by
            default they are released (and the buffers of fused layers reused), as in PyTorch.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() of a tensor that does not require grad: no input of the ops "
                "that made it has requires_grad=True (or it was computed under no_grad())"
            )
        if gradient is None:
            if self._data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element tensor, got shape "
                    f"{self._data.shape} (reduce it with .sum() or .mean(), or pass gradient=)"
                )
            d = self._data
            g = np.array(1, d.dtype) if d.ndim == 0 else np.ones(d.shape, d.dtype)
        else:
            g = _to_array(gradient)
            if g.shape != self._data.shape:
                raise ValueError(f"gradient has shape {g.shape}; expected {self._data.shape}")
            g = np.array(g, dtype=self._data.dtype, copy=True)  # never adopt the caller's array
        _autograd.backward(self, g, bool(retain_graph))

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory, and so the version counter)."""
        out = Tensor(self._data)
        out._version_counter = self._version_counter
        return out

    def detach_(self) -> Tensor:
        """Detach in place: drop the recorded history and stop requiring a gradient."""
        self._ctx = None
        self.requires_grad = False
        return self

    def zero_(self) -> Tensor:
        """Fill the data with zeros in place; returns ``self``."""
        self._data[...] = 0
        mark_modified(self)
        return self

    def fill_(self, value: builtins.float) -> Tensor:
        """Fill the data with ``value`` in place; returns ``self``."""
        self._data[...] = value
        mark_modified(self)
        return self

    def copy_(self, src: TensorLike) -> Tensor:
        """Copy ``src`` (broadcast to this shape, cast to this dtype) into the data in place."""
        self._data[...] = _to_array(src)
        mark_modified(self)
        return self

    # ------------------------------------------------------------ dtype

    def to(self, dtype: DTypeLike) -> Tensor:
        """A tensor of ``dtype`` (differentiable between float dtypes)."""
        dtype = np.dtype(dtype)
        if dtype == self._data.dtype:
            return self
        data = self._data.astype(dtype)
        if dtype.kind != "f":
            return Tensor(data)
        src = self._data.dtype
        return _make(data, (self,), lambda g: (g.astype(src),))

    def float(self) -> Tensor:
        """This tensor as float32 (a copy unless it already is; differentiable)."""
        return self.to(float32)

    def double(self) -> Tensor:
        """This tensor as float64 (a copy unless it already is; differentiable)."""
        return self.to(float64)

    def long(self) -> Tensor:
        """An int64 copy (``torch.Tensor.long``), e.g. class labels; detached."""
        return self.to(int64)

    def int(self) -> Tensor:
        """An int32 copy (``torch.Tensor.int``); detached."""
        return self.to(int32)

    def bool(self) -> Tensor:
        """A bool copy (``torch.Tensor.bool``); detached."""
        return self.to(bool_)

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other) -> Tensor:
        other = _operand(other, self)
        a, b = self._data, other._data
        out = a + b
        return _make(
            out,
            (self, other),
            lambda g: (unbroadcast(g, a.shape), unbroadcast(g, b.shape)),
        )

    def __radd__(self, other) -> Tensor:
        return _operand(other, self).__add__(self)

    def __sub__(self, other) -> Tensor:
        other = _operand(other, self)
        a, b = self._data, other._data
        out = a - b
        return _make(
            out,
            (self, other),
            lambda g: (unbroadcast(g, a.shape), unbroadcast(-g, b.shape)),
        )

    def __rsub__(self, other) -> Tensor:
        return _operand(other, self).__sub__(self)

    def __mul__(self, other) -> Tensor:
        other = _operand(other, self)
        a, b = self._data, other._data
        out = a * b

        def backward(g):
            ga = unbroadcast(g * b, a.shape) if self.requires_grad else None
            gb = unbroadcast(g * a, b.shape) if other.requires_grad else None
            return ga, gb

        saved = (other if self.requires_grad else None, self if other.requires_grad else None)
        return _make(out, (self, other), backward, saved)

    def __rmul__(self, other) -> Tensor:
        return _operand(other, self).__mul__(self)

    def __truediv__(self, other) -> Tensor:
        other = _operand(other, self)
        a, b = self._data, other._data
        out = a / b

        def backward(g):
            ga = unbroadcast(g / b, a.shape) if self.requires_grad else None
            gb = unbroadcast(-g * out / b, b.shape) if other.requires_grad else None
            return ga, gb

        return _make(out, (self, other), backward, (other,), output=other.requires_grad)

    def __rtruediv__(self, other) -> Tensor:
        return _operand(other, self).__truediv__(self)

    def __pow__(self, other) -> Tensor:
        other = _operand(other, self)
        a, b = self._data, other._data
        out = a**b

        def backward(g):
            ga = gb = None
            if self.requires_grad:
                ga = unbroadcast(g * b * a ** (b - 1), a.shape)
            if other.requires_grad:
                with np.errstate(divide="ignore", invalid="ignore"):
                    log_a = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
                gb = unbroadcast(g * out * log_a, b.shape)
            return ga, gb

        return _make(out, (self, other), backward, (self, other), output=other.requires_grad)

    def __rpow__(self, other) -> Tensor:
        return _operand(other, self).__pow__(self)

    def __neg__(self) -> Tensor:
        return _make(-self._data, (self,), lambda g: (-g,))

    def __pos__(self) -> Tensor:
        return self

    def __matmul__(self, other) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other) -> Tensor:
        return matmul(_operand(other, self), self)

    # in-place arithmetic works on the data and is refused where it would break the graph
    def _inplace(self, other, ufunc) -> Tensor:
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(
                "in-place arithmetic on a tensor that requires grad; wrap it in "
                "myelin.no_grad() (as optimizers do) or use the out-of-place operator"
            )
        ufunc(self._data, _to_array(other), out=self._data, casting="same_kind")
        mark_modified(self)
        return self

    def __iadd__(self, other):
        return self._inplace(other, np.add)

    def __isub__(self, other):
        return self._inplace(other, np.subtract)

    def __imul__(self, other):
        return self._inplace(other, np.multiply)

    def __itruediv__(self, other):
        return self._inplace(other, np.divide)

    # ------------------------------------------------------------ comparisons (no grad)

    def _compare(self, other, ufunc) -> Tensor:
        o = other._data if isinstance(other, Tensor) else other
        return Tensor(np.asarray(ufunc(self._data, o)))

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __invert__(self):
        if self._data.dtype != bool_:
            raise TypeError(f"~ needs a bool tensor, got dtype {self._data.dtype}")
        return Tensor(~self._data)

    def __and__(self, other):
        return self._compare(other, np.logical_and)

    def __or__(self, other):
        return self._compare(other, np.logical_or)

    def eq(self, other: TensorLike):
        """Element-wise ``==`` (a bool tensor), as ``self == other``."""
        return self.__eq__(other)

    def equal(self, other: TensorLike) -> builtins.bool:
        """True when ``other`` has the same shape and the same elements."""
        o = other._data if isinstance(other, Tensor) else np.asarray(other)
        return self._data.shape == o.shape and bool(np.array_equal(self._data, o))

    # ------------------------------------------------------------ elementwise functions

    def exp(self) -> Tensor:
        """Element-wise ``e**x``, same shape and dtype."""
        out = np.exp(self._data)
        return _make(out, (self,), lambda g: (g * out,), output=True)

    def log(self) -> Tensor:
        """Element-wise natural logarithm, same shape and dtype (``-inf`` at 0, nan below)."""
        x = self._data
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(x)
        return _make(out, (self,), lambda g: (g / x,), (self,))

    def sqrt(self) -> Tensor:
        """Element-wise square root, same shape and dtype."""
        out = np.sqrt(self._data)
        return _make(out, (self,), lambda g: (g / (2 * out),), output=True)

    def abs(self) -> Tensor:
        """Element-wise ``|x|`` (``torch.abs``); the gradient is ``sign(x)``."""
        x = self._data
        return _make(np.abs(x), (self,), lambda g: (g * np.sign(x),), (self,))

    def clamp(self, min: builtins.float | None = None, max: builtins.float | None = None) -> Tensor:
        """Values limited to [min, max]; the gradient flows where the value was not clipped."""
        x = self._data
        out = np.clip(x, min, max)

        def backward(g):
            keep = np.ones(x.shape, bool)
            if min is not None:
                keep &= x >= min
            if max is not None:
                keep &= x <= max
            return (g * keep,)

        return _make(out, (self,), backward, (self,))

    clip = clamp

    def relu(self) -> Tensor:
        """Element-wise ``max(x, 0)``, same shape and dtype."""
        from myelin.nn import functional as F

        return F.relu(self)

    def sigmoid(self) -> Tensor:
        """Element-wise ``1 / (1 + exp(-x))``, same shape and dtype."""
        from myelin.nn import functional as F

        return F.sigmoid(self)

    def tanh(self) -> Tensor:
        """Element-wise hyperbolic tangent, same shape and dtype."""
        from myelin.nn import functional as F

        return F.tanh(self)

    def softmax(self, dim: builtins.int = -1) -> Tensor:
        """``exp(x) / sum(exp(x))`` over ``dim``; same shape and dtype."""
        from myelin.nn import functional as F

        return F.softmax(self, dim)

    def log_softmax(self, dim: builtins.int = -1) -> Tensor:
        """``log(softmax(x))`` over ``dim``, computed stably; same shape and dtype."""
        from myelin.nn import functional as F

        return F.log_softmax(self, dim)

    # ------------------------------------------------------------ reductions

    def sum(
        self,
        dim: builtins.int | tuple[builtins.int, ...] | None = None,
        keepdim: builtins.bool = False,
    ) -> Tensor:
        """Sum over ``dim`` (all elements when None)."""
        x = self._data
        dim = _check_axis(dim, x.ndim)
        out = np.asarray(x.sum(axis=dim, keepdims=keepdim))
        shape = x.shape
        return _make(
            out,
            (self,),
            lambda g: (np.broadcast_to(_expand_reduced(g, shape, dim, keepdim), shape),),
        )

    def mean(
        self,
        dim: builtins.int | tuple[builtins.int, ...] | None = None,
        keepdim: builtins.bool = False,
    ) -> Tensor:
        """Mean over ``dim`` (all elements when None)."""
        x = self._data
        if x.dtype.kind != "f":
            raise TypeError(f"mean() needs a floating-point tensor, got dtype {x.dtype}")
        dim = _check_axis(dim, x.ndim)
        out = np.asarray(x.mean(axis=dim, keepdims=keepdim))
        shape = x.shape
        count = x.size // max(out.size, 1) if x.size else 0

        def backward(g):
            g = _expand_reduced(g, shape, dim, keepdim) / max(count, 1)
            return (np.broadcast_to(g, shape).astype(x.dtype, copy=False),)

        return _make(out, (self,), backward)

    def _extreme(self, dim, keepdim: builtins.bool, arg):
        x = self._data
        if dim is None:
            flat = x.reshape(-1)
            if flat.size == 0:
                raise ValueError("max()/min() of an empty tensor")
            i = int(arg(flat))
            out = np.asarray(flat[i])

            def backward(g):
                full = np.zeros(x.size, x.dtype)
                full[i] = g
                return (full.reshape(x.shape),)

            return _make(out, (self,), backward)
        d = _check_dim(dim, x.ndim)
        idx = np.expand_dims(arg(x, axis=d), d)
        vals = np.take_along_axis(x, idx, axis=d)

        def backward(g):  # type: ignore[no-redef]
            full = np.zeros(x.shape, x.dtype)
            gg = g if keepdim else np.expand_dims(g, d)
            np.put_along_axis(full, idx, gg, axis=d)
            return (full,)

        indices = idx if keepdim else np.squeeze(idx, d)
        if not keepdim:
            vals = np.squeeze(vals, d)
        return MaxResult(_make(vals, (self,), backward), Tensor(indices.astype(np.int64)))

    def max(self, dim: builtins.int | None = None, keepdim: builtins.bool = False):
        """The largest element, or ``(values, indices)`` along ``dim`` (as ``torch.max``)."""
        return self._extreme(dim, keepdim, np.argmax)

    def min(self, dim: builtins.int | None = None, keepdim: builtins.bool = False):
        """The smallest element, or ``(values, indices)`` along ``dim`` (as ``torch.min``)."""
        return self._extreme(dim, keepdim, np.argmin)

    def argmax(self, dim: builtins.int | None = None, keepdim: builtins.bool = False) -> Tensor:
        """Index of the largest element (of the flattened tensor when ``dim`` is None)."""
        if dim is None:
            return Tensor(np.asarray(np.argmax(self._data), dtype=np.int64))
        d = _check_dim(dim, self.ndim)
        return Tensor(np.argmax(self._data, axis=d, keepdims=keepdim).astype(np.int64))

    def argmin(self, dim: builtins.int | None = None, keepdim: builtins.bool = False) -> Tensor:
        """Indices of the minima over ``dim`` (over the flattened tensor if None), int64."""
        if dim is None:
            return Tensor(np.asarray(np.argmin(self._data), dtype=np.int64))
        d = _check_dim(dim, self.ndim)
        return Tensor(np.argmin(self._data, axis=d, keepdims=keepdim).astype(np.int64))

    def norm(self) -> Tensor:
        """The L2 norm of all elements."""
        return (self * self).sum().sqrt()

    # ------------------------------------------------------------ shape

    def reshape(self, *shape: builtins.int | Sequence[builtins.int]) -> Tensor:
        """The same elements in ``shape`` (one entry may be -1); a view where NumPy can."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        src = self._data.shape
        try:
            out = self._data.reshape(shape)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"cannot reshape a tensor of shape {src} to {shape}: {exc}") from None
        view = self if np.may_share_memory(out, self._data) else None
        return _make(out, (self,), lambda g: (g.reshape(src),), view_of=view)

    view = reshape

    def flatten(self, start_dim: builtins.int = 0, end_dim: builtins.int = -1) -> Tensor:
        """Merge the dimensions ``start_dim..end_dim`` into one (a view where NumPy can)."""
        shape = self._data.shape
        if not shape:
            return self.reshape(1)
        s = _check_dim(start_dim, len(shape), "start_dim")
        e = _check_dim(end_dim, len(shape), "end_dim")
        merged = 1
        for n in shape[s : e + 1]:
            merged *= n
        return self.reshape(shape[:s] + (merged,) + shape[e + 1 :])

    def permute(self, *dims: Any) -> Tensor:
        """The dimensions reordered as ``dims`` (a view of the data)."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        dims = tuple(_check_dim(d, self.ndim, "dims") for d in dims)
        inv = tuple(np.argsort(dims))
        out = self._data.transpose(dims)
        return _make(out, (self,), lambda g: (g.transpose(inv),), view_of=self)

    def transpose(self, dim0: builtins.int, dim1: builtins.int) -> Tensor:
        """Swap dimensions ``dim0`` and ``dim1`` (a view of the data)."""
        order = list(range(self.ndim))
        a, b = _check_dim(dim0, self.ndim, "dim0"), _check_dim(dim1, self.ndim, "dim1")
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    def t(self) -> Tensor:
        """The transpose of a tensor of at most 2 dimensions."""
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor of at most 2 dimensions, got {self.ndim}")
        return self.T

    def unsqueeze(self, dim: builtins.int) -> Tensor:
        """Insert a dimension of size 1 at ``dim``."""
        d = dim if dim >= 0 else dim + self.ndim + 1
        if not 0 <= d <= self.ndim:
            raise IndexError(f"dim {dim} is out of range for unsqueeze of {self.ndim} dims")
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim: builtins.int | None = None) -> Tensor:
        """Drop ``dim`` if it has size 1 (every size-1 dimension if None)."""
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        d = _check_dim(dim, self.ndim)
        if self.shape[d] != 1:
            return self
        return self.reshape(self.shape[:d] + self.shape[d + 1 :])

    def __getitem__(self, index) -> Tensor:
        if isinstance(index, Tensor):
            index = index._data
        elif isinstance(index, tuple):
            index = tuple(i._data if isinstance(i, Tensor) else i for i in index)
        x = self._data
        out = x[index]
        if not isinstance(out, np.ndarray):
            out = np.asarray(out)

        def backward(g):
            full = np.zeros(x.shape, x.dtype)
            np.add.at(full, index, g)
            return (full,)

        view = self if np.may_share_memory(out, x) else None  # basic indexing gives a view
        return _make(out, (self,), backward, view_of=view)

    def __setitem__(self, index, value) -> None:
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(
                "assignment into a tensor that requires grad; use myelin.no_grad() around it"
            )
        if isinstance(index, Tensor):
            index = index._data
        self._data[index] = _to_array(value) if isinstance(value, (Tensor, list)) else value
        mark_modified(self)


def clear_grad(t: Tensor, set_to_none: bool = True) -> None:
    """``t.grad = None``, keeping the array as the tensor's spare for the next backward to write
    again (only if nothing else holds it then); or zeros in place with ``set_to_none=False``."""
    g = t._grad
    if g is None:
        return
    if set_to_none:
        t._spare = g
        t._grad = None
    elif g.flags.writeable:
        g.fill(0)
    else:
        t._grad = np.zeros_like(t._data)


def _unwrap(x):
    """Tensors inside (nested tuples/lists/dicts of) ``x`` replaced by their ndarrays.

    Iterative, so that arguments nested deeper than the recursion limit raise RecursionError
    (as a recursive walk in Python would) instead of overflowing the C stack where this module
    is compiled."""
    if isinstance(x, Tensor):
        return x._data
    if not isinstance(x, (list, tuple, dict)):
        return x
    limit = sys.getrecursionlimit()
    # one frame per container being rebuilt: (the container, its items, their unwrapped values)
    stack: list[tuple[Any, list, list]] = [(x, _items(x), [])]
    while True:
        container, items, done = stack[-1]
        if len(done) < len(items):
            v = items[len(done)]
            if isinstance(v, (list, tuple, dict)):
                if len(stack) >= limit:
                    raise RecursionError(
                        f"the arguments are nested more than {limit} deep (the recursion limit)"
                    )
                stack.append((v, _items(v), []))
            else:
                done.append(v._data if isinstance(v, Tensor) else v)
            continue
        stack.pop()
        if isinstance(container, dict):
            value: Any = dict(zip(container.keys(), done, strict=True))
        elif type(container) is list:
            value = done
        else:
            value = type(container)(done)
        if not stack:
            return value
        stack[-1][2].append(value)


def _items(c) -> list:
    """The values of the list, tuple or dict ``c``, in order."""
    return list(c.values()) if isinstance(c, dict) else list(c)


def _mark_tensors(x) -> None:
    """mark_modified on ``x`` when it is a Tensor, or on the Tensors in the tuple ``x``."""
    if isinstance(x, Tensor):
        mark_modified(x)
    elif isinstance(x, tuple):
        for t in x:
            if isinstance(t, Tensor):
                mark_modified(t)


# NumPy functions that write into their first argument (np.copyto(t, ...), ...)
_WRITES_FIRST = frozenset(
    (np.copyto, np.put, np.place, np.putmask, np.put_along_axis, np.fill_diagonal)
)


_UFUNC_OPS = {
    np.add: operator.add,
    np.subtract: operator.sub,
    np.multiply: operator.mul,
    np.true_divide: operator.truediv,
    np.power: operator.pow,
    np.matmul: operator.matmul,
    np.less: operator.lt,
    np.less_equal: operator.le,
    np.greater: operator.gt,
    np.greater_equal: operator.ge,
    np.equal: operator.eq,
    np.not_equal: operator.ne,
}


def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """Matrix product with ``np.matmul`` broadcasting, on myelin's GEMM (``torch.matmul``)."""
    a, b = as_tensor(a), as_tensor(b)
    x, y = a._data, b._data
    if x.dtype.kind != "f" or y.dtype.kind != "f":
        raise TypeError(f"matmul needs floating-point tensors, got {x.dtype} and {y.dtype}")
    out = ops.matmul(x, y)

    def backward(g):
        ga = gb = None
        xa = x if x.ndim > 1 else x.reshape(1, -1)
        yb = y if y.ndim > 1 else y.reshape(-1, 1)
        gg = g
        if y.ndim == 1:
            gg = np.expand_dims(gg, -1)
        if x.ndim == 1:
            gg = np.expand_dims(gg, -2)
        if a.requires_grad:
            ga = ops.matmul(gg, yb, trans_b=True)
            ga = unbroadcast(ga, xa.shape).reshape(x.shape)
        if b.requires_grad:
            gb = ops.matmul(xa, gg, trans_a=True)
            gb = unbroadcast(gb, yb.shape).reshape(y.shape)
        return ga, gb

    saved = (b if a.requires_grad else None, a if b.requires_grad else None)
    return _make(out, (a, b), backward, saved)


# ---------------------------------------------------------------- constructors


def _shape(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    try:
        shape = tuple(operator.index(n) for n in size)
    except TypeError:
        raise TypeError(f"size must be integers, got {reprlib.repr(size)}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"size must be non-negative, got {shape}")
    return shape


def _float_dtype(dtype) -> np.dtype:
    dt = _DEFAULT_FLOAT if dtype is None else np.dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def tensor(data: TensorLike, dtype: DTypeLike | None = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (``torch.tensor``).

    Python floats give float32 and ints int64; an ndarray keeps its dtype unless ``dtype`` is given.
    """
    arr = _to_array(data, dtype)
    if arr is data or (isinstance(data, Tensor) and arr is data._data) or not arr.flags.owndata:
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (``torch.from_numpy``); an array in the other
    byte order (big-endian on x86 and ARM) is copied into the machine's (PyTorch refuses it)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array must be a numpy.ndarray, got {type(array).__name__}")
    return Tensor(_to_array(array))


def zeros(
    *size: int | Sequence[int], dtype: DTypeLike | None = None, requires_grad: bool = False
) -> Tensor:
    """A tensor of zeros of shape ``size`` (float32 unless ``dtype`` says otherwise)."""
    return Tensor(np.zeros(_shape(size), _float_dtype(dtype)), requires_grad=requires_grad)


def ones(
    *size: int | Sequence[int], dtype: DTypeLike | None = None, requires_grad: bool = False
) -> Tensor:
    """A tensor of ones of shape ``size`` (float32 unless ``dtype`` says otherwise)."""
    return Tensor(np.ones(_shape(size), _float_dtype(dtype)), requires_grad=requires_grad)


def zeros_like(t: TensorLike, dtype: DTypeLike | None = None) -> Tensor:
    """Zeros of the shape (and dtype, unless given) of ``t``."""
    return Tensor(np.zeros_like(_to_array(t), dtype=dtype))


def ones_like(t: TensorLike, dtype: DTypeLike | None = None) -> Tensor:
    """Ones of the shape (and dtype, unless given) of ``t``."""
    return Tensor(np.ones_like(_to_array(t), dtype=dtype))


def full(size: int | Sequence[int], fill_value: float, dtype: DTypeLike | None = None) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value`` (float32 by default)."""
    return Tensor(np.full(_shape((size,)), fill_value, _float_dtype(dtype)))


def randn(
    *size: int | Sequence[int],
    dtype: DTypeLike | None = None,
    generator: GeneratorLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """Standard normal samples from the (seedable) generator."""
    rng = _random.get_rng(generator)
    data = rng.standard_normal(_shape(size), dtype=_float_dtype(dtype))
    return Tensor(data, requires_grad=requires_grad)


def rand(
    *size: int | Sequence[int],
    dtype: DTypeLike | None = None,
    generator: GeneratorLike = None,
    requires_grad: bool = False,
) -> Tensor:
    """Uniform samples on [0, 1) from the (seedable) generator."""
    rng = _random.get_rng(generator)
    data = rng.random(_shape(size), dtype=_float_dtype(dtype))
    return Tensor(data, requires_grad=requires_grad)


def randint(
    low: int,
    high: int | None = None,
    size: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    generator: GeneratorLike = None,
) -> Tensor:
    """Integers uniform on [low, high) (``torch.randint(low, high, size)``)."""
    if high is None:
        low, high = 0, low
    if not high > low:
        raise ValueError(f"randint needs low < high, got low={low}, high={high}")
    rng = _random.get_rng(generator)
    shape = _shape((size,)) if not isinstance(size, int) else (size,)
    dt = np.dtype(np.int64 if dtype is None else dtype)
    return Tensor(rng.integers(low, high, size=shape).astype(dt))


def randperm(n: int, generator: GeneratorLike = None) -> Tensor:
    """A random permutation of ``0..n-1`` (int64), from ``generator`` or the default."""
    return Tensor(_random.get_rng(generator).permutation(operator.index(n)).astype(np.int64))


def arange(
    start: float, end: float | None = None, step: float = 1, dtype: DTypeLike | None = None
) -> Tensor:
    """Evenly spaced values in [start, end) (int64 for integer arguments, else float32)."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = np.int64 if ints else _DEFAULT_FLOAT
    return Tensor(np.arange(start, end, step, dtype=np.dtype(dtype)))


def cat(tensors: Sequence[TensorLike], dim: int = 0) -> Tensor:
    """Concatenate along ``dim`` (differentiable)."""
    ts = [as_tensor(t) for t in tensors]
    if not ts:
        raise ValueError("cat() needs at least one tensor")
    d = _check_dim(dim, ts[0].ndim)
    out = np.concatenate([t._data for t in ts], axis=d)
    bounds = np.cumsum([t.shape[d] for t in ts])[:-1]
    return _make(out, tuple(ts), lambda g: tuple(np.split(g, bounds, axis=d)))


def stack(tensors: Sequence[TensorLike], dim: int = 0) -> Tensor:
    """Stack along a new axis ``dim`` (differentiable)."""
    ts = [as_tensor(t).unsqueeze(dim) for t in tensors]
    return cat(ts, dim)


def where(condition: TensorLike, x: TensorLike, y: TensorLike) -> Tensor:
    """``x`` where ``condition`` holds, else ``y`` (broadcast; differentiable in x, y)."""
    cond = _to_array(condition).astype(bool)
    x, y = as_tensor(x), as_tensor(y)
    out = np.where(cond, x._data, y._data)
    return _make(
        out,
        (x, y),
        lambda g: (
            unbroadcast(np.where(cond, g, 0), x.shape),
            unbroadcast(np.where(cond, 0, g), y.shape),
        ),
    )
