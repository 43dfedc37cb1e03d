"""Shared checks: `check_forward` holds an op of `myelin.ops` against `myelin.reference`,
`check_grad` holds a backward against central finite differences in float64.

Forward tolerances come from the arithmetic, never from what passes: the reference is evaluated
on float64 copies of the very inputs the op saw, and each op has an error scale `S` (in the
units of its output) such that a correctly rounded evaluation of its formula stays within
`ULPS * eps(dtype) * S`, e.g. `sqrt(K) * (|a| @ |b|)` for a K-long dot product.
"""

import math

import numpy as np

from myelin import ops, reference

# Roundings one output element may carry beyond those counted in its scale: the final rounding
# to the output dtype, one or two fused/reordered operations, and a few ulps for a vectorised
# exp/log/tanh.
ULPS = 4
ULPS_TRANSCENDENTAL = 8
_LOSSES = {"softmax_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss"}
_TRANSCENDENTAL = {
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
    "binary_cross_entropy_with_logits",
    "linear",
}


def f64(x):
    """float64 copy of a float ndarray (a list of them for global_norm); anything else as is."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return x.astype(np.float64)
    if isinstance(x, list) and x and all(isinstance(a, np.ndarray) for a in x):
        return [f64(a) for a in x]
    return x


# ---------------------------------------------------------------- error scales per op


def _matmul_scale(args, kw, want):
    a, b = args[:2]
    k = a.shape[-1] if (a.ndim == 1 or not kw.get("trans_a")) else a.shape[-2]
    absprod = reference.matmul(
        np.abs(a), np.abs(b), trans_a=kw.get("trans_a", False), trans_b=kw.get("trans_b", False)
    )
    return math.sqrt(max(k, 1)) * absprod


def _linear_scale(args, kw, want):
    x, w = args[:2]
    bias = args[2] if len(args) > 2 else kw.get("bias")
    z = np.matmul(np.abs(x), np.abs(w).T)
    if bias is not None:
        z = z + np.abs(bias)
    return math.sqrt(w.shape[1] + 1) * z + np.abs(want)


def _deriv_bound(activation, grad_y, y):
    """|grad_y| times a bound on the terms of the activation's derivative (relu and leaky_relu,
    whose slopes are at most 1 here, scale by at most 1)."""
    g = np.abs(grad_y)
    if activation == "sigmoid":
        return g * np.abs(y) * (1 + np.abs(y))
    if activation == "tanh":
        return g * (1 + y * y)
    return g


def _linear_backward_scale(args, kw, want):
    grad_y, x, w, y = args[:4]
    activation = args[4] if len(args) > 4 else kw.get("activation")
    gz = _deriv_bound(activation, grad_y, y)
    out_f, in_f = w.shape
    rows = math.prod(x.shape[:-1])
    gz2, x2 = gz.reshape(rows, out_f), np.abs(x).reshape(rows, in_f)
    return (
        math.sqrt(out_f + 1) * (np.matmul(gz, np.abs(w)) + 0),
        math.sqrt(rows + 1) * np.matmul(gz2.T, x2),
        math.sqrt(rows + 1) * gz2.sum(axis=0),
    )


def _elementwise_backward(activation):
    def scale(args, kw, want):
        grad_y, y = args[:2]
        return _deriv_bound(activation, grad_y, y) + np.abs(want)

    return scale


def _softmax_scale(args, kw, want):
    x = args[0]
    axis = args[1] if len(args) > 1 else kw.get("axis", -1)
    c = x.shape[axis] if x.ndim else 1
    m = reference._max(x, axis)
    return want * (math.sqrt(c) + np.abs(x - m))


def _log_softmax_scale(args, kw, want):
    x = args[0]
    axis = args[1] if len(args) > 1 else kw.get("axis", -1)
    c = x.shape[axis] if x.ndim else 1
    m = reference._max(x, axis)
    return np.abs(x - m) + np.abs(m) + np.abs(x - m - want) + math.sqrt(c) + np.abs(want)


def _softmax_backward_scale(args, kw, want):
    g, y = args[:2]
    axis = args[2] if len(args) > 2 else kw.get("axis", -1)
    c = g.shape[axis] if g.ndim else 1
    return np.abs(y) * (np.abs(g) + math.sqrt(c) * np.sum(np.abs(g * y), axis, keepdims=True))


def _log_softmax_backward_scale(args, kw, want):
    g, y = args[:2]
    axis = args[2] if len(args) > 2 else kw.get("axis", -1)
    c = g.shape[axis] if g.ndim else 1
    return np.abs(g) + np.exp(y) * math.sqrt(c) * np.sum(np.abs(g), axis, keepdims=True)


def _reduced(row_scale, grad_scale, reduction, count):
    """Scale of (loss, grad) from per-element loss scales; row errors add up at worst."""
    if reduction == "none":
        return row_scale, grad_scale
    total = np.sum(row_scale)
    if reduction == "sum":
        return total, grad_scale
    count = max(count, 1)
    return total / count, grad_scale / count


def _xent_scale(args, kw, want):
    z, labels = args[:2]
    n, c = z.shape
    s = kw.get("label_smoothing", 0.0)
    ignore = kw.get("ignore_index")
    valid = labels != ignore if ignore is not None else np.ones(n, bool)
    if c == 0:
        return _reduced(np.zeros(n), np.zeros_like(z), kw.get("reduction", "mean"), 0)
    m = z.max(axis=1, keepdims=True)
    zmax = np.abs(z).max(axis=1)
    row = (
        3 * zmax
        + math.log(c)
        + math.sqrt(c)
        + np.abs(
            reference.softmax_cross_entropy(
                z, labels, reduction="none", ignore_index=ignore, label_smoothing=s
            )[0]
        )
    )
    p = reference.softmax(z)
    onehot = np.zeros_like(z)
    onehot[np.arange(n)[valid], labels[valid]] = 1
    grad = p * (math.sqrt(c) + np.abs(z - m)) + (1 - s) * onehot + s / c
    return _reduced(row, grad, kw.get("reduction", "mean"), int(valid.sum()))


def _bce_scale(args, kw, want):
    x, t = args[:2]
    row = np.abs(x) * (1 + np.abs(t)) + 1
    grad = reference.sigmoid(x) + np.abs(t)
    return _reduced(row, grad, kw.get("reduction", "mean"), x.size)


def _mse_scale(args, kw, want):
    d = np.abs(args[0] - args[1])
    return _reduced(d * d, 2 * d, kw.get("reduction", "mean"), d.size)


def _bias_grad_scale(args, kw, want):
    g = np.abs(args[0])
    rows = math.prod(g.shape[:-1])
    return math.sqrt(rows + 1) * reference.bias_grad(g)


def _global_norm_scale(args, kw, want):
    n = sum(np.size(a) for a in args[0])
    return math.sqrt(n + 1) * want


def _default_scale(args, kw, want):
    return np.abs(want)


_SCALES = {
    "matmul": _matmul_scale,
    "linear": _linear_scale,
    "linear_backward": _linear_backward_scale,
    "relu_backward": _elementwise_backward("relu"),
    "leaky_relu_backward": _elementwise_backward("leaky_relu"),
    "sigmoid_backward": _elementwise_backward("sigmoid"),
    "tanh_backward": _elementwise_backward("tanh"),
    "softmax": _softmax_scale,
    "log_softmax": _log_softmax_scale,
    "softmax_backward": _softmax_backward_scale,
    "log_softmax_backward": _log_softmax_backward_scale,
    "softmax_cross_entropy": _xent_scale,
    "binary_cross_entropy_with_logits": _bce_scale,
    "mse_loss": _mse_scale,
    "bias_grad": _bias_grad_scale,
    "global_norm": _global_norm_scale,
}


# ---------------------------------------------------------------- comparison


def assert_close(got, want, tol, what):
    """|got - want| <= tol elementwise; NaN must meet NaN and an infinity the same infinity."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), want.shape)
    with np.errstate(invalid="ignore"):
        ok = np.abs(got - want) <= tol
    ok |= np.isnan(got) & np.isnan(want)
    ok |= np.isinf(want) & (got == want)
    if not ok.all():
        bad = np.argwhere(~ok) if want.ndim else [()]
        i = tuple(bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {want.size} elements off; first at {i}: got {got[i]!r}, "
            f"expected {want[i]!r}, tolerance {tol[i]:.3g}"
        )


