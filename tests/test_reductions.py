"""bias_grad and global_norm against the reference, on every dispatch path."""

import math

import numpy as np
import pytest
from helpers import check_forward, randn

from myelin import ops

pytestmark = pytest.mark.usefixtures("isa")

DTYPES = [np.float32, np.float64]
SHAPES = [
    (1, 1),
    (7, 1),
    (1, 7),
    (17, 33),
    (1000, 3),
    (3, 1000),
    (100003, 2),
    (2, 3, 5),
    (0, 5),
    (5, 0),
    (17,),
    (1,),
    (4, 0, 3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bias_grad(rng, shape, dtype):
    got = check_forward("bias_grad", randn(rng, shape, dtype))
    assert got.shape == shape[-1:]


def test_bias_grad_empty_rows_are_zero():
    assert np.array_equal(ops.bias_grad(np.empty((0, 5))), np.zeros(5))
    assert np.array_equal(ops.bias_grad(np.empty((4, 0, 3), np.float32)), np.zeros(3, np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_grad_non_contiguous(rng, dtype):
    base = randn(rng, (60, 41), dtype)
    for g in (
        base.T,
        base[::2],
        base[::-1, ::-3],
        base[5:50:7, 1:],
        np.broadcast_to(base[:1], (9, 41)),
        base.reshape(6, 10, 41).transpose(1, 0, 2),
    ):
        check_forward("bias_grad", g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "sizes", [[], [0], [1], [7], [17, 3], [1000, 1, 33], [100003], [5000003]], ids=str
)
def test_global_norm(rng, sizes, dtype):
    check_forward("global_norm", [randn(rng, (n,), dtype) for n in sizes])


def test_global_norm_mixed(rng):
    arrays = [
        randn(rng, (3, 5), np.float32),
        randn(rng, (7,)),
        randn(rng, (40, 30))[::3, ::-2],
        randn(rng, (2, 3, 4), np.float32).transpose(2, 0, 1),
        np.empty((0, 4)),
    ]
    check_forward("global_norm", arrays)
    assert ops.global_norm([]) == 0.0


def test_global_norm_no_float32_overflow():
    # Squares of 1e30 overflow float32 but the sum is kept in float64.
    got = ops.global_norm([np.full(10, 1e30, np.float32)])
    assert math.isclose(got, math.sqrt(10) * float(np.float32(1e30)), rel_tol=1e-12)
    tiny = ops.global_norm([np.full(4, 1e-30, np.float32)])
    assert math.isclose(tiny, 2 * float(np.float32(1e-30)), rel_tol=1e-12)


def test_global_norm_nan_and_inf():
    assert math.isnan(ops.global_norm([np.ones(3), np.array([1.0, np.nan])]))
    assert ops.global_norm([np.ones(3, np.float32), np.array([np.inf], np.float32)]) == math.inf


def test_errors():
    with pytest.raises(TypeError, match="grad_y"):
        ops.bias_grad(np.ones((3, 4), np.int64))
    with pytest.raises(TypeError):
        ops.global_norm([np.ones(3), np.ones(3, np.complex128)])
