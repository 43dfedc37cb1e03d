"""The Tensor API outside autograd: constructors, dtypes, NumPy interop, comparisons, seeding."""

import numpy as np
import pytest

import myelin


def test_constructors_and_default_dtypes():
    assert myelin.tensor([1.0, 2.0]).dtype == np.float32
    assert myelin.tensor([1, 2]).dtype == np.int64
    assert myelin.tensor([True, False]).dtype == np.bool_
    assert myelin.tensor(np.zeros(3)).dtype == np.float64
    assert myelin.tensor([1, 2], dtype=myelin.float32).dtype == np.float32
    assert myelin.zeros(2, 3).shape == (2, 3) and myelin.zeros((2, 3)).dtype == np.float32
    assert myelin.ones(4, dtype=myelin.float64).dtype == np.float64
    assert myelin.randn(3, 4).shape == (3, 4) and myelin.rand(5).dtype == np.float32
    r = myelin.randint(0, 10, (100,))
    assert r.dtype == np.int64 and r.data.min() >= 0 and r.data.max() < 10
    np.testing.assert_array_equal(myelin.arange(5).data, np.arange(5))
    assert myelin.arange(0, 1, 0.25).dtype == np.float32
    assert myelin.randperm(6).data.tolist() != [] and sorted(myelin.randperm(6).tolist()) == list(
        range(6)
    )


def test_tensor_copies_from_numpy_shares():
    a = np.arange(4.0)
    t = myelin.tensor(a)
    a[0] = 100
    assert t.data[0] == 0
    s = myelin.from_numpy(a)
    a[1] = 200
    assert s.data[1] == 200
    assert np.asarray(s) is a or np.shares_memory(np.asarray(s), a)
    assert s.numpy() is s.data


def test_numpy_interop_without_copy():
    t = myelin.randn(3, 4)
    arr = np.asarray(t)
    assert np.shares_memory(arr, t.data)
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert float(np.sum(t)) == pytest.approx(float(t.sum().item()), rel=1e-5)


def test_basic_accessors():
    t = myelin.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.ndim == 2 and t.dim() == 2 and len(t) == 2
    assert t.size() == (2, 3) and t.size(1) == 3 and t.numel() == 6
    assert t[1, 2].item() == 6.0 and isinstance(t[1, 2].item(), float)
    assert t.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert t.sum().item() == 21.0 and t.mean().item() == 3.5
    with pytest.raises(ValueError, match="one element"):
        t.item()
    with pytest.raises(TypeError):
        len(myelin.tensor(1.0))
    assert "tensor(" in repr(t)
    assert "requires_grad=True" in repr(myelin.tensor([1.0], requires_grad=True))


def test_comparisons_are_not_differentiable():
    w = myelin.tensor([1.0, -2.0, 3.0], requires_grad=True)
    for c in (w > 0, w < 0, w >= 1, w <= 1, w == 3, w != 3):
        assert c.dtype == np.bool_ and not c.requires_grad
    np.testing.assert_array_equal((w > 0).data, [True, False, True])
    assert (w > 0).sum().item() == 2
    assert ((w > 0).long()).dtype == np.int64
    assert w.equal([1.0, -2.0, 3.0])


def test_the_articles_accuracy_expression():
    myelin.manual_seed(0)
    X = myelin.randn(200, 10)
    y = (X[:, 0] + X[:, 1] > 0).long()
    assert y.dtype == np.int64 and y.shape == (200,)
    logits = myelin.randn(200, 2)
    correct = (logits.argmax(1) == y).sum().item()
    assert correct == int((logits.data.argmax(1) == y.data).sum())


def test_manual_seed_makes_draws_reproducible():
    myelin.manual_seed(7)
    a = myelin.randn(5).data.copy(), myelin.rand(3).data.copy()
    myelin.manual_seed(7)
    b = myelin.randn(5).data, myelin.rand(3).data
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    g = myelin.Generator().manual_seed(3)
    c = myelin.randn(4, generator=g).data
    np.testing.assert_array_equal(c, myelin.randn(4, generator=myelin.Generator(3)).data)


def test_scalar_operands_keep_float32():
    t = myelin.ones(3)
    assert (t * 2.5).dtype == np.float32 and (1 - t).dtype == np.float32
    assert (t / 3).dtype == np.float32 and (t**2).dtype == np.float32


def test_setitem_and_inplace_outside_the_graph():
    t = myelin.zeros(4)
    t[1:3] = 5.0
    t += 1
    np.testing.assert_array_equal(t.data, [1, 6, 6, 1])
    w = myelin.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w[0] = 1.0
    with myelin.no_grad():
        w[0] = 1.0
    assert w.data[0] == 1.0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="dtype"):
        myelin.tensor(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="float32 or float64"):
        myelin.zeros(3, dtype=np.int32)
    with pytest.raises(ValueError, match="non-negative"):
        myelin.zeros(-1)
    with pytest.raises(IndexError, match="out of range"):
        myelin.ones(2, 3).sum(dim=2)
    with pytest.raises(ValueError, match="cannot reshape"):
        myelin.ones(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match="matmul"):
        myelin.ones(2, 3) @ myelin.ones(2, 3)


def test_numpy_functions_and_mixed_operators():
    t = myelin.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert np.sum(t) == 10.0 and isinstance(np.mean(t, axis=0), np.ndarray)
    assert np.exp(t).dtype == np.float32 and isinstance(np.exp(t), np.ndarray)
    a = np.array([[2.0, 0.5], [1.0, 1.0]], dtype=np.float32)
    y = a * t + a @ t - (a > 1) * 1.0
    assert isinstance(y, myelin.Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(t.grad.data, a + a.sum(0)[:, None] * np.ones((2, 2)))
