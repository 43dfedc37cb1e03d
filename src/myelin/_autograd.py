"""The autograd engine: grad mode and the reverse pass over recorded ops.

Every differentiable op produces its output with :func:`record`, which stores the parents and a
backward function ``grad_out -> tuple of parent grads`` on the output tensor (``Tensor._ctx``).
:func:`backward` sorts the graph topologically once and calls each backward function once, so a
training step costs one Python call per recorded op, never per element.
"""

from __future__ import annotations

import functools
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
    """Tensors reachable from ``root`` through recorded ops, outputs before inputs."""
    order = []
    seen = {id(root)}
    stack = [(root, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        stack.append((t, True))
        ctx = t._ctx
        if ctx is None:
            continue
        for p in ctx[0]:
            if p is not None and p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                stack.append((p, False))
    order.reverse()
    return order


def accumulate(t, g: np.ndarray) -> None:
    """Add ``g`` into the leaf ``t``'s gradient (allocated on first use, then reused)."""
    if g.shape != t._data.shape:
        g = np.broadcast_to(g, t._data.shape)
    if t._grad is None:
        t._grad = np.array(g, dtype=t._data.dtype, copy=True)
    else:
        np.add(t._grad, g, out=t._grad, casting="unsafe")


def backward(root, grad: np.ndarray) -> None:
    """Reverse pass from ``root`` seeded with ``grad``; leaves accumulate into ``.grad``."""
    order = _toposort(root)
    grads = {id(root): grad}
    for t in order:
        g = grads.pop(id(t), None)
        if g is None:
            continue
        ctx = t._ctx
        if ctx is None:
            accumulate(t, g)
            continue
        if t._retain:
            accumulate(t, g)
        parents, fn = ctx
        with no_grad():
            pgrads = fn(g)
        for p, pg in zip(parents, pgrads, strict=True):
            if p is None or pg is None or not p.requires_grad:
                continue
            k = id(p)
            prev = grads.get(k)
            grads[k] = pg if prev is None else prev + pg
