"""myelin.distributed: data-parallel training over MPI.

The MPI tests start real jobs, ``mpiexec -n 2 python tests/mpi_scripts/<script>``, with a
timeout (a hang fails the test), and hold them against one process computed here without MPI.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import myelin
from myelin import _autograd, nn, optim
from myelin.data import DataLoader, DistributedSampler, TensorDataset

SCRIPTS = Path(__file__).parent / "mpi_scripts"
TIMEOUT = 120


def _mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: install the test extra (pip install '.[test]')")
    return found


def _run(script: str, *args, ranks: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, str(SCRIPTS / script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


sys.path.insert(0, str(SCRIPTS))
import ddp_steps  # noqa: E402
import fit_sharded  # noqa: E402

sys.path.pop(0)


# ---------------------------------------------------------------- equivalence under mpiexec


def _one_process_steps(name: str, global_batch: int, steps: int) -> list:
    """The reference: one process, the whole global batch per step, rank 0's initialisation."""
    x, y = ddp_steps.make_data(global_batch, steps)
    myelin.manual_seed(100)
    net = ddp_steps.make_model()
    opt = ddp_steps.make_optimizer(name, net.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for t in range(steps):
        rows = slice(t * global_batch, (t + 1) * global_batch)
        opt.zero_grad()
        loss_fn(net(myelin.tensor(x[rows])), myelin.tensor(y[rows])).backward()
        opt.step()
    return [p.data.copy() for p in net.parameters()]


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_two_ranks_match_one_process_on_the_global_batch(tmp_path, name):
    global_batch, steps = 64, 6
    out = tmp_path / "out.npz"
    _ok(_run("ddp_steps.py", name, global_batch, steps, out))
    got = np.load(out)
    ref = _one_process_steps(name, global_batch, steps)
    for i, want in enumerate(ref):
        w0, w1 = got[f"w_0_{i}"], got[f"w_1_{i}"]
        # the ranks apply the same averaged gradient: their weights are bitwise identical
        np.testing.assert_array_equal(w0, w1)
        # one process sums the batch in another order (one GEMM over 2B rows instead of two
        # over B, then a sum): equal to float32 rounding, not bitwise
        np.testing.assert_allclose(w0, want, rtol=1e-5, atol=1e-6)
    assert int(got["steps_0"]) == int(got["steps_1"]) == steps  # one averaging per step
    m0, m1 = got["masks_0"], got["masks_1"]  # dropout after dist.manual_seed(7), twice
    np.testing.assert_array_equal(m0[0], m0[1])
    np.testing.assert_array_equal(m1[0], m1[1])
    assert not np.array_equal(m0[0], m1[0])


def test_averaged_gradient_is_bitwise_the_mean_of_the_local_ones(tmp_path):
    out = tmp_path / "out.npz"
    _ok(_run("ddp_steps.py", "sgd", 32, 1, out))
    got = np.load(out)
    for i in range(4):
        g0, g1 = got[f"local_0_{i}"], got[f"local_1_{i}"]
        assert not np.array_equal(g0, g1)  # the ranks saw different data
        want = (g0 + g1) / np.float32(2)  # float32: a sum of two, halved, is one rounding
        np.testing.assert_array_equal(got[f"avg_0_{i}"], want)
        np.testing.assert_array_equal(got[f"avg_1_{i}"], want)


@pytest.mark.parametrize("mode", ["wrap", "plain"])
def test_fit_on_two_ranks_matches_one_process_and_prints_once(tmp_path, mode):
    out = tmp_path / "out.npz"
    _ok(_run("fit_sharded.py", 16, 3, out, mode))
    got = np.load(out)
    x, y = fit_sharded.make_data()
    net = fit_sharded.make_model()
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # shuffle=False shards rank r the samples r, r + 2, ...: step j of the two ranks together
    # is step j of one process with batch 32
    hist = net.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0).history
    for i, p in enumerate(net.parameters()):
        np.testing.assert_array_equal(got[f"w_0_{i}"], got[f"w_1_{i}"])
        np.testing.assert_allclose(got[f"w_0_{i}"], p.data, rtol=1e-5, atol=1e-6)
    h0 = json.loads(str(got["history_0"]))
    h1 = json.loads(str(got["history_1"]))
    assert h0 == h1  # the logs are averaged over the ranks, the same everywhere
    np.testing.assert_allclose(h0["loss"], hist["loss"], rtol=1e-5)
    np.testing.assert_allclose(h0["accuracy"], hist["accuracy"], rtol=1e-12)
    assert str(got["printed_0"]).count("Epoch ") == 3
    assert str(got["printed_1"]) == ""


