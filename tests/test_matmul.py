"""matmul, linear and linear_backward against the reference, on every dispatch path."""

import numpy as np
import pytest
from helpers import check_forward, check_grad, randn

from myelin import ops

pytestmark = pytest.mark.usefixtures("isa")

DTYPES = [np.float32, np.float64]
TRANS = [(False, False), (True, False), (False, True), (True, True)]
ACTIVATIONS = [None, "relu", "leaky_relu", "sigmoid", "tanh"]

# (M, K, N): empty, unit, primes, sizes around SIMD widths and register tiles, the padded
# 510x513x511, and sizes past 1000 in each dimension.
SHAPES = [
    (0, 5, 3),
    (4, 0, 3),
    (3, 5, 0),
    (1, 1, 1),
    (1, 7, 1),
    (2, 3, 5),
    (5, 1, 7),
    (7, 13, 11),
    (8, 8, 8),
    (15, 17, 33),
    (16, 16, 16),
    (17, 31, 29),
    (31, 64, 65),
    (97, 101, 103),
    (510, 513, 511),
    (1, 1500, 1),
    (1025, 7, 1031),
    (3, 1111, 1030),
    (1030, 9, 2),
]


def operands(rng, m, k, n, dtype, trans_a=False, trans_b=False):
    """a, b stored so that after the requested transposes they are (m, k) and (k, n)."""
    a = randn(rng, (k, m) if trans_a else (m, k), dtype)
    b = randn(rng, (n, k) if trans_b else (k, n), dtype)
    return a, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_grid(rng, m, k, n, trans_a, trans_b, dtype):
    a, b = operands(rng, m, k, n, dtype, trans_a, trans_b)
    check_forward("matmul", a, b, trans_a=trans_a, trans_b=trans_b, out=True)


@pytest.mark.usefixtures("isa")
def test_matmul_k_zero_gives_zeros():
    out = np.full((4, 3), np.nan)
    ops.matmul(np.empty((4, 0)), np.empty((0, 3)), out=out)
    assert np.array_equal(out, np.zeros((4, 3)))


# (a shape, b shape, trans_a, trans_b): 1-D operands are promoted and never transposed.
PROMOTIONS = [
    ((5,), (5, 3), False, False),
    ((4, 5), (5,), False, False),
    ((5,), (5,), False, False),
    ((5,), (3, 5), False, True),
    ((5, 4), (5,), True, False),
    ((5,), (5,), True, True),
    ((2, 3, 5), (5,), False, False),
    ((5,), (2, 5, 3), False, False),
    ((1,), (1, 1), False, False),
    ((0,), (0, 3), False, False),
    ((3, 0), (0,), False, False),
    ((1000,), (1000, 37), False, False),
]

