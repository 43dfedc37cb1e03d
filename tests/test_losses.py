"""softmax_cross_entropy, binary_cross_entropy_with_logits and mse_loss against the reference."""

import re

import numpy as np
import pytest
from helpers import check_forward, check_grad, randn

from myelin import ops

pytestmark = pytest.mark.usefixtures("isa")

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
XENT_SHAPES = [
    (1, 1),
    (1, 7),
    (7, 1),
    (17, 5),
    (64, 10),
    (100, 1000),
    (5000, 3),
    (3, 100003),
    (0, 4),
]
# (ignore_index, fraction of rows set to it): none, PyTorch's default value, an in-range class.
IGNORE = [(None, 0.0), (-100, 0.3), (0, 0.0)]


def labels_for(rng, n, c, ignore_index=None, frac=0.0, dtype=np.int64):
    labels = rng.integers(0, c, n) if c else np.zeros(n, np.int64)
    if ignore_index is not None:
        labels[rng.random(n) < frac] = ignore_index
    return labels.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index,frac", IGNORE, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n,c", XENT_SHAPES, ids=str)
def test_xent(rng, n, c, reduction, ignore_index, frac, smoothing, dtype):
    z = randn(rng, (n, c), dtype, scale=4.0)
    labels = labels_for(rng, n, c, ignore_index, frac)
    _loss, grad = check_forward(
        "softmax_cross_entropy",
        z,
        labels,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=smoothing,
    )
    valid = labels != ignore_index
    rows = grad.sum(axis=1, dtype=np.float64)
    scale = 1.0 if reduction != "mean" else 1.0 / max(valid.sum(), 1)
    tol = 8 * np.finfo(dtype).eps * np.sqrt(max(c, 1)) * scale
    np.testing.assert_allclose(rows, 0, atol=tol)  # each gradient row sums to ~0
    assert np.all(grad[~valid] == 0)


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.int16, np.uint8])
def test_xent_label_dtypes(rng, label_dtype):
    z = randn(rng, (9, 6), np.float32)
    labels = labels_for(rng, 9, 6, dtype=label_dtype)
    check_forward("softmax_cross_entropy", z, labels)
    got = ops.softmax_cross_entropy(z, labels)[0]
    assert got == ops.softmax_cross_entropy(z, labels.astype(np.int64))[0]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_extreme_logits(rng, reduction, dtype):
    z = rng.choice([-1e4, 1e4, 0.0, -3.0], (64, 37)).astype(dtype)
    z[0] = 1e4  # a row of equal extreme logits
    labels = labels_for(rng, 64, 37)
    loss, grad = check_forward(
        "softmax_cross_entropy", z, labels, reduction=reduction, label_smoothing=0.05
    )
    assert np.isfinite(loss).all() and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_equal_logits(dtype):
    loss, _grad = check_forward(
        "softmax_cross_entropy", np.full((5, 10), 7.5, dtype), np.arange(5), reduction="none"
    )
    np.testing.assert_allclose(loss, np.log(10), rtol=8 * np.finfo(dtype).eps)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_xent_one_class(rng, smoothing):
    loss, grad = check_forward(
        "softmax_cross_entropy",
        randn(rng, (6, 1)),
        np.zeros(6, np.int64),
        reduction="none",
        label_smoothing=smoothing,
    )
    assert np.all(loss == 0) and np.all(grad == 0)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_xent_all_ignored_mean_is_nan(rng, smoothing):
    z = randn(rng, (4, 3))
    loss, grad = ops.softmax_cross_entropy(
        z, np.full(4, -100), ignore_index=-100, label_smoothing=smoothing
    )
    assert isinstance(loss, np.float64) and np.isnan(loss)
    assert np.array_equal(grad, np.zeros((4, 3)))
    loss, grad = ops.softmax_cross_entropy(z, np.full(4, -100), ignore_index=-100, reduction="sum")
    assert loss == 0 and np.array_equal(grad, np.zeros((4, 3)))


def test_xent_non_contiguous(rng):
    z = randn(rng, (40, 30), np.float32, scale=3.0)
    labels = labels_for(rng, 60, 10)
    for zz, ll in (
        (z.T[::-1], labels[::2][:30]),
        (z[::2, ::3], labels[::-1][:20]),
        (np.broadcast_to(z[:1], (20, 30)), labels[::3]),
    ):
        check_forward("softmax_cross_entropy", zz, ll, label_smoothing=0.1, reduction="sum")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "ignore_index,smoothing", [(None, 0.0), (None, 0.2), (-1, 0.0), (2, 0.15)], ids=str
)
def test_xent_gradient(rng, reduction, ignore_index, smoothing):
    labels = np.array([0, 2, 3, 1, -1, 2])
    if ignore_index != -1:
        labels[4] = 0
    check_grad(
        "softmax_cross_entropy",
        randn(rng, (6, 4), scale=2.0),
        labels,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=smoothing,
    )


