"""The dtype rule, array-likes, empty dimensions, and property tests on random shapes."""

import re
import sys

import numpy as np
import pytest
from helpers import check_forward
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from myelin import ops

pytestmark = pytest.mark.usefixtures("isa")

F = np.ones((3, 3))  # a valid float64 operand

# (op, positional arguments, index of the argument to corrupt, its name in messages)
CALLS = [
    ("matmul", (F, F), 0, "a"),
    ("matmul", (F, F), 1, "b"),
    ("linear", (F, F, np.ones(3)), 0, "x"),
    ("linear", (F, F, np.ones(3)), 1, "weight"),
    ("linear", (F, F, np.ones(3)), 2, "bias"),
    ("relu", (F,), 0, "x"),
    ("sigmoid", (F,), 0, "x"),
    ("tanh_backward", (F, F), 0, "grad_y"),
    ("relu_backward", (F, F), 1, "y"),
    ("softmax", (F,), 0, "x"),
    ("log_softmax_backward", (F, F), 1, "y"),
    ("softmax_cross_entropy", (F, np.zeros(3, np.int64)), 0, "logits"),
    ("binary_cross_entropy_with_logits", (F, F), 1, "targets"),
    ("mse_loss", (F, F), 0, "input"),
    ("bias_grad", (F,), 0, "grad_y"),
]
BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.float16, np.complex128, object]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(
    "name,args,i,argname", CALLS, ids=lambda c: str(c) if isinstance(c, str) else ""
)
def test_bad_dtype_names_argument(name, args, i, argname, dtype):
    args = list(args)
    args[i] = args[i].astype(dtype)
    with pytest.raises(TypeError) as info:
        getattr(ops, name)(*args)
    msg = str(info.value)
    assert re.search(rf"(?<![A-Za-z_]){argname}(?![A-Za-z_])", msg), f"{argname!r} not in {msg!r}"
    assert np.dtype(dtype).name in msg, f"dtype {np.dtype(dtype).name} not in {msg!r}"


@pytest.mark.parametrize(
    "call,want",
    [
        (lambda: ops.matmul([[1, 2], [3, 4]], [[1], [1]]), np.array([[3.0], [7.0]])),
        (lambda: ops.matmul([1, 2], [[1, 0], [0, 1]]), np.array([1.0, 2.0])),
        (lambda: ops.relu([-1, 2, 0]), np.array([0.0, 2.0, 0.0])),
        (lambda: ops.relu(3), np.array(3.0)),
        (lambda: ops.leaky_relu([[-2, 1]], 0.5), np.array([[-1.0, 1.0]])),
        (lambda: ops.softmax([[1, 1]]), np.array([[0.5, 0.5]])),
        (lambda: ops.sigmoid([True, False]), np.array([0.5 + 0.5 * np.tanh(0.5), 0.5])),
        (lambda: ops.linear([[1, 2]], [[1, 1]], [1]), np.array([[4.0]])),
        (lambda: ops.mse_loss([1, 2], [0, 0])[0], np.float64(2.5)),
        (lambda: ops.bias_grad([[1, 2], [3, 4]]), np.array([4.0, 6.0])),
        (lambda: ops.matmul([[0.5, 1.5]], [[2.0], [2.0]]), np.array([[4.0]])),
    ],
)
def test_array_likes_computed_in_float64(call, want):
    got = call()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-15)


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: ops.matmul(a, b),
        lambda a, b: ops.matmul(b, a),
        lambda a, b: ops.linear(a, b),
        lambda a, b: ops.linear(a, a, b[0]),
        lambda a, b: ops.relu_backward(a, b),
        lambda a, b: ops.sigmoid_backward(b, a),
        lambda a, b: ops.softmax_backward(a, b),
        lambda a, b: ops.mse_loss(a, b)[1],
        lambda a, b: ops.binary_cross_entropy_with_logits(b, a)[1],
    ],
)
def test_float32_with_float64_promotes(rng, call):
    a = rng.standard_normal((4, 4)).astype(np.float32)
    b = rng.standard_normal((4, 4))
    assert call(a, b).dtype == np.float64


def test_loss_dtype_follows_promotion(rng):
    a32 = rng.standard_normal((4, 4)).astype(np.float32)
    loss, grad = ops.mse_loss(a32, a32 + 1)
    assert isinstance(loss, np.float32) and grad.dtype == np.float32
    loss, grad = ops.mse_loss(a32, np.zeros((4, 4)))
    assert isinstance(loss, np.float64) and grad.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_size(dtype):
    e = lambda *s: np.empty(s, dtype)
    r = ops.matmul(e(0, 5), e(5, 3))
    assert r.shape == (0, 3) and r.dtype == dtype
    r = ops.matmul(e(4, 0), e(0, 3))
    assert r.shape == (4, 3) and np.array_equal(r, np.zeros((4, 3)))
    r = ops.matmul(e(2, 0, 4, 5), e(5, 6))
    assert r.shape == (2, 0, 4, 6)
    assert ops.linear(e(0, 4), np.ones((3, 4), dtype)).shape == (0, 3)
    assert np.array_equal(ops.linear(e(2, 0), e(3, 0), np.ones(3, dtype)), np.ones((2, 3)))
    assert ops.relu(e(0, 7)).shape == (0, 7)
    assert ops.softmax(e(3, 0)).shape == (3, 0)
    loss, grad = ops.softmax_cross_entropy(e(0, 4), np.empty(0, np.int64), reduction="sum")
    assert loss == 0 and grad.shape == (0, 4)


# ---------------------------------------------------------------- property tests

SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def matmul_operands(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    m, k, n = (draw(st.integers(0, 40)) for _ in range(3))
    batch = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    ba = tuple(draw(st.sampled_from([1, s])) for s in batch)
    bb = tuple(draw(st.sampled_from([1, s])) for s in batch)
    ta, tb = draw(st.booleans()), draw(st.booleans())
    elems = st.floats(-10, 10, width=32)
    a = draw(hnp.arrays(dtype, ba + ((k, m) if ta else (m, k)), elements=elems))
    b = draw(hnp.arrays(dtype, bb + ((n, k) if tb else (k, n)), elements=elems))
    if draw(st.booleans()):  # a reversed, non-contiguous view
        a = a[..., ::-1, :]
        b = b[..., ::-1]
    return a, b, ta, tb


@SETTINGS
@given(matmul_operands())
def test_matmul_random_shapes(operands):
    a, b, ta, tb = operands
    check_forward("matmul", a, b, trans_a=ta, trans_b=tb)


ELEMENTWISE = ["relu", "leaky_relu", "sigmoid", "tanh"]


@st.composite
def elementwise_case(draw):
    name = draw(st.sampled_from(ELEMENTWISE))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=70))
    width = 32 if dtype == np.float32 else 64
    x = draw(hnp.arrays(dtype, shape, elements=st.floats(width=width, allow_nan=True)))
    g = draw(hnp.arrays(dtype, shape, elements=st.floats(-1e3, 1e3, width=width)))
    return name, x, g


@SETTINGS
@given(elementwise_case())
def test_elementwise_random(case):
    name, x, g = case
    with np.errstate(all="ignore"):
        y = check_forward(name, x)
    check_forward(name + "_backward", g, y)


@SETTINGS
@given(st.data())
def test_softmax_random(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=50))
    x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-1e4, 1e4, width=32)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_forward("softmax", x, axis=axis)
    check_forward("log_softmax", x, axis=axis)


# ---------------------------------------------------------------- layer shape errors


def _layer_error(call, *parts):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"


def test_layer_shape_errors_name_layer_and_shapes():
    import myelin
    from myelin import nn

    lin = nn.Linear(10, 64)
    for x in (np.zeros((5, 11), np.float32), myelin.tensor(np.zeros((2, 5, 11), np.float32))):
        _layer_error(lambda x=x: lin(x), "Linear(10, 64)", str(tuple(np.shape(x))), "(..., 10)")
    _layer_error(lambda: lin(np.zeros((), np.float32)), "Linear(10, 64)", "()")
    # Sequential runs its Linear layers as one fused chain: the errors are the same
    seq = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(32, 3))
    _layer_error(lambda: seq(np.zeros((5, 11), np.float32)), "Linear(10, 64)", "(5, 11)")
    _layer_error(lambda: seq(np.zeros((5, 10), np.float32)), "Linear(32, 3)", "(..., 64)", "32")
    with myelin.no_grad():
        _layer_error(lambda: seq(np.zeros((7, 10))), "Linear(32, 3)", "(..., 64)")


# ---------------------------------------------------------------- probabilities fed as logits


def test_warns_when_logits_look_like_probabilities():
    import warnings

    import myelin
    from myelin import nn
    from myelin.nn import functional as Fn

    rng = np.random.default_rng(0)
    x = myelin.tensor(rng.standard_normal((32, 10)).astype(np.float32), requires_grad=True)
    labels = myelin.tensor(rng.integers(0, 5, 32))
    targets = (rng.random((32, 1)) > 0.5).astype(np.float32)
    softmaxed = nn.Sequential(nn.Linear(10, 5), nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="output of a softmax"):
        nn.CrossEntropyLoss()(softmaxed(x), labels)
    probs = Fn.softmax(rng.standard_normal((32, 5)), dim=1).data  # no graph: by the values
    with pytest.warns(UserWarning, match="sum to 1"):
        Fn.cross_entropy(probs, labels)
    with pytest.warns(UserWarning, match="output of a sigmoid"):
        nn.BCEWithLogitsLoss()(nn.Sequential(nn.Linear(10, 1), nn.Sigmoid())(x), targets)
    with pytest.warns(UserWarning, match="output of a sigmoid"):  # Linear's own activation
        nn.BCEWithLogitsLoss()(nn.Linear(10, 1, activation="sigmoid")(x), targets)
    with pytest.warns(UserWarning, match="BCEWithLogitsLoss"):  # sigmoid output + BCELoss
        big = myelin.tensor(100 * x.data, requires_grad=True)
        nn.BCELoss()(nn.Sequential(nn.Linear(10, 1), nn.Sigmoid())(big), targets)
    # normal use stays silent: logits, probabilities into BCELoss that did not saturate, a
    # 2-class row that happens to sum to 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = nn.Sequential(nn.Linear(10, 5))(x)
        nn.CrossEntropyLoss()(logits, labels)
        Fn.cross_entropy(logits.data, labels)
        nn.BCEWithLogitsLoss()(nn.Linear(10, 1)(x), targets)
        nn.BCELoss()(nn.Sequential(nn.Linear(10, 1), nn.Sigmoid())(x), targets)
        Fn.cross_entropy(np.array([[0.3, 0.7]] * 4), np.zeros(4, np.int64))
        with myelin.no_grad():
            nn.CrossEntropyLoss()(nn.Linear(10, 5)(x), labels)


def test_warnings_point_at_the_users_line():
    """myelin's warnings name the line of the caller outside myelin, whether the modules in
    between run as Python or compiled."""
    import warnings

    import myelin
    from myelin import nn

    rng = np.random.default_rng(0)
    x = myelin.tensor(rng.standard_normal((8, 4)).astype(np.float32))
    labels = myelin.tensor(rng.integers(0, 3, 8))
    softmaxed = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nn.CrossEntropyLoss()(softmaxed(x), labels)
        line = sys._getframe().f_lineno - 1
    assert [w.filename for w in caught] == [__file__]
    assert caught[0].lineno == line
