"""Reliability at the runtime's edges: cross-entropy with label smoothing at the extremes of the
float range, thread counts beyond the machine, lazy random sampling, big-endian data."""

import math
import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest

import myelin
from myelin import _config, nn, ops, reference

# ---------------------------------------------------------------- label smoothing at the extremes


def _extreme_rows(dtype, rng):
    """(row, label, smoothing) with logits near the ends of dtype's range, where m - z[j] or
    sum(z) leaves the range, large close logits (cancellation) and subnormals."""
    big = float(np.finfo(dtype).max)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    base = 2.0**56 if dtype == np.float64 else 2.0**30
    ulp = float(np.spacing(dtype(base)))
    spread = [big if j % 2 else -big for j in range(37)]
    return [
        ([big / 3] * 3, 0, 0.1),  # the sum of the row overflows; exact: log 3
        ([0.56 * big, 0.56 * big, 0.0], 0, 0.1),
        ([0.56 * big, -0.56 * big, -0.56 * big], 0, 0.5),  # m - z[j] beyond the range
        ([0.56 * big, -0.56 * big], 1, 0.5),  # (1-s)(m - z[label]) beyond: loss finite
        (spread, 2, 0.1),
        (spread, 1, 0.3),
        ([-big] * 5, 3, 0.2),
        ([big] * 40, 7, 1.0),
        ([base, base + 2 * ulp, base + 4 * ulp], 2, 0.3),  # large close logits
        ([base + 3 * ulp] * 17 + [base], 17, 0.7),
        ([tiny, 0.0, -tiny], 1, 0.1),
        ([big, -big], 1, 0.1),  # the exact loss is beyond the range: inf
        (list(rng.uniform(-1, 1, 100) * big), 42, 0.25),
        (list(rng.uniform(-1, 1, 33) * big), 32, 0.0),
    ]


def _exact_row(row, label, s):
    """The row's loss as an exact fraction but for log-sum-exp (within an ulp of the double
    result), and the float gradient of the loss, from the exact differences m - z[j]."""
    m = Fraction(max(row))
    below = [m - Fraction(z) for z in row]  # >= 0, exact
    exps = [math.exp(-float(d)) if d < 1000 else 0.0 for d in below]
    total = math.fsum(exps)
    sf = Fraction(s)  # the double the kernel gets
    loss = Fraction(math.log(total)) + (1 - sf) * below[label] + sf * sum(below) / len(row)
    grad = [e / total - s / len(row) - ((1 - s) if j == label else 0.0) for j, e in enumerate(exps)]
    return loss, np.array(grad)


