"""Class labels of the cross-entropy losses: bad labels are refused by position and value before
any kernel runs; ignore_index rows are skipped in the loss and the gradient (PyTorch's semantics,
default -100) on every path: ops' fast and general paths, functional, modules and keras' sparse
loss."""

import numpy as np
import pytest

import myelin
from myelin import keras, nn, ops, reference
from myelin.nn import functional as F

pytestmark = pytest.mark.usefixtures("isa")

N, C = 6, 4


def _logits(rng, dtype=np.float32):
    return rng.standard_normal((N, C)).astype(dtype)


BAD = [
    ([0, 1, -1, 2, 3, 0], r"labels\[2\] = -1 is not a class index"),
    ([0, 1, 2, 3, 4, 0], r"labels\[4\] = 4 is not a class index"),
    ([0, 1, 2, 9, -5, 0], r"labels\[3\] = 9 is not a class index"),
    ([0.0, 1.5, 2.0, 0.0, 1.0, 0.0], r"labels\[1\] = 1.5 is not a whole number"),
    ([0.0, 1.0, np.nan, 0.0, 1.0, 0.0], r"labels\[2\] = nan is not a whole number"),
    ([0.0, 1.0, np.inf, 0.0, 1.0, 0.0], r"labels\[2\] = inf is not a whole number"),
    ([0.0, 1.0, 2.0, 0.0, 1.0, 0.0], r"labels\[0\] = 0.0 is a float"),
]


@pytest.mark.parametrize("labels,match", BAD)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bad_labels_name_position_and_value(rng, labels, match, reduction, dtype):
    z = _logits(rng, dtype)
    lab = np.array(labels)
    for arr in (lab, lab.astype(np.int32) if lab.dtype.kind == "i" else lab, list(labels)):
        with pytest.raises(ValueError, match=match):
            ops.softmax_cross_entropy(z, arr, reduction=reduction)
        with pytest.raises(ValueError, match=match):
            ops.softmax_cross_entropy(z, arr, reduction=reduction, ignore_index=-100)


