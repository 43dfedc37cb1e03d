"""After multithreaded work, a forked child (os.fork, a multiprocessing "fork" pool) still runs
myelin's kernels instead of hanging in the OpenMP runtime, which is not fork-safe."""

import multiprocessing
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import myelin
from myelin import ops

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

_CHILD_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import myelin
    from myelin import ops

    myelin.set_num_threads(2)
    a = np.random.default_rng(0).standard_normal((400, 300)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((200, 300)).astype(np.float32)
    parent = ops.linear(a, w, None, "relu")          # runs the OpenMP pool in the parent
    pid = os.fork()
    if pid == 0:
        child = ops.linear(a, w, None, "relu")
        labels = np.zeros(400, np.int64)
        loss, grad = ops.softmax_cross_entropy(child, labels)
        ok = np.array_equal(child, parent) and np.isfinite(loss)
        os._exit(0 if ok and myelin.get_num_threads() == 1 else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


def test_os_fork_child_runs_kernels():
    # In a subprocess, so that a hang is a timeout failure and not a dead test run.
    r = subprocess.run(
        [sys.executable, "-c", _CHILD_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr


def _work(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    b = rng.standard_normal((200, 100)).astype(np.float32)
    return ops.matmul(a, b)


def test_fork_pool_matches_parent():
    myelin.set_num_threads(2)
    expected = [_work(s) for s in range(4)]  # the parent's OpenMP pool is now running
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        got = pool.map_async(_work, range(4)).get(timeout=120)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g, e)


def test_set_num_threads_in_forked_child_warns_and_stays_serial():
    script = textwrap.dedent(
        """
        import os, warnings
        import myelin
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                myelin.set_num_threads(2)
            ok = myelin.get_num_threads() == 1 and any("fork" in str(x.message) for x in w)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- after multithreaded training

_TRAIN_THEN_FORK = textwrap.dedent(
    """
    import multiprocessing, os, sys
    import numpy as np
    import myelin
    import myelin.nn.functional as F
    from myelin import nn, optim

    def build():
        myelin.manual_seed(0)
        return nn.Sequential(nn.Linear(300, 512), nn.ReLU(), nn.Linear(512, 10))

    r = np.random.default_rng(0)
    X = r.standard_normal((256, 300)).astype(np.float32)
    Y = r.integers(0, 10, 256)

    def step(model, opt):
        opt.zero_grad()
        loss = F.cross_entropy(model(myelin.tensor(X)), myelin.tensor(Y))
        loss.backward()
        opt.step()
        return loss.item()

    myelin.set_num_threads(2)
    myelin._kernels.backoff_set(-1)  # parallel even on a busy machine (no contention backoff)
    model = build()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    before = myelin._kernels.parallel_region_count()
    for _ in range(3):
        step(model, opt)  # multithreaded training in the parent
    assert myelin._kernels.parallel_region_count() > before, "the parent never went parallel"
    with myelin.no_grad():
        parent_out = model(myelin.tensor(X)).numpy()

    def child_work(_=None):
        # a forward pass and a training step of the parent's model, in the child
        with myelin.no_grad():
            out = model(myelin.tensor(X)).numpy()
        loss = step(model, opt)
        return np.array_equal(out, parent_out), np.isfinite(loss), myelin.get_num_threads()

    mode = sys.argv[1]
    if mode == "os.fork":
        pid = os.fork()
        if pid == 0:
            same, finite, threads = child_work()
            os._exit(0 if same and finite and threads == 1 else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    else:
        # one task per worker: each starts from the parent's model
        with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
            results = pool.map_async(child_work, range(4)).get(timeout=100)
        assert all(s and f for s, f, _ in results), results
        step(model, opt)  # and the parent trains on, multithreaded
        assert myelin.get_num_threads() == 2
    """
)


@pytest.mark.parametrize("mode", ["os.fork", "pool"])
def test_fork_after_multithreaded_training(mode):
    """After training on 2 threads, a forked child (os.fork, or the workers of a multiprocessing
    "fork" pool) runs a forward pass equal to the parent's and a training step, within a
    timeout (GNU OpenMP would hang the child's first parallel region)."""
    r = subprocess.run(
        [sys.executable, "-c", _TRAIN_THEN_FORK, mode], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
