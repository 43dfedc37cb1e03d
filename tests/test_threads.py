"""Thread count control, bitwise determinism across thread counts, the OpenMP runtime."""

import contextlib
import os
import re
import subprocess
import sys
import time

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


@pytest.fixture
def backoff():
    """Sets the contention backoff by hand (seconds; 0 ends it, < 0 turns it off); turned back
    on, ended, after the test."""
    k = myelin._kernels
    yield k.backoff_set
    k.backoff_set(0)


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


# ---------------------------------------------------------------- thread count follows the work


def _mlp(sizes, seed, dtype=np.float32):
    from myelin import nn

    myelin.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b, dtype=dtype), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _train(model, x, y, steps, lr=1e-3):
    """`steps` Adam steps of `model` on one batch; the parameters afterwards as arrays."""
    import myelin.nn.functional as F
    from myelin import optim

    opt = optim.Adam(model.parameters(), lr=lr)
    xt, yt = myelin.tensor(x), myelin.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(xt), yt).backward()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("sizes", [(784, 64, 10), (64, 256, 128, 10)])
def test_small_training_step_on_shared_cores_runs_on_one_thread(rng, threads, backoff, sizes):
    """After a parallel region stalled (another program keeps the cores busy, and the region
    waits for a descheduled thread), a training step whose products are a few Mflop enters no
    parallel region; once the backoff is over, it uses both cores again."""
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    threads(2)
    model = _mlp(sizes, 0)
    x = randn(rng, (32, sizes[0]), np.float32)
    y = rng.integers(0, sizes[-1], 32)
    _train(model, x, y, 1)  # builds what is built lazily
    backoff(60.0)
    before = myelin._kernels.parallel_region_count()
    _train(model, x, y, 3)
    assert myelin._kernels.parallel_region_count() == before
    backoff(-1)
    _train(model, x, y, 1)
    assert myelin._kernels.parallel_region_count() > before


@pytest.mark.parametrize(("dtype", "batch"), [(np.float32, 32), (np.float64, 16)])
def test_a_small_chain_of_layers_runs_on_one_thread(rng, threads, backoff, dtype, batch):
    """A chain pass of a few products under about 2 Mflop in all (a 64-128-64-10 MLP at batch
    32; float64 flops count double) runs on the calling thread even though some of its products
    alone would be shared; a larger one still shares its products, and the cap ends with the
    call."""
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    threads(2)
    backoff(-1)
    small = _mlp((64, 128, 64, 10), 0, dtype)
    assert myelin._kernels.gemm_threads(batch, 128, 64, dtype == np.float64) == 2
    x = randn(rng, (batch, 64), dtype)
    y = rng.integers(0, 10, batch)
    _train(small, x, y, 1)
    before = myelin._kernels.parallel_region_count()
    _train(small, x, y, 3)
    assert myelin._kernels.parallel_region_count() == before
    a = randn(rng, (64, 64), dtype)
    myelin.ops.matmul(a, a)  # a product on its own, after the chain: shared again
    assert myelin._kernels.parallel_region_count() > before
    large = _mlp((64, 256, 128, 10), 0, dtype)
    _train(large, x, y, 1)
    before = myelin._kernels.parallel_region_count()
    _train(large, x, y, 1)
    assert myelin._kernels.parallel_region_count() > before


