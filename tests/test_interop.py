"""Interop: Tensor inside NumPy code, and trained weights handed to PyTorch and back."""

import numpy as np
import pytest

import myelin
from myelin import nn

# ---------------------------------------------------------------- NumPy functions on tensors


def _t(dtype=np.float32):
    a = np.arange(12, dtype=dtype).reshape(3, 4) / 7 - 0.5
    return myelin.tensor(a), a


@pytest.mark.parametrize(
    "fn",
    [
        np.mean,
        np.sum,
        np.std,
        np.max,
        np.argmax,
        np.linalg.norm,
        np.transpose,
        np.ravel,
        np.sort,
        np.cumsum,
        np.exp,
        np.square,
        np.abs,
        np.negative,
        np.isfinite,
        lambda x: np.mean(x, axis=0),
        lambda x: np.sum(x, axis=1, keepdims=True),
        lambda x: np.concatenate([x, x]),
        lambda x: np.stack([x, x], axis=-1),
        lambda x: np.where(x > 0, x, 0.0),
        lambda x: np.clip(x, -0.2, 0.2),
        lambda x: np.dot(x, np.transpose(x)),
        lambda x: np.einsum("ij,kj->ik", x, x),
        lambda x: np.maximum(x, 0.1),
        lambda x: np.add.reduce(x),
        lambda x: np.round(x, 2),
    ],
)
def test_numpy_functions_and_ufuncs_see_the_data(fn):
    t, a = _t()
    got, want = fn(t), fn(a)
    assert not isinstance(got, myelin.Tensor)  # NumPy in, NumPy out
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_array_equal(got, want)


def test_array_protocol_shares_memory_and_converts():
    t, a = _t()
    view = np.asarray(t)
    assert np.shares_memory(view, t._data) and view.dtype == np.float32
    assert not np.shares_memory(np.array(t), t._data)  # np.array copies, as for an ndarray
    f64 = np.asarray(t, dtype=np.float64)
    assert f64.dtype == np.float64 and np.array_equal(f64, a.astype(np.float64))
    with pytest.raises(ValueError, match="copy"):
        np.asarray(t, dtype=np.float64, copy=False)
    out = np.zeros((3, 4), np.float32)
    np.add(out, t, out=out)  # an ufunc writing into an ndarray
    np.testing.assert_array_equal(out, a)
    np.testing.assert_allclose(t, a)  # numpy.testing takes tensors


def test_arithmetic_with_arrays_stays_a_differentiable_tensor():
    x = myelin.tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    w = np.array([0.5, -1.0, 2.0], np.float32)
    y = w * x + np.ones(3, np.float32)  # ndarray on the left: Tensor.__array_ufunc__
    assert isinstance(y, myelin.Tensor) and y.dtype == myelin.float32
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (w * x.detach().numpy() + 1) * w)


def test_numpy_scalars_keep_dtypes_as_numbers_and_as_data():
    t = myelin.tensor(np.ones(3, np.float32))
    # a NumPy scalar operand is a number: it takes the tensor's dtype on either side
    assert (np.float64(2.0) * t).dtype == myelin.float32
    assert (t * np.float64(2.0)).dtype == myelin.float32
    # as data, it keeps its own dtype (torch.tensor(np.float64(1.5)) is float64 too)
    assert myelin.tensor(np.float64(1.5)).dtype == myelin.float64
    assert myelin.tensor(np.int32(3)).dtype == myelin.int32
    # arithmetic on 0-d float64 tensors (NumPy returns scalars there) stays float64
    a = myelin.tensor(np.array(1.0 + 2**-40))
    assert (a * 1.0).dtype == myelin.float64 and (a * 1.0).item() == 1.0 + 2**-40


# ---------------------------------------------------------------- PyTorch round trip


def _myelin_model(dtype):
    myelin.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 32, dtype=dtype),
        nn.ReLU(),
        nn.Linear(32, 16, dtype=dtype),
        nn.Tanh(),
        nn.Linear(16, 3, dtype=dtype),
    )


def _torch_model(torch, dtype):
    return torch.nn.Sequential(
        torch.nn.Linear(6, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 3),
    ).to(dtype)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y


# float32: two GEMMs differ in summation order only, a few ulps per layer; float64: to rounding
@pytest.mark.parametrize("dtype, rtol, atol", [("float32", 1e-5, 1e-6), ("float64", 1e-12, 1e-13)])
def test_weights_go_to_pytorch_and_back_with_the_same_outputs(dtype, rtol, atol):
    torch = pytest.importorskip("torch")
    np_dtype = np.dtype(dtype)
    x, y = _data()
    x = x.astype(np_dtype)
    model = _myelin_model(np_dtype)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]  # it did train

    # myelin -> PyTorch: the state dict's keys and layouts are PyTorch's
    tmodel = _torch_model(torch, getattr(torch, dtype))
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    with torch.no_grad():
        t_out = tmodel(torch.from_numpy(x)).numpy()
    m_out = model.predict(x)
    assert t_out.dtype == m_out.dtype == np_dtype
    np.testing.assert_allclose(m_out, t_out, rtol=rtol, atol=atol)

    # PyTorch trains on, then hands the weights back to a new myelin model
    opt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(
            tmodel(torch.from_numpy(x)), torch.from_numpy(y)
        ).backward()
        opt.step()
    back = _myelin_model(np_dtype)
    back.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    for k, v in tmodel.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v.numpy())
    with torch.no_grad():
        t_out = tmodel(torch.from_numpy(x)).numpy()
    with myelin.no_grad():
        m_out = back(myelin.from_numpy(x)).numpy()
    assert not np.allclose(m_out, model.predict(x))  # the new weights, not the old
    np.testing.assert_allclose(m_out, t_out, rtol=rtol, atol=atol)


def test_a_torch_state_dict_loads_as_it_is():
    torch = pytest.importorskip("torch")
    model = _myelin_model(np.float32)
    fresh = _torch_model(torch, torch.float32)
    model.load_state_dict(fresh.state_dict())  # torch tensors accepted as they are
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy())
