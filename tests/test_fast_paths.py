"""The hot-loop fast paths give the general paths' numbers bitwise, and the multi-tensor
optimizer updates match per-tensor ones; gradient adoption never aliases two leaves."""

import numpy as np
import pytest

import myelin
from myelin import nn, ops, reference


def _f(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "sigmoid", "tanh"])
def test_linear_fast_path_equals_general_path(isa, rng, dtype, activation):
    x, w, b = _f(rng, (37, 19), dtype), _f(rng, (23, 19), dtype), _f(rng, (23,), dtype)
    fast = ops.linear(x, w, b, activation, negative_slope=0.2)
    # a Fortran-ordered copy of x takes the general path (same kernel, same strides for w)
    general = ops.linear(np.asfortranarray(x), w, b, activation, negative_slope=0.2)
    np.testing.assert_array_equal(fast, general)
    g = _f(rng, fast.shape, dtype)
    for need in (True, False):
        f = ops.linear_backward(g, x, w, fast, activation, negative_slope=0.2, need_grad_x=need)
        s = ops.linear_backward(
            np.asfortranarray(g), x, w, fast, activation, negative_slope=0.2, need_grad_x=need
        )
        r = reference.linear_backward(
            g, x, w, fast, activation, negative_slope=0.2, need_grad_x=need
        )
        assert (f[0] is None) == (not need) and (s[0] is None) == (not need)
        assert (r[0] is None) == (not need)
        for a, c in zip(f, s, strict=True):
            if a is not None:
                np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul_fast_path_equals_general_path(isa, rng, dtype, trans_a, trans_b):
    a = _f(rng, (29, 31) if not trans_a else (31, 29), dtype)
    b = _f(rng, (31, 17) if not trans_b else (17, 31), dtype)
    fast = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    general = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=np.empty_like(fast))
    np.testing.assert_array_equal(fast, general)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [None, 2, -100])
def test_softmax_xent_fast_path_equals_general_path(isa, rng, reduction, ignore_index):
    logits = _f(rng, (33, 7), np.float32)
    labels = rng.integers(0, 7, 33)
    kw = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=0.1)
    loss_f, grad_f = ops.softmax_cross_entropy(logits, labels, **kw)
    loss_g, grad_g = ops.softmax_cross_entropy(logits, labels.astype(np.int32), **kw)
    assert loss_f == loss_g and type(loss_f) is type(loss_g) is np.float32
    np.testing.assert_array_equal(grad_f, grad_g)
    with pytest.raises(ValueError, match=r"labels\[3\] = 9"):
        bad = labels.copy()
        bad[3] = 9
        ops.softmax_cross_entropy(logits, bad, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_step_multi_equals_adam_step(isa, rng, dtype, amsgrad):
    shapes = [(5, 3), (7,), (1,), (40, 2)]
    ps = [_f(rng, s, dtype) for s in shapes]
    gs = [_f(rng, s, dtype) for s in shapes]
    one = [p.copy() for p in ps]
    st = {k: [np.zeros_like(p) for p in ps] for k in ("m", "v", "vmax")}
    st1 = {k: [np.zeros_like(p) for p in ps] for k in ("m", "v", "vmax")}
    kw = dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1, amsgrad=amsgrad)
    for step in (1, 2, 3):
        ops.adam_step_multi(
            ps, gs, st["m"], st["v"], steps=[step] * 4, max_exp_avg_sqs=st["vmax"], **kw
        )
        for i in range(4):
            ops.adam_step(
                one[i],
                gs[i],
                st1["m"][i],
                st1["v"][i],
                step=step,
                max_exp_avg_sq=st1["vmax"][i],
                **kw,
            )
    for a, b in zip(ps, one, strict=True):
        np.testing.assert_array_equal(a, b)


def test_sgd_step_multi_equals_sgd_step(rng):
    ps = [_f(rng, (4, 3), np.float32), _f(rng, (9,), np.float32)]
    gs = [_f(rng, p.shape, np.float32) for p in ps]
    one = [p.copy() for p in ps]
    bufs = [np.zeros_like(p) for p in ps]
    bufs1 = [np.zeros_like(p) for p in ps]
    kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    for first in (True, False, False):
        ops.sgd_step_multi(ps, gs, bufs, first_steps=[first, first], **kw)
        for i in range(2):
            ops.sgd_step(one[i], gs[i], bufs1[i], first_step=first, **kw)
    for a, b in zip(ps, one, strict=True):
        np.testing.assert_array_equal(a, b)


