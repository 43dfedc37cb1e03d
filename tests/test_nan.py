"""Numbers stay right: NaN and inf propagate through every activation kernel on every ISA path
(x86 max/min return their second operand on NaN, so a kernel written with them hides it), NaN
logits give a NaN loss, fit stops at the first non-finite loss naming epoch and batch, and
softmax cross-entropy stays finite and right for float32 logits up to 1e4."""

import math

import numpy as np
import pytest

import myelin
from myelin import keras, ops, reference
from myelin.nn import functional as F

pytestmark = pytest.mark.usefixtures("isa")

DTYPES = [np.float32, np.float64]
# lengths that cover a vector body, tails of every size and the multi-chunk path
LENGTHS = [1, 7, 16, 33, 130, 70_001]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 100.0, -100.0]


def _special(n, dtype, seed=0):
    """n values cycling the specials at shifted positions, so each sits in every vector lane."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(dtype)
    x[rng.integers(0, n, max(1, n // 3))] = np.nan
    k = min(n, len(SPECIAL))
    x[:k] = np.array(SPECIAL[:k], dtype)
    return x


FORWARD = {
    "relu": (ops.relu, reference.relu),
    "leaky_relu": (lambda x: ops.leaky_relu(x, 0.1), lambda x: reference.leaky_relu(x, 0.1)),
    "sigmoid": (ops.sigmoid, reference.sigmoid),
    "tanh": (ops.tanh, reference.tanh),
}


@pytest.mark.parametrize("name", list(FORWARD))
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_forward_keeps_nan(name, n, dtype):
    op, ref = FORWARD[name]
    x = _special(n, dtype, seed=n)
    y = op(x)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
    nan = np.isnan(x)
    assert np.array_equal(np.isnan(y), nan), f"{name}: NaN positions differ"
    inf = np.isinf(want)
    assert np.array_equal(y[inf], want[inf]), f"{name}: infinities differ"
    finite = ~nan & ~inf
    tol = 8 * np.finfo(dtype).eps * (1 + np.abs(want[finite]))
    assert np.all(np.abs(y[finite] - want[finite]) <= tol)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_backward_keeps_nan(act, n, dtype):
    y = _special(n, dtype, seed=n + 1)
    if act in ("sigmoid", "tanh"):
        y = np.where(np.isnan(y), y, np.clip(y, -1, 1)).astype(dtype)
    g = np.random.default_rng(n).standard_normal(n).astype(dtype)
    g[-1] = np.nan  # a NaN upstream gradient propagates too (where the local slope is not 0)
    kw = {"negative_slope": 0.1} if act == "leaky_relu" else {}
    got = getattr(ops, act + "_backward")(g, y, **kw)
    with np.errstate(all="ignore"):
        g64, y64 = g.astype(np.float64), y.astype(np.float64)
        want = getattr(reference, act + "_backward")(g64, y64, **kw)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{act}_backward: NaN positions differ"
    assert np.all(np.isnan(got[np.isnan(y)])), f"{act}_backward: NaN y lost"


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_activation_in_gemm_keeps_nan(act, dtype):
    """linear's fused epilogue (the GEMM's bias + activation) on NaN and inf pre-activations."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 19)).astype(dtype)
    w = rng.standard_normal((45, 19)).astype(dtype)
    x[5, 3] = np.nan
    x[9, :] = np.inf
    b = rng.standard_normal(45).astype(dtype)
    b[7] = np.nan
    y = ops.linear(x, w, b, act)
    with np.errstate(all="ignore"):
        z = x.astype(np.float64) @ w.T.astype(np.float64) + b
        want = reference._activate(z, act, 0.01)
    assert np.array_equal(np.isnan(y), np.isnan(want))
    assert np.all(np.isnan(y[5]))
    assert np.all(np.isnan(y[:, 7]))
    g = np.ones_like(y)
    gx, gw, gb = ops.linear_backward(g, x, w, y, act)
    assert np.isnan(gb[7]) and np.all(np.isnan(gw[7]))


def test_relu_nan_through_autograd():
    x = myelin.tensor(np.array([np.nan, -1.0, 2.0]), requires_grad=True)
    y = F.relu(x)
    y.sum().backward()
    assert np.isnan(y.data[0]) and np.isnan(x.grad.data[0])
    assert x.grad.data[1:].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cols", [1, 5, 16, 33, 1000])
