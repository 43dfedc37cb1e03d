"""Plain-NumPy oracle for `myelin.ops`.

Every function of `myelin.ops` (docs/ops.md) with the same name and signature, written to be
obviously right rather than fast: the tests hold the C kernels against it and the benchmarks use
it as the baseline. Input handling is minimal: arrays go through `np.asarray`, integer or bool
inputs become float64, and the result has the (promoted) float dtype of the inputs. Everything is
computed in that dtype with the stable formulations (max-subtracted log-sum-exp, sign-split
sigmoid, log1p form of the binary cross-entropy); pass float64 copies to get a float64 oracle.
The formulas are PyTorch's (cross_entropy, SGD, Adam/AdamW, RMSprop); no validation is done here.
"""

import numpy as np

_ACTIVATIONS = (None, "relu", "leaky_relu", "sigmoid", "tanh")


def _float(x):
    """np.asarray, with non-float dtypes (lists of ints, bools) converted to float64, and float
    arrays in the other byte order brought into the machine's (the same float type)."""
    x = np.asarray(x)
    if x.dtype.kind == "f" and not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def _store(result, out):
    if out is None:
        return result
    np.copyto(out, result)
    return out


# ---------------------------------------------------------------- GEMM


def matmul(a, b, *, trans_a=False, trans_b=False, out=None):
    """np.matmul(a, b) with the last two axes of a / b swapped first when trans_a / trans_b."""
    a, b = _float(a), _float(b)
    if trans_a and a.ndim >= 2:
        a = np.swapaxes(a, -1, -2)
    if trans_b and b.ndim >= 2:
        b = np.swapaxes(b, -1, -2)
    return _store(np.matmul(a, b), out)


def _activate(z, activation, negative_slope):
    if activation is None:
        return z
    return {
        "relu": lambda: relu(z),
        "leaky_relu": lambda: leaky_relu(z, negative_slope),
        "sigmoid": lambda: sigmoid(z),
        "tanh": lambda: tanh(z),
    }[activation]()


def _activate_backward(grad_y, y, activation, negative_slope):
    if activation is None:
        return grad_y
    return {
        "relu": lambda: relu_backward(grad_y, y),
        "leaky_relu": lambda: leaky_relu_backward(grad_y, y, negative_slope),
        "sigmoid": lambda: sigmoid_backward(grad_y, y),
        "tanh": lambda: tanh_backward(grad_y, y),
    }[activation]()


def linear(x, weight, bias=None, activation=None, *, negative_slope=0.01, out=None):
    """act(x @ weight.T + bias); x (..., in), weight (out, in), bias (out,) -> (..., out)."""
    x, weight = _float(x), _float(weight)
    z = np.matmul(x, weight.T)
    if bias is not None:
        z = z + _float(bias)
    return _store(_activate(z, activation, negative_slope), out)


def linear_backward(
    grad_y,
    x,
    weight,
    y,
    activation=None,
    *,
    negative_slope=0.01,
    need_grad_x=True,
    out=None,
    work=None,
):
    """(grad_x, grad_weight, grad_bias) of `linear`, given the upstream grad_y and its output y;
    grad_x is None when ``need_grad_x`` is False."""
    grad_y, x, weight = _float(grad_y), _float(x), _float(weight)
    gz = _activate_backward(grad_y, None if y is None else _float(y), activation, negative_slope)
    out_features, in_features = weight.shape
    rows = int(np.prod(x.shape[:-1]))
    gz2 = gz.reshape(rows, out_features)
    x2 = x.reshape(rows, in_features)
    grad_x = np.matmul(gz, weight) if need_grad_x else None
    grad_weight = np.matmul(gz2.T, x2)
    grad_bias = gz2.sum(axis=0)
    res = (grad_x, grad_weight, grad_bias)
    if out is None:
        return res
    return tuple(
        r if o is None or r is None else _store(r, o) for r, o in zip(res, out, strict=True)
    )


# ---------------------------------------------------------------- activations


def relu(x, *, out=None):
    """max(x, 0); NaN stays NaN (np.maximum propagates it)."""
    x = _float(x)
    return _store(np.maximum(x, 0), out)


def relu_backward(grad_y, y, *, out=None):
    """grad_y where y > 0, 0 where y <= 0, NaN where y is NaN."""
    grad_y, y = _float(grad_y), _float(y)
    # y <= 0 and y > 0 are both False for NaN: the inner where hands the NaN of y through.
    return _store(np.where(y > 0, grad_y, np.where(y <= 0, 0, y)), out)


