"""Autograd of every Tensor op and nn.functional function against central finite differences
in float64, and the engine's behaviour (accumulation, shared inputs, no_grad, detach)."""

import numpy as np
import pytest
from helpers import check_autograd

import myelin
import myelin.nn.functional as F


def r(*shape, seed=0, positive=False, away_from_zero=False):
    rng = np.random.default_rng(seed + 31 * len(shape) + sum(shape))
    x = rng.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    if away_from_zero:
        x = np.sign(x) * (np.abs(x) + 0.1)
    return x


BROADCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((4,), ())]


# ---------------------------------------------------------------- arithmetic


@pytest.mark.parametrize("sa,sb", BROADCAST)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops(op, sa, sb):
    fn = {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
    }[op]
    a, b = r(*sa, seed=1), r(*sb, seed=2, away_from_zero=True)
    out = check_autograd(fn, a, b)
    np.testing.assert_allclose(out.data, fn(a, b), rtol=1e-15)


@pytest.mark.parametrize("shape", [(3, 4), (5,)])
def test_pow(shape):
    check_autograd(lambda a: a**3, r(*shape))
    check_autograd(lambda a: a**0.5, r(*shape, positive=True))
    check_autograd(lambda a, b: a**b, r(*shape, positive=True), r(*shape, seed=3))
    check_autograd(lambda b: 2.0**b, r(*shape))


def test_reverse_and_unary_operators():
    a = r(3, 4, away_from_zero=True)
    check_autograd(lambda t: 1.5 - t, a)
    check_autograd(lambda t: 2.0 / t, a)
    check_autograd(lambda t: 3 * t + 1, a)
    check_autograd(lambda t: -t, a)