def test_the_distributed_digits_example_runs_and_learns():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    example = Path(__file__).parent.parent / "examples" / "distributed_digits.py"
    cmd = [_mpiexec(), "-n", "2", sys.executable, str(example), "--epochs", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    _ok(proc)
    assert "over 2 rank(s)" in proc.stdout
    assert proc.stdout.count("Epoch 5/5") == 1  # rank 0 alone prints
    accuracy = float(proc.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.85  # ten classes: chance is 0.1


# ---------------------------------------------------------------- failures under mpiexec


def test_a_rank_that_raises_ends_the_job_with_its_error():
    proc = _run("rank_raises.py")  # a hang would raise TimeoutExpired
    assert proc.returncode != 0
    assert "ValueError: rank 1 failed on purpose" in proc.stderr
    assert "rank 1 of 2 raised ValueError; aborting the MPI job" in proc.stderr
    assert "never stopped" not in proc.stdout


def test_different_architectures_are_refused_at_wrap_time():
    proc = _run("arch_mismatch.py")
    assert proc.returncode != 0
    assert "the model differs between ranks" in proc.stderr
    assert "'0.weight' of shape (16, 8) float32 on rank 0" in proc.stderr
    assert "(17, 8) float32 on rank 1" in proc.stderr
    assert "wrapped without noticing" not in proc.stdout


# ---------------------------------------------------------------- without MPI


def test_importing_myelin_does_not_import_mpi():
    code = "import sys, myelin, myelin.distributed; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rank_before_init_is_a_clear_error():
    import myelin.distributed as dist

    if dist.is_initialized():
        pytest.skip("another test initialised MPI in this process")
    with pytest.raises(RuntimeError, match=r"call myelin.distributed.init\(\) first"):
        dist.rank()
    with pytest.raises(RuntimeError, match=r"init\(\) first"):
        dist.DistributedDataParallel(nn.Linear(2, 2))


def test_fit_distributed_without_init_is_a_clear_error():
    import myelin.distributed as dist

    if dist.is_initialized():
        pytest.skip("another test initialised MPI in this process")
    net = nn.Linear(3, 2)
    net.compile(optimizer="sgd", loss="mse")
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(RuntimeError, match=r"init\(\) first"):
        net.fit(x, np.zeros((4, 2), np.float32), distributed=True, verbose=0)
    with pytest.raises(TypeError, match="distributed must be True, False or None"):
        net.fit(x, np.zeros((4, 2), np.float32), distributed="yes", verbose=0)


def _shards(n, replicas, epoch, **kw):
    out = []
    for r in range(replicas):
        s = DistributedSampler(range(n), num_replicas=replicas, rank=r, **kw)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


@pytest.mark.parametrize("n, replicas", [(100, 2), (101, 2), (10, 3), (7, 8)])
def test_distributed_sampler_shards_are_disjoint_and_cover(n, replicas):
    shards = _shards(n, replicas, 0, seed=4)
    per = -(-n // replicas)
    assert all(len(s) == per for s in shards)  # every rank runs the same number of steps
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(n))
    assert len(flat) - len(set(flat)) == per * replicas - n  # only the padding repeats
    if per * replicas == n:
        assert sorted(flat) == list(range(n))


def test_distributed_sampler_reshuffles_per_epoch_from_the_shared_seed():
    e0, e1 = _shards(50, 2, 0, seed=7), _shards(50, 2, 1, seed=7)
    assert e0 != e1
    assert _shards(50, 2, 1, seed=7) == e1  # the same on every rank, from run to run
    assert _shards(50, 2, 1, seed=8) != e1
    unshuffled = _shards(10, 2, 3, shuffle=False)
    assert unshuffled == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]


def test_distributed_sampler_drop_last_and_loader():
    shards = _shards(11, 3, 0, seed=0, drop_last=True)
    assert [len(s) for s in shards] == [3, 3, 3]
    assert len({i for s in shards for i in s}) == 9
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    ds = TensorDataset(myelin.tensor(x), myelin.tensor(np.arange(10)))
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, seed=2)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(sampler) == 5 and len(loader) == 3
    labels = np.concatenate([yb.numpy() for _, yb in loader])
    np.testing.assert_array_equal(labels, list(sampler))
    np.testing.assert_array_equal(
        np.concatenate([xb.numpy() for xb, _ in loader]), x[list(sampler)]
    )


def test_distributed_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 1\].*got 2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be >= 1, got 0"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        DistributedSampler(range(4), num_replicas=1, rank=0, seed=1.5)
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        DistributedSampler(range(4), num_replicas=1, rank=0, shuffle="no")


def test_post_backward_hook_runs_after_the_gradients_are_filled():
    w = myelin.tensor(np.ones(3, np.float32), requires_grad=True)
    seen = []
    handle = _autograd.register_post_backward_hook(lambda: seen.append(np.array(w.grad)))
    try:
        (w * 2).sum().backward()
        w.sum().backward()  # accumulates
    finally:
        handle.remove()
    (w * 3).sum().backward()
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[0], [2, 2, 2])
    np.testing.assert_array_equal(seen[1], [3, 3, 3])
    with pytest.raises(TypeError, match="fn must be callable"):
        _autograd.register_post_backward_hook(3)


def test_optimizer_state_dict_roundtrip_used_by_the_broadcast():
    # broadcast_optimizer_state sends state_dict() and loads it on the other ranks
    net = nn.Linear(3, 2)
    opt = optim.Adam(net.parameters(), lr=0.1)
    net(myelin.tensor(np.ones((2, 3), np.float32))).sum().backward()
    opt.step()
    other = optim.Adam(nn.Linear(3, 2).parameters(), lr=0.5)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.1
    for a, b in zip(opt.state.values(), other.state.values(), strict=True):
        np.testing.assert_array_equal(a["exp_avg"], b["exp_avg"])