def leaky_relu(x, negative_slope=0.01, *, out=None):
    """x where x > 0, negative_slope * x elsewhere (NaN * slope is NaN)."""
    x = _float(x)
    return _store(np.where(x > 0, x, x * negative_slope), out)


def leaky_relu_backward(grad_y, y, negative_slope=0.01, *, out=None):
    """grad_y where y > 0, negative_slope * grad_y where y <= 0, NaN where y is NaN."""
    grad_y, y = _float(grad_y), _float(y)
    return _store(np.where(y > 0, grad_y, np.where(y <= 0, grad_y * negative_slope, y)), out)


def sigmoid(x, *, out=None):
    """1 / (1 + exp(-x)), split on the sign of x so that exp never overflows."""
    x = _float(x)
    e = np.exp(-np.abs(x))  # in (0, 1], NaN for NaN
    return _store(np.where(x >= 0, 1 / (1 + e), e / (1 + e)), out)


def sigmoid_backward(grad_y, y, *, out=None):
    grad_y, y = _float(grad_y), _float(y)
    return _store(grad_y * y * (1 - y), out)


def tanh(x, *, out=None):
    x = _float(x)
    return _store(np.tanh(x), out)


def tanh_backward(grad_y, y, *, out=None):
    grad_y, y = _float(grad_y), _float(y)
    return _store(grad_y * (1 - y * y), out)


# ---------------------------------------------------------------- softmax


def _max(x, axis):
    # initial=-inf makes an empty axis legal (the result is then empty anyway).
    return np.max(x, axis=axis, keepdims=True, initial=-np.inf)