@pytest.mark.parametrize(
    "sa,sb",
    [
        ((3, 4), (4, 5)),
        ((4,), (4, 5)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 3, 4), (2, 4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((3, 4), (2, 4, 5)),
    ],
)
def test_matmul(sa, sb):
    a, b = r(*sa, seed=4), r(*sb, seed=5)
    out = check_autograd(lambda x, y: x @ y, a, b)
    np.testing.assert_allclose(out.data, a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_with_arrays_on_either_side():
    a, b = r(3, 4), r(4, 2)
    check_autograd(lambda x: x @ b, a)
    check_autograd(lambda y: a @ y, b)


# ---------------------------------------------------------------- elementwise and reductions


def test_elementwise_functions():
    x = r(3, 5)
    check_autograd(lambda t: t.exp(), x)
    check_autograd(lambda t: t.log(), r(3, 5, positive=True))
    check_autograd(lambda t: t.sqrt(), r(3, 5, positive=True))
    check_autograd(lambda t: t.abs(), r(3, 5, away_from_zero=True))
    check_autograd(lambda t: t.clamp(-0.5, 0.5), np.array([-1.3, -0.2, 0.1, 0.7, 2.0]))
    check_autograd(lambda t: t.relu(), r(3, 5, away_from_zero=True))
    check_autograd(lambda t: t.sigmoid(), x)
    check_autograd(lambda t: t.tanh(), x)


@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean(dim, keepdim):
    x = r(2, 3, 4)
    out = check_autograd(lambda t: t.sum(dim, keepdim), x)
    np.testing.assert_allclose(out.data, x.sum(axis=dim, keepdims=keepdim), rtol=1e-14)
    out = check_autograd(lambda t: t.mean(dim, keepdim), x)
    np.testing.assert_allclose(out.data, x.mean(axis=dim, keepdims=keepdim), rtol=1e-14)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_along_dim(dim, keepdim):
    x = r(4, 5)
    values, indices = myelin.tensor(x).max(dim, keepdim)
    np.testing.assert_array_equal(values.data, x.max(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.data, x.argmax(axis=dim, keepdims=keepdim))
    assert indices.dtype == np.int64
    check_autograd(lambda t: t.max(dim, keepdim).values, x)
    check_autograd(lambda t: t.min(dim, keepdim)[0], x)


def test_max_of_all_and_argmax():
    x = r(4, 5)
    check_autograd(lambda t: t.max(), x)
    t = myelin.tensor(x)
    assert t.max().item() == x.max() and t.min().item() == x.min()
    assert t.argmax().item() == x.argmax()
    np.testing.assert_array_equal(t.argmax(1).data, x.argmax(1))
    np.testing.assert_array_equal(t.argmax(dim=0, keepdim=True).data, x.argmax(0)[None])


# ---------------------------------------------------------------- shapes and indexing


def test_shape_ops():
    x = r(2, 3, 4)
    check_autograd(lambda t: t.reshape(6, 4), x)
    check_autograd(lambda t: t.reshape((4, -1)), x)
    check_autograd(lambda t: t.T, x)
    check_autograd(lambda t: t.permute(1, 2, 0), x)
    check_autograd(lambda t: t.transpose(0, 2), x)
    check_autograd(lambda t: t.flatten(1), x)
    check_autograd(lambda t: t.unsqueeze(1).squeeze(1), x)
    assert myelin.tensor(x).T.shape == (4, 3, 2)
    assert myelin.tensor(x).view(-1).shape == (24,)


@pytest.mark.parametrize(
    "index",
    [
        1,
        (slice(None), 0),
        (slice(1, None), slice(None, None, 2)),
        (Ellipsis, -1),
        np.array([0, 2, 2, 1]),
        (np.array([0, 1, 1]), np.array([2, 0, 2])),
        np.array([True, False, True, True]),
    ],
)
def test_getitem(index):
    x = r(4, 3)
    out = check_autograd(lambda t: t[index], x)
    np.testing.assert_array_equal(out.data, x[index])


def test_getitem_with_tensor_index_and_cat_stack_where():
    x = r(5, 3)
    idx = myelin.tensor([4, 0, 0])
    check_autograd(lambda t: t[idx], x)
    a, b = r(2, 3, seed=1), r(4, 3, seed=2)
    check_autograd(lambda p, q: myelin.cat([p, q], 0), a, b)
    check_autograd(lambda p, q: myelin.stack([p, q[:2]], 1), a, b)
    cond = a > 0
    check_autograd(lambda p, q: myelin.where(cond, p, q[:2]), a, b)


def test_dtype_conversion_is_differentiable():
    t = myelin.tensor([1.0, 2.0], requires_grad=True)
    y = t.double() * 3
    assert y.dtype == np.float64
    y.sum().backward()
    assert t.grad.dtype == np.float32
    np.testing.assert_array_equal(t.grad.data, [3.0, 3.0])
    assert t.long().dtype == np.int64 and not t.long().requires_grad


# ---------------------------------------------------------------- nn.functional


@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("xshape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(activation, xshape, bias):
    x, w, b = r(*xshape, seed=1, away_from_zero=True), r(3, 4, seed=2), r(3, seed=3)
    args = (x, w, b) if bias else (x, w)
    out = check_autograd(lambda *t: F.linear(*t, activation=activation, negative_slope=0.1), *args)
    z = x @ w.T + (b if bias else 0)
    want = {
        None: z,
        "relu": np.maximum(z, 0),
        "leaky_relu": np.where(z > 0, z, 0.1 * z),
        "sigmoid": 1 / (1 + np.exp(-z)),
        "tanh": np.tanh(z),
    }[activation]
    np.testing.assert_allclose(out.data, want, rtol=1e-12, atol=1e-12)


def test_linear_input_without_grad_gets_none():
    x = myelin.tensor(r(5, 4))
    w = myelin.tensor(r(3, 4), requires_grad=True)
    F.linear(x, w).sum().backward()
    assert x.grad is None and w.grad is not None


def test_activations():
    x = r(4, 6, away_from_zero=True)
    check_autograd(F.relu, x)
    check_autograd(lambda t: F.leaky_relu(t, 0.2), x)
    check_autograd(F.sigmoid, x)
    check_autograd(F.tanh, x)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_log_softmax(dim):
    x = r(4, 6)
    out = check_autograd(lambda t: F.softmax(t, dim), x)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    np.testing.assert_allclose(out.data, e / e.sum(axis=dim, keepdims=True), rtol=1e-13)
    check_autograd(lambda t: F.log_softmax(t, dim), x)
    check_autograd(lambda t: t.softmax(dim).log(), x)


def test_dropout_gradient_is_the_mask():
    x = r(50, 40)
    myelin.manual_seed(3)
    t = myelin.tensor(x, requires_grad=True)
    y = F.dropout(t, 0.25, training=True)
    y.sum().backward()
    mask = t.grad.data
    kept = mask != 0
    np.testing.assert_allclose(mask[kept], 1 / 0.75)
    np.testing.assert_allclose(y.data, x * mask)
    assert 0.65 < kept.mean() < 0.85
    assert F.dropout(t, 0.25, training=False) is t


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy(reduction, smoothing):
    logits = r(6, 5)
    labels = np.array([0, 4, 2, -100, 1, 3])
    out = check_autograd(
        lambda t: F.cross_entropy(t, labels, reduction=reduction, label_smoothing=smoothing),
        logits,
    )
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    valid = labels != -100
    q = np.full((6, 5), smoothing / 5)
    q[np.flatnonzero(valid), labels[valid]] += 1 - smoothing
    per = -(q * logp).sum(1) * valid
    want = {"mean": per.sum() / valid.sum(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(out.data, want, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_probability_targets(reduction):
    logits = r(4, 3)
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=4)
    out = check_autograd(lambda t: F.cross_entropy(t, probs, reduction=reduction), logits)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    per = -(probs * logp).sum(1)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(out.data, want, rtol=1e-12)


def test_nll_loss_matches_cross_entropy():
    logits = r(5, 4)
    labels = np.array([1, 0, 3, 3, 2])
    check_autograd(lambda t: F.nll_loss(F.log_softmax(t, 1), labels), logits)
    a = F.nll_loss(F.log_softmax(myelin.tensor(logits), 1), labels).item()
    b = F.cross_entropy(myelin.tensor(logits), labels).item()
    assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_losses_and_mse(reduction):
    x = r(4, 3)
    t = (np.random.default_rng(2).random((4, 3)) > 0.5).astype(np.float64)
    out = check_autograd(lambda a: F.binary_cross_entropy_with_logits(a, t, reduction=reduction), x)
    per = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(out.data, want, rtol=1e-12)
    p = 1 / (1 + np.exp(-x))
    out = check_autograd(lambda a: F.binary_cross_entropy(a, t, reduction=reduction), p)
    np.testing.assert_allclose(out.data, want, rtol=1e-9)
    y = r(4, 3, seed=5)
    out = check_autograd(lambda a: F.mse_loss(a, y, reduction=reduction), x)
    per = (x - y) ** 2
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(out.data, want, rtol=1e-12)


def test_a_small_mlp_end_to_end():
    x, w1, b1, w2, b2 = r(8, 5, seed=1), r(7, 5, seed=2), r(7, seed=3), r(3, 7, seed=4), r(3)
    labels = np.array([0, 1, 2, 1, 0, 2, 2, 1])

    def net(w1, b1, w2, b2):
        h = F.linear(x, w1, b1, "tanh")
        return F.cross_entropy(F.linear(h, w2, b2), labels).reshape(1)

    check_autograd(net, w1, b1, w2, b2)


# ---------------------------------------------------------------- the engine


def test_gradients_accumulate_until_cleared():
    w = myelin.tensor([1.0, 2.0], requires_grad=True)
    (w * 3).sum().backward()
    (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.data, [3 + 2, 3 + 4])
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad.data, [3, 3])


def test_shared_subexpression_and_diamond():
    x = r(3)
    check_autograd(lambda t: t * t + t.exp() * t, x)

    def diamond(t):
        a = t * 2
        b = a.sin() if hasattr(a, "sin") else a.tanh()
        c = a.exp()
        return b * c + a

    check_autograd(diamond, x)


def test_deep_chain_has_no_recursion_limit():
    t = myelin.tensor(np.ones(3), requires_grad=True)
    y = t
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(t.grad.data, np.full(3, 1.0001**5000), rtol=1e-9)


def test_no_grad_context_and_decorator():
    w = myelin.tensor([1.0], requires_grad=True)
    with myelin.no_grad():
        y = w * 2
        assert not myelin.is_grad_enabled()
        with myelin.enable_grad():
            assert (w * 2).requires_grad
    assert myelin.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf

    @myelin.no_grad()
    def f(t):
        return t * 2

    assert not f(w).requires_grad
    assert myelin.is_grad_enabled()


def test_detach_and_errors():
    w = myelin.tensor([1.0, 2.0], requires_grad=True)
    d = (w * 2).detach()
    assert not d.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        d.sum().backward()
    with pytest.raises(RuntimeError, match="one-element"):
        (w * 2).backward()
    (w * 2).backward(gradient=np.array([1.0, 0.5]))
    np.testing.assert_allclose(w.grad.data, [2.0, 1.0])
    with pytest.raises(RuntimeError, match="floating-point"):
        myelin.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w += 1
    with myelin.no_grad():
        w -= 1
    np.testing.assert_allclose(w.data, [0.0, 1.0])


def test_retain_grad_of_an_intermediate():
    w = myelin.tensor([1.0, 2.0], requires_grad=True)
    h = w * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.data, 2 * h.data)


def test_cross_entropy_gradient_handed_on_for_a_seed_of_one_stays_its_own():
    """The loss's saved gradient goes to the logits as it is when the seed is 1: a leaf must
    copy it, so a second backward through the kept graph, and a scaled loss, still add the
    right amounts."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)).astype(np.float32)
    y = myelin.tensor(rng.integers(0, 4, 6))
    logits = myelin.tensor(z, requires_grad=True)
    loss = F.cross_entropy(logits, y)
    loss.backward(retain_graph=True)
    first = logits.grad.numpy().copy()
    loss.backward()
    np.testing.assert_array_equal(logits.grad.numpy(), 2 * first)
    scaled = myelin.tensor(z, requires_grad=True)
    (F.cross_entropy(scaled, y) * 3.0).backward()
    np.testing.assert_allclose(scaled.grad.numpy(), 3 * first, rtol=1e-6)