def test_gemm_thread_count_follows_the_work(threads, backoff):
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    k = myelin._kernels
    threads(2)
    backoff(-1)
    # tiny products stay on the calling thread; from about 0.5 Mflop (64^3) on, both cores
    for m, n, kk in [(32, 10, 64), (10, 64, 32), (16, 64, 10), (48, 48, 48)]:
        assert k.gemm_threads(m, n, kk) == 1, (m, n, kk)
    for size in (64, 128, 256, 1024):
        assert k.gemm_threads(size, size, size) == 2
    assert k.gemm_threads(56, 56, 56) == 1
    assert k.gemm_threads(56, 56, 56, True) == 2  # float64 flops count double
    # shared cores: products under 512 grains (about 134 Mflop) stay on one thread
    backoff(60.0)
    assert k.backoff_remaining() > 50
    for size in (64, 128, 256, 400):
        assert k.gemm_threads(size, size, size) == 1
    assert k.gemm_threads(1024, 1024, 1024) == 2
    threads(1)
    backoff(-1)
    assert k.gemm_threads(1024, 1024, 1024) == 1
    # the decision is what runs: a 64^3 product enters a region, a 32^3 one does not
    threads(2)
    a = np.ones((64, 64), np.float32)
    before = k.parallel_region_count()
    ops.matmul(a[:32, :32], a[:32, :32])
    assert k.parallel_region_count() == before
    ops.matmul(a, a)
    assert k.parallel_region_count() == before + 1


def test_elementwise_thread_count_follows_the_work(threads, backoff):
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    k = myelin._kernels
    threads(2)
    backoff(-1)
    assert k.ops_threads(30_000) == 1
    assert k.ops_threads(200_000) == 2
    backoff(60.0)
    assert k.ops_threads(200_000) == 1
    assert k.ops_threads(4_000_000) == 1
    assert k.ops_threads(64_000_000) == 2
    threads(1)
    backoff(-1)
    assert k.ops_threads(64_000_000) == 1


def test_backoff_does_not_feed_itself(threads, backoff):
    """Work kept on one thread by the backoff is not timed as a stalled region: running it does
    not prolong the backoff (a batched product runs its batch loop in a team of one then)."""
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    threads(2)
    a = np.ones((1000, 32, 32), np.float32)
    backoff(0.3)
    for _ in range(20):
        ops.matmul(a, a)
        ops.matmul(a[0], a[0])
    assert myelin._kernels.backoff_remaining() <= 0.3