def _compare(name, got, same, want, scale, path=""):
    what = f"{name}{path}"
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), f"{what}: got {type(got)}"
        for i, (g, s, w, sc) in enumerate(zip(got, same, want, scale, strict=False)):
            _compare(name, g, s, w, sc, f"{path}[{i}]")
        return
    if type(want) is float:  # global_norm: a Python float computed in float64
        assert type(got) is float, f"{what}: got {type(got).__name__}, expected float"
        tol = ULPS * np.finfo(np.float64).eps * scale
        assert_close(got, want, tol, what)
        return
    if np.ndim(want) == 0 and name in _LOSSES:  # reduced losses: a NumPy scalar of the dtype
        assert isinstance(got, np.floating), (
            f"{what}: got {type(got).__name__}, expected a NumPy float"
        )
    elif np.ndim(want) == 0:  # matmul of two 1-D: np.matmul gives a scalar; a 0-d array is as good
        assert isinstance(got, (np.floating, np.ndarray)), f"{what}: got {type(got).__name__}"
    else:
        assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}, expected ndarray"
    assert got.dtype == same.dtype, f"{what}: dtype {got.dtype}, expected {same.dtype}"
    assert got.shape == np.shape(same), f"{what}: shape {got.shape}, expected {np.shape(same)}"
    ulps = ULPS_TRANSCENDENTAL if name in _TRANSCENDENTAL else ULPS
    finfo = np.finfo(got.dtype)
    with np.errstate(invalid="ignore"):  # scales are NaN where inputs hold inf times 0: exact
        scale = np.nan_to_num(np.asarray(scale, dtype=np.float64), nan=0.0, posinf=np.inf)
    tol = ulps * finfo.eps * scale + ulps * float(finfo.smallest_normal)
    assert_close(got, want, tol, what)