BROADCASTS = [
    ((3, 1, 4, 5), (2, 5, 6), False, False),
    ((2, 3, 4), (4, 5), False, False),
    ((4, 5), (2, 5, 3), False, False),
    ((1, 4, 5), (3, 5, 6), False, False),
    ((0, 4, 5), (5, 6), False, False),
    ((2, 1, 3, 4), (1, 5, 4, 6), False, False),
    ((3, 4, 5), (3, 5, 6), False, False),
    ((3, 1, 5, 4), (2, 6, 5), True, True),
    ((2, 7, 3), (2, 9, 7), True, True),
    ((6, 17, 9), (9, 13), False, False),
    ((64, 8, 8), (64, 8, 8), False, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sa,sb,trans_a,trans_b", PROMOTIONS + BROADCASTS)
def test_matmul_promotion_and_broadcast(rng, sa, sb, trans_a, trans_b, dtype):
    a, b = randn(rng, sa, dtype), randn(rng, sb, dtype)
    check_forward("matmul", a, b, trans_a=trans_a, trans_b=trans_b, out=True)


def _views(rng, dtype):
    """Non-contiguous operands: steps, transposed views, negative and zero strides, batches."""
    r = lambda *s: randn(rng, s, dtype)
    return {
        "step": (r(14, 9)[::2], r(9, 15)[:, ::3]),
        "transposed-view": (r(9, 7).T, r(5, 9).T),
        "reversed-rows": (r(7, 9)[::-1], r(9, 5)[::-1]),
        "reversed-cols": (r(7, 9)[:, ::-1], r(9, 10)[::-1, ::-2]),
        "zero-stride": (np.broadcast_to(r(1, 9), (7, 9)), np.broadcast_to(r(9, 1), (9, 5))),
        "batch-views": (r(3, 8, 9)[:, ::2, :], r(3, 9, 5)[::-1]),
        "batch-transposed": (r(9, 4, 3).transpose(2, 1, 0), r(3, 5, 9).transpose(0, 2, 1)),
        "large-step": (r(600, 401)[::2, :400], r(400, 700)[:, ::2]),
        "large-reversed": (r(129, 300)[::-1, ::-1], r(300, 131)[::-1]),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("case", list(_views(np.random.default_rng(0), np.float64)))
def test_matmul_non_contiguous(rng, case, trans, dtype):
    a, b = _views(rng, dtype)[case]
    if trans:  # the same product through trans_a/trans_b of transposed views
        a, b = np.swapaxes(a, -1, -2), np.swapaxes(b, -1, -2)
    check_forward("matmul", a, b, trans_a=trans, trans_b=trans, out=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_non_contiguous_out(rng, dtype):
    a, b = randn(rng, (37, 19), dtype), randn(rng, (19, 23), dtype)
    want = ops.matmul(a, b)
    base = np.full((37, 46), np.nan, dtype)
    res = ops.matmul(a, b, out=base[:, ::2])
    assert np.shares_memory(res, base)
    assert np.array_equal(base[:, ::2], want)
    assert np.isnan(base[:, 1::2]).all()  # nothing written between the strided columns


def test_matmul_out_errors(rng):
    a, b = randn(rng, (4, 4)), randn(rng, (4, 4))
    with pytest.raises(ValueError, match="out"):
        ops.matmul(a, b, out=np.empty((4, 5)))
    with pytest.raises(ValueError, match="out"):
        ops.matmul(a, b, out=np.empty((16,)))
    with pytest.raises(TypeError, match="out"):
        ops.matmul(a, b, out=np.empty((4, 4), np.float32))
    with pytest.raises(TypeError, match="out"):
        ops.matmul(a.astype(np.float32), b.astype(np.float32), out=np.empty((4, 4)))
    ro = np.empty((4, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        ops.matmul(a, b, out=ro)
    for alias in (a, b, a.T, b[::-1]):
        with pytest.raises(ValueError, match="out"):
            ops.matmul(a, b, out=alias)
    big = randn(rng, (8, 4))
    with pytest.raises(ValueError, match="out"):  # overlaps a without being it
        ops.matmul(big[:4], b, out=big[2:6])


@pytest.mark.parametrize(
    "sa,sb,kw",
    [
        ((3, 4), (5, 6), {}),
        ((2, 3, 4), (3, 4, 5), {}),
        ((4,), (5,), {}),
        ((3, 4), (3, 4), {}),
        ((3, 4), (5, 4), {"trans_a": True}),
        ((4, 3), (3, 4), {"trans_b": True}),
        ((2, 3, 4), (4, 2, 5), {}),
    ],
)
def test_matmul_shape_mismatch(sa, sb, kw):
    with pytest.raises(ValueError, match=r"\(" + ", ".join(map(str, sa))):
        ops.matmul(np.ones(sa), np.ones(sb), **kw)


def test_matmul_scalar_operand():
    with pytest.raises(ValueError):
        ops.matmul(np.float64(2.0) * np.ones(()), np.ones((2, 2)))
    with pytest.raises(ValueError):
        ops.matmul(np.ones((2, 2)), 3.0)


# ---------------------------------------------------------------- linear

# (x shape, out_features): extra leading axes, 1-D x, empty batch, GEMM-sized.
LINEAR_SHAPES = [
    ((5, 7), 3),
    ((2, 3, 7), 4),
    ((7,), 5),
    ((0, 7), 3),
    ((1, 1), 1),
    ((33, 65), 17),
    ((2, 130, 257), 129),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("xshape,out_features", LINEAR_SHAPES)
def test_linear(rng, xshape, out_features, activation, bias, dtype):
    x = randn(rng, xshape, dtype)
    w = randn(rng, (out_features, xshape[-1]), dtype, scale=xshape[-1] ** -0.5)
    b = randn(rng, (out_features,), dtype) if bias else None
    check_forward("linear", x, w, b, activation=activation, negative_slope=0.2, out=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("xshape,out_features", LINEAR_SHAPES)
def test_linear_backward(rng, xshape, out_features, activation, dtype):
    x = randn(rng, xshape, dtype)
    w = randn(rng, (out_features, xshape[-1]), dtype, scale=xshape[-1] ** -0.5)
    b = randn(rng, (out_features,), dtype)
    y = ops.linear(x, w, b, activation=activation, negative_slope=0.2)
    g = randn(rng, y.shape, dtype)
    check_forward("linear_backward", g, x, w, y, activation=activation, negative_slope=0.2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_without_y(rng, dtype):
    x, w = randn(rng, (6, 5), dtype), randn(rng, (4, 5), dtype)
    check_forward("linear_backward", randn(rng, (6, 4), dtype), x, w, None)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("xshape", [(5, 4), (2, 3, 4)])
def test_linear_gradient(rng, xshape, activation, bias):
    x, w = randn(rng, xshape), randn(rng, (3, 4))
    b = randn(rng, (3,)) if bias else None
    check_grad("linear", x, w, b, activation=activation, negative_slope=0.2)


def test_linear_errors(rng):
    x, w, b = randn(rng, (5, 7)), randn(rng, (3, 7)), randn(rng, (3,))
    with pytest.raises(ValueError, match="weight"):
        ops.linear(x, randn(rng, (3, 6)))
    with pytest.raises(ValueError, match="bias"):
        ops.linear(x, w, randn(rng, (4,)))
    with pytest.raises(ValueError, match="activation"):
        ops.linear(x, w, b, activation="gelu")
    with pytest.raises(ValueError, match="out"):
        ops.linear(x, w, b, out=np.empty((5, 4)))
    with pytest.raises(ValueError, match="out"):  # out aliasing x is refused
        ops.linear(x[:, :3], w[:, :3], b, out=x[:, :3])
    with pytest.raises(TypeError, match="weight"):
        ops.linear(x, w.astype(np.int64))
