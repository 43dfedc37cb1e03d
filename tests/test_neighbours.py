"""Other OpenMP users in the same process: myelin imported with NumPy, PyTorch and scikit-learn
(each may bring its own OpenMP runtime) in every order trains, does not hang, prints no
"OMP: Error #15", and threadpoolctl lists and limits myelin's runtime."""

import itertools
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("torch")  # the project's "bench" extra, installed in CI
pytest.importorskip("sklearn")
pytest.importorskip("threadpoolctl")

_LIBS = ("myelin", "numpy", "torch", "sklearn")

_SCRIPT = textwrap.dedent(
    """
    import importlib, sys
    for name in sys.argv[1:]:
        importlib.import_module(name)
    import numpy as np
    import threadpoolctl
    import torch
    from sklearn.cluster import KMeans
    import myelin
    import myelin.nn.functional as F
    from myelin import nn, optim

    def train(steps):
        myelin.manual_seed(0)
        model = nn.Sequential(nn.Linear(300, 512), nn.ReLU(), nn.Linear(512, 10))
        opt = optim.Adam(model.parameters(), lr=1e-3)
        r = np.random.default_rng(0)
        x = myelin.tensor(r.standard_normal((256, 300)).astype(np.float32))
        y = myelin.tensor(r.integers(0, 10, 256))
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        return [p.detach().numpy().copy() for p in model.parameters()]

    myelin.set_num_threads(2)
    torch.set_num_threads(2)
    myelin._kernels.backoff_set(-1)  # parallel even on a busy machine (no contention backoff)
    regions = myelin._kernels.parallel_region_count()
    first = train(1)
    assert myelin._kernels.parallel_region_count() > regions, "myelin never went parallel"
    # the neighbours run their own parallel regions in between
    a = torch.randn(512, 512)
    assert torch.isfinite(a @ a).all()
    X = np.random.default_rng(1).standard_normal((2000, 8))
    KMeans(4, n_init=1, random_state=0).fit(X)
    again = train(1)
    assert all(p.tobytes() == q.tobytes() for p, q in zip(first, again)), "results changed"

    info = threadpoolctl.threadpool_info()
    assert any(i["user_api"] == "openmp" for i in info), info
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert myelin.get_num_threads() == 1, myelin.get_num_threads()
        limited = train(1)
    assert myelin.get_num_threads() == 2
    assert all(p.tobytes() == q.tobytes() for p, q in zip(first, limited))
    print("ok")
    """
)


def _run(order):
    r = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *order], capture_output=True, text=True, timeout=150
    )
    return order, r


@pytest.mark.slow
def test_every_import_order_trains():
    orders = list(itertools.permutations(_LIBS))
    with ThreadPoolExecutor(max_workers=3) as pool:  # each a subprocess: a hang is a timeout
        results = list(pool.map(_run, orders))
    for order, r in results:
        assert r.returncode == 0 and r.stdout.strip() == "ok", (order, r.stderr[-2000:])
        assert "OMP: Error" not in r.stderr, (order, r.stderr)
        assert "OMP: Warning" not in r.stderr, (order, r.stderr)