@contextlib.contextmanager
def _busy_cores():
    """A busy process on every core for the duration of the block."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def _small_products_until_backoff() -> np.ndarray:
    """Small parallel products (64^3) until the backoff turns on, for 20 s at most; returns the
    operand."""
    a = np.ones((64, 64), np.float32)
    deadline = time.monotonic() + 20.0
    while myelin._kernels.backoff_remaining() == 0.0 and time.monotonic() < deadline:
        for _ in range(100):
            ops.matmul(a, a)
    return a


@pytest.mark.slow
def test_a_stalled_region_turns_the_backoff_on(threads, backoff):
    """Real contention: with busy processes on every core, small parallel products soon meet a
    descheduled thread, and the backoff turns on by itself."""
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    k = myelin._kernels
    threads(2)
    backoff(0)
    with _busy_cores():
        a = _small_products_until_backoff()
        assert k.backoff_remaining() > 0.0
        before = k.parallel_region_count()
        ops.matmul(a, a)
        assert k.parallel_region_count() == before  # one thread while it lasts


@pytest.mark.slow
def test_large_regions_stretched_by_busy_cores_leave_the_backoff_alone(threads, backoff):
    """Only the small work the backoff governs judges it. With busy processes on every core, a
    ReLU over 32M elements (1024 grains, always shared) takes longer than its grains explain,
    region after region, and the backoff stays off; small products under the same load then
    turn it on, so the load was there."""
    if not _config.has_openmp():
        pytest.skip("serial build: myelin._kernels reports no OpenMP")
    k = myelin._kernels
    threads(2)
    backoff(0)
    x = np.ones(32 * 2**20, np.float32)
    y = np.empty_like(x)
    assert k.ops_threads(x.size) == 2
    with _busy_cores():
        slowest = 0.0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            ops.relu(x, out=y)
            slowest = max(slowest, time.perf_counter() - t0)
            assert k.backoff_remaining() == 0.0
        # the grains account for 1024 * 5 us / 2 threads = 2.6 ms; a region 1 ms beyond four
        # times that counts as stalled, so at least one region here was one
        stalled = 0.001 + 4 * (x.size / 32768) * 5e-6 / 2
        assert slowest > stalled, f"no region was stretched (slowest {slowest * 1e3:.1f} ms)"
        _small_products_until_backoff()
        assert k.backoff_remaining() > 0.0


# ---------------------------------------------------------------- determinism of training


def _training_run(threads_n, rng_seed=1, dtype=np.float32):
    """Parameters after Adam steps of an MLP large enough that its products, activations and
    updates go parallel."""
    myelin.set_num_threads(threads_n)
    r = np.random.default_rng(rng_seed)
    x = r.standard_normal((256, 300)).astype(dtype)
    y = r.integers(0, 10, 256)
    model = _mlp((300, 512, 768, 10), seed=7, dtype=dtype)
    return _train(model, x, y, steps=4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_bitwise_reproducible_and_identical_across_thread_counts(threads, backoff, dtype):
    backoff(-1)  # the runs go parallel even if the machine is busy
    before = myelin._kernels.parallel_region_count()
    first = _training_run(1, dtype=dtype)
    again = _training_run(1, dtype=dtype)
    assert _same_bits(tuple(first), tuple(again)), "two runs with the same seed differ"
    for n in (2, 3):
        got = _training_run(n, dtype=dtype)
        for i, (p, q) in enumerate(zip(got, first, strict=True)):
            assert _same_bits(p, q), f"parameter {i} after training on {n} threads differs"
    if _config.has_openmp():
        assert myelin._kernels.parallel_region_count() > before  # the runs did go parallel


def test_python_threads_training_separate_models_match_serial(threads):
    """Four Python threads each training their own model at once (the kernels release the GIL,
    grad mode is per thread) end with the parameters of the same models trained one by one."""
    from concurrent.futures import ThreadPoolExecutor

    threads(2)

    def job(seed):
        r = np.random.default_rng(seed)
        x = r.standard_normal((64, 40)).astype(np.float32)
        y = r.integers(0, 5, 64)
        return models[seed], x, y

    def train(seed):
        model, x, y = job(seed)
        return _train(model, x, y, steps=25)

    seeds = list(range(4))
    models = {s: _mlp((40, 200, 300, 5), seed=s) for s in seeds}
    serial = [train(s) for s in seeds]
    models = {s: _mlp((40, 200, 300, 5), seed=s) for s in seeds}
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(train, seeds))
    for s, (a, b) in enumerate(zip(serial, concurrent, strict=True)):
        assert _same_bits(tuple(a), tuple(b)), f"model {s} trained in a thread differs"


def test_every_kernel_call_releases_the_gil():
    """Every call of a computing C entry (myelin_<op>_f32/_f64) in the bindings sits in a
    `with nogil:` block or a nogil function, so Python threads run while kernels do."""
    import pathlib

    pyx = pathlib.Path(__file__).resolve().parents[1] / "src" / "myelin" / "_kernels.pyx"
    if not pyx.exists():
        pytest.skip("the bindings' source is not beside the tests")
    held, calls, nogil_indent, header, header_indent = [], 0, None, "", 0
    for number, line in enumerate(pyx.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if header:  # the rest of a signature spanning lines
            header += text
        elif text.startswith(("cdef ", "def ", "cpdef ")) and text.endswith((":", ",")):
            header, header_indent = text, indent  # a signature, not a cdef declaration
        if header:
            if text.endswith(":"):
                if "nogil" in header and not header.startswith("cdef extern"):
                    nogil_indent = header_indent  # the body of a nogil function
                elif nogil_indent is not None and header_indent <= nogil_indent:
                    nogil_indent = None
                header = ""
            continue
        if nogil_indent is not None and indent <= nogil_indent:
            nogil_indent = None
        if text.startswith("with nogil"):
            nogil_indent = indent
            continue
        if re.search(r"\bmyelin_\w+_f(32|64)\(", text):
            calls += 1
            if nogil_indent is None:
                held.append((number, text))
    assert calls > 20
    assert not held, f"kernel calls holding the GIL: {held}"
