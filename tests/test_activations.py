"""relu, leaky_relu, sigmoid, tanh and their backwards against the reference, every path."""

import numpy as np
import pytest
from helpers import check_forward, check_grad, randn

from myelin import ops

pytestmark = pytest.mark.usefixtures("isa")

DTYPES = [np.float32, np.float64]
SHAPES = [
    (0,),
    (1,),
    (7,),
    (17,),
    (1000,),
    (100003,),
    (3, 5),
    (17, 33),
    (1, 1000),
    (0, 4),
    (2, 3, 31),
]
# (op, extra positional args): leaky_relu with its default, a larger and a zero slope.
ACTS = [
    ("relu", ()),
    ("leaky_relu", ()),
    ("leaky_relu", (0.3,)),
    ("leaky_relu", (0.0,)),
    ("sigmoid", ()),
    ("tanh", ()),
]
SPECIAL = [
    -np.inf,
    -1e30,
    -100.0,
    -20.0,
    -1.0,
    -1e-30,
    -0.0,
    0.0,
    1e-30,
    1e-3,
    1.0,
    20.0,
    100.0,
    1e30,
    np.inf,
    np.nan,
]


def _ids(acts):
    return [name + "".join(f"-{a}" for a in args) for name, args in acts]


def data(rng, shape, dtype):
    """Normal samples with a wide spread, and NaN/inf/0 sprinkled into vector body and tail."""
    x = randn(rng, shape, dtype, scale=4.0)
    flat = x.reshape(-1)
    specials = SPECIAL * (flat.size // (13 * len(SPECIAL)) + 1)
    for i, v in zip(range(0, flat.size, 13), specials, strict=False):
        flat[i] = v
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
def test_forward(rng, name, args, shape, dtype):
    x = data(rng, shape, dtype)
    check_forward(name, x, *args, out=True)
    check_forward(name, x, *args, out="inplace")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
def test_backward(rng, name, args, shape, dtype):
    y = getattr(ops, name)(data(rng, shape, dtype), *args)
    g = randn(rng, shape, dtype)
    check_forward(name + "_backward", g, y, *args, out=True)
    check_forward(name + "_backward", g, y, *args, out="inplace")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
def test_special_values(name, args, dtype):
    x = np.array(SPECIAL, dtype)
    y = check_forward(name, x, *args)
    check_forward(name + "_backward", np.ones_like(x), y, *args)
    for y_value in (0.5, -0.5):  # special upstream gradients on either branch
        check_forward(name + "_backward", x, np.full_like(x, y_value), *args)


@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(name, args, dtype):
    for n in (1, 7, 17, 64, 1000):  # NaN in the vector body and in the tail
        for pos in {0, n // 2, n - 1}:
            x = np.linspace(-3, 3, n).astype(dtype)
            x[pos] = np.nan
            y = getattr(ops, name)(x, *args)
            assert np.isnan(y[pos]), f"{name}(nan) = {y[pos]} at {pos} of {n}"
            assert not np.isnan(np.delete(y, pos)).any()
            dx = getattr(ops, name + "_backward")(np.ones_like(x), y, *args)
            assert np.isnan(dx[pos]), f"{name}_backward at y=nan gives {dx[pos]}"
            assert not np.isnan(np.delete(dx, pos)).any()


def test_relu_nan():
    assert np.isnan(ops.relu(np.array([np.nan]))[0])
    assert np.isnan(ops.relu_backward(np.array([1.0]), np.array([np.nan]))[0])
    assert np.isnan(ops.relu_backward(np.array([0.0]), np.array([np.nan]))[0])


def _views(rng, dtype):
    r = lambda *s: randn(rng, s, dtype, scale=3.0)
    return {
        "step": r(2001)[::2],
        "reversed": r(1000)[::-1],
        "transposed": r(33, 17).T,
        "2d-slice": r(40, 50)[3:37:3, ::-2],
        "zero-stride": np.broadcast_to(r(1, 33), (7, 33)),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(_views(np.random.default_rng(0), np.float64)))
@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
def test_non_contiguous(rng, name, args, case, dtype):
    x = _views(rng, dtype)[case]
    y = check_forward(name, x, *args, out=True)
    g = _views(rng, dtype)[case]
    check_forward(name + "_backward", g, y[::-1][::-1], *args, out=True)
    check_forward(name + "_backward", g, np.asfortranarray(y), *args)


@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
def test_non_contiguous_out(rng, name, args):
    x = randn(rng, (50,))
    base = np.full((100,), np.nan)
    res = getattr(ops, name)(x, *args, out=base[::2])
    assert np.shares_memory(res, base)
    assert np.array_equal(base[::2], getattr(ops, name)(x, *args))
    assert np.isnan(base[1::2]).all()


@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)], ids=str)
def test_gradient(rng, name, args, shape):
    x = randn(rng, shape)
    x[np.abs(x) < 1e-2] += 0.1  # keep relu's kink out of the finite differences
    check_grad(name, x, *args)


@pytest.mark.parametrize("name,args", ACTS, ids=_ids(ACTS))
def test_errors(rng, name, args):
    x = randn(rng, (5,))
    fwd, bwd = getattr(ops, name), getattr(ops, name + "_backward")
    with pytest.raises(TypeError, match="x"):
        fwd(np.arange(5), *args)
    with pytest.raises(TypeError, match="grad_y"):
        bwd(np.arange(5), x, *args)
    with pytest.raises(TypeError, match="y"):
        bwd(x, np.arange(5), *args)
    with pytest.raises(ValueError):
        bwd(x, randn(rng, (6,)), *args)
    with pytest.raises(ValueError, match="out"):
        fwd(x, *args, out=np.empty(6))
    with pytest.raises(TypeError, match="out"):
        fwd(x, *args, out=np.empty(5, np.float32))
    ro = np.empty(5)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fwd(x, *args, out=ro)


def test_negative_slope_rejected(rng):
    x = randn(rng, (5,))
    with pytest.raises(ValueError, match="negative_slope"):
        ops.leaky_relu(x, -0.1)
    with pytest.raises(ValueError, match="negative_slope"):
        ops.leaky_relu_backward(x, x, -0.1)
