"""Differentiable neural-network functions on the C kernels (``torch.nn.functional``).

Every function takes Tensors, ndarrays or nested lists and returns a Tensor; each records one
graph node whose backward is one (or two) kernel calls of :mod:`myelin.ops`.
"""

from __future__ import annotations

import operator
import sys
import threading
import warnings
import weakref
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import numpy as np

from myelin import _random, _warn, ops
from myelin._autograd import is_grad_enabled
from myelin.tensor import Tensor, _make, as_tensor

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from myelin._typing import DTypeLike, GeneratorLike, TensorLike

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]

ACTIVATIONS = (None, "relu", "leaky_relu", "sigmoid", "tanh")


def _float_input(x, name: str, like: Tensor | None = None) -> Tensor:
    """``x`` as a float Tensor; a non-Tensor input takes ``like``'s dtype (float32 default)."""
    if isinstance(x, Tensor):
        if x._data.dtype.kind != "f":
            raise TypeError(
                f"{name} has dtype {x._data.dtype}; expected a floating-point tensor "
                f"(convert with .float())"
            )
        return x
    dtype = like._data.dtype if like is not None else None
    if x is None:
        raise TypeError(f"{name} must be a tensor, array or nested list of numbers, got None")
    if isinstance(x, np.ndarray) and x.dtype.newbyteorder("=") not in (np.float32, np.float64):
        raise TypeError(
            f"{name} has dtype {x.dtype}; expected float32 or float64 (convert with "
            f".astype(np.float32))"
        )
    try:
        t = as_tensor(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} could not be converted to a tensor (expected numbers): {exc}"
        ) from None
    if t._data.dtype.kind in "biu" or dtype is not None and t._data.dtype != dtype:
        t = Tensor(t._data.astype(dtype or np.float32))
    if t._data.dtype.kind != "f" or t._data.dtype.itemsize < 4:
        raise TypeError(f"{name} has dtype {t._data.dtype}; expected float32 or float64")
    return t


def _tagged(out: Tensor, kind) -> Tensor:
    """Record on ``out``'s graph node which activation produced it (read by the losses on
    logits to spot probabilities fed in by mistake); free when no graph is recorded."""
    ctx = out._ctx
    if ctx is not None and kind is not None:
        ctx[1].kind = kind
    return out


def _made_by(t) -> str | None:
    """The activation that produced Tensor ``t`` last, if the graph recorded one."""
    ctx = t._ctx if type(t) is Tensor else None
    return getattr(ctx[1], "kind", None) if ctx is not None else None


def _warn_probabilities(loss: str, x, what: str, instead: str) -> None:
    warnings.warn(
        f"{loss} takes logits (raw scores), but its input {what}; the loss and its gradient "
        f"are then wrong. {instead}",
        UserWarning,
        stacklevel=_warn.stacklevel(),
    )


def _check_logits(x: Tensor, loss: str) -> None:
    """Warn when the input of softmax cross-entropy looks like probabilities: it came from a
    softmax node of the graph, or its first rows (at most 8, so the check costs nothing) each lie
    in [0, 1] and sum to 1 with 3 or more classes."""
    if _made_by(x) == "softmax":
        _warn_probabilities(
            loss, x, "is the output of a softmax", "Remove the Softmax: the loss applies it."
        )
        return
    if _rows_like_probabilities(x._data):
        _warn_probabilities(loss, x, *_LIKE_PROBABILITIES)


# what _warn_probabilities says of logits whose rows look like probabilities
_LIKE_PROBABILITIES = (
    "rows lie in [0, 1] and sum to 1, like probabilities (softmax applied twice?)",
    "Pass the scores before the Softmax.",
)


def _rows_like_probabilities(d: np.ndarray) -> bool:
    """Whether the first rows (at most 8) of the logits array ``d`` each lie in [0, 1] and sum
    to 1, with 3 or more classes."""
    if d.ndim != 2 or d.shape[1] < 3 or d.shape[0] == 0:
        return False
    if d[0].min() < 0:  # logits almost always have a negative score: one cheap look first
        return False
    head = d[:8]
    if head.min() >= 0 and head.max() <= 1:
        sums = head.sum(axis=1, dtype=np.float64)
        return bool(np.all(np.abs(sums - 1.0) <= 1e-4 * d.shape[1]))
    return False