def test_multi_updates_name_the_bad_entry_and_change_nothing(rng):
    ps = [_f(rng, (3,), np.float32), _f(rng, (4,), np.float32)]
    before = [p.copy() for p in ps]
    gs = [np.ones(3, np.float32), np.ones(5, np.float32)]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    with pytest.raises(ValueError, match="entry 1"):
        ops.adam_step_multi(ps, gs, ms, vs, steps=[1, 1])
    for a, b in zip(ps, before, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="grads has 1 entries"):
        ops.adam_step_multi(ps, gs[:1], ms, vs, steps=[1, 1])


def test_adopted_gradients_never_alias():
    a = myelin.tensor([1.0, 2.0], requires_grad=True)
    b = myelin.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad.data[0] = 100.0
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])
    seed = np.array([1.0, 1.0], np.float32)
    c = myelin.tensor([1.0, 2.0], requires_grad=True)
    c.backward(seed)
    c.grad.data[0] = 7.0
    np.testing.assert_array_equal(seed, [1.0, 1.0])


def test_sequential_chain_with_and_without_bias_and_mixed_layers():
    myelin.manual_seed(0)
    layers = [
        nn.Linear(5, 4, bias=False),
        nn.Tanh(),
        nn.Linear(4, 3),
        nn.Dropout(0.0),
        nn.Linear(3, 2, activation="sigmoid"),
    ]
    seq = nn.Sequential(*layers)
    x = myelin.randn(6, 5)
    y = seq(x)
    want = layers[4](layers[3](layers[2](layers[1](layers[0](x)))))
    np.testing.assert_allclose(y.data, want.data, rtol=1e-6, atol=1e-7)
    y.sum().backward()
    g = [p.grad.data.copy() for p in seq.parameters()]
    seq.zero_grad()
    want.sum().backward()
    for a, p in zip(g, seq.parameters(), strict=True):
        np.testing.assert_allclose(a, p.grad.data, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"Linear\(4, 3\) got input of shape \(\.\.\., 7\)"):
        nn.Sequential(nn.Linear(5, 7), nn.Linear(4, 3))(x)


def _mlp(seed, sizes=(300, 200, 100, 10)):
    myelin.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _train(model, steps, x, y, pooled=True):
    if not pooled:
        model._workspace = None
    opt = myelin.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.state_dict()


def test_reused_buffers_give_the_same_training_bitwise(rng):
    x = myelin.tensor(rng.standard_normal((128, 300)).astype(np.float32))
    y = myelin.tensor(rng.integers(0, 10, 128))
    a = _train(_mlp(1), 6, x, y, pooled=True)
    b = _train(_mlp(1), 6, x, y, pooled=False)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_a_gradient_the_user_kept_is_never_overwritten(rng):
    model = _mlp(2)
    x = myelin.tensor(rng.standard_normal((128, 300)).astype(np.float32))
    y = myelin.tensor(rng.integers(0, 10, 128))
    opt = myelin.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    kept = model[0].weight.grad  # a Tensor over the gradient array
    snapshot = kept.data.copy()
    opt.step()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    np.testing.assert_array_equal(kept.data, snapshot)
    assert not np.array_equal(model[0].weight.grad.data, snapshot)