def _snapshot(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def check_forward(name, *args, out=False, **kwargs):
    """ops.<name>(*args, **kwargs) against reference.<name> in float64; returns the op's result.

    The result must have the reference's dtype and shape (reference on the same inputs) and its
    values within tolerance of the float64 reference; the inputs must be left untouched.
    out=True also runs with a NaN-filled out= and out="inplace" with out= the first argument;
    either must return out, holding the same values as the plain call.
    """
    before = _snapshot(args)
    got = getattr(ops, name)(*args, **kwargs)
    for a, b in zip(args, before, strict=False):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b, equal_nan=True), f"{name} modified an input"
    args64 = [f64(a) for a in args]
    kw64 = {k: f64(v) for k, v in kwargs.items()}
    with np.errstate(all="ignore"):  # inf * 0 and log(0) in special-value cases are intended
        same = getattr(reference, name)(*args, **kwargs)
        want = getattr(reference, name)(*args64, **kw64)
        scale = _SCALES.get(name, _default_scale)(args64, kw64, want)
    _compare(name, got, same, want, scale)
    if out:
        if out == "inplace":
            target = args[0].copy()
            args = (target,) + tuple(args[1:])
        else:
            target = np.full(got.shape, np.nan, got.dtype)
        res = getattr(ops, name)(*args, out=target, **kwargs)
        assert res is target, f"{name}(out=...) did not return out"
        assert np.array_equal(target, got, equal_nan=True), f"{name}(out=...) differs from {name}()"
    return got


# ---------------------------------------------------------------- finite differences

_H = 1e-6


def _numeric_grad(f, x):
    """Central differences of the scalar f at x (float64), one element at a time."""
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + _H
        fp = f(x)
        flat[i] = old - _H
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * _H)
    return g


def _fd_tol(analytic, magnitude):
    """Truncation O(h^2) plus rounding eps*|f|/h of central differences, and a relative part."""
    eps = np.finfo(np.float64).eps
    return 1e-6 * np.abs(analytic) + 10 * (eps * magnitude / _H + _H * _H * (1 + magnitude))


def _fd_compare(label, f, f_terms, x, analytic):
    numeric = _numeric_grad(f, x)
    magnitude = float(np.sum(np.abs(f_terms(x)))) + 1.0
    assert_close(analytic, numeric, _fd_tol(analytic, magnitude), label)


