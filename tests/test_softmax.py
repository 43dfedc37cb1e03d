"""softmax, log_softmax and their backwards against the reference, on every dispatch path."""

import numpy as np
import pytest
from helpers import check_forward, check_grad, randn

from myelin import ops

pytestmark = pytest.mark.usefixtures("isa")

DTYPES = [np.float32, np.float64]
OPS = ["softmax", "log_softmax"]
# (shape, axis): one row, one column, odd widths around SIMD sizes, 100003 classes, empty, 1-D,
# and reductions over a leading or middle axis.
CASES = [
    ((1, 1), -1),
    ((1, 7), -1),
    ((7, 1), -1),
    ((3, 17), -1),
    ((5, 1000), -1),
    ((2, 100003), -1),
    ((0, 5), -1),
    ((5, 0), -1),
    ((17,), -1),
    ((4, 3, 5), -1),
    ((4, 3, 5), 0),
    ((4, 3, 5), 1),
    ((33, 31), 0),
    ((1000, 3), -1),
]


def logits(rng, shape, dtype):
    """Spread-out logits, with rows of extreme (+-1e4), equal, -inf-holding and NaN values."""
    x = randn(rng, shape, dtype, scale=5.0)
    if x.ndim == 2 and x.shape[0] >= 5 and x.shape[1] >= 2:
        x[1] = rng.choice([-1e4, 1e4], x.shape[1])
        x[2] = 3.0
        x[3, ::2] = -np.inf
        x[4, x.shape[1] // 2] = np.nan
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", CASES, ids=str)
@pytest.mark.parametrize("name", OPS)
def test_forward(rng, name, shape, axis, dtype):
    y = check_forward(name, logits(rng, shape, dtype), axis=axis)
    if name == "softmax" and y.size:
        with np.errstate(invalid="ignore"):
            sums = np.sum(y, axis=axis)
        ok = ~np.isnan(sums)
        np.testing.assert_allclose(
            sums[ok], 1, rtol=0, atol=8 * np.finfo(dtype).eps * np.sqrt(y.shape[axis])
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", CASES, ids=str)
@pytest.mark.parametrize("name", OPS)
def test_backward(rng, name, shape, axis, dtype):
    x = randn(rng, shape, dtype, scale=3.0)
    y = getattr(ops, name)(x, axis=axis)
    check_forward(name + "_backward", randn(rng, shape, dtype), y, axis=axis)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_float32_finite(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4 - 1, -1e4]], dtype)
    p = check_forward("softmax", x)
    logp = check_forward("log_softmax", x)
    assert np.isfinite(p).all() and np.isfinite(logp).all()
    np.testing.assert_allclose(p[1], 1 / 3, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous(rng, name, dtype):
    base = randn(rng, (40, 66), dtype, scale=3.0)
    for x in (
        base.T,
        base[::2],
        base[:, ::-1],
        base[3:30:3, 1::5],
        np.broadcast_to(base[:1], (7, 66)),
    ):
        y = check_forward(name, x)
        check_forward(name + "_backward", x[::-1][::-1], y)
        check_forward(name, x, axis=0)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize(
    "shape,axis", [((3, 7), -1), ((4, 3, 5), 1), ((6, 2), 0), ((9,), 0)], ids=str
)
def test_gradient(rng, name, shape, axis):
    check_grad(name, randn(rng, shape, scale=2.0), axis=axis)


@pytest.mark.parametrize("name", OPS)
def test_errors(rng, name):
    x = randn(rng, (3, 4))
    with pytest.raises(TypeError, match="x"):
        getattr(ops, name)(np.ones((3, 4), np.int32))
    with pytest.raises(ValueError):
        getattr(ops, name + "_backward")(x, randn(rng, (3, 5)))
    with pytest.raises((ValueError, np.exceptions.AxisError)):
        getattr(ops, name)(x, axis=2)