def test_softmax_nan_stays_in_its_row(dtype, cols):
    rng = np.random.default_rng(cols)
    x = rng.standard_normal((4, cols)).astype(dtype)
    x[1, cols // 2] = np.nan
    x[2, 0] = np.nan
    for f in (ops.softmax, ops.log_softmax):
        y = f(x)
        assert np.all(np.isnan(y[1])) and np.all(np.isnan(y[2]))
        assert np.all(np.isfinite(y[[0, 3]]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cols", [1, 5, 16, 33, 1000])
def test_nan_logits_give_nan_loss(dtype, cols):
    rng = np.random.default_rng(cols)
    z = rng.standard_normal((5, cols)).astype(dtype)
    lab = rng.integers(0, cols, 5)
    z[3, cols - 1] = np.nan
    for reduction in ("mean", "sum"):
        loss, grad = ops.softmax_cross_entropy(z, lab, reduction=reduction)  # the fast path
        assert np.isnan(loss) and np.all(np.isnan(grad[3])) and np.all(np.isfinite(grad[[0, 4]]))
    per, grad = ops.softmax_cross_entropy(z, lab.astype(np.int32), reduction="none")
    assert np.isnan(per[3]) and np.all(np.isfinite(per[[0, 1, 2, 4]]))
    t = rng.random((5, cols)).astype(dtype)
    for f in (ops.binary_cross_entropy_with_logits, ops.mse_loss):
        loss, grad = f(z, t)
        assert np.isnan(loss) and np.isnan(grad[3, cols - 1])
    z = myelin.tensor(z, requires_grad=True)
    loss = F.cross_entropy(z, myelin.tensor(lab))
    loss.backward()
    assert np.isnan(loss.item()) and np.all(np.isnan(z.grad.numpy()[3]))


# ---------------------------------------------------------------- fit stops


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fit_stops_at_first_non_finite_loss(bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    x[2 * 16 + 5, 1] = bad  # in batch 3 of 4 (batch_size 16, no shuffling)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x[:16], y[:16], epochs=1, batch_size=16, shuffle=False, verbose=0)  # builds it
    with pytest.warns(RuntimeWarning, match=r"epoch 1/5, batch 3/4") as record:
        hist = model.fit(x, y, epochs=5, batch_size=16, shuffle=False, verbose=0)
    assert "loss is nan" in str(record[0].message)
    assert len(hist.history["loss"]) == 1  # no second epoch
    weights = [p.data for p in model.parameters()]
    assert all(np.all(np.isfinite(w)) for w in weights), "a non-finite step was applied"


# ---------------------------------------------------------------- softmax cross-entropy range


def _xent64(z, lab):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    loss = lse - z[np.arange(len(z)), lab]
    p = np.exp(z - lse[:, None])
    p[np.arange(len(z)), lab] -= 1
    return loss, p


@pytest.mark.parametrize("cols", [1, 2, 10, 33, 1000])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_xent_float32_large_logits(cols, scale):
    rng = np.random.default_rng(cols)
    z = (scale * rng.uniform(-1, 1, (64, cols))).astype(np.float32)
    z[0] = scale  # a row of equal large logits
    z[1] = -scale
    z[2, 0] = scale
    lab = rng.integers(0, cols, 64)
    per, grad = ops.softmax_cross_entropy(z, lab, reduction="none")
    want, want_grad = _xent64(z, lab)
    assert np.all(np.isfinite(per)) and np.all(np.isfinite(grad))
    eps = np.finfo(np.float32).eps
    # loss: log-sum-exp of float32 inputs, error ~ eps * (|z| + log C) per row
    tol = 8 * eps * (np.abs(z).max(axis=1) + math.log(cols) + 1)
    assert np.all(np.abs(per - want) <= tol)
    assert np.all(np.abs(grad - want_grad) <= 8 * eps * (1 + math.sqrt(cols)))
    # rows of equal logits: log C exactly, gradient 1/C - onehot
    np.testing.assert_allclose(per[:2], math.log(cols), atol=4 * eps * (1 + math.log(cols)))
    # every row of the gradient sums to 0 (the probabilities sum to 1)
    sums = grad.astype(np.float64).sum(axis=1)
    assert np.all(np.abs(sums) <= 4 * eps * math.sqrt(cols) + 1e-7)
    loss, g = ops.softmax_cross_entropy(z, lab)  # the fast path, mean
    np.testing.assert_allclose(loss, want.mean(), rtol=1e-5, atol=1e-5 * scale / 64 + 1e-6)
    np.testing.assert_allclose(g, grad / 64, rtol=1e-6, atol=1e-9)


def test_xent_one_class():
    z = np.array([[3.0], [-1e4], [1e4]], np.float32)
    loss, grad = ops.softmax_cross_entropy(z, np.zeros(3, np.int64), reduction="none")
    assert np.all(loss == 0) and np.all(grad == 0)