def check_grad(name, *args, seed=0, **kwargs):
    """A backward of ops (and of the reference) against central differences in float64.

    name is a forward op: an activation, softmax/log_softmax, linear, or a loss. Activations,
    softmax and linear are differentiated through f = sum(w * op(x)) with a random upstream w;
    a loss through its loss (the sum of the per-sample losses for reduction="none").
    """
    rng = np.random.default_rng(seed)
    args = [f64(a) for a in args]
    kwargs = {k: f64(v) for k, v in kwargs.items()}
    ref = getattr(reference, name)
    if name in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"):
        x = args[0].copy()
        w = rng.standard_normal(x.shape)
        rest = args[1:]

        def terms(x_):
            return w * ref(x_, *rest, **kwargs)

        for mod in (ops, reference):
            y = getattr(mod, name)(x, *rest, **kwargs)
            analytic = getattr(mod, name + "_backward")(w, y, *rest, **kwargs)
            assert analytic.dtype == np.float64
            _fd_compare(
                f"{mod.__name__}.{name}_backward", lambda x_: terms(x_).sum(), terms, x, analytic
            )
        return
    if name == "linear":
        x, weight = args[0].copy(), args[1].copy()
        bias = args[2].copy() if len(args) > 2 and args[2] is not None else None
        act = kwargs.get("activation")
        slope = kwargs.get("negative_slope", 0.01)
        y = ref(x, weight, bias, **kwargs)
        w = rng.standard_normal(y.shape)

        def terms(x_, w_, b_):
            return w * ref(x_, w_, b_, **kwargs)

        for mod in (ops, reference):
            y = mod.linear(x, weight, bias, **kwargs)
            gx, gw, gb = mod.linear_backward(w, x, weight, y, act, negative_slope=slope)
            label = f"{mod.__name__}.linear_backward"
            _fd_compare(
                label + " grad_x",
                lambda v: terms(v, weight, bias).sum(),
                lambda v: terms(v, weight, bias),
                x,
                gx,
            )
            _fd_compare(
                label + " grad_weight",
                lambda v: terms(x, v, bias).sum(),
                lambda v: terms(x, v, bias),
                weight,
                gw,
            )
            if bias is not None:
                _fd_compare(
                    label + " grad_bias",
                    lambda v: terms(x, weight, v).sum(),
                    lambda v: terms(x, weight, v),
                    bias,
                    gb,
                )
            else:
                want = reference.bias_grad(reference._activate_backward(w, y, act, slope))
                assert_close(gb, want, 1e-12 * (1 + np.abs(want)), label + " grad_bias")
        return
    if name in ("softmax_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss"):
        x = args[0].copy()
        rest = args[1:]

        def terms(x_):
            losses = ref(x_, *rest, **{**kwargs, "reduction": "none"})[0]
            return losses

        def f(x_):
            loss = ref(x_, *rest, **kwargs)[0]
            return float(np.sum(loss))

        for mod in (ops, reference):
            _loss, analytic = getattr(mod, name)(x, *rest, **kwargs)
            _fd_compare(f"{mod.__name__}.{name} grad", f, terms, x, analytic)
        return
    raise ValueError(f"check_grad: no gradient rule for {name!r}")


def randn(rng, shape, dtype=np.float64, scale=1.0):
    """Standard normal samples of the given shape, rounded to dtype."""
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---------------------------------------------------------------- autograd


def check_autograd(fn, *inputs, rtol=1e-6, atol=1e-8, seed=0, h=1e-6):
    """Hold the autograd gradients of ``fn`` (Tensors in, Tensor out) against central finite
    differences, in float64.

    ``inputs`` are float64 ndarrays (differentiated) or anything else (passed through). The
    scalar differentiated is ``sum(fn(*inputs) * w)`` for a fixed random ``w``, so every output
    element's gradient path is exercised. Finite differences with step ``h`` carry an error of
    about ``h**2 * f''' + eps * |f| / h``, i.e. ~1e-10 relative for smooth functions of O(1)
    values, far inside ``rtol``.
    """
    import myelin

    rng = np.random.default_rng(seed)
    tensors = [
        myelin.tensor(x, requires_grad=True)
        if isinstance(x, np.ndarray) and x.dtype == np.float64
        else x
        for x in inputs
    ]
    out = fn(*tensors)
    w = rng.standard_normal(out.shape)
    (out * myelin.tensor(w)).sum().backward()

    def scalar(arrays):
        args = [
            myelin.tensor(a) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
            for a in arrays
        ]
        with myelin.no_grad():
            return float((np.asarray(fn(*args).data, dtype=np.float64) * w).sum())

    for i, x in enumerate(inputs):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
            continue
        num = np.zeros_like(x)
        for j in range(x.size):
            plus = [a.copy() if isinstance(a, np.ndarray) else a for a in inputs]
            minus = [a.copy() if isinstance(a, np.ndarray) else a for a in inputs]
            plus[i].reshape(-1)[j] += h
            minus[i].reshape(-1)[j] -= h
            num.reshape(-1)[j] = (scalar(plus) - scalar(minus)) / (2 * h)
        got = tensors[i].grad
        assert got is not None, f"input {i} got no gradient"
        np.testing.assert_allclose(
            got.data, num, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}"
        )
    return out
