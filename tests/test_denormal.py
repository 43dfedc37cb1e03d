"""myelin.set_flush_denormal: an opt-in flush-to-zero mode applied in every thread that runs a
kernel, workers included; results on normal-range data do not change."""

import numpy as np
import pytest

import myelin
from myelin import _config, ops

TINY = np.finfo(np.float32).tiny  # the smallest normal float32


@pytest.fixture
def flush():
    threads = myelin.get_num_threads()
    if not myelin.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    myelin._kernels.backoff_set(-1)  # parallel even on a busy machine (no contention backoff)
    yield myelin.set_flush_denormal
    myelin._kernels.backoff_set(0)
    myelin.set_flush_denormal(False)
    myelin.set_num_threads(threads)


def _regions():
    return myelin._kernels.parallel_region_count()


def _denormal_leaky(n=1 << 21):
    """leaky_relu with slope 0.5 of negative normal inputs whose halves are subnormal; large
    enough to be split between threads."""
    x = np.full(n, -1.5 * TINY, np.float32)
    return x, ops.leaky_relu(x, 0.5)


def _denormal_matmul(size):
    """A product whose partial products and results are all subnormal."""
    a = np.full((size, size), 1e-22, np.float32)
    return a, ops.matmul(a, a)


def test_round_trip(flush):
    assert flush(True) is True
    assert myelin.get_flush_denormal() is True
    assert flush(False) is True
    assert myelin.get_flush_denormal() is False
    with pytest.raises(TypeError, match="mode"):
        myelin.set_flush_denormal("yes")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_flushes_in_every_thread(flush, threads):
    myelin.set_num_threads(threads)
    x, want = _denormal_leaky()
    # IEEE gradual underflow by default, the reference is NumPy's
    assert (want != 0).all() and np.array_equal(want, x * np.float32(0.5))
    before = _regions()
    flush(True)
    x, got = _denormal_leaky()
    assert not got.any(), f"{np.count_nonzero(got)} subnormal results left on {threads} threads"
    a, prod = _denormal_matmul(256)
    assert not prod.any()
    a, prod = _denormal_matmul(32)  # on the calling thread alone
    assert not prod.any()
    if _config.has_openmp() and threads > 1:
        assert _regions() >= before + 2  # the leaky_relu and the 256^3 product went parallel
    flush(False)  # and back: the workers too
    x, again = _denormal_leaky()
    assert np.array_equal(again, want)
    a, prod = _denormal_matmul(256)
    assert (prod != 0).all() and np.allclose(prod, 256 * 1e-44, rtol=0.05, atol=0)


def _train(flush_mode):
    import myelin.nn.functional as F
    from myelin import nn, optim

    myelin.set_flush_denormal(flush_mode)
    myelin.manual_seed(3)
    model = nn.Sequential(nn.Linear(300, 512), nn.Tanh(), nn.Linear(512, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    r = np.random.default_rng(0)
    x = myelin.tensor(r.standard_normal((256, 300)).astype(np.float32))
    y = myelin.tensor(r.integers(0, 10, 256))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


def test_normal_range_training_unchanged(flush):
    myelin.set_num_threads(2)
    loss_off, params_off = _train(False)
    loss_on, params_on = _train(True)
    assert loss_on == loss_off
    for p, q in zip(params_on, params_off, strict=True):
        assert p.tobytes() == q.tobytes()