def test_second_backward_raises_unless_the_graph_is_retained(rng):
    model = _mlp(3)
    x = myelin.tensor(rng.standard_normal((64, 300)).astype(np.float32))
    loss = model(x).sum()
    loss.backward(retain_graph=True)
    first = model[0].weight.grad.data.copy()
    loss.backward()
    np.testing.assert_allclose(model[0].weight.grad.data, 2 * first, rtol=1e-6)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_inference_with_pooled_buffers_matches_training_mode_outputs(rng):
    model = _mlp(4)
    x = rng.standard_normal((256, 300)).astype(np.float32)
    with myelin.no_grad():
        a = model(x).data.copy()
        b = model(x).data.copy()
    c = model(x).data
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_linear_backward_into_given_arrays(rng, activation):
    x, w = _f(rng, (40, 30), np.float32), _f(rng, (20, 30), np.float32)
    y = ops.linear(x, w, None, activation)
    g = _f(rng, y.shape, np.float32)
    want = ops.linear_backward(g, x, w, y, activation)
    outs = (np.full_like(x, np.nan), np.full_like(w, np.nan), np.full(20, np.nan, np.float32))
    got = ops.linear_backward(g.copy(), x, w, y, activation, out=outs, work=None)
    assert all(a is b for a, b in zip(got, outs, strict=True))
    gg = g.copy()
    got2 = ops.linear_backward(gg, x, w, y, activation, work=gg)  # scratch = grad_y itself
    for a, b, c in zip(want, got, got2, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # an out array overlapping an input takes the general path: still right
    big = np.zeros((40 * 30 + 20 * 30,), np.float32)
    xs = big[: 40 * 30].reshape(40, 30)
    xs[...] = x
    ow = big[40 * 30 :].reshape(20, 30)
    got3 = ops.linear_backward(g, xs, w, y, activation, out=(None, ow, None))
    np.testing.assert_array_equal(got3[1], want[1])
    with pytest.raises(ValueError, match="shape"):
        ops.linear_backward(g, x, w, y, activation, out=(None, np.zeros((3, 3), np.float32), None))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_grad", [False, True])
def test_linear_chain_fast_path_equals_layer_by_layer(rng, dtype, x_grad):
    """F.linear_chain's one-call path gives the numbers of the layers run one by one (its
    general path, taken with a workspace that pools every array)."""
    import myelin.nn.functional as F

    specs = [(7, 13, "relu", 0.01), (13, 5, "leaky_relu", 0.3), (5, 4, "tanh", 0.01)]
    specs.append((4, 3, None, 0.01))

    def run(workspace):
        layers = []
        for i, (n_in, n_out, act, slope) in enumerate(specs):
            w = myelin.Tensor(_f(np.random.default_rng(i), (n_out, n_in), dtype), True)
            b_data = _f(np.random.default_rng(9 + i), (n_out,), dtype)
            b = None if i == 2 else myelin.Tensor(b_data, True)
            layers.append((w, b, act, slope))
        x = myelin.Tensor(_f(np.random.default_rng(99), (6, 7), dtype), requires_grad=x_grad)
        y = F.linear_chain(x, layers, workspace)
        y.backward(_f(np.random.default_rng(7), y.shape, dtype))
        grads = [x.grad]
        for w, b, _, _ in layers:
            grads += [w.grad, None if b is None else b.grad]
        return y.detach().numpy(), grads

    fast = run(None)
    general = run(F.Workspace(min_size=1))
    np.testing.assert_array_equal(fast[0], general[0])
    assert fast[0].dtype == dtype
    for a, c in zip(fast[1], general[1], strict=True):
        assert (a is None) == (c is None)
        if a is not None:
            np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert (fast[1][0] is None) == (not x_grad)


def test_sequential_sees_changes_to_its_layers(rng):
    """Sequential keeps its fused plan only while no module changes: a new activation, layer or
    parameter shows in the next forward."""
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = myelin.Tensor(_f(rng, (5, 4), np.float32))

    def expect():
        p = {k: v.detach().numpy() for k, v in m.named_parameters()}
        h = x.numpy() @ p["0.weight"].T + p["0.bias"]
        h = np.maximum(h, 0) if type(m[1]) is nn.ReLU else np.tanh(h)
        return h @ p["2.weight"].T + p["2.bias"]

    np.testing.assert_allclose(m(x).detach().numpy(), expect(), rtol=1e-5, atol=1e-6)
    m[2].weight = nn.Parameter(_f(rng, (2, 3), np.float32))
    np.testing.assert_allclose(m(x).detach().numpy(), expect(), rtol=1e-5, atol=1e-6)
    m.add_module("1", nn.Tanh())
    np.testing.assert_allclose(m(x).detach().numpy(), expect(), rtol=1e-5, atol=1e-6)
    m[0].weight.data = _f(rng, (3, 4), np.float32)
    np.testing.assert_allclose(m(x).detach().numpy(), expect(), rtol=1e-5, atol=1e-6)
    m.add_module("3", nn.Linear(5, 1))
    with pytest.raises(ValueError, match=r"Linear\(5, 1\) got input of shape \(\.\.\., 2\)"):
        m(x)