def softmax(x, axis=-1):
    x = _float(x)
    e = np.exp(x - _max(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = _float(x)
    with np.errstate(over="ignore"):  # x - max below the range: -inf, as it should
        shifted = x - _max(x, axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax_backward(grad_y, y, axis=-1):
    """y * (grad_y - sum(grad_y * y)), y = softmax(x)."""
    grad_y, y = _float(grad_y), _float(y)
    return y * (grad_y - np.sum(grad_y * y, axis=axis, keepdims=True))


def log_softmax_backward(grad_y, y, axis=-1):
    """grad_y - exp(y) * sum(grad_y), y = log_softmax(x)."""
    grad_y, y = _float(grad_y), _float(y)
    return grad_y - np.exp(y) * np.sum(grad_y, axis=axis, keepdims=True)


# ---------------------------------------------------------------- losses


def _reduce(losses, grad, reduction, count):
    """(loss, grad) for a reduction; `grad` is the gradient of sum(losses)."""
    dtype = losses.dtype.type
    if reduction == "none":
        return losses, grad
    total = np.sum(losses)
    if reduction == "sum":
        return dtype(total), grad
    if count == 0:  # mean over nothing: NaN, as np.mean and PyTorch, with a zero gradient
        return dtype(np.nan), np.zeros_like(grad)
    return dtype(total / count), grad / grad.dtype.type(count)


def softmax_cross_entropy(
    logits, labels, *, reduction="mean", ignore_index=None, label_smoothing=0.0
):
    """PyTorch's cross_entropy on (N, C) logits and (N,) integer labels -> (loss, grad).

    Row loss: (1 - s) * -logp[label] + s * mean_c(-logp[c]); ignored rows give 0 and do not count
    in the mean. https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html
    """
    logits = _float(logits)
    labels = np.asarray(labels).astype(np.int64)
    n, c = logits.shape
    s = label_smoothing
    ignored = (labels == ignore_index) if ignore_index is not None else np.zeros(n, bool)
    safe = np.where(ignored, 0, labels)
    logp = log_softmax(logits, axis=1)
    rows = np.arange(n)
    losses = _xent_rows(logits, safe, s) if c else np.zeros(n, logits.dtype)
    losses = np.where(ignored, 0, losses).astype(logits.dtype)
    grad = np.exp(logp) - s / c if c else logp.copy()
    if c:
        grad[rows, safe] -= 1 - s
    grad[ignored] = 0
    return _reduce(losses, grad, reduction, int(n - ignored.sum()))


def _xent_rows(z, labels, s):
    """Row losses of cross-entropy on (N, C) logits z, C >= 1, as
    lse + (1 - s) * (m - z[label]) + s * mean(m - z), with m the row max and lse the log-sum-exp
    of z - m: every term >= 0, so nothing cancels. They are added up scaled by the power of two
    k = 2**-(1 + C.bit_length()) <= 1 / (2 C), so that no term or sum overflows even where m - z
    is beyond the dtype's range (the scaling is exact but for subnormal products, far below such a
    row's loss). A term of weight 0 is left out (no 0 * inf from a -inf logit)."""
    c = z.shape[1]
    k = z.dtype.type(2.0 ** -(1 + c.bit_length()))
    m = _max(z, 1)
    with np.errstate(over="ignore"):  # z - m below the range: exp gives the 0 it should
        lse = np.log(np.sum(np.exp(z - m), axis=1))
    mk = m[:, 0] * k
    lk = lse * k
    if s != 1:
        lk = lk + z.dtype.type(1 - s) * (mk - z[np.arange(len(z)), labels] * k)
    if s != 0:
        lk = lk + z.dtype.type(s) * (np.sum(mk[:, None] - z * k, axis=1) / z.dtype.type(c))
    with np.errstate(over="ignore"):  # a loss beyond the range: inf
        return lk / k


def binary_cross_entropy_with_logits(logits, targets, *, reduction="mean"):
    """max(x, 0) - x*t + log1p(exp(-|x|)) elementwise -> (loss, grad); PyTorch semantics."""
    x, t = _float(logits), _float(targets)
    dtype = np.result_type(x, t)
    x, t = x.astype(dtype, copy=False), t.astype(dtype, copy=False)
    losses = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    grad = sigmoid(x) - t
    return _reduce(losses, grad, reduction, x.size)


def mse_loss(input, target, *, reduction="mean"):
    """(x - t)^2 elementwise -> (loss, grad)."""
    x, t = _float(input), _float(target)
    d = x - t
    return _reduce(d * d, 2 * d, reduction, d.size)


# ---------------------------------------------------------------- optimizer updates, in place


def sgd_step(
    param,
    grad,
    momentum_buffer=None,
    *,
    lr,
    momentum=0.0,
    dampening=0.0,
    nesterov=False,
    weight_decay=0.0,
    first_step=False,
):
    """torch.optim.SGD, one step, in place on param (and momentum_buffer)."""
    g = grad + weight_decay * param if weight_decay != 0 else grad.copy()
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g
        d = g + momentum * momentum_buffer if nesterov else momentum_buffer
    else:
        d = g
    param -= lr * d


def adam_step(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    *,
    step,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay=False,
    amsgrad=False,
    max_exp_avg_sq=None,
):
    """torch.optim.Adam (L2 decay) / AdamW (decoupled decay), one step, in place."""
    beta1, beta2 = betas
    if weight_decay != 0 and decoupled_weight_decay:
        param *= 1 - lr * weight_decay
        g = grad
    elif weight_decay != 0:
        g = grad + weight_decay * param
    else:
        g = grad
    exp_avg *= beta1
    exp_avg += (1 - beta1) * g
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = np.sqrt(max_exp_avg_sq) / bias_correction2_sqrt + eps
    else:
        denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    param -= step_size * (exp_avg / denom)


def adam_step_multi(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    *,
    steps,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay=False,
    amsgrad=False,
    max_exp_avg_sqs=None,
):
    """adam_step on each entry of the lists."""
    for i, p in enumerate(params):
        adam_step(
            p,
            grads[i],
            exp_avgs[i],
            exp_avg_sqs[i],
            step=steps[i],
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            amsgrad=amsgrad,
            max_exp_avg_sq=None if max_exp_avg_sqs is None else max_exp_avg_sqs[i],
        )


def sgd_step_multi(
    params,
    grads,
    momentum_buffers=None,
    *,
    lr,
    momentum=0.0,
    dampening=0.0,
    nesterov=False,
    weight_decay=0.0,
    first_steps,
):
    """sgd_step on each entry of the lists."""
    for i, p in enumerate(params):
        sgd_step(
            p,
            grads[i],
            None if momentum_buffers is None else momentum_buffers[i],
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            first_step=first_steps[i],
        )


def rmsprop_step(
    param,
    grad,
    square_avg,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    momentum_buffer=None,
    grad_avg=None,
):
    """torch.optim.RMSprop, one step, in place."""
    g = grad + weight_decay * param if weight_decay != 0 else grad
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        grad_avg *= alpha
        grad_avg += (1 - alpha) * g
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum != 0:
        momentum_buffer *= momentum
        momentum_buffer += g / avg
        param -= lr * momentum_buffer
    else:
        param -= lr * (g / avg)


# ---------------------------------------------------------------- reductions


def bias_grad(grad_y):
    """Sum over every axis but the last."""
    grad_y = _float(grad_y)
    return np.sum(grad_y, axis=tuple(range(grad_y.ndim - 1)))


def global_norm(arrays):
    """L2 norm of all the arrays together, as a Python float (squares summed in float64)."""
    total = 0.0
    for a in arrays:
        a = _float(a).astype(np.float64).ravel()
        total += float(np.dot(a, a))
    return float(np.sqrt(total))