@pytest.mark.parametrize(
    "labels,pos,value,kw",
    [
        ([0, 1, 2, 4, 0], 3, 4, {}),
        ([0, -1, 2], 1, -1, {}),
        ([0, 1, 2, 3, 99], 4, 99, {}),
        ([0, -100, 7, 1], 2, 7, {"ignore_index": -100}),
        ([0, -1, 1], 1, -1, {"ignore_index": -100}),
    ],
)
def test_xent_bad_labels(rng, labels, pos, value, kw):
    z = randn(rng, (len(labels), 4))
    with pytest.raises(ValueError, match="labels") as info:
        ops.softmax_cross_entropy(z, np.array(labels), **kw)
    msg = str(info.value)
    assert re.search(rf"(?<![\d-]){pos}(?!\d)", msg), f"position {pos} not in {msg!r}"
    assert re.search(rf"(?<![\d-]){re.escape(str(value))}(?!\d)", msg), f"{value} not in {msg!r}"


@pytest.mark.parametrize(
    "labels", [np.array([0.0, 1.0, 2.0]), np.array([0.5, 1, 2]), np.array([True, False, True])]
)
def test_xent_non_integer_labels(rng, labels):
    with pytest.raises(ValueError, match="labels"):
        ops.softmax_cross_entropy(randn(rng, (3, 4)), labels)


def test_xent_shape_errors(rng):
    with pytest.raises(ValueError, match="labels"):
        ops.softmax_cross_entropy(randn(rng, (3, 4)), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="logits"):
        ops.softmax_cross_entropy(randn(rng, (12,)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="reduction"):
        ops.softmax_cross_entropy(randn(rng, (3, 4)), np.zeros(3, np.int64), reduction="avg")
    with pytest.raises(TypeError, match="logits"):
        ops.softmax_cross_entropy(np.zeros((3, 4), np.int64), np.zeros(3, np.int64))


# ---------------------------------------------------------------- elementwise losses

SHAPES = [(0,), (1,), (7,), (17,), (1000,), (100003,), (3, 5), (17, 33), (2, 3, 7)]


def bce_data(rng, shape, dtype):
    x = randn(rng, shape, dtype, scale=5.0)
    flat = x.reshape(-1)
    flat[::11] = np.resize(np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4]), flat[::11].size)
    t = rng.random(shape).astype(dtype)
    t.reshape(-1)[::3] = np.round(t.reshape(-1)[::3])  # hard 0/1 targets next to soft ones
    return x, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bce(rng, shape, reduction, dtype):
    check_forward(
        "binary_cross_entropy_with_logits", *bce_data(rng, shape, dtype), reduction=reduction
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_mse(rng, shape, reduction, dtype):
    check_forward(
        "mse_loss",
        randn(rng, shape, dtype),
        randn(rng, shape, dtype, scale=2.0),
        reduction=reduction,
    )


@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "mse_loss"])
def test_elementwise_non_contiguous(rng, name):
    x, t = randn(rng, (40, 30), np.float32), rng.random((30, 40)).astype(np.float32)
    for xx, tt in ((x.T, t), (x[::2, ::-1], t.T[1::2, ::-1]), (x[::-1], t.T)):
        check_forward(name, xx, tt, reduction="sum")
        check_forward(name, xx, tt, reduction="none")


@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "mse_loss"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_mean_of_nothing(name, dtype):
    loss, grad = getattr(ops, name)(np.zeros((0, 3), dtype), np.zeros((0, 3), dtype))
    assert isinstance(loss, dtype) and np.isnan(loss)
    assert grad.shape == (0, 3) and grad.dtype == dtype


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "mse_loss"])
def test_elementwise_gradient(rng, name, reduction):
    x, t = randn(rng, (3, 5), scale=2.0), rng.random((3, 5))
    check_grad(name, x, t, reduction=reduction)


@pytest.mark.parametrize(
    "name,a,b",
    [("binary_cross_entropy_with_logits", "logits", "targets"), ("mse_loss", "input", "target")],
)
def test_elementwise_errors(rng, name, a, b):
    op = getattr(ops, name)
    with pytest.raises(ValueError, match=a):
        op(randn(rng, (3, 4)), randn(rng, (4, 3)))
    with pytest.raises(TypeError, match=a):
        op(np.ones((3,), np.int32), randn(rng, (3,)))
    with pytest.raises(TypeError, match=b):
        op(randn(rng, (3,)), np.ones((3,), np.float16))
    with pytest.raises(ValueError, match="reduction"):
        op(randn(rng, (3,)), randn(rng, (3,)), reduction="max")