@pytest.mark.parametrize("labels,match", BAD[:3])
def test_bad_labels_in_functional_and_modules(rng, labels, match):
    z = myelin.tensor(_logits(rng), requires_grad=True)
    t = myelin.tensor(np.array(labels))
    for call in (
        lambda: F.cross_entropy(z, t),
        lambda: nn.CrossEntropyLoss()(z, t),
        lambda: nn.CrossEntropyLoss(reduction="none")(z, t),
        lambda: F.cross_entropy(z, t, label_smoothing=0.1),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    nll = match.replace("labels", "target")
    for call in (lambda: F.nll_loss(z, t), lambda: nn.NLLLoss()(z, t)):
        with pytest.raises(ValueError, match=nll):
            call()


@pytest.mark.parametrize("labels,match", BAD[3:6])
def test_float_labels_in_nll_loss(rng, labels, match):
    z = myelin.tensor(_logits(rng))
    with pytest.raises(ValueError, match=match.replace("labels", "target")):
        F.nll_loss(z, np.array(labels))


def test_label_types_and_shapes(rng):
    z = _logits(rng)
    with pytest.raises(TypeError, match="labels must be an array .* got None"):
        ops.softmax_cross_entropy(z, None)
    with pytest.raises(ValueError, match="labels has dtype bool"):
        ops.softmax_cross_entropy(z, np.zeros(N, bool))
    with pytest.raises(TypeError, match="labels has dtype complex128"):
        ops.softmax_cross_entropy(z, np.zeros(N, complex))
    with pytest.raises(TypeError, match="inhomogeneous"):
        ops.softmax_cross_entropy(z, [[0, 1], [2]])
    with pytest.raises(ValueError, match=r"labels has shape \(5,\); expected \(6,\)"):
        ops.softmax_cross_entropy(z, np.zeros(N - 1, np.int64))
    with pytest.raises(ValueError, match=r"target has shape \(5,\); expected \(6,\)"):
        F.nll_loss(myelin.tensor(z), np.zeros(N - 1, np.int64))
    big = np.array([0, 2**63 + 1, 0, 0, 0, 0], np.uint64)
    with pytest.raises(ValueError, match=r"labels\[1\] = 9223372036854775809"):
        ops.softmax_cross_entropy(z, big)
    with pytest.raises(ValueError, match=r"labels\[0\] = 0 is not a class index"):
        ops.softmax_cross_entropy(np.empty((3, 0), np.float32), np.zeros(3, np.int64))


def test_labels_checked_before_the_kernel(rng):
    """A bad label raises and leaves nothing half-done: the out-of-range row is never read."""
    z = _logits(rng)
    lab = np.array([0, 1, 2, 3, 0, 1_000_000_000])
    with pytest.raises(ValueError, match=r"labels\[5\] = 1000000000"):
        ops.softmax_cross_entropy(z, lab)
    # a label past the end of a huge class axis would address memory far out of the array
    with pytest.raises(ValueError, match=r"labels\[0\] = 2147483648"):
        ops.softmax_cross_entropy(z, np.array([2**31, 0, 0, 0, 0, 0]))


# ---------------------------------------------------------------- ignore_index


def _want(z, labels, ignore, reduction, smoothing=0.0):
    return reference.softmax_cross_entropy(
        z.astype(np.float64),
        labels,
        reduction=reduction,
        ignore_index=ignore,
        label_smoothing=smoothing,
    )


@pytest.mark.parametrize("ignore", [-100, 2, -1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_ignore_index_skips_rows(rng, ignore, reduction, smoothing):
    z = _logits(rng, np.float64)
    lab = np.array([0, ignore, 3, ignore, 1, 2 if ignore != 2 else 0], np.int64)
    loss, grad = ops.softmax_cross_entropy(
        z, lab, reduction=reduction, ignore_index=ignore, label_smoothing=smoothing
    )
    want_loss, want_grad = _want(z, lab, ignore, reduction, smoothing)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-15)
    rows = lab == ignore
    assert np.all(grad[rows] == 0)
    # the loss over the kept rows only: ignored rows change nothing
    kept = ~rows
    sub_loss, sub_grad = ops.softmax_cross_entropy(
        z[kept], lab[kept], reduction=reduction, label_smoothing=smoothing
    )
    if reduction == "none":
        np.testing.assert_allclose(loss[kept], sub_loss, rtol=1e-14)
        assert np.all(loss[rows] == 0)
    else:
        np.testing.assert_allclose(loss, sub_loss, rtol=1e-14)
    np.testing.assert_allclose(grad[kept], sub_grad, rtol=1e-14, atol=1e-17)


def test_ignore_index_fast_path_matches_general(rng):
    """The fast path (C-contiguous logits, int64 labels, mean/sum) and the general path (int32
    labels, strided logits) give the same numbers with ignored rows."""
    z = _logits(rng)
    lab = np.array([0, -100, 3, -100, 1, 2], np.int64)
    for reduction in ("mean", "sum"):
        fast = ops.softmax_cross_entropy(z, lab, reduction=reduction, ignore_index=-100)
        slow = ops.softmax_cross_entropy(
            np.asfortranarray(z), lab.astype(np.int32), reduction=reduction, ignore_index=-100
        )
        assert fast[0] == slow[0]
        np.testing.assert_array_equal(fast[1], slow[1])
        want = _want(z, lab, -100, reduction)
        np.testing.assert_allclose(fast[0], want[0], rtol=1e-6)
        np.testing.assert_allclose(fast[1], want[1], rtol=1e-5, atol=1e-7)


def test_all_rows_ignored(rng):
    z = _logits(rng)
    lab = np.full(N, -100)
    loss, grad = ops.softmax_cross_entropy(z, lab, ignore_index=-100)
    assert np.isnan(loss) and np.all(grad == 0)  # a mean over nothing, as PyTorch
    loss, grad = ops.softmax_cross_entropy(z, lab, ignore_index=-100, reduction="sum")
    assert loss == 0 and np.all(grad == 0)


def test_ignore_index_default_in_modules_and_gradient(rng):
    """CrossEntropyLoss and NLLLoss skip -100 by default, in the loss and in the gradient."""
    zn = _logits(rng, np.float64)
    lab = np.array([0, -100, 3, 1, -100, 2])
    keep = lab != -100
    for loss_fn in (nn.CrossEntropyLoss(), nn.NLLLoss()):
        z = myelin.tensor(zn, requires_grad=True)
        inp = z if isinstance(loss_fn, nn.CrossEntropyLoss) else F.log_softmax(z, dim=1)
        loss = loss_fn(inp, myelin.tensor(lab))
        loss.backward()
        want_loss, want_grad = _want(zn, lab, -100, "mean")
        np.testing.assert_allclose(loss.item(), want_loss, rtol=1e-12)
        np.testing.assert_allclose(z.grad.numpy(), want_grad, rtol=1e-10, atol=1e-14)
        assert np.all(z.grad.numpy()[~keep] == 0)


def test_nll_loss_matches_reference(rng):
    zn = _logits(rng, np.float64)
    logp = reference.log_softmax(zn, axis=1)
    lab = np.array([0, 1, 3, 1, 0, 2])
    for reduction in ("mean", "sum", "none"):
        got = F.nll_loss(myelin.tensor(logp), lab, reduction=reduction).numpy()
        want = reference.softmax_cross_entropy(zn, lab, reduction=reduction)[0]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        F.nll_loss(myelin.tensor(logp), lab, reduction="avg")
    one = F.nll_loss(myelin.tensor(logp[0]), np.int64(2))
    np.testing.assert_allclose(one.item(), -logp[0, 2], rtol=1e-15)


def test_keras_sparse_loss_refuses_bad_labels(rng):
    x = rng.standard_normal((8, 3)).astype(np.float32)
    model = keras.Sequential([keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    for y, match in (
        (np.array([0, 1, 2, 3, 4, 0, 1, 2]), r"\[4\] = 4"),
        (np.array([0, 1, 2, -1, 0, 0, 1, 2]), r"\[3\] = -1"),
    ):
        with pytest.raises(ValueError, match=match):
            model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="non-integer"):
        model.fit(x, np.array([0, 1.5, 2, 3, 0, 0, 1, 2]), epochs=1, batch_size=8, verbose=0)
