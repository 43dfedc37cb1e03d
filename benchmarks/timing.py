"""Timing several implementations of one computation side by side, in interleaved blocks."""

from __future__ import annotations

import glob
import statistics
import time


def run_delay() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU (the kernel's
    schedstat run_delay, summed over the threads), or None where the kernel does not say. On a
    quiet machine it hardly moves during a timed block; when other programs compete for the
    cores, it grows by a good part of the block."""
    total = 0
    try:
        for path in glob.glob("/proc/self/task/*/schedstat"):
            with open(path) as f:
                total += int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total * 1e-9


def _time_block(fn, inner: int, waits: list | None = None) -> float:
    d0 = run_delay() if waits is not None else None
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    elapsed = time.perf_counter() - t0
    if d0 is not None:
        d1 = run_delay()
        if d1 is not None and elapsed > 0:
            waits.append((d1 - d0) / elapsed)
    return elapsed / inner


def _settle(fn, seconds: float, per_call: float) -> None:
    """Untimed calls of ``fn`` for ``seconds``, or a sleep when one call takes longer than that."""
    if seconds <= 0:
        return
    if per_call >= seconds:
        time.sleep(seconds)
        return
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()


class Interleaved:
    """Side-by-side timing of several implementations of one computation (``fns``: name ->
    callable), one round at a time: each :meth:`round` times every function once, in turn, and
    appends its seconds per call to ``samples[name]``.

    Each timed block (about ``block`` seconds of back-to-back calls, at least one call) follows
    ``settle`` seconds of untimed calls of the same function: thread pools keep spinning for a
    while after their last call (OpenBLAS's for about 0.1 s) and would steal a core from whichever
    library runs next, so without it a block measures the previous library's threads more than its
    own. A function slower than ``settle`` per call is preceded by a sleep instead, which lets the
    other pools go idle just the same. The settle also brings the function's data back into the
    caches when other work ran in between.

    On construction each function is called once untimed (``warmup``: pages touched, thread
    pools started), then once more to size its blocks.

    ``waits[name]`` gets each block's time spent waiting for a CPU (:func:`run_delay`, as a
    fraction of the block): the measure of how much the machine was shared while that function
    was timed.
    """

    def __init__(self, fns: dict, block: float = 0.02, warmup: bool = True):
        self.fns = fns
        self.per_call = {}
        for name, fn in fns.items():
            if warmup:
                fn()
            self.per_call[name] = _time_block(fn, 1)
        self.inner = {name: max(1, int(block / max(t, 1e-7))) for name, t in self.per_call.items()}
        self.samples = {name: [] for name in fns}
        self.waits = {name: [] for name in fns}

    def round(self, settle: float) -> None:
        for name, fn in self.fns.items():
            _settle(fn, settle, self.per_call[name])
            self.samples[name].append(_time_block(fn, self.inner[name], self.waits[name]))


def summarize(samples: dict) -> tuple[dict, dict]:
    """Medians of :attr:`Interleaved.samples`, and each system's spread: its slowest sample over its
    fastest (near 1 on a quiet machine; a large spread means something else was running)."""
    medians = {name: statistics.median(ts) for name, ts in samples.items()}
    spread = {
        name: max(ts) / min(ts) if min(ts) > 0 else float("inf") for name, ts in samples.items()
    }
    return medians, spread
