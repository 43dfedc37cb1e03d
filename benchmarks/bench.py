"""myelin against NumPy, side by side in one process.

Each case times myelin.ops and its NumPy counterpart (``myelin.reference``, or plain ``a @ b`` for
GEMM) in interleaved repetitions and reports medians, so a noisy machine slows both alike.

    python benchmarks/bench.py --quick          # a small subset, well under a minute
    python benchmarks/bench.py --json out.json  # every case, results also written as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

# NumPy's BLAS threads, before numpy loads it (threadpoolctl, when installed, sets them exactly).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402

import myelin  # noqa: E402
from myelin import ops, reference  # noqa: E402


def _time_once(fn, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def _run_for(fn, seconds: float) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()


def compare(fns: dict, rounds: int, settle: float) -> dict:
    """Median seconds per call of each function, timed in interleaved blocks.

    Each timed block of about 20 ms follows `settle` seconds of untimed calls of the same
    function: thread pools keep spinning for a while after their last call (OpenBLAS's for
    about 0.1 s) and would steal a core from whichever library runs next, so without it a
    block measures the previous library's threads more than its own.
    """
    for fn in fns.values():  # first touch of pages, thread pools started
        fn()
    probe = min(_time_once(fn, 1) for fn in fns.values())
    inner = max(1, int(0.02 / max(probe, 1e-7)))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _run_for(fn, settle)
            samples[name].append(_time_once(fn, inner))
    return {name: statistics.median(ts) for name, ts in samples.items()}


def _rng():
    return np.random.default_rng(0)


def case_gemm(n: int, dtype=np.float32):
    a = _rng().standard_normal((n, n)).astype(dtype)
    b = _rng().standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    return (
        f"matmul {n}x{n}x{n}",
        np.dtype(dtype).name,
        {"myelin": lambda: ops.matmul(a, b, out=out), "numpy": lambda: np.matmul(a, b, out=out)},
        ("GFLOP/s", 2.0 * n**3),
    )


def case_mlp_layer(which: str):
    rng = _rng()
    x = rng.standard_normal((128, 784)).astype(np.float32)
    w = rng.standard_normal((512, 784)).astype(np.float32)
    g = rng.standard_normal((128, 512)).astype(np.float32)
    flops = 2.0 * 128 * 784 * 512
    if which == "forward":  # x @ w.T
        f_m = lambda: ops.matmul(x, w, trans_b=True)  # noqa: E731
        f_n = lambda: x @ w.T  # noqa: E731
    elif which == "grad_weight":  # g.T @ x
        f_m = lambda: ops.matmul(g, x, trans_a=True)  # noqa: E731
        f_n = lambda: g.T @ x  # noqa: E731
    else:  # grad_input: g @ w
        f_m = lambda: ops.matmul(g, w)  # noqa: E731
        f_n = lambda: g @ w  # noqa: E731
    return (
        f"MLP layer 128x784->512 {which}",
        "float32",
        {"myelin": f_m, "numpy": f_n},
        ("GFLOP/s", flops),
    )


def case_batched():
    rng = _rng()
    a = rng.standard_normal((1000, 32, 32)).astype(np.float32)
    b = rng.standard_normal((1000, 32, 32)).astype(np.float32)
    return (
        "batched 1000x(32x32 @ 32x32)",
        "float32",
        {"myelin": lambda: ops.matmul(a, b), "numpy": lambda: a @ b},
        ("GFLOP/s", 2.0 * 1000 * 32**3),
    )


def case_linear():
    rng = _rng()
    x = rng.standard_normal((128, 784)).astype(np.float32)
    w = rng.standard_normal((512, 784)).astype(np.float32)
    b = rng.standard_normal(512).astype(np.float32)
    return (
        "linear+bias+relu 128x784->512",
        "float32",
        {
            "myelin": lambda: ops.linear(x, w, b, "relu"),
            "numpy": lambda: reference.linear(x, w, b, "relu"),
        },
        ("GFLOP/s", 2.0 * 128 * 784 * 512),
    )


def case_xent(n=4096, c=1000):
    rng = _rng()
    logits = rng.standard_normal((n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    return (
        f"softmax xent fwd+bwd {n}x{c}",
        "float32",
        {
            "myelin": lambda: ops.softmax_cross_entropy(logits, labels),
            "numpy": lambda: reference.softmax_cross_entropy(logits, labels),
        },
        ("GB/s", 2.0 * logits.nbytes),
    )


def case_relu(n=1 << 24):
    x = _rng().standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    return (
        f"relu {n // (1 << 20)}M",
        "float32",
        {
            "myelin": lambda: ops.relu(x, out=y),
            "numpy": lambda: reference.relu(x, out=y),
            "copy": lambda: np.copyto(y, x),
        },
        ("GB/s", 2.0 * x.nbytes),
    )


def case_adam(n=6_000_000):
    rng = _rng()
    state = {
        name: [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
        for name in ("myelin", "numpy")
    }
    for s in state.values():
        s[3] = np.abs(s[3])
    counter = {"myelin": 0, "numpy": 0}

    def run(impl, name):
        p, g, m, v = state[name]
        counter[name] += 1
        impl.adam_step(p, g, m, v, step=counter[name])

    return (
        f"adam step {n / 1e6:.0f}M params",
        "float32",
        {"myelin": lambda: run(ops, "myelin"), "numpy": lambda: run(reference, "numpy")},
        ("GB/s", 7.0 * 4 * n),
    )


QUICK = [
    lambda: case_gemm(64),
    lambda: case_gemm(256),
    lambda: case_gemm(1024),
    lambda: case_mlp_layer("forward"),
    lambda: case_batched(),
    lambda: case_linear(),
    lambda: case_xent(),
    lambda: case_relu(),
    lambda: case_adam(),
]
FULL = [
    *(lambda n=n: case_gemm(n) for n in (64, 128, 256, 512, 1024, 2048)),
    lambda: case_gemm(1024, np.float64),
    *(lambda w=w: case_mlp_layer(w) for w in ("forward", "grad_weight", "grad_input")),
    case_batched,
    case_linear,
    case_xent,
    case_relu,
    case_adam,
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset, under a minute")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--threads", type=int, default=2, help="threads for myelin (default 2)")
    args = parser.parse_args(argv)

    myelin.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass
    myelin.show_config()
    print(
        f"numpy {np.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} logical CPUs, {platform.machine()}"
    )
    rounds, settle = (5, 0.15) if args.quick else (9, 0.25)
    header = (
        f"{'case':36s} {'dtype':8s} {'myelin':>10s} {'numpy':>10s} {'numpy/myelin':>12s} "
        f"{'myelin rate':>16s}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for make in QUICK if args.quick else FULL:
        name, dtype, fns, (unit, work) = make()
        t = compare(fns, rounds, settle)
        ratio = t["numpy"] / t["myelin"]
        rate = work / t["myelin"] / 1e9
        extra = ""
        if "copy" in t:
            extra = f"  (copy {work / t['copy'] / 1e9:.1f} {unit}: {t['copy'] / t['myelin']:.2f}x)"
        print(
            f"{name:36s} {dtype:8s} {t['myelin'] * 1e3:8.3f}ms {t['numpy'] * 1e3:8.3f}ms "
            f"{ratio:11.2f}x {rate:10.1f} {unit}{extra}"
        )
        results.append(
            {
                "case": name,
                "dtype": dtype,
                "seconds": t,
                "ratio_numpy_over_myelin": ratio,
                "rate": rate,
                "unit": unit,
            }
        )
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
