"""Allocations of a steady-state step: how many NumPy data buffers it makes, and how large.

Every ndarray myelin or NumPy creates gets its data from NumPy's data-memory handler (NEP 49,
https://numpy.org/doc/stable/reference/c-api/data_memory.html). ``count_allocations`` installs,
for the current context only, a handler that forwards to the C library's malloc/calloc/realloc/
free and counts the calls: allocations per step, those of 64 KiB or more, and their bytes. It is
slow (a Python callback per allocation), so it runs in a separate, untimed pass.

What it does not see: scratch memory the C kernels take with malloc themselves (GEMM packing
buffers), and PyTorch's own allocator. ``tracemalloc`` would see NumPy's buffers too, but it keeps
only live blocks and a peak, not a count of the temporaries made and freed within a step; its
peak is reported beside the count.
"""

from __future__ import annotations

import contextlib
import ctypes
import statistics
import tracemalloc

import numpy as np

LARGE = 64 * 1024  # bytes: an allocation at least this big counts as large

_MALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_CALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_REALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _Allocator(ctypes.Structure):  # PyDataMemAllocator, version 1
    _fields_ = [
        ("ctx", ctypes.c_void_p),
        ("malloc", _MALLOC),
        ("calloc", _CALLOC),
        ("realloc", _REALLOC),
        ("free", _FREE),
    ]


class _Handler(ctypes.Structure):  # PyDataMem_Handler
    _fields_ = [
        ("name", ctypes.c_char * 127),
        ("version", ctypes.c_uint8),
        ("allocator", _Allocator),
    ]


_SET_HANDLER_SLOT = 304  # PyDataMem_SetHandler in NumPy's C-API table (fixed by its ABI since 1.22)
_NAME = b"myelin_bench_counter"


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.large = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size
        if size >= LARGE:
            self.large += 1


class _CountingHandler:
    """The handler and everything it points to, kept alive for as long as the process runs:
    arrays allocated through it free through it, whenever that happens."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None)
        self.counter = _Counter()
        c_malloc, c_calloc, c_realloc, c_free = libc.malloc, libc.calloc, libc.realloc, libc.free
        c_malloc.restype = c_calloc.restype = c_realloc.restype = ctypes.c_void_p
        c_malloc.argtypes = [ctypes.c_size_t]
        c_calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        c_realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        c_free.argtypes = [ctypes.c_void_p]
        c_free.restype = None
        counter = self.counter

        def do_malloc(ctx, size):
            counter.add(size)
            return c_malloc(size or 1)

        def do_calloc(ctx, nelem, elsize):
            counter.add(nelem * elsize)
            return c_calloc(nelem or 1, elsize or 1)

        def do_realloc(ctx, ptr, size):
            counter.add(size)
            return c_realloc(ptr, size or 1)

        def do_free(ctx, ptr, size):
            c_free(ptr)

        self.callbacks = (
            _MALLOC(do_malloc),
            _CALLOC(do_calloc),
            _REALLOC(do_realloc),
            _FREE(do_free),
        )
        self.handler = _Handler(_NAME, 1, _Allocator(None, *self.callbacks))
        self.capsule_name = ctypes.create_string_buffer(b"mem_handler")
        new_capsule = ctypes.pythonapi.PyCapsule_New
        new_capsule.restype = ctypes.py_object
        new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.capsule = new_capsule(
            ctypes.addressof(self.handler), ctypes.addressof(self.capsule_name), None
        )
        self.set_handler = _numpy_set_handler()
        # Never freed, not even at interpreter exit: arrays allocated through the handler may
        # outlive this module and still call its free through these pointers.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(self))


def _numpy_set_handler():
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    table = ctypes.cast(get_pointer(umath._ARRAY_API, None), ctypes.POINTER(ctypes.c_void_p))
    return ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(table[_SET_HANDLER_SLOT])


def _handler_name() -> str:
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray
    return multiarray.get_handler_name()


_HANDLER: _CountingHandler | None = None
_UNAVAILABLE = ""


def _counting_handler() -> _CountingHandler | None:
    """The process's one counting handler, or None (with the reason in _UNAVAILABLE)."""
    global _HANDLER, _UNAVAILABLE
    if _HANDLER is None and not _UNAVAILABLE:
        try:
            handler = _CountingHandler()
            with _installed(handler):
                ok = _handler_name() == _NAME.decode()
                before = handler.counter.count
                np.empty(LARGE)
                ok = ok and handler.counter.count == before + 1
            if not ok:
                raise RuntimeError("NumPy did not take the counting handler")
            _HANDLER = handler
        except Exception as exc:  # any NumPy or platform that does not fit: report, never fail
            _UNAVAILABLE = f"{type(exc).__name__}: {exc}"
    return _HANDLER


@contextlib.contextmanager
def _installed(handler: _CountingHandler):
    old = handler.set_handler(handler.capsule)
    try:
        yield handler.counter
    finally:
        handler.set_handler(old)


def count_allocations(step, steps: int = 5, warmup: int = 3) -> dict:
    """Run ``step()`` ``warmup`` times, then ``steps`` times counting its NumPy allocations.

    Returns a dict of per-step medians: ``count`` (data buffers allocated), ``large`` (those of
    64 KiB or more), ``bytes`` (their total size), and ``peak_bytes``, tracemalloc's high-water
    mark above the memory in use when the step starts (all Python and NumPy allocations). When
    the counting handler cannot be installed, ``count``/``large``/``bytes`` are None and
    ``note`` says why.
    """
    for _ in range(warmup):
        step()
    handler = _counting_handler()
    counts, larges, nbytes, peaks = [], [], [], []
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        for _ in range(steps):
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            if handler is None:
                step()
            else:
                with _installed(handler) as counter:
                    c0, l0, b0 = counter.count, counter.large, counter.bytes
                    step()
                    counts.append(counter.count - c0)
                    larges.append(counter.large - l0)
                    nbytes.append(counter.bytes - b0)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        if not was_tracing:
            tracemalloc.stop()
    result = {"peak_bytes": int(statistics.median(peaks))}
    if handler is None:
        result.update(count=None, large=None, bytes=None, note=_UNAVAILABLE)
    else:
        result.update(
            count=int(statistics.median(counts)),
            large=int(statistics.median(larges)),
            bytes=int(statistics.median(nbytes)),
        )
    return result
