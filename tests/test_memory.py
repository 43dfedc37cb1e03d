"""Memory: long training leaves resident memory flat, ops keep no reference to their inputs, and
the autograd graph is freed by backward (kept with retain_graph=True)."""

import gc
import os
import sys
import weakref

import numpy as np
import pytest

import myelin
import myelin.nn.functional as F
from myelin import nn, ops, optim


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_20000_training_steps_leave_rss_flat():
    myelin.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 3)
    )
    opt = optim.Adam(model.parameters(), lr=1e-3)
    r = np.random.default_rng(0)
    batches = [
        (
            myelin.tensor(r.standard_normal((32, 20)).astype(np.float32)),
            myelin.tensor(r.integers(0, 3, 32)),
        )
        for _ in range(16)
    ]

    def steps(n):
        for i in range(n):
            x, y = batches[i % len(batches)]
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    steps(2000)  # warm-up: lazily built workspaces, allocator pools
    gc.collect()
    start = _rss_bytes()
    steps(20_000)
    gc.collect()
    growth = _rss_bytes() - start
    assert growth < 5 * 2**20, f"resident memory grew by {growth / 2**20:.2f} MiB in 20,000 steps"
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())


def _op_calls(rng):
    f = np.float32
    a, b = rng.standard_normal((37, 50)).astype(f), rng.standard_normal((50, 23)).astype(f)
    w, bias = rng.standard_normal((23, 50)).astype(f), rng.standard_normal(23).astype(f)
    z = rng.standard_normal((37, 23)).astype(f)
    labels = rng.integers(0, 23, 37)
    p, g = rng.standard_normal(100).astype(f), rng.standard_normal(100).astype(f)
    m, v = np.zeros(100, f), np.zeros(100, f)
    return [
        ("matmul", (a, b), {}),
        ("linear", (a, w, bias), {"activation": "relu"}),
        ("linear_backward", (z, a, w, None), {}),
        ("relu", (z,), {}),
        ("tanh", (z,), {}),
        ("sigmoid_backward", (z, z), {}),
        ("softmax", (z,), {}),
        ("log_softmax_backward", (z, z), {}),
        ("softmax_cross_entropy", (z, labels), {}),
        ("binary_cross_entropy_with_logits", (z, (z > 0).astype(f)), {}),
        ("mse_loss", (z, z[::-1].copy()), {}),
        ("bias_grad", (z,), {}),
        ("global_norm", ([p, g],), {}),
        ("adam_step", (p, g, m, v), {"step": 1}),
    ]


def test_ops_keep_no_reference_to_their_inputs(rng):
    for name, template, kw in _op_calls(rng):
        # fresh copies, referenced by this frame alone
        args = tuple(
            x.copy()
            if isinstance(x, np.ndarray)
            else [y.copy() for y in x]
            if isinstance(x, list)
            else x
            for x in template
        )
        arrays = [x for x in args if isinstance(x, np.ndarray)]
        arrays += [x for arg in args if isinstance(arg, list) for x in arg]
        before = [sys.getrefcount(x) for x in arrays]
        result = getattr(ops, name)(*args, **kw)
        after = [sys.getrefcount(x) for x in arrays]
        assert after == before, f"ops.{name} keeps a reference to an input"
        # nor does the result: the inputs die with their last name
        refs = [weakref.ref(x) for x in arrays]
        del args, arrays, result
        assert all(ref() is None for ref in refs), f"ops.{name}: an input outlives its names"


def _graph(retain: bool):
    myelin.manual_seed(0)
    layer = nn.Linear(30, 20)
    x = myelin.randn(16, 30)
    h = F.relu(layer(x))
    hidden = weakref.ref(h)
    loss = (h * h).sum()
    del h
    assert hidden() is not None  # the graph holds the activation until backward
    loss.backward(retain_graph=retain)
    return hidden, loss, layer


def test_backward_frees_the_graph():
    hidden, loss, layer = _graph(retain=False)
    assert hidden() is None
    assert layer.weight.grad is not None and loss.item() > 0


def test_retain_graph_keeps_it_until_the_output_goes():
    hidden, loss, _ = _graph(retain=True)
    assert hidden() is not None
    del loss
    gc.collect()
    assert hidden() is None


def test_no_grad_records_no_graph():
    layer = nn.Linear(30, 20)
    with myelin.no_grad():
        h = F.relu(layer(myelin.randn(16, 30)))
        hidden = weakref.ref(h)
        out = h.sum()
    del h
    assert hidden() is None and out.item() >= 0