# ---------------------------------------------------------------- linear


def linear(
    input: TensorLike,
    weight: TensorLike,
    bias: TensorLike | None = None,
    activation: str | None = None,
    *,
    negative_slope: float = 0.01,
) -> Tensor:
    """``activation(input @ weight.T + bias)`` fused in one GEMM (``torch.nn.functional.linear``
    plus an optional activation).

    Parameters
    ----------
    input : ``(..., in_features)``
    weight : ``(out_features, in_features)``
    bias : ``(out_features,)`` or None
    activation : None, "relu", "leaky_relu", "sigmoid" or "tanh"
    """
    weight = _float_input(weight, "weight")
    x = _float_input(input, "input", like=weight)
    b = None if bias is None else _float_input(bias, "bias", like=weight)
    xd, wd = x._data, weight._data
    bd = None if b is None else b._data
    y = ops.linear(xd, wd, bd, activation, negative_slope=negative_slope)

    def backward(g):
        gx, gw, gb = ops.linear_backward(
            g, xd, wd, y, activation, negative_slope=negative_slope, need_grad_x=x.requires_grad
        )
        return gx, gw, gb

    # the backward reads the input for the weight's gradient, the weight for the input's, and
    # the output for the activation's derivative
    saved = (x if weight.requires_grad else None, weight if x.requires_grad else None)
    out = _make(y, (x, weight, b), backward, saved, output=activation is not None)
    return _tagged(out, activation)


