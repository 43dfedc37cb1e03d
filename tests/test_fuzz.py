"""Bad input never crashes and never corrupts: the hypothesis fuzz of tests/fuzz_cases.py, run in
subprocesses so that a crash (segfault, abort) fails a test instead of ending the run, and cheap
huge shapes whose sizes overflow 32-bit indices."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from myelin import _config, ops

HERE = Path(__file__).resolve().parent
HUGE = 2**31 + 3

# examples per group: 7,000 on the default path and 250 more per other ISA (about 60 s on one
# core); MYELIN_FUZZ_SCALE multiplies them
SCALE = float(os.environ.get("MYELIN_FUZZ_SCALE", "1"))
GROUPS = [
    ("ops", 3000, None),
    ("modules", 1500, None),
    ("tensor", 1000, None),
    ("optim", 1000, None),
]
# the kernels behind ops once more on each ISA path other than the default (the best one)
DEFAULT_ISA = _config.current_isa()
GROUPS += [("ops", 250, isa) for isa in _config.available_isas() if isa != DEFAULT_ISA]


def _run(group: str, examples: int, isa) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-W", "ignore", str(HERE / "fuzz_cases.py"), group, str(examples)]
    if isa:
        cmd.append(isa)
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=HERE)


@pytest.mark.slow
@pytest.mark.parametrize("group,examples,isa", GROUPS, ids=lambda v: str(v))
def test_fuzz(group, examples, isa):
    n = max(1, int(examples * SCALE))
    res = _run(group, n, isa)
    out = (res.stdout + res.stderr)[-6000:]
    assert res.returncode >= 0, f"the fuzz process crashed (signal {-res.returncode}):\n{out}"
    assert res.returncode == 0, f"fuzz {group} failed:\n{out}"
    assert f"{n} examples passed" in res.stdout


# ---------------------------------------------------------------- 64-bit sizes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_empty_shapes(isa, dtype):
    """Dimensions over 2**31 next to a 0: sizes are computed in 64 bits, nothing is touched."""
    wide, tall = np.empty((0, HUGE), dtype), np.empty((HUGE, 0), dtype)
    for f in (ops.relu, ops.sigmoid, ops.tanh, ops.leaky_relu, ops.softmax, ops.log_softmax):
        assert f(wide).shape == wide.shape and f(tall).shape == tall.shape
    assert ops.softmax(wide, axis=0).shape == wide.shape
    assert ops.relu_backward(wide, wide).shape == wide.shape
    assert ops.matmul(wide, tall).shape == (0, 0)
    r = ops.matmul(np.ones((2, 0), dtype), np.empty((0, 2), dtype))
    assert np.array_equal(r, np.zeros((2, 2)))
    assert ops.linear(wide, np.empty((0, HUGE), dtype)).shape == (0, 0)
    assert ops.bias_grad(tall).shape == (0,)
    loss, grad = ops.softmax_cross_entropy(wide, np.empty(0, np.int64), reduction="sum")
    assert loss == 0 and grad.shape == wide.shape
    loss, grad = ops.mse_loss(wide, wide, reduction="sum")
    assert loss == 0 and grad.shape == wide.shape
    assert ops.global_norm([wide, tall]) == 0.0


def test_huge_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"2147483651"):
        ops.matmul(np.empty((0, HUGE), np.float32), np.empty((3, 0), np.float32))
    with pytest.raises(ValueError, match=r"labels has shape \(1,\).*\(0, 2147483651\)"):
        ops.softmax_cross_entropy(np.empty((0, HUGE), np.float32), np.zeros(1, np.int64))


def test_offsets_past_2_to_the_31_elements(isa):
    """Operands whose rows lie more than 2**31 elements apart inside one allocation (8 GiB of
    address space, of which only the touched pages are ever backed): the products and the
    element-wise kernels reach them through 64-bit offsets, never a wrapped 32-bit one."""
    from numpy.lib.stride_tricks import as_strided

    try:
        big = np.empty(2**31 + 4096, np.float32)
    except MemoryError:
        pytest.fail("8 GiB of address space could not be reserved (overcommit disabled?)")
    step = 2**30  # rows 0, 2**30 and 2**31 elements into the allocation
    a = as_strided(big, shape=(3, 4), strides=(step * 4, 4))
    b = as_strided(big[8:], shape=(4, 3), strides=(4, step * 4))
    rng = np.random.default_rng(0)
    a[...] = rng.standard_normal((3, 4)).astype(np.float32)
    want_a = a.copy()
    got = ops.matmul(a, np.ones((4, 2), np.float32))
    np.testing.assert_allclose(got, want_a @ np.ones((4, 2), np.float32), rtol=1e-6)
    b[...] = rng.standard_normal((4, 3)).astype(np.float32)
    got = ops.matmul(np.ones((2, 4), np.float32), b)
    np.testing.assert_allclose(got, np.ones((2, 4), np.float32) @ b.copy(), rtol=1e-6)
    np.testing.assert_array_equal(ops.relu(a), np.maximum(a.copy(), 0))
    del a, b, big
