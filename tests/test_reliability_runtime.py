"""Reliability at the runtime's edges: cross-entropy with label smoothing at the extremes of the
float range, thread counts beyond the machine, lazy random sampling, big-endian data."""

import math
from fractions import Fraction

import numpy as np
import pytest

import myelin
from myelin import nn, ops, reference

# ---------------------------------------------------------------- label smoothing at the extremes


def _extreme_rows(dtype, rng):
    """(row, label, smoothing) with logits near the ends of dtype's range, where m - z[j] or
    sum(z) leaves the range, large close logits (cancellation) and subnormals."""
    big = float(np.finfo(dtype).max)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    base = 2.0**56 if dtype == np.float64 else 2.0**30
    ulp = float(np.spacing(dtype(base)))
    spread = [big if j % 2 else -big for j in range(37)]
    return [
        ([big / 3] * 3, 0, 0.1),  # the sum of the row overflows; exact: log 3
        ([0.56 * big, 0.56 * big, 0.0], 0, 0.1),
        ([0.56 * big, -0.56 * big, -0.56 * big], 0, 0.5),  # m - z[j] beyond the range
        ([0.56 * big, -0.56 * big], 1, 0.5),  # (1-s)(m - z[label]) beyond: loss finite
        (spread, 2, 0.1),
        (spread, 1, 0.3),
        ([-big] * 5, 3, 0.2),
        ([big] * 40, 7, 1.0),
        ([base, base + 2 * ulp, base + 4 * ulp], 2, 0.3),  # large close logits
        ([base + 3 * ulp] * 17 + [base], 17, 0.7),
        ([tiny, 0.0, -tiny], 1, 0.1),
        ([big, -big], 1, 0.1),  # the exact loss is beyond the range: inf
        (list(rng.uniform(-1, 1, 100) * big), 42, 0.25),
        (list(rng.uniform(-1, 1, 33) * big), 32, 0.0),
    ]


def _exact_row(row, label, s):
    """The row's loss as an exact fraction but for log-sum-exp (within an ulp of the double
    result), and the float gradient of the loss, from the exact differences m - z[j]."""
    m = Fraction(max(row))
    below = [m - Fraction(z) for z in row]  # >= 0, exact
    exps = [math.exp(-float(d)) if d < 1000 else 0.0 for d in below]
    total = math.fsum(exps)
    sf = Fraction(s)  # the double the kernel gets
    loss = Fraction(math.log(total)) + (1 - sf) * below[label] + sf * sum(below) / len(row)
    grad = [e / total - s / len(row) - ((1 - s) if j == label else 0.0) for j, e in enumerate(exps)]
    return loss, np.array(grad)


def _to_float(x: Fraction, dtype) -> float:
    """x rounded to dtype, inf where beyond its range."""
    try:
        v = float(x)
    except OverflowError:
        return math.inf
    with np.errstate(over="ignore"):
        return float(dtype(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_smoothing_exact_at_the_extremes(isa, rng, dtype):
    """Finding 4: label smoothing in float64 gave -inf for finite logits (sum(z) overflowed, and
    m - mean cancelled); every row's loss is now the correctly rounded value within a few ulps,
    on every path and every reduction, with its gradient."""
    eps = float(np.finfo(dtype).eps)
    for row, label, s in _extreme_rows(dtype, rng):
        z = np.array([row], dtype)
        want, want_grad = _exact_row([float(v) for v in z[0]], label, s)
        want = _to_float(want, dtype)
        what = f"{dtype.__name__} row {row[:4]}... label {label} smoothing {s} on {isa}"
        # "none" and "sum" (list labels) take the general path, "mean" the fused fast path
        for reduction, labels in (("none", [label]), ("sum", [label]), ("mean", np.array([label]))):
            with np.errstate(over="ignore"):  # an inf loss rounded to float32
                loss, grad = ops.softmax_cross_entropy(
                    z, labels, reduction=reduction, label_smoothing=s
                )
            got = float(np.reshape(loss, -1)[0])
            if math.isinf(want):
                assert got == want, what
            else:
                assert got == pytest.approx(want, rel=4 * eps, abs=0), f"{what}: {reduction}"
            np.testing.assert_allclose(grad[0], want_grad, rtol=0, atol=4 * eps, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_label_smoothing_exact_at_the_extremes(rng, dtype):
    """The oracle the tests hold ops against has the same care (it overflowed the same way)."""
    eps = float(np.finfo(dtype).eps)
    for row, label, s in _extreme_rows(dtype, rng):
        z = np.array([row], dtype)
        want, _ = _exact_row([float(v) for v in z[0]], label, s)
        want = _to_float(want, dtype)
        loss, _ = reference.softmax_cross_entropy(z, [label], reduction="none", label_smoothing=s)
        got = float(loss[0])
        if math.isinf(want):
            assert got == want
        else:
            # computed in dtype: one rounding per term of the row's sum
            assert got == pytest.approx(want, rel=4 * eps * len(row), abs=0), (row[:4], s)


def test_cross_entropy_loss_module_label_smoothing_at_the_extremes():
    """The issue's example through nn.CrossEntropyLoss: PyTorch gives 3.33e306."""
    z = myelin.tensor(np.array([[1e308, 1e308, 0.0]]), requires_grad=True)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(z, np.array([0]))
    assert float(loss.item()) == pytest.approx(1e308 / 30, rel=1e-15)
    loss.backward()
    np.testing.assert_allclose(z.grad.numpy(), [[0.5 - 0.9 - 0.1 / 3, 0.5 - 0.1 / 3, -0.1 / 3]])
