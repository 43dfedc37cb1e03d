"""Thread count control, bitwise determinism across thread counts, the OpenMP runtime."""

import re

import numpy as np
import pytest
from helpers import randn

import myelin
from myelin import _config, ops


@pytest.fixture
def threads():
    """Yields a setter; restores the thread count afterwards."""
    before = myelin.get_num_threads()
    yield myelin.set_num_threads
    myelin.set_num_threads(before)


def test_round_trip(threads):
    for n in (1, 2, 3, 1):
        threads(n)
        # a serial build (no OpenMP) always runs on the calling thread alone
        assert myelin.get_num_threads() == (n if _config.has_openmp() else 1)


def _results(rng):
    """The ops whose work is split between threads, on inputs large enough to go parallel."""
    a, b = randn(rng, (300, 400), np.float32), randn(rng, (400, 500), np.float32)
    z = randn(rng, (4096, 1000), np.float32, scale=3.0)
    labels = rng.integers(0, 1000, 4096)
    big = randn(rng, (5_000_000,), np.float32)
    g = randn(rng, (4096, 1000))
    x = randn(rng, (512, 300))
    w = randn(rng, (200, 300))
    return {
        "matmul f32": lambda: ops.matmul(a, b),
        "matmul f64 trans": lambda: ops.matmul(
            b.astype(np.float64), a.astype(np.float64), trans_a=True, trans_b=True
        ),
        "matmul batched": lambda: ops.matmul(a.reshape(3, 100, 400), b),
        "linear": lambda: ops.linear(x, w, np.ones(200), "tanh"),
        "linear_backward": lambda: ops.linear_backward(g[:512, :200], x, w, None),
        "softmax_cross_entropy": lambda: ops.softmax_cross_entropy(z, labels, label_smoothing=0.1),
        "softmax": lambda: ops.softmax(z),
        "global_norm": lambda: ops.global_norm([big, g]),
        "bias_grad": lambda: ops.bias_grad(g),
        "bias_grad f32 tall": lambda: ops.bias_grad(big.reshape(-1, 5)),
        "mse_loss": lambda: ops.mse_loss(big, big[::-1].copy()),
        "bce": lambda: ops.binary_cross_entropy_with_logits(z, (z > 0).astype(np.float32)),
    }


def _same_bits(x, y):
    if isinstance(x, tuple):
        return all(_same_bits(u, v) for u, v in zip(x, y, strict=False))
    x, y = np.asarray(x), np.asarray(y)
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


@pytest.mark.usefixtures("isa")
def test_bitwise_identical_across_thread_counts(rng, threads):
    cases = _results(rng)
    threads(1)
    serial = {name: f() for name, f in cases.items()}
    for n in (2, 3):
        threads(n)
        for name, f in cases.items():
            assert _same_bits(f(), serial[name]), f"{name}: {n} threads differ from 1 thread"


def test_openmp_runtime_listed():
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    apis = [info.get("user_api") for info in threadpoolctl.threadpool_info()]
    assert "openmp" in apis, f"no OpenMP runtime among {threadpoolctl.threadpool_info()}"


def test_threadpoolctl_limits_myelin(threads):
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    threads(2)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert myelin.get_num_threads() == 1
    assert myelin.get_num_threads() == 2


def test_show_config(capsys, threads):
    threads(3)
    myelin.show_config()
    out = capsys.readouterr().out
    assert myelin.__version__ in out
    assert _config.current_isa() in out
    expected = r"\b3\b" if _config.has_openmp() else r"\b1\b"
    assert any(
        re.search(expected, line) for line in out.splitlines() if "thread" in line.lower()
    ), out
    if not _config.has_openmp():
        assert "serial" in out, out


def test_python_threads_calling_at_once_match_serial(rng):
    """The kernels release the GIL and keep no shared mutable state: ops called from several
    Python threads at once give the results of serial calls."""
    from concurrent.futures import ThreadPoolExecutor

    def work(seed):
        r = np.random.default_rng(seed)
        a = r.standard_normal((257, 300)).astype(np.float32)
        w = r.standard_normal((130, 300)).astype(np.float32)
        y = ops.linear(a, w, None, "tanh")
        loss, grad = ops.softmax_cross_entropy(y, r.integers(0, 130, 257))
        p, m, v = (np.ones(5000, np.float32) for _ in range(3))
        ops.adam_step(p, np.full(5000, 0.5, np.float32), m, v, step=1)
        batched = ops.matmul(r.standard_normal((40, 33, 20)), r.standard_normal((40, 20, 17)))
        return y, loss, grad, p, batched

    seeds = list(range(8))
    serial = [work(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(work, seeds))
    for s, c in zip(serial, concurrent, strict=True):
        assert _same_bits(s, c)
