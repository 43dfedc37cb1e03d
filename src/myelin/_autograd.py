"""The autograd engine: grad mode and the reverse pass over recorded ops.

Every differentiable op produces its output with :func:`record`, which stores the parents and a
backward function ``grad_out -> tuple of parent grads`` on the output tensor (``Tensor._ctx``).
:func:`backward` sorts the graph topologically once and calls each backward function once, so a
training step costs one Python call per recorded op, never per element.
"""

from __future__ import annotations

import functools
import itertools
import threading

import numpy as np

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops record the graph in this thread (False inside :class:`no_grad`)."""
    return getattr(_state, "enabled", True)


def _set_grad_enabled(mode: bool) -> None:
    _state.enabled = bool(mode)


class _GradMode:
    _mode = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set_grad_enabled(self._mode)
        return self

    def __exit__(self, *exc) -> None:
        _set_grad_enabled(self._prev)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Context manager and decorator: ops inside record no graph (``torch.no_grad``).

    >>> with myelin.no_grad():
    ...     logits = model(x)          # no backward possible, no memory kept for it
    """

    _mode = False


class enable_grad(_GradMode):
    """Context manager and decorator that turns recording back on inside :class:`no_grad`."""

    _mode = True


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` down to ``shape``: the gradient of a NumPy broadcast from ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead:
        grad = grad.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _toposort(root) -> list:
    """The recorded (non-leaf) tensors reachable from ``root``, outputs before inputs; leaves
    are not listed: they take their gradients as they arrive."""
    # the common shape first: a path, each node with one recorded parent at most (a loss on a
    # model's fused layers); its order is the path itself
    order = [root]
    node = root
    while True:
        nxt = None
        for p in node._ctx[0]:
            if p is not None and p._ctx is not None and p.requires_grad:
                if nxt is not None:
                    return _toposort_graph(root)
                nxt = p
        if nxt is None:
            return order
        order.append(nxt)
        node = nxt


def _toposort_graph(root) -> list:
    """_toposort for any graph: a depth-first search."""
    order = []
    seen = {id(root)}
    stack = [(root, iter(root._ctx[0]))]
    while stack:
        node, parents = stack[-1]
        for p in parents:
            if p is not None and p._ctx is not None and p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                stack.append((p, iter(p._ctx[0])))
                break
        else:
            stack.pop()
            order.append(node)
    order.reverse()
    return order


def accumulate(t, g: np.ndarray, adopted: set | None = None) -> None:
    """Add ``g`` into the leaf ``t``'s gradient.

    The first gradient of a leaf is adopted without a copy when the backward pass made it
    (it owns its memory, has the leaf's shape and dtype, and no other leaf adopted it in this
    pass: ``adopted`` holds their ids); otherwise it is copied. Later ones are added in place.
    """
    d = t._data
    if t._grad is None:
        if (
            adopted is not None
            and g.base is None  # allocated by the backward pass itself (owns its memory)
            and g.dtype is d.dtype
            and g.shape == d.shape
            and id(g) not in adopted
            and g.flags.writeable
        ):
            adopted.add(id(g))
            t._grad = g
        else:
            t._grad = np.array(np.broadcast_to(g, d.shape), dtype=d.dtype, copy=True)
    else:
        np.add(t._grad, g, out=t._grad, casting="unsafe")


def check_versions(order: list) -> None:
    """Raise RuntimeError, as PyTorch does, if a tensor whose values a node of ``order`` saved
    for its backward (``Tensor._ctx[2]``, versions ``_ctx[3]``; the node's own output when its
    version ``_ctx[4]`` is not -1) was changed in place since: its version differs from the
    one saved. Checked for the whole graph before any backward function runs, so that nothing
    is accumulated when it raises; one integer comparison per saved tensor."""
    for t in order:
        ctx = t._ctx
        saved = ctx[2]
        if saved:
            versions = ctx[3]
            for i in range(len(saved)):
                s = saved[i]
                if s is not None and s._version_counter[0] != versions[i]:
                    raise _modified(s, versions[i], ctx[1])
        if ctx[4] != -1 and t._version_counter[0] != ctx[4]:
            raise _modified(t, ctx[4], ctx[1])


def check_saved(saved: tuple, versions: list, fn) -> None:
    """Raise RuntimeError (PyTorch's message) if a tensor of ``saved`` has been changed in
    place since its version was ``versions[i]``; ``fn`` is the backward function that needs
    them (named in the message)."""
    for i in range(len(saved)):
        if saved[i]._version_counter[0] != versions[i]:
            raise _modified(saved[i], versions[i], fn)


def _op_name(fn) -> str:
    """The op a backward function belongs to: its ``op`` attribute if it has one, else from its
    qualified name (``Tensor.__mul__.<locals>.backward`` -> ``Tensor.__mul__``,
    ``_linear_chain.<locals>.backward`` -> ``linear_chain``)."""
    op = getattr(fn, "op", None)
    if op is not None:
        return op
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    name = name.split(".<locals>")[0]
    return name[1:] if name.startswith("_") and not name.startswith("__") else name


def _modified(t, version: int, fn) -> RuntimeError:
    d = t._data
    which = f", which is the output of {_op_name(t._ctx[1])}," if t._ctx is not None else ""
    return RuntimeError(
        f"one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: [{d.dtype} tensor of shape {list(d.shape)}]{which} is at version "
        f"{t._version_counter[0]}; expected version {version} instead. The backward of "
        f"{_op_name(fn)} needs its values as they were in the forward pass: an optimizer "
        f"step, an in-place operator (+=, zero_, copy_, item assignment, ...) or an assignment "
        f"to .data changed them before backward(). Make the change after backward(), or run "
        f"the forward pass again after it."
    )


def _consumed(g):
    raise RuntimeError(
        "Trying to backward through the graph a second time: its saved arrays were released "
        "after the first backward(). Call backward(retain_graph=True) the first time if you "
        "need to."
    )


# Called with no arguments after every successful reverse pass, in registration order (how
# myelin.distributed averages gradients by the time ``loss.backward()`` returns).
_post_backward_hooks: dict = {}
_hook_keys = itertools.count()


class _HookHandle:
    def __init__(self, key: int) -> None:
        self.key = key

    def remove(self) -> None:
        _post_backward_hooks.pop(self.key, None)


def register_post_backward_hook(fn) -> _HookHandle:
    """Call ``fn()`` after each ``backward()`` has filled the gradients; ``.remove()`` the
    returned handle to stop."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    key = next(_hook_keys)
    _post_backward_hooks[key] = fn
    return _HookHandle(key)


def _run_post_backward_hooks() -> None:
    for fn in list(_post_backward_hooks.values()):
        fn()


def backward(root, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Reverse pass from ``root`` seeded with ``grad``; leaves accumulate into ``.grad``.

    Unless ``retain_graph``, each recorded node drops its backward function once it has run
    (as PyTorch frees the graph): the arrays it saved are released, and a function with a
    ``release`` attribute (``F.linear_chain``'s) hands its buffers back for reuse."""
    adopted: set = set()
    if root._ctx is None:
        accumulate(root, grad, adopted)
        if _post_backward_hooks:
            _run_post_backward_hooks()
        return
    order = _toposort(root)
    check_versions(order)
    grads = {id(root): grad}
    prev_mode = is_grad_enabled()
    _set_grad_enabled(False)
    try:
        for t in order:
            g = grads.pop(id(t), None)
            if g is None:
                continue
            if t._retain:
                accumulate(t, g)
            ctx = t._ctx
            parents, fn = ctx[0], ctx[1]
            pgrads = fn(g)
            # a backward function marked `fresh` returns arrays it allocated for this call, one
            # per parent, which leaves may adopt as they are
            fresh = getattr(fn, "fresh", False)
            if not retain_graph:
                # drop the parents too: they hold the activations (their _data)
                t._ctx = ((None,) * len(parents), _consumed, (), (), -1)
                release = getattr(fn, "release", None)
                if release is not None:
                    release()
            for p, pg in zip(parents, pgrads, strict=True):
                if pg is None or p is None or not p.requires_grad:
                    continue
                if p._ctx is None:
                    d = p._data
                    if fresh and p._grad is None and pg.dtype is d.dtype and pg.shape == d.shape:
                        p._grad = pg
                    else:
                        accumulate(p, pg, adopted)
                    continue
                k = id(p)
                prev = grads.get(k)
                grads[k] = pg if prev is None else prev + pg
    finally:
        _set_grad_enabled(prev_mode)
    if _post_backward_hooks:
        _run_post_backward_hooks()
