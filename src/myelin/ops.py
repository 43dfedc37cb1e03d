"""myelin.ops: the C kernels behind a NumPy interface (NumPy arrays in, NumPy arrays out).

All validation lives here: array-likes are converted, the dtype rule applied, shapes and values
checked, outputs allocated or checked, and then one binding of ``myelin._kernels`` is called.
``myelin.reference`` has the same functions in plain NumPy. The API is described in docs/ops.md.

The dtype rule: float32 and float64 are computed natively. An ndarray of any other dtype raises
TypeError. Python scalars and nested lists are converted with ``np.asarray``, integer or bool
ones to float64. Inputs of different float dtypes are promoted to float64, as NumPy would.

Memory layout: inputs may have any strides, byte order (a big-endian ``>f4`` array is float32)
and alignment; what the kernels cannot read as it is is read from a native, aligned,
C-contiguous copy. ``out=`` arrays follow NumPy's ``out=``: any writable array of the result's
shape and dtype, in any layout or byte order (the result is computed into a temporary and
copied when the kernel cannot write ``out`` directly). Arrays updated in place by the optimizer
steps (parameters and states) must be what the kernels update directly: C-contiguous, aligned,
in the machine's byte order and writable; anything else raises ValueError naming the argument.

Overlap: an op reads its inputs as they were before it writes anything (an input sharing memory
with an output is read from a copy, unless it is exactly the output of an element-wise op,
which is then computed in place). Two arrays an op writes (a parameter and its states, the
arrays of ``linear_backward``'s ``out``, the entries of a multi-tensor step) must not share
memory: ValueError naming both. So results never depend on the number of threads.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

import numpy as np

from myelin import _kernels

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from myelin._typing import ArrayLike

__all__ = [
    "adam_step",
    "adam_step_multi",
    "bias_grad",
    "binary_cross_entropy_with_logits",
    "global_norm",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "matmul",
    "mse_loss",
    "relu",
    "relu_backward",
    "rmsprop_step",
    "sgd_step",
    "sgd_step_multi",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "tanh",
    "tanh_backward",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_TooHardError = getattr(np, "exceptions", np).TooHardError
_SHARES_MAX_WORK = 1 << 16  # numpy.shares_memory's work bound (about a millisecond)
_ACTIVATIONS = {
    None: _kernels.ACT_NONE,
    "relu": _kernels.ACT_RELU,
    "leaky_relu": _kernels.ACT_LEAKY_RELU,
    "sigmoid": _kernels.ACT_SIGMOID,
    "tanh": _kernels.ACT_TANH,
}
_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- input handling


def _as_float(x, name: str) -> np.ndarray:
    """``x`` as a float32 or float64 ndarray, following the dtype rule."""
    if isinstance(x, np.ndarray):
        a = x
    elif x is None:
        raise TypeError(f"{name} must be an array of float32 or float64, got None")
    else:
        typed = isinstance(x, np.generic) or hasattr(x, "__array__")
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} could not be converted to an array: {exc}") from None
        if not typed and a.dtype.kind in "biu":
            a = a.astype(np.float64)
    if a.dtype not in _FLOATS:
        native = a.dtype.newbyteorder("=")
        if native not in _FLOATS:
            raise TypeError(
                f"{name} has dtype {a.dtype}; myelin computes in float32 or float64 "
                f"(convert with .astype(np.float32))"
            )
        a = a.astype(native)  # the other byte order: the same values, in the machine's order
    return a


def _direct(a: np.ndarray) -> bool:
    """Whether the kernels can read or write ``a`` in place as a flat array: C-contiguous,
    aligned and in the machine's byte order."""
    return a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative


def _shares(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two ndarrays share memory, exactly: bounds settle most pairs, numpy's exact test
    the rest (work-bounded; a pair it cannot settle counts as sharing)."""
    if not np.may_share_memory(a, b):
        return False
    try:
        # (numpy's stubs type max_work as -1 or 0 only; any bound is documented and works)
        return bool(np.shares_memory(a, b, max_work=_SHARES_MAX_WORK))  # type: ignore[arg-type]
    except _TooHardError:
        return True


def _promote(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cast to float64 when the arrays mix float32 and float64, as NumPy would."""
    first = arrays[0].dtype
    for a in arrays:
        if a.dtype != first:
            return tuple(x.astype(np.float64, copy=False) for x in arrays)
    return arrays


def _contig(a: np.ndarray) -> np.ndarray:
    """``a`` (of a native float dtype) as the kernels read it: C-contiguous and aligned (a copy
    when it is not; ``np.ascontiguousarray`` would keep an unaligned contiguous array)."""
    return a if a.flags.c_contiguous and a.flags.aligned else np.array(a, order="C")


def _aligned(a: np.ndarray) -> np.ndarray:
    """``a`` (any strides) itself when aligned, else an aligned C-contiguous copy."""
    return a if a.flags.aligned else np.array(a, order="C")


def _rows(a: np.ndarray, cols: int) -> np.ndarray:
    """``a`` (..., cols) as a 2-D (rows, cols) array (a view when the layout allows)."""
    if a.ndim == 2:
        return a
    return a.reshape(math.prod(a.shape[:-1]), cols)


def _check_out(out, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """``out`` checked as NumPy's ``out=``: an ndarray of the shape and dtype (in either byte
    order), writable; the caller writes it through a temporary unless ``_direct(out)``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}; expected {dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}; expected {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only; expected a writable array")
    return out


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, op: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{op}: {name_a} has shape {a.shape} but {name_b} has shape {b.shape}; "
            f"they must be equal"
        )


def _activation(activation) -> int:
    try:
        return _ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}"
        ) from None


def _slope(negative_slope) -> float:
    try:
        s = float(negative_slope)
    except (TypeError, ValueError):
        raise TypeError(
            f"negative_slope must be a number, got {type(negative_slope).__name__}"
        ) from None
    if not s >= 0.0:
        raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
    return s


def _reduction(reduction) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")
    return reduction


def _nonneg(value, name: str, upper: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not v >= 0.0 or (upper is not None and not v < upper):
        expected = f"0 <= {name} < {upper}" if upper is not None else f"{name} >= 0"
        raise ValueError(f"{name} must satisfy {expected}, got {value}")
    return v


# ---------------------------------------------------------------- GEMM


def _gemm_into(out: np.ndarray, a: np.ndarray, b: np.ndarray, bias=None, act=0, slope=0.01):
    """out (..., M, N) = a @ b over broadcast batch axes; a, b already views of any strides."""
    if out.ndim == 2:
        return _kernels.gemm(out, a, b, 0.0, bias, act, slope)
    batch = out.shape[:-2]
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    return _kernels.gemm_batched(out, a, b)


def matmul(
    a: ArrayLike,
    b: ArrayLike,
    *,
    trans_a: bool = False,
    trans_b: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Matrix product with ``np.matmul`` semantics, on myelin's GEMM.

    Parameters
    ----------
    a, b : array_like, float32 or float64
        ``(..., M, K)`` and ``(..., K, N)`` (after the optional transposes); a 1-D operand is
        promoted as ``np.matmul`` does. Batch axes broadcast.
    trans_a, trans_b : bool
        Transpose the last two axes of ``a`` / ``b`` first, without a copy.
    out : ndarray, optional
        Result array of the right shape and dtype (any layout or byte order); must not share
        memory with ``a`` or ``b``.

    Returns
    -------
    ndarray of shape ``(..., M, N)`` and the inputs' dtype.
    """
    if out is None:
        res = _kernels.matmul_fast(a, b, trans_a, trans_b)
        if res is not None:
            return res
    a_in, b_in = a, b
    a, b = _promote(_as_float(a, "a"), _as_float(b, "b"))
    if a.ndim == 0 or b.ndim == 0:
        which = "a" if a.ndim == 0 else "b"
        raise ValueError(f"matmul: {which} is a scalar (shape ()); expected at least 1 dimension")
    a2 = a[None, :] if a.ndim == 1 else (np.swapaxes(a, -1, -2) if trans_a else a)
    b2 = b[:, None] if b.ndim == 1 else (np.swapaxes(b, -1, -2) if trans_b else b)
    M, K = a2.shape[-2:]
    K2, N = b2.shape[-2:]
    if K != K2:
        raise ValueError(
            f"matmul: a has shape {a.shape}{' (transposed)' if trans_a else ''} and b has shape "
            f"{b.shape}{' (transposed)' if trans_b else ''}; the contracted dimensions differ "
            f"({K} != {K2})"
        )
    batch = ()
    if a2.ndim > 2 or b2.ndim > 2:
        try:
            batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        except ValueError:
            raise ValueError(
                f"matmul: the batch dimensions of a {a.shape} and b {b.shape} do not broadcast; "
                f"expected batch dimensions that are equal or 1"
            ) from None
    full = batch + (M, N)
    shape = batch + ((M,) if a.ndim > 1 else ()) + ((N,) if b.ndim > 1 else ())
    dtype = a.dtype
    if out is None:
        res = np.empty(shape, dtype)
        work = res if shape == full else res.reshape(full)
    else:
        res = _check_out(out, "out", shape, dtype)
        for arr, nm in ((a_in, "a"), (b_in, "b")):
            if isinstance(arr, np.ndarray) and _shares(res, arr):
                raise ValueError(f"matmul: out shares memory with {nm}; pass a separate array")
        copy_back = not _direct(res)
        work = np.empty(full, dtype) if copy_back else res.reshape(full)
    # The kernels address elements by stride: an unaligned view (its address or strides not a
    # multiple of the item size) is copied first.
    a2, b2 = _aligned(a2), _aligned(b2)
    _gemm_into(work, a2, b2)
    if out is not None and copy_back:
        np.copyto(res, work.reshape(shape))
    return res


def linear(
    x: Any,
    weight: Any,
    bias: Any = None,
    activation: str | None = None,
    *,
    negative_slope: float = 0.01,
    out: np.ndarray | None = None,
):
    """``act(x @ weight.T + bias)`` in one pass (bias and activation fused in the GEMM).

    Parameters
    ----------
    x : array_like, ``(..., in_features)``
    weight : array_like, ``(out_features, in_features)`` (PyTorch's layout)
    bias : array_like ``(out_features,)``, optional
    activation : None, "relu", "leaky_relu", "sigmoid" or "tanh"
    negative_slope : float
        The slope of leaky_relu for negative inputs (PyTorch's default 0.01).
    out : ndarray ``(..., out_features)``, optional
        Any layout or byte order; must not share memory with an input.

    Returns
    -------
    ndarray ``(..., out_features)`` of the inputs' dtype.
    """
    res = _kernels.linear_fast(x, weight, bias, activation, negative_slope, out)
    if res is not None:
        return res
    inputs = ((x, "x"), (weight, "weight"), (bias, "bias"))
    act = _activation(activation)
    slope = _slope(negative_slope)
    arrays: Any = [_as_float(x, "x"), _as_float(weight, "weight")]
    if bias is not None:
        arrays.append(_as_float(bias, "bias"))
    arrays = _promote(*arrays)
    x, weight = arrays[0], arrays[1]
    if weight.ndim != 2:
        raise ValueError(
            f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}"
        )
    n_out, n_in = weight.shape
    if x.ndim == 0 or x.shape[-1] != n_in:
        raise ValueError(
            f"linear: x has shape {x.shape} but weight {weight.shape} expects {n_in} input "
            f"features in the last axis"
        )
    if bias is not None:
        bias = _contig(arrays[2])
        if bias.shape != (n_out,):
            raise ValueError(
                f"linear: bias has shape {bias.shape}; expected ({n_out},) for weight "
                f"{weight.shape}"
            )
    shape = x.shape[:-1] + (n_out,)
    x2 = _rows(x, n_in)
    x2, w_t = _aligned(x2), _aligned(weight).T
    if out is None:
        res = np.empty(shape, x.dtype)
        work = _rows(res, n_out)
    else:
        res = _check_out(out, "out", shape, x.dtype)
        for arr, nm in inputs:
            if isinstance(arr, np.ndarray) and _shares(res, arr):
                raise ValueError(f"linear: out shares memory with {nm}; pass a separate array")
        work = _rows(res, n_out) if _direct(res) else np.empty((x2.shape[0], n_out), x.dtype)
    _kernels.gemm(work, x2, w_t, 0.0, bias, act, slope)
    if out is not None and not _direct(res):
        np.copyto(res, work.reshape(shape))
    return res


def linear_backward(
    grad_y: Any,
    x: Any,
    weight: Any,
    y: Any,
    activation: str | None = None,
    *,
    negative_slope: float = 0.01,
    need_grad_x: bool = True,
    out: Sequence[np.ndarray | None] | None = None,
    work: np.ndarray | None = None,
):
    """Gradients of :func:`linear`.

    Parameters
    ----------
    grad_y : array_like ``(..., out_features)``, the upstream gradient.
    x : array_like ``(..., in_features)``, the forward input.
    weight : array_like ``(out_features, in_features)``.
    y : array_like ``(..., out_features)``, the forward output; used for the activation's
        derivative and may be None when ``activation`` is None.
    need_grad_x : bool
        False skips the ``grad_x`` GEMM (a first layer, whose input needs no gradient) and
        returns None in its place.
    out : tuple of three ndarrays or None, optional
        Arrays to write ``(grad_x, grad_weight, grad_bias)`` into (each may be None); each must
        have the result's shape and dtype (any layout or byte order) and share memory with none
        of the others (ValueError naming both). One that shares memory with an input gets the
        right result all the same (the inputs are read first).
    work : ndarray, optional
        Scratch of ``grad_y``'s shape and dtype for the activation's gradient; may be ``grad_y``
        itself, which may then be overwritten (a caller that owns ``grad_y`` saves an
        allocation). Ignored when it is not a C-contiguous array of that shape and dtype or
        shares memory with another argument.

    Returns
    -------
    (grad_x, grad_weight, grad_bias) with the shapes of x, weight and ``(out_features,)``.
    """
    ox = ow = ob = None
    if out is not None:
        if not isinstance(out, tuple) or len(out) != 3:
            raise TypeError(
                "out must be a tuple (grad_x, grad_weight, grad_bias) of arrays or None, got "
                f"{type(out).__name__}"
            )
        ox, ow, ob = out
    res: Any = _kernels.linear_backward_fast(
        grad_y, x, weight, y, activation, negative_slope, bool(need_grad_x), ox, ow, ob, work
    )
    if res is not None:
        return res
    act = _activation(activation)
    slope = _slope(negative_slope)
    arrays: Any = [_as_float(grad_y, "grad_y"), _as_float(x, "x"), _as_float(weight, "weight")]
    if act != _kernels.ACT_NONE:
        if y is None:
            raise ValueError(
                f"linear_backward: y (the forward output) is needed for {activation}, got None"
            )
        arrays.append(_as_float(y, "y"))
    arrays = _promote(*arrays)
    grad_y, x, weight = arrays[:3]
    if weight.ndim != 2:
        raise ValueError(
            f"linear_backward: weight must be 2-D (out_features, in_features), got shape "
            f"{weight.shape}"
        )
    n_out, n_in = weight.shape
    if x.ndim == 0 or x.shape[-1] != n_in:
        raise ValueError(
            f"linear_backward: x has shape {x.shape} but weight {weight.shape} expects {n_in} "
            f"input features"
        )
    expected = x.shape[:-1] + (n_out,)
    if grad_y.shape != expected:
        raise ValueError(
            f"linear_backward: grad_y has shape {grad_y.shape}; expected {expected} from x "
            f"{x.shape} and weight {weight.shape}"
        )
    g = _rows(_contig(grad_y), n_out)
    if act != _kernels.ACT_NONE:
        y = arrays[3]
        if y.shape != expected:
            raise ValueError(f"linear_backward: y has shape {y.shape}; expected {expected}")
        g = _kernels.act_backward(np.empty_like(g), g, _rows(_contig(y), n_out), act, slope)
    x2 = _rows(_contig(x), n_in)
    grad_x = None
    if need_grad_x:
        grad_x = np.empty(x2.shape, x.dtype)
        _kernels.gemm(grad_x, g, _contig(weight))
    grad_w = np.empty((n_out, n_in), x.dtype)
    _kernels.gemm(grad_w, g.T, x2)
    grad_b = np.empty(n_out, x.dtype)
    _kernels.colsum(grad_b, g, g.shape[0], n_out)
    if grad_x is not None:
        grad_x = grad_x.reshape(x.shape)
    if out is not None:  # the general path computes, then copies into the given arrays
        names = ("grad_x", "grad_weight", "grad_bias")
        dsts = [
            None
            if dst is None or got is None
            else _check_out(dst, f"out ({nm})", got.shape, got.dtype)
            for nm, got, dst in zip(names, (grad_x, grad_w, grad_b), (ox, ow, ob), strict=True)
        ]
        for i in range(3):
            for j in range(i + 1, 3):
                a, b = dsts[i], dsts[j]
                if a is not None and b is not None and _shares(a, b):
                    raise ValueError(
                        f"linear_backward: out ({names[i]}) and out ({names[j]}) share memory; "
                        f"expected separate arrays"
                    )
        res = []
        for got, dst in zip((grad_x, grad_w, grad_b), dsts, strict=True):
            if dst is not None and got is not None:
                np.copyto(dst, got)
            res.append(got if dst is None else dst)
        return tuple(res)
    return grad_x, grad_w, grad_b


def linear_chain_fast(x, weights, biases, activations, negative_slopes, pool_from=0):
    """Several :func:`linear` layers applied in turn, in one call, for the common case: every
    array 2-D, C-contiguous and of one float dtype, activations as :func:`linear` takes them and
    float slopes. Used by ``nn.functional.linear_chain``.

    Returns ``[x, y_1, ..., y_L]`` (each layer's output, new arrays), or None when the call is
    not that case, or when ``pool_from > 0`` and a weight or an output has ``pool_from``
    elements or more (the caller then runs the layers one by one with its own buffers). The
    numbers are those of :func:`linear` called per layer.
    """
    return _kernels.chain_forward_fast(x, weights, biases, activations, negative_slopes, pool_from)


def linear_chain_backward_fast(grad_y, outs, weights, activations, negative_slopes, need_grad_x):
    """The gradients of :func:`linear_chain_fast` for the upstream gradient ``grad_y`` of its
    last output: ``[grad_x, grad_w1, grad_b1, ..., grad_wL, grad_bL]``, new arrays (``grad_x``
    None unless ``need_grad_x``), or None when a layer is not :func:`linear_backward`'s fast
    case. The numbers are those of :func:`linear_backward` called per layer."""
    return _kernels.chain_backward_fast(
        grad_y, outs, weights, activations, negative_slopes, bool(need_grad_x)
    )


# ---------------------------------------------------------------- activations


def _unary(x, out, act: int, slope: float) -> np.ndarray:
    x = _as_float(x, "x")
    if out is None:
        return _kernels.act_forward(np.empty(x.shape, x.dtype), _contig(x), act, slope)
    res = _check_out(out, "out", x.shape, x.dtype)
    xc = _contig(x)
    if _direct(res):
        return _kernels.act_forward(res, _kernels.read_apart(xc, (res,), in_place=True), act, slope)
    np.copyto(res, _kernels.act_forward(np.empty(x.shape, x.dtype), xc, act, slope))
    return res


def _unary_backward(grad_y, y, out, act: int, slope: float, op: str) -> np.ndarray:
    grad_y, y = _promote(_as_float(grad_y, "grad_y"), _as_float(y, "y"))
    _same_shape(grad_y, y, "grad_y", "y", op)
    gc, yc = _contig(grad_y), _contig(y)
    if out is None:
        return _kernels.act_backward(np.empty(y.shape, y.dtype), gc, yc, act, slope)
    res = _check_out(out, "out", y.shape, y.dtype)
    if _direct(res):
        gc = _kernels.read_apart(gc, (res,), in_place=True)
        return _kernels.act_backward(res, gc, _kernels.read_apart(yc, (res,)), act, slope)
    np.copyto(res, _kernels.act_backward(np.empty(y.shape, y.dtype), gc, yc, act, slope))
    return res


def relu(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """``max(x, 0)`` element-wise; NaN stays NaN. Same shape and dtype as ``x``."""
    return _unary(x, out, _kernels.ACT_RELU, 0.0)


def relu_backward(
    grad_y: ArrayLike, y: ArrayLike | None, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Gradient of :func:`relu` from the upstream gradient and the forward output ``y``."""
    return _unary_backward(grad_y, y, out, _kernels.ACT_RELU, 0.0, "relu_backward")


def leaky_relu(
    x: ArrayLike, negative_slope: float = 0.01, *, out: np.ndarray | None = None
) -> np.ndarray:
    """``x`` where positive, ``negative_slope * x`` elsewhere (PyTorch's default slope 0.01)."""
    return _unary(x, out, _kernels.ACT_LEAKY_RELU, _slope(negative_slope))


def leaky_relu_backward(
    grad_y: ArrayLike,
    y: ArrayLike | None,
    negative_slope: float = 0.01,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient of :func:`leaky_relu` from the upstream gradient and the forward output ``y``."""
    return _unary_backward(
        grad_y, y, out, _kernels.ACT_LEAKY_RELU, _slope(negative_slope), "leaky_relu_backward"
    )


def sigmoid(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """``1 / (1 + exp(-x))`` element-wise, saturating cleanly for large ``|x|``."""
    return _unary(x, out, _kernels.ACT_SIGMOID, 0.0)


def sigmoid_backward(
    grad_y: ArrayLike, y: ArrayLike | None, *, out: np.ndarray | None = None
) -> np.ndarray:
    """``grad_y * y * (1 - y)``, ``y`` being the forward output."""
    return _unary_backward(grad_y, y, out, _kernels.ACT_SIGMOID, 0.0, "sigmoid_backward")


def tanh(x: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Hyperbolic tangent element-wise."""
    return _unary(x, out, _kernels.ACT_TANH, 0.0)


def tanh_backward(
    grad_y: ArrayLike, y: ArrayLike | None, *, out: np.ndarray | None = None
) -> np.ndarray:
    """``grad_y * (1 - y**2)``, ``y`` being the forward output."""
    return _unary_backward(grad_y, y, out, _kernels.ACT_TANH, 0.0, "tanh_backward")


# ---------------------------------------------------------------- softmax


def _axis(axis, shape: tuple, op: str, name: str = "x") -> int:
    """``axis`` of the array ``name`` of ``shape``, as a non-negative int."""
    ndim = len(shape)
    if ndim == 0:
        raise ValueError(f"{op}: {name} is a scalar (shape ()); expected at least 1 dimension")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{op}: axis {axis} is out of range for {name} of shape {shape}; expected "
            f"-{ndim} <= axis < {ndim}"
        )
    return axis % ndim


def _rows_last(a: np.ndarray, axis: int) -> np.ndarray:
    return _contig(np.moveaxis(a, axis, -1))


def _softmax(x, axis, log: bool, op: str) -> np.ndarray:
    x = _as_float(x, "x")
    axis = _axis(axis, x.shape, op)
    xl = _rows_last(x, axis)
    y = np.empty(xl.shape, x.dtype)
    if y.size:
        cols = xl.shape[-1]
        _kernels.softmax_forward(y, xl, y.size // cols, cols, log)
    return np.moveaxis(y, -1, axis)


def _softmax_backward(grad_y, y, axis, log: bool, op: str) -> np.ndarray:
    grad_y, y = _promote(_as_float(grad_y, "grad_y"), _as_float(y, "y"))
    _same_shape(grad_y, y, "grad_y", "y", op)
    axis = _axis(axis, y.shape, op, "y")
    gl, yl = _rows_last(grad_y, axis), _rows_last(y, axis)
    dx = np.empty(yl.shape, y.dtype)
    if dx.size:
        cols = yl.shape[-1]
        _kernels.softmax_backward(dx, gl, yl, dx.size // cols, cols, log)
    return np.moveaxis(dx, -1, axis)


def softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis``, stable for any finite input."""
    return _softmax(x, axis, False, "softmax")


def log_softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis``, stable for any finite input."""
    return _softmax(x, axis, True, "log_softmax")


def softmax_backward(grad_y: ArrayLike, y: ArrayLike | None, axis: int = -1) -> np.ndarray:
    """Gradient through :func:`softmax` given its output ``y``: ``y * (g - sum(g * y))``."""
    return _softmax_backward(grad_y, y, axis, False, "softmax_backward")


def log_softmax_backward(grad_y: ArrayLike, y: ArrayLike | None, axis: int = -1) -> np.ndarray:
    """Gradient through :func:`log_softmax` given its output ``y``: ``g - exp(y) * sum(g)``."""
    return _softmax_backward(grad_y, y, axis, True, "log_softmax_backward")


# ---------------------------------------------------------------- losses


def _finish_loss(total: float, n: int, reduction: str, dtype, per_item):
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return dtype.type(total)
    return dtype.type(total / n) if n else dtype.type(np.nan)


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
):
    """Fused softmax cross-entropy on logits: one pass for the loss and its gradient.

    PyTorch's ``cross_entropy`` semantics
    (https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html).

    Parameters
    ----------
    logits : array_like ``(N, C)``, float32 or float64
    labels : array_like ``(N,)`` of integers in ``[0, C)`` (int32 or int64; other integer types
        are converted), or equal to ``ignore_index``.
    reduction : "mean" (over the rows not ignored), "sum" or "none"
    ignore_index : int, optional
        Rows with this label add nothing to the loss or the gradient.
    label_smoothing : float in [0, 1]

    Returns
    -------
    (loss, grad_logits): ``loss`` a scalar of the logits' dtype (``(N,)`` for "none");
    ``grad_logits`` ``(N, C)``, the gradient of the loss (of the sum of the losses for "none").
    """
    if reduction == "mean" or reduction == "sum":
        res = _kernels.softmax_xent_fast(
            logits, labels, ignore_index, label_smoothing, reduction == "mean"
        )
        if res is not None:
            return res[1].dtype.type(res[0]), res[1]
    reduction = _reduction(reduction)
    smoothing = _nonneg(label_smoothing, "label_smoothing")
    if smoothing > 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    logits = _as_float(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(
            f"softmax_cross_entropy: logits must be 2-D (N, C), got shape {logits.shape}"
        )
    n, c = logits.shape
    lab64, n_valid = _class_labels(labels, n, c, ignore_index)
    scale = 1.0 / n_valid if (reduction == "mean" and n_valid) else 1.0
    grad = np.empty((n, c), logits.dtype)
    row_loss = np.empty(n, logits.dtype) if reduction == "none" else None
    total = _kernels.softmax_xent(row_loss, grad, _contig(logits), lab64, smoothing, scale)
    return _finish_loss(total, n_valid, reduction, logits.dtype, row_loss), grad


def _class_labels(labels, n: int, c: int, ignore_index, name: str = "labels"):
    """Class labels ``(n,)`` for ``c`` classes as a contiguous int64 array with ignored rows set to
    -1, and the number of rows not ignored. Raises, before any kernel runs, TypeError for a
    non-numeric ``labels`` and ValueError naming the first label that is negative, ``>= c``,
    not a whole number or NaN (unless it equals ``ignore_index``)."""
    if labels is None:
        raise TypeError(f"{name} must be an array of integer class indices, got None")
    try:
        lab = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise TypeError(
            f"{name} could not be converted to an array of class indices (expected integers): {exc}"
        ) from None
    if ignore_index is not None:
        try:
            ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(
                f"ignore_index must be an int or None, got {type(ignore_index).__name__}"
            ) from None
    kind = lab.dtype.kind
    if kind == "b":
        raise ValueError(
            f"{name} has dtype bool; expected integer class indices (int32 or int64), not a mask"
        )
    if kind not in "iuf":
        raise TypeError(
            f"{name} has dtype {lab.dtype}; expected integer class indices (int32 or int64)"
        )
    if lab.shape != (n,):
        raise ValueError(
            f"{name} has shape {lab.shape}; expected ({n},), one per row of the ({n}, {c}) "
            f"{'logits' if name == 'labels' else 'input'}"
        )
    if kind == "f" and (n or isinstance(labels, np.ndarray)):
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(lab) & (lab == np.round(lab))
        bad = np.flatnonzero(~whole)
        if not n:
            raise TypeError(
                f"{name} has dtype {lab.dtype}; expected integer class indices (int32 or int64)"
            )
        first = int(bad[0]) if bad.size else 0
        what = "is not a whole number" if bad.size else "is a float"
        raise ValueError(
            f"{name} has dtype {lab.dtype}: {name}[{first}] = {float(lab[first])} {what}; expected "
            f"integer class indices in [0, {c}) (convert with .astype(np.int64))"
        )
    if kind == "f":  # no rows: an empty list of labels
        lab = lab.astype(np.int64)
    if kind == "u" and lab.dtype.itemsize == 8 and n and lab.max() > np.iinfo(np.int64).max:
        first = int(np.flatnonzero(lab > np.iinfo(np.int64).max)[0])
        raise ValueError(
            f"{name}[{first}] = {lab[first]} is not a class index: expected 0 <= label < {c}"
        )
    lab64, n_valid, bad_at = _kernels.prepare_labels(lab, c, ignore_index)
    if bad_at >= 0:
        extra = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(
            f"{name}[{bad_at}] = {lab[bad_at]} is not a class index: expected "
            f"0 <= label < {c}{extra}"
        )
    return lab64, n_valid


def _pointwise_loss(kind: int, x, t, reduction, op: str, names: tuple[str, str]):
    reduction = _reduction(reduction)
    x, t = _promote(_as_float(x, names[0]), _as_float(t, names[1]))
    _same_shape(x, t, names[0], names[1], op)
    n = x.size
    scale = 1.0 / n if (reduction == "mean" and n) else 1.0
    grad = np.empty(x.shape, x.dtype)
    per = np.empty(x.shape, x.dtype) if reduction == "none" else None
    total = _kernels.pointwise_loss(kind, per, grad, _contig(x), _contig(t), scale)
    return _finish_loss(total, n, reduction, x.dtype, per), grad


def binary_cross_entropy_with_logits(
    logits: ArrayLike, targets: ArrayLike, *, reduction: str = "mean"
):
    """Binary cross-entropy on logits, stable for any finite input (PyTorch's
    ``binary_cross_entropy_with_logits``). ``logits`` and ``targets`` have one shape.

    Returns ``(loss, grad_logits)``; see :func:`softmax_cross_entropy` for the reductions.
    """
    return _pointwise_loss(
        0, logits, targets, reduction, "binary_cross_entropy_with_logits", ("logits", "targets")
    )


def mse_loss(input: ArrayLike, target: ArrayLike, *, reduction: str = "mean"):
    """Mean squared error ``(input - target)**2`` (PyTorch's ``mse_loss``).

    Returns ``(loss, grad_input)``; see :func:`softmax_cross_entropy` for the reductions.
    """
    return _pointwise_loss(1, input, target, reduction, "mse_loss", ("input", "target"))


# ---------------------------------------------------------------- optimizer updates


def _param(p, name: str) -> np.ndarray:
    """An array updated in place by an optimizer step, as the kernels update it directly."""
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray updated in place, got {type(p).__name__}")
    if p.dtype not in _FLOATS:
        if p.dtype.newbyteorder("=") in _FLOATS:
            raise ValueError(
                f"{name} has dtype {p.dtype.str}, not in the machine's byte order; expected a "
                f"{p.dtype.newbyteorder('=')} array updated in place (convert with "
                f".astype({p.dtype.newbyteorder('=').name}) and keep the result)"
            )
        raise TypeError(f"{name} has dtype {p.dtype}; expected float32 or float64")
    if not p.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous to be updated in place")
    if not p.flags.aligned:
        raise ValueError(
            f"{name} is not aligned in memory; expected an aligned array updated in place "
            f"(a copy is)"
        )
    if not p.flags.writeable:
        raise ValueError(f"{name} is read-only; expected a writable array updated in place")
    return p


def _state(s, name: str, param: np.ndarray, op: str, others=()) -> np.ndarray:
    """An optimizer state of ``param``: as ``param`` is, of its shape and dtype, sharing memory
    with neither ``param`` nor the states before it (``others``: (array, name) pairs)."""
    s = _param(s, name)
    if s.dtype != param.dtype:
        raise TypeError(f"{op}: {name} has dtype {s.dtype}; expected {param.dtype} like param")
    _same_shape(param, s, "param", name, op)
    for other, other_name in ((param, "param"), *others):
        if other is not None and np.may_share_memory(s, other):  # contiguous: exact
            raise ValueError(
                f"{op}: {name} shares memory with {other_name}; expected a separate array"
            )
    return s


def _grad(g, param: np.ndarray, op: str) -> np.ndarray:
    g = _as_float(g, "grad")
    if g.dtype != param.dtype:
        raise TypeError(f"{op}: grad has dtype {g.dtype}; expected {param.dtype} like param")
    _same_shape(param, g, "param", "grad", op)
    return _contig(g)


def sgd_step(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buffer: np.ndarray | None = None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    first_step: bool = False,
    _check_only: bool = False,
) -> None:
    """One SGD update of ``param`` in place, PyTorch's rule
    (https://pytorch.org/docs/stable/generated/torch.optim.SGD.html).

    ``momentum_buffer`` (same shape and dtype) is required when ``momentum != 0``;
    ``first_step=True`` sets it to the gradient, as PyTorch does on its first step.
    """
    op = "sgd_step"
    param = _param(param, "param")
    g = _grad(grad, param, op)
    lr = _nonneg(lr, "lr")
    momentum = _nonneg(momentum, "momentum")
    dampening = float(dampening)
    weight_decay = _nonneg(weight_decay, "weight_decay")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("sgd_step: nesterov needs momentum > 0 and dampening == 0")
    buf = None
    if momentum != 0.0:
        if momentum_buffer is None:
            raise ValueError("sgd_step: momentum_buffer is required when momentum != 0, got None")
        buf = _state(momentum_buffer, "momentum_buffer", param, op)
    if _check_only:
        return
    g = _kernels.read_apart(g, (param, buf), in_place=True)
    _kernels.sgd_step(
        param, buf, g, lr, momentum, dampening, weight_decay, bool(nesterov), bool(first_step)
    )


def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    step: int,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    amsgrad: bool = False,
    max_exp_avg_sq: np.ndarray | None = None,
    _check_only: bool = False,
) -> None:
    """One Adam (or AdamW, with ``decoupled_weight_decay=True``) update in place, PyTorch's rule
    (https://pytorch.org/docs/stable/generated/torch.optim.Adam.html).

    ``step`` is the number of this update, 1 on the first call. ``max_exp_avg_sq`` is required
    with ``amsgrad=True``.
    """
    op = "adam_step"
    param = _param(param, "param")
    g = _grad(grad, param, op)
    m = _state(exp_avg, "exp_avg", param, op)
    v = _state(exp_avg_sq, "exp_avg_sq", param, op, ((m, "exp_avg"),))
    try:
        beta1, beta2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    _nonneg(beta1, "betas[0]", 1.0)
    _nonneg(beta2, "betas[1]", 1.0)
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an int, got {type(step).__name__}") from None
    if step < 1:
        raise ValueError(f"step must be >= 1 (the number of this update), got {step}")
    vmax = None
    if amsgrad:
        if max_exp_avg_sq is None:
            raise ValueError("adam_step: max_exp_avg_sq is required when amsgrad=True, got None")
        vmax = _state(
            max_exp_avg_sq, "max_exp_avg_sq", param, op, ((m, "exp_avg"), (v, "exp_avg_sq"))
        )
    if _check_only:
        return
    _kernels.adam_step(
        param,
        m,
        v,
        vmax,
        _kernels.read_apart(g, (param, m, v, vmax), in_place=True),
        _nonneg(lr, "lr"),
        beta1,
        beta2,
        _nonneg(eps, "eps"),
        _nonneg(weight_decay, "weight_decay"),
        bool(decoupled_weight_decay),
        step,
    )


def _diagnose_multi(lists: dict, check) -> None:
    """Re-check a failed multi-tensor call element by element to name the culprit."""
    n = len(next(iter(lists.values())))
    for name, items in lists.items():
        if items is not None and len(items) != n:
            raise ValueError(f"{name} has {len(items)} entries; expected {n}, one per param")
    for i in range(n):
        try:
            check(i)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"entry {i}: {exc}") from None


def adam_step_multi(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    exp_avgs: Sequence[np.ndarray],
    exp_avg_sqs: Sequence[np.ndarray],
    *,
    steps: Sequence[int],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    amsgrad: bool = False,
    max_exp_avg_sqs: Sequence[np.ndarray] | None = None,
) -> None:
    """:func:`adam_step` over lists of tensors in one call (a multi-tensor step: one Python
    call per parameter group instead of one per parameter). ``steps`` holds each tensor's step
    number. Each sequence is read once, when the call starts (an entry changed during the call,
    by another thread or by a step's ``__index__``, is not seen). Every entry is checked as
    :func:`adam_step` checks it, and no array the call writes may share memory with another
    array of any entry (ValueError naming both), before any is updated."""
    try:
        beta1, beta2 = betas
        beta1, beta2 = float(beta1), float(beta2)
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        _nonneg(beta1, "betas[0]", 1.0)
        _nonneg(beta2, "betas[1]", 1.0)
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError("adam_step_multi: max_exp_avg_sqs is required when amsgrad=True")
    ps, gs, ms, vs = tuple(params), tuple(grads), tuple(exp_avgs), tuple(exp_avg_sqs)
    vmax = tuple(max_exp_avg_sqs) if amsgrad else None  # type: ignore[arg-type]
    steps = tuple(steps)  # converted to C integers by the binding, once per attempt
    if (
        type(lr) is float
        and type(eps) is float
        and type(weight_decay) is float
        and (lr >= 0.0 and eps >= 0.0 and weight_decay >= 0.0)
    ):  # the usual case, checked at once
        args = (lr, beta1, beta2, eps, weight_decay, bool(decoupled_weight_decay))
    else:
        args = (
            _nonneg(lr, "lr"),
            beta1,
            beta2,
            _nonneg(eps, "eps"),
            _nonneg(weight_decay, "weight_decay"),
            bool(decoupled_weight_decay),
        )
    try:
        _kernels.adam_multi(ps, gs, ms, vs, vmax, steps, *args)
        return
    except (TypeError, ValueError, OverflowError):
        pass
    _diagnose_multi(
        {
            "params": ps,
            "grads": gs,
            "exp_avgs": ms,
            "exp_avg_sqs": vs,
            "steps": steps,
            "max_exp_avg_sqs": vmax,
        },
        lambda i: adam_step(
            ps[i],
            gs[i],
            ms[i],
            vs[i],
            step=steps[i],
            lr=0.0,
            betas=(beta1, beta2),
            amsgrad=amsgrad,
            max_exp_avg_sq=None if vmax is None else vmax[i],
            _check_only=True,
        ),
    )
    # every entry is valid on its own, with a gradient the kernel cannot read as it is (another
    # layout or byte order, or sharing memory with an array the entry writes): read from a copy
    # as adam_step reads it. Then only arrays of different entries can still share memory, and
    # the call refuses that, naming both.
    gs = tuple(
        _kernels.read_apart(
            _grad(gs[i], ps[i], "adam_step"),
            (ps[i], ms[i], vs[i], None if vmax is None else vmax[i]),
            in_place=True,
        )
        for i in range(len(ps))
    )
    _kernels.adam_multi(ps, gs, ms, vs, vmax, steps, *args)


def sgd_step_multi(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    momentum_buffers: Sequence[np.ndarray | None] | None = None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    first_steps: Sequence[bool],
) -> None:
    """:func:`sgd_step` over lists of tensors in one call; ``first_steps`` holds each tensor's
    ``first_step`` flag. Each sequence is read once, when the call starts; every entry is
    checked, and no array written may share memory with another array of any entry, before any
    is updated (as :func:`adam_step_multi`)."""
    lr = _nonneg(lr, "lr")
    momentum = _nonneg(momentum, "momentum")
    dampening = float(dampening)
    weight_decay = _nonneg(weight_decay, "weight_decay")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("sgd_step_multi: nesterov needs momentum > 0 and dampening == 0")
    if momentum != 0.0 and momentum_buffers is None:
        raise ValueError("sgd_step_multi: momentum_buffers is required when momentum != 0")
    ps, gs = tuple(params), tuple(grads)
    bufs = None if momentum == 0.0 else tuple(momentum_buffers)  # type: ignore[arg-type]
    flags = tuple(bool(f) for f in first_steps)
    args = (lr, momentum, dampening, weight_decay, bool(nesterov))
    try:
        _kernels.sgd_multi(ps, gs, bufs, *args, flags)
        return
    except (TypeError, ValueError):
        pass
    _diagnose_multi(
        {"params": ps, "grads": gs, "first_steps": flags, "momentum_buffers": bufs},
        lambda i: sgd_step(
            ps[i],
            gs[i],
            None if bufs is None else bufs[i],
            lr=0.0,
            momentum=momentum,
            _check_only=True,
        ),
    )
    # all valid on their own: gradients read as sgd_step reads them, then one call (as in
    # adam_step_multi)
    gs = tuple(
        _kernels.read_apart(
            _grad(gs[i], ps[i], "sgd_step"),
            (ps[i], None if bufs is None else bufs[i]),
            in_place=True,
        )
        for i in range(len(ps))
    )
    _kernels.sgd_multi(ps, gs, bufs, *args, flags)


def rmsprop_step(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    momentum_buffer: np.ndarray | None = None,
    grad_avg: np.ndarray | None = None,
) -> None:
    """One RMSprop update in place, PyTorch's rule
    (https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html).

    ``momentum_buffer`` is required when ``momentum != 0``, ``grad_avg`` when ``centered``.
    """
    op = "rmsprop_step"
    param = _param(param, "param")
    g = _grad(grad, param, op)
    sq = _state(square_avg, "square_avg", param, op)
    momentum = _nonneg(momentum, "momentum")
    buf = None
    if momentum != 0.0:
        if momentum_buffer is None:
            raise ValueError(
                "rmsprop_step: momentum_buffer is required when momentum != 0, got None"
            )
        buf = _state(momentum_buffer, "momentum_buffer", param, op, ((sq, "square_avg"),))
    gavg = None
    if centered:
        if grad_avg is None:
            raise ValueError("rmsprop_step: grad_avg is required when centered=True, got None")
        gavg = _state(
            grad_avg, "grad_avg", param, op, ((sq, "square_avg"), (buf, "momentum_buffer"))
        )
    _kernels.rmsprop_step(
        param,
        sq,
        buf,
        gavg,
        _kernels.read_apart(g, (param, sq, buf, gavg), in_place=True),
        _nonneg(lr, "lr"),
        _nonneg(alpha, "alpha"),
        _nonneg(eps, "eps"),
        _nonneg(weight_decay, "weight_decay"),
        momentum,
    )


# ---------------------------------------------------------------- reductions


def bias_grad(grad_y: ArrayLike) -> np.ndarray:
    """Sum of ``grad_y`` over every axis but the last: the bias gradient of a linear layer.

    ``grad_y`` is ``(..., features)``; the result is ``(features,)``.
    """
    g = _as_float(grad_y, "grad_y")
    if g.ndim == 0:
        raise ValueError("bias_grad: grad_y is a scalar (shape ()); expected at least 1 dimension")
    cols = g.shape[-1]
    g2 = _rows(_contig(g), cols)
    return _kernels.colsum(np.empty(cols, g.dtype), g2, g2.shape[0], cols)


def global_norm(arrays: Iterable[ArrayLike]) -> float:
    """The L2 norm of all the arrays together (as for gradient clipping), a Python float."""
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    total = _kernels.sumsq_fast(arrays)
    if total is not None:
        return math.sqrt(total)
    try:
        items = list(arrays)
    except TypeError:
        raise TypeError(
            f"arrays must be an iterable of arrays, got {type(arrays).__name__}"
        ) from None
    total = 0.0
    for i, a in enumerate(items):
        total += _kernels.sumsq(_contig(_as_float(a, f"arrays[{i}]")))
    return float(np.sqrt(total))
