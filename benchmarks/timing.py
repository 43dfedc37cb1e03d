"""Timing several implementations of one computation side by side, in interleaved blocks."""

from __future__ import annotations

import statistics
import time


def _time_block(fn, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


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


def compare(
    fns: dict, rounds: int, settle: float, block: float = 0.02, warmup: bool = True
) -> dict:
    """Seconds per call of each function in ``fns`` (name -> callable) in each of ``rounds``
    rounds (name -> list of ``rounds`` samples); each round times every function once, in turn.

    Each timed block (about ``block`` seconds of back-to-back calls, at least one call) follows
    ``settle`` seconds of untimed calls of the same function: thread pools keep spinning for a
    while after their last call (OpenBLAS's for about 0.1 s) and would steal a core from whichever
    library runs next, so without it a block measures the previous library's threads more than its
    own. A function slower than ``settle`` per call is preceded by a sleep instead, which lets the
    other pools go idle just the same.

    Before the rounds each function is called once untimed (``warmup``: pages touched, thread
    pools started), then once more to size its blocks.
    """
    per_call = {}
    for name, fn in fns.items():
        if warmup:
            fn()
        per_call[name] = _time_block(fn, 1)
    inner = {name: max(1, int(block / max(t, 1e-7))) for name, t in per_call.items()}
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _settle(fn, settle, per_call[name])
            samples[name].append(_time_block(fn, inner[name]))
    return samples


def summarize(samples: dict) -> tuple[dict, dict]:
    """Medians of :func:`compare`'s samples, and each system's spread: its slowest sample over its
    fastest (near 1 on a quiet machine; a large spread means something else was running)."""
    medians = {name: statistics.median(ts) for name, ts in samples.items()}
    spread = {
        name: max(ts) / min(ts) if min(ts) > 0 else float("inf") for name, ts in samples.items()
    }
    return medians, spread