class Workspace:
    """A pool of reusable arrays, by shape and dtype, for the activations and gradient scratch of
    :func:`linear_chain`: a training step that runs the same shapes each time takes its large
    buffers from here instead of allocating them. Only arrays of at least ``min_size`` elements
    are pooled (small ones cost less to allocate than to look up).

    The pool is bounded by bytes, least recently used arrays out. With ``max_bytes=None`` (the
    default) the bound follows what the calls need: each :func:`linear_chain` call announces
    the bytes it may take (its working set: its large intermediate outputs and the backward's
    scratch, from its shapes) with :meth:`expect`, and the bound is twice the sum, over the
    chains using the pool, of the largest working set among each chain's last 8 calls. So a
    step repeated with the same shapes finds all its arrays again (one working set fits twice),
    two alternating batch sizes (a last, shorter batch) both stay, and a new batch size at every
    step keeps the pool at two working sets instead of growing; when the batches get smaller,
    the bound follows them down within 8 calls. An int ``max_bytes`` is a fixed bound instead.

    ``nbytes``, ``len()``, :meth:`stats` and the repr say what it holds.
    """

    # headroom: how many working sets the adaptive bound holds; window: how many recent calls
    # of a chain its working set is the largest of
    _HEADROOM = 2
    _WINDOW = 8

    __slots__ = (
        "_free",
        "min_size",
        "_max_bytes",
        "_bound",
        "_nbytes",
        "_needs",
        "_lock",
        "_hits",
        "_misses",
        "_evicted",
    )

    def __init__(self, min_size: int = 16384, max_bytes: int | None = None) -> None:
        if max_bytes is not None:
            if isinstance(max_bytes, bool):
                raise TypeError("max_bytes must be None or an int, got bool")
            try:
                max_bytes = operator.index(max_bytes)
            except TypeError:
                raise TypeError(
                    f"max_bytes must be None or an int, got {type(max_bytes).__name__}"
                ) from None
            if max_bytes < 0:
                raise ValueError(f"max_bytes must be None or >= 0, got {max_bytes}")
        # (shape, dtype) -> free arrays; ordered least recently used first
        self._free: OrderedDict = OrderedDict()
        self.min_size = min_size
        self._max_bytes = max_bytes
        self._bound = 0 if max_bytes is None else max_bytes
        self._nbytes = 0
        # owner (a chain) -> its last working sets; entries go with their owner
        self._needs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # threads sharing a model share its pool
        self._hits = self._misses = self._evicted = 0

    def __reduce__(self):
        # a copy (copy.deepcopy, pickle) is an empty pool with the same settings: the arrays
        # are scratch, and a lock cannot be copied
        return (type(self), (self.min_size, self._max_bytes))

    def take(self, shape: tuple, dtype: DTypeLike) -> np.ndarray:
        """A free array of ``shape`` and ``dtype`` from the pool (uninitialised), or a new one."""
        key = (shape, dtype)
        with self._lock:
            free = self._free.get(key)
            if free:
                arr = free.pop()
                if free:
                    self._free.move_to_end(key)  # the most recently used now
                else:
                    del self._free[key]
                self._nbytes -= arr.nbytes
                self._hits += 1
                return arr
            self._misses += 1
        return np.empty(shape, dtype)

    def give(self, arr: np.ndarray) -> None:
        """Hand ``arr`` back for a later :meth:`take`; the least recently used arrays go while
        the pool holds more than its bound."""
        key = (arr.shape, arr.dtype)
        with self._lock:
            free = self._free.get(key)
            if free is None:
                self._free[key] = [arr]
            else:
                free.append(arr)
                self._free.move_to_end(key)
            self._nbytes += arr.nbytes
            if self._nbytes > self._bound:
                self._evict()

    def expect(self, owner: object, nbytes: int) -> None:
        """Record that ``owner`` (kept by a weak reference) takes up to ``nbytes`` in one call:
        the adaptive bound follows these (see the class). A fixed ``max_bytes`` ignores them."""
        with self._lock:
            if self._max_bytes is not None:
                return
            needs = self._needs.get(owner)
            if needs is None:
                needs = self._needs[owner] = deque(maxlen=self._WINDOW)
            needs.append(int(nbytes))
            self._bound = self._HEADROOM * sum(max(n) for n in self._needs.values())
            if self._nbytes > self._bound:
                self._evict()

    def _evict(self) -> None:
        """Drop least recently used arrays until the pool is within its bound (lock held)."""
        free = self._free
        while self._nbytes > self._bound and free:
            key, arrays = next(iter(free.items()))
            arr = arrays.pop(0)
            if not arrays:
                del free[key]
            self._nbytes -= arr.nbytes
            self._evicted += 1

    def clear(self) -> None:
        """Drop every array the pool holds."""
        with self._lock:
            self._free.clear()
            self._nbytes = 0

    @property
    def nbytes(self) -> int:
        """The bytes of the arrays the pool holds now."""
        return self._nbytes

    @property
    def max_bytes(self) -> int:
        """The bound on ``nbytes`` now: the fixed ``max_bytes``, or the adaptive one."""
        return self._bound

    def __len__(self) -> int:
        with self._lock:
            return sum(len(a) for a in self._free.values())

    def stats(self) -> dict:
        """What the pool holds and has done: ``arrays``, ``nbytes``, ``max_bytes``, ``hits``
        and ``misses`` (takes it could and could not serve) and ``evicted`` (arrays dropped to
        stay within the bound)."""
        with self._lock:
            arrays = sum(len(a) for a in self._free.values())
            return {
                "arrays": arrays,
                "nbytes": self._nbytes,
                "max_bytes": self._bound,
                "hits": self._hits,
                "misses": self._misses,
                "evicted": self._evicted,
            }

    def __repr__(self) -> str:
        st = self.stats()
        kind = "adaptive" if self._max_bytes is None else "fixed"
        return (
            f"Workspace({st['arrays']} arrays, {_mib(st['nbytes'])} held of {_mib(st['max_bytes'])}"
            f" ({kind} bound), {st['hits']} hits, {st['misses']} misses, "
            f"{st['evicted']} evicted, min_size={self.min_size})"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _working_set(rows: int, widths: list, itemsize: int, min_size: int, recording: bool) -> int:
    """The bytes one :func:`linear_chain` call on ``rows`` rows may take from its workspace,
    ``widths`` being its layers' output features: without a graph, two intermediate outputs at
    a time; with one, every large intermediate output (kept for the backward) and the
    backward's scratch, at most three arrays of the widest layer's size at a time."""
    sizes = [rows * w for w in widths[:-1] if rows * w >= min_size]
    if not recording:
        return 2 * max(sizes, default=0) * itemsize
    widest = max([rows * w for w in widths if rows * w >= min_size], default=0)
    return (sum(sizes) + 3 * widest) * itemsize


def _spare_grad(p, shape: tuple, dtype):
    """The parameter's previous gradient array, to be written again, when nothing else can see
    it: ``zero_grad()`` left it in ``p._spare`` and no other reference to it exists."""
    spare = p._spare
    if spare is None or spare.shape != shape or spare.dtype is not dtype:
        return None
    p._spare = None
    # now this local holds it, and anything more is someone else's
    if sys.getrefcount(spare) > _ALONE:
        return None
    return spare


def _alone() -> int:
    """What sys.getrefcount says of an object that only a local variable holds, as this
    module's code runs: _spare_grad compares against it. Measured rather than assumed, as
    it differs when the module is compiled by Cython (no extra reference for the argument)."""
    only = object()
    return sys.getrefcount(only)


_ALONE = _alone()


def linear_chain(
    input: TensorLike, layers: Sequence[Sequence[Any]], workspace: Workspace | None = None
) -> Tensor:
    """Several :func:`linear` layers applied in turn, recorded as ONE graph node.

    ``layers`` is a sequence of ``(weight, bias, activation, negative_slope, ...)`` (items
    after the fourth are ignored). The forward runs one fused GEMM per layer and keeps each
    layer's output; the backward walks them back with one :func:`myelin.ops.linear_backward` per
    layer (skipping the input-gradient GEMM where no gradient is needed). The numbers are those
    of the layers applied one by one; the graph is shorter, which is what makes a small MLP's
    training step cheap. ``nn.Sequential`` uses it for its runs of ``Linear`` (+ activation)
    layers.

    With a ``workspace``, large intermediate activations and the backward's scratch come from
    it and go back to it once the backward has run (or at once without a graph), and a
    parameter's gradient is written into its previous gradient array when ``zero_grad()``
    released it and nothing else holds it: a steady-state training step allocates no large
    arrays.
    """
    x = input if type(input) is Tensor else _float_input(input, "input", like=layers[0][0])
    return _linear_chain(x, _Chain(layers), workspace)


class _Chain:
    """What stays the same between calls of a :func:`linear_chain`: its layers, their
    activations and slopes, the parameters (the graph node's parents after the input) and the
    layers without a bias. ``nn.Sequential`` keeps one per run of Linear layers in its plan."""

    __slots__ = (
        "layers",
        "acts",
        "slopes",
        "params",
        "no_bias",
        "weights",
        "_later",
        "__weakref__",
    )

    def __init__(self, layers: Sequence[Sequence[Any]]) -> None:
        self.layers = list(layers)
        self.acts = [layer[2] for layer in self.layers]
        self.slopes = [layer[3] for layer in self.layers]
        params: list = []
        for layer in self.layers:
            params += (layer[0], layer[1])
        self.params = tuple(params)
        self.no_bias = [i for i, layer in enumerate(self.layers) if layer[1] is None]
        self.weights = tuple(layer[0] for layer in self.layers)
        self._later = self.weights[1:]

    def saved(self, x: Tensor) -> tuple:
        """The tensors whose values the backward reads, for their version check: the input
        (for the first weight's gradient), the weights after the first (for the gradients of
        their inputs) and the first one when the input needs a gradient."""
        return (x,) + (self.weights if x.requires_grad else self._later)

    def arrays(self) -> tuple[list, list]:
        """The weights' and biases' arrays now (a bias None where there is none)."""
        layers = self.layers
        return (
            [layer[0]._data for layer in layers],
            [None if layer[1] is None else layer[1]._data for layer in layers],
        )


def _linear_chain(x: Tensor, chain: _Chain, workspace: Workspace | None) -> Tensor:
    """linear_chain of the Tensor ``x``."""
    weights, biases = chain.arrays()
    acts, slopes = chain.acts, chain.slopes
    recording = is_grad_enabled()
    # the common case in one call; layers whose arrays are large enough to come from the
    # workspace run one by one below
    outs = ops.linear_chain_fast(
        x._data, weights, biases, acts, slopes, 0 if workspace is None else workspace.min_size
    )
    pooled: list[np.ndarray] = []  # intermediate outputs taken from the workspace
    fast = outs is not None  # then nothing in the chain is large enough to pool
    if not fast:
        h = x._data
        if workspace is not None and h.ndim == 2:
            widths = [w.shape[0] for w in weights]
            need = _working_set(h.shape[0], widths, h.dtype.itemsize, workspace.min_size, recording)
            workspace.expect(chain, need)
        outs = _chain_forward(h, weights, biases, acts, slopes, workspace, recording, pooled)
    if not recording:
        return Tensor(outs[-1])

    def backward(g):
        grads = None
        if fast:
            grads = ops.linear_chain_backward_fast(g, outs, weights, acts, slopes, x.requires_grad)
        if grads is None:
            grads = _chain_backward(g, x, chain.layers, outs, weights, acts, slopes, workspace)
        for i in chain.no_bias:  # no gradient for a missing bias
            grads[2 + 2 * i] = None
        return grads

    backward.fresh = True  # every array it returns is new or the parameter's own spare
    backward.kind = acts[-1]  # the last activation, for the losses' checks
    if pooled:

        def release():
            for a in pooled:
                workspace.give(a)
            pooled.clear()

        backward.release = release
    # the last output is read by the backward when an activation follows the last layer (the
    # others are the chain's own arrays, which no one else sees)
    return _make(
        outs[-1], (x, *chain.params), backward, chain.saved(x), output=acts[-1] is not None
    )


def _chain_forward(h, weights, biases, acts, slopes, workspace, recording, pooled) -> list:
    """linear_chain's layers one by one, intermediate outputs of ``min_size`` elements or more
    from the workspace (listed in ``pooled``; handed back at once without a graph)."""
    outs = [h]
    last = len(weights) - 1
    for i, w in enumerate(weights):
        out = None
        if workspace is not None and i < last and h.ndim == 2:
            shape = (h.shape[0], w.shape[0])
            if shape[0] * shape[1] >= workspace.min_size:
                out = workspace.take(shape, h.dtype)
        h_new = ops.linear(h, w, biases[i], acts[i], negative_slope=slopes[i], out=out)
        if not recording and pooled:  # no graph: the previous output is free once read
            workspace.give(pooled.pop())
        if out is not None:
            pooled.append(out)
        h = h_new
        outs.append(h)
    if not recording:
        for a in pooled:
            workspace.give(a)
        pooled.clear()
    return outs


def _chain_backward(g, x, layers, outs, weights, acts, slopes, workspace) -> list:
    """linear_chain's backward one layer at a time; with a workspace, large scratch comes from
    it and a weight's gradient is written into the array ``zero_grad()`` released when nothing
    else holds it."""
    last = len(layers) - 1
    grads = [None] * (2 * len(layers) + 1)
    min_size = workspace.min_size if workspace is not None else None
    owned = False  # whether g is scratch of ours (then it may be overwritten)
    for i in range(last, -1, -1):
        w, b = layers[i][0], layers[i][1]
        act = acts[i]
        need_x = i > 0 or x.requires_grad
        out = work = None
        if min_size is not None:
            if g.ndim == 2 and g.size >= min_size:
                work = g if owned else (workspace.take(g.shape, g.dtype) if act else None)
            xo = outs[i]
            ox = ow = ob = None
            if need_x and i > 0 and xo.ndim == 2 and xo.size >= min_size:
                ox = workspace.take(xo.shape, xo.dtype)
            if weights[i].size >= min_size:
                if w._grad is None:
                    ow = _spare_grad(w, weights[i].shape, weights[i].dtype)
                if b is not None and b._grad is None:
                    ob = _spare_grad(b, b._data.shape, b._data.dtype)
            if ox is not None or ow is not None or ob is not None:
                out = (ox, ow, ob)
        gx, gw, gb = ops.linear_backward(
            g,
            outs[i],
            weights[i],
            outs[i + 1],
            act,
            negative_slope=slopes[i],
            need_grad_x=need_x,
            out=out,
            work=work,
        )
        if work is not None and work is not g:
            workspace.give(work)
        if owned:
            workspace.give(g)
        grads[1 + 2 * i] = gw
        grads[2 + 2 * i] = gb
        g = gx
        owned = out is not None and out[0] is not None
    grads[0] = g if x.requires_grad else None
    return grads


# ---------------------------------------------------------------- activations


def _activation(x, forward, backward, name: str) -> Tensor:
    x = _float_input(x, "input")
    y = forward(x._data)

    def backward_fn(g):
        return (backward(g, y),)

    backward_fn.op = name  # for the version check's message
    return _tagged(_make(y, (x,), backward_fn, output=True), name)


def relu(input: TensorLike) -> Tensor:
    """``max(input, 0)``; NaN propagates."""
    return _activation(input, ops.relu, ops.relu_backward, "relu")


def leaky_relu(input: TensorLike, negative_slope: float = 0.01) -> Tensor:
    """``input`` where positive, ``negative_slope * input`` elsewhere."""
    return _activation(
        input,
        lambda x: ops.leaky_relu(x, negative_slope),
        lambda g, y: ops.leaky_relu_backward(g, y, negative_slope),
        "leaky_relu",
    )


def sigmoid(input: TensorLike) -> Tensor:
    """``1 / (1 + exp(-input))``."""
    return _activation(input, ops.sigmoid, ops.sigmoid_backward, "sigmoid")


def tanh(input: TensorLike) -> Tensor:
    """Element-wise hyperbolic tangent (``torch.tanh``); same shape and dtype."""
    return _activation(input, ops.tanh, ops.tanh_backward, "tanh")


def softmax(input: TensorLike, dim: int = -1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``."""
    x = _float_input(input, "input")
    y = ops.softmax(x._data, axis=dim)
    out = _make(y, (x,), lambda g: (ops.softmax_backward(g, y, axis=dim),), output=True)
    return _tagged(out, "softmax")


def log_softmax(input: TensorLike, dim: int = -1) -> Tensor:
    """``log(softmax(x))`` computed stably along ``dim``."""
    x = _float_input(input, "input")
    y = ops.log_softmax(x._data, axis=dim)
    return _make(y, (x,), lambda g: (ops.log_softmax_backward(g, y, axis=dim),), output=True)


def dropout(
    input: TensorLike, p: float = 0.5, training: bool = True, generator: GeneratorLike = None
) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; the identity when ``training`` is False or ``p`` is 0."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    x = _float_input(input, "input")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        mask = np.zeros(x.shape, x.dtype)
    else:
        rng = _random.get_rng(generator)
        keep = rng.random(x.shape, dtype=np.float32) >= np.float32(p)
        mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return _make(x._data * mask, (x,), lambda g: (g * mask,))


# ---------------------------------------------------------------- losses


def _reduce_grad(g, grad: np.ndarray, reduction: str) -> np.ndarray:
    """Chain the upstream gradient of a loss into the kernel's d(loss)/d(input)."""
    if reduction == "none":
        return grad * np.expand_dims(g, tuple(range(g.ndim, grad.ndim)))
    return grad * g


def _labels(target) -> np.ndarray:
    t = target._data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind == "f" and t.size and np.all(np.isfinite(t)) and np.all(t == np.round(t)):
        raise ValueError(
            f"target has dtype {t.dtype} but holds class indices; cross_entropy expects integer "
            f"labels (convert with .long()), or class probabilities of the logits' shape"
        )
    return t


def cross_entropy(
    input: TensorLike,
    target: TensorLike,
    weight: TensorLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy on logits, fused in one kernel (``torch.nn.functional.cross_entropy``).

    Parameters
    ----------
    input : ``(N, C)`` logits (unnormalised scores), float
    target : ``(N,)`` integer class indices in [0, C), or ``(N, C)`` class probabilities
    ignore_index : rows whose label equals it add nothing (PyTorch's default -100)
    reduction : "mean", "sum" or "none"
    label_smoothing : float in [0, 1]
    """
    if (
        type(input) is Tensor
        and type(target) is Tensor
        and weight is None
        and (reduction == "mean" or reduction == "sum")
        and input._data.ndim == 2
        and target._data.dtype.kind in "iu"
        and input._data.dtype.kind == "f"
    ):  # the common case, straight to the fused kernel
        x = input
        _check_logits(x, "cross_entropy")
        loss, grad = ops.softmax_cross_entropy(
            x._data,
            target._data,
            reduction=reduction,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )
        grad.flags.writeable = False  # handed on as it is for a seed of 1: never adopted
        return _make(np.asarray(loss), (x,), lambda g: (grad if _is_one(g) else grad * g,))
    if weight is not None:
        raise NotImplementedError("cross_entropy: per-class weight is not supported")
    x = _float_input(input, "input")
    if target is None:
        raise TypeError("target must be class indices (N,) or probabilities (N, C), got None")
    try:
        t = target._data if isinstance(target, Tensor) else np.asarray(target)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"target could not be converted to an array (expected labels): {exc}"
        ) from None
    _check_logits(x, "cross_entropy")
    if t.dtype.kind == "f" and t.shape == x.shape and t.ndim == 2:
        return _soft_cross_entropy(x, t.astype(x.dtype, copy=False), reduction, label_smoothing)
    if x.ndim == 1:  # one sample of C logits and one class index, as PyTorch allows
        if t.size != 1 or t.ndim > 1:
            raise ValueError(
                f"cross_entropy: input has shape {tuple(x.shape)} (one sample of C logits), so "
                f"target must be one class index (shape () or (1,)); got target of shape "
                f"{tuple(t.shape)}"
            )
        x2 = x.reshape(1, -1)
        return cross_entropy(
            x2, np.reshape(t, (1,)), None, ignore_index, reduction, label_smoothing
        ).reshape(() if reduction != "none" else (1,))
    loss, grad = ops.softmax_cross_entropy(
        x._data,
        _labels(target),
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    loss = np.asarray(loss)
    return _make(loss, (x,), lambda g: (_reduce_grad(g, grad, reduction),))


def _is_one(g: np.ndarray) -> bool:
    """Whether the upstream gradient ``g`` of a scalar loss is 1 (``loss.backward()``'s seed)."""
    return g.ndim == 0 and g == 1


def _soft_cross_entropy(x: Tensor, probs: np.ndarray, reduction: str, smoothing: float) -> Tensor:
    """Cross-entropy against class probabilities (Keras' categorical_crossentropy)."""
    if smoothing:
        probs = probs * (1.0 - smoothing) + smoothing / probs.shape[1]
    logp = ops.log_softmax(x._data, axis=1)
    per = -(probs * logp).sum(axis=1)
    n = per.shape[0]
    # d(per_i)/d(x_i) = softmax(x_i) * sum(p_i) - p_i
    grad = np.exp(logp) * probs.sum(axis=1, keepdims=True) - probs
    if reduction == "none":
        return _make(per, (x,), lambda g: (grad * g[:, None],))
    if reduction == "sum":
        return _make(np.asarray(per.sum()), (x,), lambda g: (grad * g,))
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return _make(np.asarray(per.mean() if n else np.nan), (x,), lambda g: (grad * (g / max(n, 1)),))


def nll_loss(
    input: TensorLike, target: TensorLike, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C) at integer ``target``."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    x = _float_input(input, "input")
    if x.ndim == 1:  # one sample of C log-probabilities and a scalar target, as PyTorch allows
        t = target._data if isinstance(target, Tensor) else np.asarray(target)
        if t.ndim == 0:
            out = nll_loss(x.reshape(1, -1), t.reshape(1), ignore_index, reduction)
            return out.reshape(()) if reduction != "none" else out
    if x.ndim != 2:
        raise ValueError(f"nll_loss: input has shape {tuple(x.shape)}; expected (N, C)")
    n, c = x.shape
    lab64, _ = ops._class_labels(
        target._data if isinstance(target, Tensor) else target, n, c, ignore_index, "target"
    )
    rows = np.flatnonzero(lab64 >= 0)
    lab = lab64
    per = np.zeros(n, x.dtype)
    per[rows] = -x._data[rows, lab[rows]]
    count = rows.size

    def backward(g):
        full = np.zeros(x.shape, x.dtype)
        if reduction == "none":
            full[rows, lab[rows]] = -g[rows]
        else:
            scale = g / count if reduction == "mean" and count else g
            full[rows, lab[rows]] = -scale
        return (full,)

    if reduction == "none":
        value = per
    elif reduction == "sum":
        value = np.asarray(per.sum())
    else:
        value = np.asarray(per.sum() / count if count else np.nan, dtype=x.dtype)
    return _make(value, (x,), backward)


def binary_cross_entropy_with_logits(
    input: TensorLike, target: TensorLike, reduction: str = "mean"
) -> Tensor:
    """Sigmoid + binary cross-entropy on logits, numerically stable (PyTorch's
    ``binary_cross_entropy_with_logits``); ``input`` and ``target`` have one shape."""
    x = _float_input(input, "input")
    if _made_by(input) == "sigmoid":
        _warn_probabilities(
            "binary_cross_entropy_with_logits",
            x,
            "is the output of a sigmoid",
            "Remove the Sigmoid: the loss applies it.",
        )
    t = _float_input(target, "target", like=x)
    loss, grad = ops.binary_cross_entropy_with_logits(x._data, t._data, reduction=reduction)
    return _make(np.asarray(loss), (x,), lambda g: (_reduce_grad(g, grad, reduction),))


def binary_cross_entropy(input: TensorLike, target: TensorLike, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of probabilities ``input`` in [0, 1] (``torch.nn.BCELoss``); the log
    is clamped at -100 as PyTorch does. Prefer :func:`binary_cross_entropy_with_logits`."""
    x = _float_input(input, "input")
    t = _float_input(target, "target", like=x)
    p, y = x._data, t._data
    if p.shape != y.shape:
        raise ValueError(
            f"binary_cross_entropy: input has shape {p.shape} but target has shape {y.shape}; "
            f"they must be equal"
        )
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise ValueError(
            f"binary_cross_entropy: input must hold probabilities in [0, 1], got values in "
            f"[{np.nanmin(p)}, {np.nanmax(p)}] (logits? use binary_cross_entropy_with_logits)"
        )
    if p.size and _made_by(input) == "sigmoid" and (np.nanmin(p) == 0 or np.nanmax(p) == 1):
        warnings.warn(
            "binary_cross_entropy: the sigmoid output it was given saturated to exactly 0 or 1, "
            "where the log is clamped and the gradient lost (the sigmoid output + BCELoss "
            "mistake); use binary_cross_entropy_with_logits (BCEWithLogitsLoss) on the logits",
            UserWarning,
            stacklevel=_warn.stacklevel(),
        )
    with np.errstate(divide="ignore"):
        logp = np.maximum(np.log(p), -100)
        log1mp = np.maximum(np.log1p(-p), -100)
    per = -(y * logp + (1 - y) * log1mp)
    grad = (p - y) / np.maximum((1 - p) * p, 1e-12)
    if reduction == "none":
        return _make(per, (x,), lambda g: (grad * g,))
    if reduction == "sum":
        return _make(np.asarray(per.sum()), (x,), lambda g: (grad * g,))
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    n = max(per.size, 1)
    return _make(np.asarray(per.mean()), (x,), lambda g: (grad * (g / n),))


def mse_loss(input: TensorLike, target: TensorLike, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)**2`` (``torch.nn.functional.mse_loss``)."""
    x = _float_input(input, "input")
    t = _float_input(target, "target", like=x)
    loss, grad = ops.mse_loss(x._data, t._data, reduction=reduction)
    return _make(np.asarray(loss), (x,), lambda g: (_reduce_grad(g, grad, reduction),))