def _to_float(x: Fraction, dtype) -> float:
    """x rounded to dtype, inf where beyond its range."""
    try:
        v = float(x)
    except OverflowError:
        return math.inf
    with np.errstate(over="ignore"):
        return float(dtype(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_smoothing_exact_at_the_extremes(isa, rng, dtype):
    """Finding 4: label smoothing in float64 gave -inf for finite logits (sum(z) overflowed, and
    m - mean cancelled); every row's loss is now the correctly rounded value within a few ulps,
    on every path and every reduction, with its gradient."""
    eps = float(np.finfo(dtype).eps)
    for row, label, s in _extreme_rows(dtype, rng):
        z = np.array([row], dtype)
        want, want_grad = _exact_row([float(v) for v in z[0]], label, s)
        want = _to_float(want, dtype)
        what = f"{dtype.__name__} row {row[:4]}... label {label} smoothing {s} on {isa}"
        # "none" and "sum" (list labels) take the general path, "mean" the fused fast path
        for reduction, labels in (("none", [label]), ("sum", [label]), ("mean", np.array([label]))):
            with np.errstate(over="ignore"):  # an inf loss rounded to float32
                loss, grad = ops.softmax_cross_entropy(
                    z, labels, reduction=reduction, label_smoothing=s
                )
            got = float(np.reshape(loss, -1)[0])
            if math.isinf(want):
                assert got == want, what
            else:
                assert got == pytest.approx(want, rel=4 * eps, abs=0), f"{what}: {reduction}"
            np.testing.assert_allclose(grad[0], want_grad, rtol=0, atol=4 * eps, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_label_smoothing_exact_at_the_extremes(rng, dtype):
    """The oracle the tests hold ops against has the same care (it overflowed the same way)."""
    eps = float(np.finfo(dtype).eps)
    for row, label, s in _extreme_rows(dtype, rng):
        z = np.array([row], dtype)
        want, _ = _exact_row([float(v) for v in z[0]], label, s)
        want = _to_float(want, dtype)
        loss, _ = reference.softmax_cross_entropy(z, [label], reduction="none", label_smoothing=s)
        got = float(loss[0])
        if math.isinf(want):
            assert got == want
        else:
            # computed in dtype: one rounding per term of the row's sum
            assert got == pytest.approx(want, rel=4 * eps * len(row), abs=0), (row[:4], s)


def test_cross_entropy_loss_module_label_smoothing_at_the_extremes():
    """The issue's example through nn.CrossEntropyLoss: PyTorch gives 3.33e306."""
    z = myelin.tensor(np.array([[1e308, 1e308, 0.0]]), requires_grad=True)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(z, np.array([0]))
    assert float(loss.item()) == pytest.approx(1e308 / 30, rel=1e-15)
    loss.backward()
    np.testing.assert_allclose(z.grad.numpy(), [[0.5 - 0.9 - 0.1 / 3, 0.5 - 0.1 / 3, -0.1 / 3]])


# ---------------------------------------------------------------- thread counts


def _run(code, **env_vars):
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MYELIN_NUM_THREADS")
    }
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_set_num_threads_is_capped_per_cpu():
    """Finding 9: set_num_threads(1000) was taken on 2 cores (1000 OS threads). Now at most 4 per
    CPU of the machine; more raise ValueError naming the argument, the value and the maximum."""
    before = myelin.get_num_threads()
    limit = 4 * (os.cpu_count() or 1)
    try:
        for n in (limit + 1, 1000, 2**31 - 1):
            with pytest.raises(ValueError, match=rf"n must be at most {limit} .*got {n}\b"):
                myelin.set_num_threads(n)
        myelin.set_num_threads(limit)
        if _config.has_openmp():
            assert myelin.get_num_threads() == limit
    finally:
        myelin.set_num_threads(before)


def test_thread_count_from_environment_is_capped_per_cpu():
    limit = 4 * (os.cpu_count() or 1)
    r = _run("import myelin", MYELIN_NUM_THREADS=str(limit + 1))
    assert r.returncode != 0
    assert f"MYELIN_NUM_THREADS='{limit + 1}'" in r.stderr and f"at most {limit}" in r.stderr
    # OMP_NUM_THREADS belongs to the OpenMP runtime: myelin caps what it takes from it
    r = _run("import myelin; print(myelin.get_num_threads())", OMP_NUM_THREADS="100000")
    assert r.returncode == 0, r.stderr
    assert 1 <= int(r.stdout) <= limit


# a relu large enough for every thread, under an address-space limit that leaves no room for
# another thread's stack: libgomp used to print "Thread creation failed" and end the process
_TIGHT = """
    import resource, warnings
    import numpy as np
    import myelin
    from myelin import ops

    x = (np.arange(50_000_000) % 1000 - 500).astype(np.float32)
    y = np.empty_like(x)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    def limit_address_space(room=2 << 20):
        status = open("/proc/self/status").read()
        vm = int(status.split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + room, hard))
    {body}
    ops.relu(x, out=y)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    assert np.array_equal(y, np.maximum(x, 0))
    print("threads", myelin.get_num_threads())
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _config.has_openmp(),
    reason="RLIMIT_AS and /proc are Linux's; a serial build creates no threads",
)
@pytest.mark.parametrize(
    "body",
    [
        # the case: 1000 threads asked for under 3 GiB
        """
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, hard))
        try:
            myelin.set_num_threads(1000)
        except ValueError:
            myelin.set_num_threads(myelin._kernels.max_threads())
        """,
        # threads asked for under the limit: a warning, and the kernels run on fewer
        """
        limit_address_space()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            myelin.set_num_threads(4)
        assert any("could be started" in str(w.message) for w in caught), caught
        assert myelin.get_num_threads() < 4
        """,
        # threads asked for before the limit: the first parallel region checks again
        """
        myelin.set_num_threads(myelin._kernels.max_threads())
        limit_address_space()
        """,
    ],
    ids=["1000-threads-3GiB", "set-under-limit", "set-before-limit"],
)
def test_thread_creation_failure_does_not_end_the_process(body):
    code = _TIGHT.replace("{body}", textwrap.indent(textwrap.dedent(body), "    ").strip())
    r = _run(code)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Thread creation failed" not in r.stderr


# ---------------------------------------------------------------- lazy random sampling

_CHUNK = 1 << 16  # myelin.data.dataloader._CHUNK


def test_random_sampler_draws_lazily():
    """Finding 11: RandomSampler(num_samples=10**10) built the whole index array (80 GB, or
    10**10 / n permutations); PyTorch samples lazily. In a subprocess under a 1 GiB
    address-space limit: iter(), the first indices and the first DataLoader batch at once."""
    code = """
    import resource, time
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    import numpy as np
    import myelin
    from myelin.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    ds = TensorDataset(np.arange(1000.0))
    for replacement in (True, False):
        t0 = time.perf_counter()
        sampler = RandomSampler(ds, replacement, 10**10, myelin.Generator(0))
        it = iter(sampler)
        first = [next(it) for _ in range(100_000)]
        assert len(sampler) == 10**10 and all(0 <= i < 1000 for i in first)
        (x,) = next(iter(DataLoader(ds, batch_size=64, sampler=sampler)))
        assert x.shape == (64,)
        assert len(BatchSampler(sampler, 64, False)) == -(-(10**10) // 64)
        assert time.perf_counter() - t0 < 20
    print("ok")
    """
    if sys.platform.startswith("linux"):
        r = _run(code)
    else:
        r = _run(code.replace("resource.setrlimit(", "(lambda *a: None)("))
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("n", [7, 1000, 100_003])
def test_random_sampler_sequences(n):
    """Within num_samples <= len (and with replacement up to _CHUNK) the sequence is the one a
    single draw gives, as before; beyond, it is the same draws made a chunk at a time: seeded
    runs repeat, permutations chain, every index is in range."""
    ds = myelin.data.TensorDataset(np.zeros(n))
    RS = myelin.data.RandomSampler

    def rng(seed):
        return np.random.default_rng(seed)

    assert list(RS(ds, generator=myelin.Generator(3))) == rng(3).permutation(n).tolist()
    k = min(n, _CHUNK) // 2 + 1
    want = rng(4).integers(0, n, size=k, dtype=np.int64).tolist()
    assert list(RS(ds, True, k, myelin.Generator(4))) == want
    # beyond: permutations chained as before, drawn as needed
    k = 2 * _CHUNK + n // 2 + 5
    r = rng(5)
    want = np.concatenate([r.permutation(n) for _ in range(-(-k // n))])[:k]
    got = np.fromiter(RS(ds, False, k, myelin.Generator(5)), np.int64)
    np.testing.assert_array_equal(got, want)
    # with replacement: reproducible, in range, about uniform
    a = np.fromiter(RS(ds, True, k, myelin.Generator(6)), np.int64)
    b = np.fromiter(RS(ds, True, k, myelin.Generator(6)), np.int64)
    assert a.shape == (k,) and np.array_equal(a, b) and a.min() >= 0 and a.max() < n
    if n == 7:
        counts = np.bincount(a, minlength=n)
        assert np.all(np.abs(counts - k / n) < 5 * np.sqrt(k / n))


@pytest.mark.parametrize("batch_size", [1, 3, 1000, _CHUNK, 3 * _CHUNK + 1])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_across_chunks(batch_size, drop_last):
    """Batches cut from a lazily drawn epoch join the pieces across chunk boundaries, for
    myelin's samplers and for a plain iterable read a chunk at a time."""
    data = myelin.data
    ds = data.TensorDataset(np.arange(5000.0))
    k = 3 * _CHUNK + 123
    flat = np.fromiter(data.RandomSampler(ds, True, k, myelin.Generator(8)), np.int64)
    for sampler in (data.RandomSampler(ds, True, k, myelin.Generator(8)), flat.tolist()):
        batches = list(data.BatchSampler(sampler, batch_size, drop_last))
        sizes = [len(b) for b in batches]
        stop = k - k % batch_size if drop_last else k
        assert sum(sizes) == stop and all(s == batch_size for s in sizes[:-1])
        assert np.concatenate(batches).tolist() == flat[:stop].tolist()
        assert len(batches) == len(data.BatchSampler(sampler, batch_size, drop_last))
    loader = data.DataLoader(
        ds,
        batch_size=batch_size,
        drop_last=drop_last,
        sampler=data.RandomSampler(ds, True, k, myelin.Generator(8)),
    )
    got = np.concatenate([x.numpy() for (x,) in loader])
    np.testing.assert_array_equal(got, flat[:stop].astype(np.float64))


# ---------------------------------------------------------------- big-endian data


class _Samples(myelin.data.Dataset):
    """A map-style dataset returning rows of big-endian arrays as raw ndarrays."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_data_pipeline_over_big_endian_arrays(tmp_path):
    """Finding 2 (data): a DataLoader over a TensorDataset of big-endian arrays yielded Tensors
    of big-endian data, which the kernels read as garbage (x @ w gave ~1e-41). Batches are now
    native and right through a TensorDataset, a memory-mapped big-endian file, samples collated
    from a custom dataset, and Normalize."""
    data = myelin.data
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    w = myelin.tensor(rng.standard_normal((3, 2)).astype(np.float32))
    want = x @ w.numpy()
    path = tmp_path / "x.npy"
    np.save(path, x.astype(">f4"))
    mapped = np.load(path, mmap_mode="r")
    assert mapped.dtype.str == ">f4"
    datasets = [
        data.TensorDataset(x.astype(">f4"), y.astype(">i8")),
        data.TensorDataset(mapped, y.astype(">i4")),
        _Samples(x.astype(">f4"), y.astype(">i8")),
    ]
    for ds in datasets:
        seen = 0
        for xb, yb in data.DataLoader(ds, batch_size=16):
            for t in (xb, yb):
                assert t.numpy().dtype.isnative, (ds, t.numpy().dtype)
            rows = slice(seen, seen + len(xb.numpy()))
            np.testing.assert_array_equal(xb.numpy(), x[rows])
            np.testing.assert_array_equal(yb.numpy(), y[rows])
            np.testing.assert_allclose((xb @ w).numpy(), want[rows], rtol=1e-5, atol=1e-6)
            seen += len(xb.numpy())
        assert seen == 50
    batch = data.default_collate([x[0].astype(">f8"), x[1].astype(">f8")])
    assert batch.numpy().dtype == np.float64 and batch.numpy().dtype.isnative
    np.testing.assert_array_equal(batch.numpy(), x[:2].astype(np.float64))
    # Normalize: statistics and results as for the native array, in native order
    native = data.Normalize().fit(x)
    big = data.Normalize().fit(x.astype(">f4"))
    np.testing.assert_array_equal(big.mean_, native.mean_)
    out = big.transform(x.astype(">f4"))
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, native.transform(x))


def test_the_fma_probe_takes_only_thread_counts_the_machine_allows():
    # its OpenMP region started any number of threads (1000: libgomp's exit under a memory limit)
    from myelin import _kernels

    most = _kernels.max_threads()
    for bad in (0, -3, most + 1, 1000):
        with pytest.raises(ValueError, match=rf"threads must be from 1 to {most}.*got {bad}"):
            _kernels.fma_peak_gflops(bad, 0.01)
    assert _kernels.fma_peak_gflops(1, 0.01) > 0
