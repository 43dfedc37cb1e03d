"""myelin.optim: SGD, Adam, AdamW and RMSprop as trajectories against plain-NumPy transcriptions
of PyTorch's published update rules; parameter groups, state dicts, validation, a training run."""

import numpy as np
import pytest

import myelin
from myelin import nn, optim
from myelin.nn import Parameter

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}
STEPS = 8
SHAPES = [(7,), (3, 4)]


# ---------------------------------------------------------------- the objective


def _grad_of(p: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Gradient of sum(a/2 (p - c)^2 + p^4/40) at ``p``, in ``p``'s dtype (changes every step)."""
    a, c = a.astype(p.dtype), c.astype(p.dtype)
    return a * (p - c) + p**3 / p.dtype.type(10)


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    p0 = [rng.standard_normal(s) for s in SHAPES]
    a = [rng.uniform(0.5, 2.0, s) for s in SHAPES]
    c = [rng.standard_normal(s) for s in SHAPES]
    return p0, a, c


# ---------------------------------------------------------------- PyTorch's rules in float64
# Transcribed from the algorithm boxes of the torch.optim pages; one call is one step on one
# parameter, ``st`` its state dict, ``t`` the step number (1 on the first step).


def _sgd_ref(p, g, st, t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False):  # fmt: skip
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if t > 1:
            st["b"] = momentum * st["b"] + (1 - dampening) * g
        else:
            st["b"] = g.copy()
        g = g + momentum * st["b"] if nesterov else st["b"]
    return p - lr * g


def _adam_ref(p, g, st, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              amsgrad=False, maximize=False, decoupled=False):  # fmt: skip
    b1, b2 = betas
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
    if t == 1:
        st["m"], st["v"], st["vmax"] = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    st["m"] = b1 * st["m"] + (1 - b1) * g
    st["v"] = b2 * st["v"] + (1 - b2) * g * g
    m_hat = st["m"] / (1 - b1**t)
    if amsgrad:
        st["vmax"] = np.maximum(st["vmax"], st["v"])
        v_hat = st["vmax"] / (1 - b2**t)
    else:
        v_hat = st["v"] / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def _adamw_ref(p, g, st, t, lr=1e-3, weight_decay=1e-2, **kw):
    return _adam_ref(p, g, st, t, lr=lr, weight_decay=weight_decay, decoupled=True, **kw)


def _rmsprop_ref(p, g, st, t, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False):  # fmt: skip
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    if t == 1:
        st["v"], st["gavg"], st["b"] = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    st["v"] = alpha * st["v"] + (1 - alpha) * g * g
    v_tilde = st["v"]
    if centered:
        st["gavg"] = alpha * st["gavg"] + (1 - alpha) * g
        v_tilde = v_tilde - st["gavg"] ** 2
    if momentum > 0:
        st["b"] = momentum * st["b"] + g / (np.sqrt(v_tilde) + eps)
        return p - lr * st["b"]
    return p - lr * g / (np.sqrt(v_tilde) + eps)


CASES = [
    (optim.SGD, _sgd_ref, {"lr": 0.1}),
    (optim.SGD, _sgd_ref, {"lr": 0.05, "momentum": 0.9}),
    (optim.SGD, _sgd_ref, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    (optim.SGD, _sgd_ref, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    (optim.SGD, _sgd_ref, {"lr": 0.02, "momentum": 0.5, "maximize": True}),
    (optim.Adam, _adam_ref, {"lr": 0.01}),
    (optim.Adam, _adam_ref, {"lr": 0.02, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    (optim.Adam, _adam_ref, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.05}),
    (optim.Adam, _adam_ref, {"lr": 0.01, "maximize": True}),
    (optim.AdamW, _adamw_ref, {"lr": 0.01}),
    (optim.AdamW, _adamw_ref, {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True}),
    (optim.RMSprop, _rmsprop_ref, {"lr": 0.01}),
    (optim.RMSprop, _rmsprop_ref, {"lr": 0.01, "centered": True}),
    (optim.RMSprop, _rmsprop_ref, {"lr": 0.01, "alpha": 0.9, "momentum": 0.5}),
    (
        optim.RMSprop,
        _rmsprop_ref,
        {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
    ),
]


def _run(cls, ref, kw, dtype, lr_at=None):
    """STEPS steps of ``cls`` and of ``ref`` on the problem, each from its own parameters;
    ``lr_at`` maps a step number to a new lr set in the group before that step."""
    p0, a, c = _problem(7)
    params = [Parameter(x.astype(dtype)) for x in p0]
    opt = cls(params, **kw)
    ref_p = [x.astype(dtype).astype(np.float64) for x in p0]
    ref_st = [{} for _ in params]
    ref_kw = dict(kw)
    tol = TOL[dtype]
    for t in range(1, STEPS + 1):
        if lr_at and t in lr_at:
            opt.param_groups[0]["lr"] = ref_kw["lr"] = lr_at[t]
        for p, ai, ci in zip(params, a, c, strict=True):
            p.grad = _grad_of(p.data, ai, ci)
        opt.step()
        for i in range(len(params)):
            g = _grad_of(ref_p[i], a[i], c[i])
            ref_p[i] = ref(ref_p[i], g, ref_st[i], t, **ref_kw)
            assert params[i].data.dtype == dtype
            np.testing.assert_allclose(
                params[i].data, ref_p[i], rtol=tol, atol=tol, err_msg=f"step {t}, param {i}"
            )
    return opt, params, ref_st


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("cls", "ref", "kw"), CASES)
def test_trajectory(cls, ref, kw, dtype):
    _run(cls, ref, kw, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("cls", "ref", "kw"), [CASES[2], CASES[7], CASES[10], CASES[14]])
def test_trajectory_lr_changed_between_steps(cls, ref, kw, dtype):
    _run(cls, ref, kw, dtype, lr_at={3: kw["lr"] * 0.5, 6: kw["lr"] * 0.1})


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_buffers_match_the_rule(dtype):
    opt, params, ref_st = _run(optim.Adam, _adam_ref, CASES[7][2], dtype)
    tol = TOL[dtype]
    for p, st in zip(params, ref_st, strict=True):
        s = opt.state[p]
        assert s["step"] == STEPS
        assert s["exp_avg"].dtype == dtype and s["exp_avg"].shape == p.shape
        np.testing.assert_allclose(s["exp_avg"], st["m"], rtol=tol, atol=tol)
        np.testing.assert_allclose(s["exp_avg_sq"], st["v"], rtol=tol, atol=tol)
        np.testing.assert_allclose(s["max_exp_avg_sq"], st["vmax"], rtol=tol, atol=tol)
    opt, params, ref_st = _run(optim.RMSprop, _rmsprop_ref, CASES[14][2], dtype)
    for p, st in zip(params, ref_st, strict=True):
        s = opt.state[p]
        assert s["step"] == STEPS
        np.testing.assert_allclose(s["square_avg"], st["v"], rtol=tol, atol=tol)
        np.testing.assert_allclose(s["grad_avg"], st["gavg"], rtol=tol, atol=tol)
        np.testing.assert_allclose(s["momentum_buffer"], st["b"], rtol=tol, atol=tol)


def test_state_keys_as_pytorch():
    p = Parameter(np.ones(3))
    p.grad = np.ones(3)
    for opt, keys in [
        (optim.SGD([p], lr=0.1), set()),
        (optim.SGD([p], lr=0.1, momentum=0.9), {"momentum_buffer"}),
        (optim.Adam([p]), {"step", "exp_avg", "exp_avg_sq"}),
        (optim.Adam([p], amsgrad=True), {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
        (optim.RMSprop([p]), {"step", "square_avg"}),
        (
            optim.RMSprop([p], momentum=0.5, centered=True),
            {"step", "square_avg", "momentum_buffer", "grad_avg"},
        ),
    ]:
        opt.step()
        assert set(opt.state.get(p, {})) == keys, type(opt).__name__
        assert len(opt.state_dict()["state"]) == (1 if keys else 0)


# ---------------------------------------------------------------- gradients the kernels cannot take


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_of_other_dtype_or_layout(dtype):
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((4, 5)).astype(dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    for grad in (np.asfortranarray(rng.standard_normal((4, 5)).astype(dtype)),
                 rng.standard_normal((4, 5)).astype(other)):  # fmt: skip
        want = x0.astype(np.float64) - 0.1 * grad.astype(dtype).astype(np.float64)
        p = Parameter(x0.copy())
        p._grad = grad
        optim.SGD([p], lr=0.1).step()
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, want, rtol=TOL[dtype], atol=TOL[dtype])


def test_non_contiguous_param_updated_in_place():
    base = np.arange(12.0).reshape(3, 4)
    p = Parameter(base)
    p._data = base.T  # a non-contiguous view of base
    p._grad = np.ones((4, 3))
    optim.SGD([p], lr=0.5).step()
    np.testing.assert_array_equal(base, np.arange(12.0).reshape(3, 4) - 0.5)


# ---------------------------------------------------------------- groups, skipping, zero_grad


def test_param_groups_with_own_options():
    w = Parameter(np.ones(3))
    b = Parameter(np.ones(2))
    opt = optim.SGD([{"params": [w]}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[1]["momentum"] == 0.9
    assert opt.param_groups[1]["params"][0] is b
    for _ in range(2):
        w.grad = np.full(3, 2.0)
        b.grad = np.full(2, 2.0)
        opt.step()
    np.testing.assert_allclose(w.data, 1 - 2 * 0.1 * 2)
    # momentum: b1 = g, b2 = 0.9 g + g
    np.testing.assert_allclose(b.data, 1 - 0.5 * 2 - 0.5 * (0.9 * 2 + 2))


def test_add_param_group():
    w = Parameter(np.ones(2))
    opt = optim.Adam([w], lr=0.1)
    v = Parameter(np.ones(2))
    opt.add_param_group({"params": [v], "betas": [0.5, 0.6]})
    g = opt.param_groups[1]
    assert g["lr"] == 0.1 and g["betas"] == (0.5, 0.6) and g["params"][0] is v
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [w]})
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [Parameter(np.ones(1))], "lr": -1.0})
    assert len(opt.param_groups) == 2


def test_params_without_grad_are_skipped():
    a = Parameter(np.ones(3))
    b = Parameter(np.ones(3))
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = np.ones(3)
    opt.step()
    opt.step()
    np.testing.assert_array_equal(b.data, np.ones(3))
    assert b not in opt.state and opt.state[a]["step"] == 2
    b.grad = np.ones(3)
    opt.step()
    assert opt.state[b]["step"] == 1 and opt.state[a]["step"] == 3


def test_zero_grad():
    a = Parameter(np.ones(3))
    b = Parameter(np.ones(2))
    opt = optim.SGD([a, b], lr=0.1)
    a.grad = np.ones(3)
    b.grad = np.ones(2)
    kept = a._grad
    opt.zero_grad(set_to_none=False)
    assert a._grad is kept
    np.testing.assert_array_equal(a._grad, 0)
    np.testing.assert_array_equal(b._grad, 0)
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    opt.step()  # nothing to do
    np.testing.assert_array_equal(a.data, 1)


def test_step_with_closure():
    w = Parameter(np.array([3.0]))
    opt = optim.SGD([w], lr=0.25)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        calls.append(myelin.is_grad_enabled())
        return loss

    with myelin.no_grad():
        loss = opt.step(closure)
    assert calls == [True]
    assert loss.item() == 9.0
    np.testing.assert_allclose(w.data, [3.0 - 0.25 * 6.0])
    with pytest.raises(TypeError, match="closure"):
        opt.step(3)


def test_accepts_generator_and_module_parameters():
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    got = opt.param_groups[0]["params"]
    assert len(got) == 2
    assert all(p is q for p, q in zip(got, model.parameters(), strict=True))


# ---------------------------------------------------------------- state dicts


def _two_group_adam(values):
    params = [Parameter(v.copy()) for v in values]
    opt = optim.Adam(
        [{"params": params[:1]}, {"params": params[1:], "lr": 0.03, "amsgrad": True}],
        lr=0.02,
        weight_decay=0.01,
    )
    return params, opt


def _train(params, opt, a, c, steps):
    for _ in range(steps):
        for p, ai, ci in zip(params, a, c, strict=True):
            p.grad = _grad_of(p.data, ai, ci)
        opt.step()


@pytest.mark.parametrize("as_arrays", [False, True])
def test_state_dict_round_trip_continues_the_trajectory(as_arrays):
    p0, a, c = _problem(11)
    full_p, full_opt = _two_group_adam(p0)
    _train(full_p, full_opt, a, c, 7)

    first_p, first_opt = _two_group_adam(p0)
    _train(first_p, first_opt, a, c, 3)
    sd = first_opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert set(sd["state"]) == {0, 1} and sd["state"][1]["step"] == 3
    assert all(isinstance(v, np.ndarray) for k, v in sd["state"][1].items() if k != "step")
    saved = {k: v.copy() for k, v in sd["state"][0].items() if isinstance(v, np.ndarray)}
    _train(first_p, first_opt, a, c, 1)  # the state dict holds copies
    for k, v in saved.items():
        np.testing.assert_array_equal(sd["state"][0][k], v)
    if as_arrays:  # as after a trip through .npz: numbers come back as 0-d arrays
        sd["state"] = {i: {k: np.asarray(v) for k, v in s.items()} for i, s in sd["state"].items()}

    resumed_p, resumed_opt = _two_group_adam([np.zeros_like(x) for x in p0])
    resumed_opt.param_groups[1]["lr"] = 123.0
    for rp, x in zip(resumed_p, _snapshot_after(p0, a, c, 3), strict=True):
        rp.data[...] = x
    resumed_opt.load_state_dict(sd)
    assert resumed_opt.param_groups[1]["lr"] == 0.03
    assert resumed_opt.state[resumed_p[1]]["step"] == 3
    assert isinstance(resumed_opt.state[resumed_p[1]]["step"], int)
    _train(resumed_p, resumed_opt, a, c, 4)
    for rp, fp in zip(resumed_p, full_p, strict=True):
        np.testing.assert_array_equal(rp.data, fp.data)


def _snapshot_after(p0, a, c, steps):
    params, opt = _two_group_adam(p0)
    _train(params, opt, a, c, steps)
    return [p.data.copy() for p in params]


def test_load_state_dict_copies_arrays():
    p = Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    q = Parameter(np.ones(3, np.float32))
    other = optim.SGD([q], lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    buf = other.state[q]["momentum_buffer"]
    assert buf.dtype == np.float32 and buf is not sd["state"][0]["momentum_buffer"]
    sd["state"][0]["momentum_buffer"][...] = 99
    np.testing.assert_array_equal(buf, 1.0)


def test_load_state_dict_mismatch_raises():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = optim.SGD([p, q], lr=0.1, momentum=0.9)
    p.grad, q.grad = np.ones(3), np.ones(2)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([{"params": [p]}, {"params": [q]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameters|has 2 parameters"):
        optim.SGD([p], lr=0.1).load_state_dict(sd)
    swapped = optim.SGD([q, p], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="shape"):
        swapped.load_state_dict(sd)
    assert not swapped.state  # nothing loaded on failure
    with pytest.raises(ValueError, match="param_groups"):
        opt.load_state_dict({"state": {}})


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("cls", "kw", "name"),
    [
        (optim.SGD, {"lr": -0.1}, "lr"),
        (optim.SGD, {"momentum": -0.5}, "momentum"),
        (optim.SGD, {"weight_decay": -1e-4}, "weight_decay"),
        (optim.SGD, {"nesterov": True}, "Nesterov"),
        (optim.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "Nesterov"),
        (optim.Adam, {"lr": -1e-3}, "lr"),
        (optim.Adam, {"betas": (1.0, 0.999)}, r"betas\[0\]"),
        (optim.Adam, {"betas": (0.9, -0.1)}, r"betas\[1\]"),
        (optim.Adam, {"betas": (0.9,)}, "betas"),
        (optim.Adam, {"eps": -1e-8}, "eps"),
        (optim.Adam, {"weight_decay": -0.1}, "weight_decay"),
        (optim.AdamW, {"betas": (0.9, 1.5)}, r"betas\[1\]"),
        (optim.AdamW, {"lr": float("nan")}, "lr"),
        (optim.RMSprop, {"lr": -0.01}, "lr"),
        (optim.RMSprop, {"alpha": -0.9}, "alpha"),
        (optim.RMSprop, {"eps": -1.0}, "eps"),
        (optim.RMSprop, {"momentum": -0.1}, "momentum"),
        (optim.RMSprop, {"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_invalid_hyperparameters_raise(cls, kw, name):
    with pytest.raises(ValueError, match=name):
        cls([Parameter(np.ones(2))], **kw)


@pytest.mark.parametrize(
    ("cls", "kw", "name"),
    [
        (optim.SGD, {"lr": "0.1"}, "lr"),
        (optim.Adam, {"betas": 0.9}, "betas"),
        (optim.Adam, {"amsgrad": "yes"}, "amsgrad"),
        (optim.RMSprop, {"centered": 1}, "centered"),
    ],
)
def test_wrong_hyperparameter_types_raise(cls, kw, name):
    with pytest.raises(TypeError, match=name):
        cls([Parameter(np.ones(2))], **kw)


def test_invalid_params_raise():
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam(iter([]))
    with pytest.raises(ValueError, match="twice"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="ordered"):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(TypeError, match="only optimize Tensors"):
        optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        optim.SGD([myelin.tensor([1, 2])], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="dict"):
        optim.SGD([{"params": [p]}, Parameter(np.ones(1))], lr=0.1)


def test_exports_and_repr():
    assert {"Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"} <= set(optim.__all__)
    assert issubclass(optim.AdamW, optim.Adam) and issubclass(optim.SGD, optim.Optimizer)
    opt = optim.AdamW([Parameter(np.ones(1))])
    g = opt.param_groups[0]
    assert g["weight_decay"] == 1e-2 and g["decoupled_weight_decay"] is True
    assert "Parameter Group 0" in repr(opt) and "lr: 0.001" in repr(opt)
    assert optim.RMSprop([Parameter(np.ones(1))]).defaults["lr"] == 1e-2


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    ("cls", "kw"),
    [
        (optim.SGD, {"lr": 0.1, "momentum": 0.9}),
        (optim.Adam, {"lr": 0.05}),
        (optim.AdamW, {"lr": 0.05}),
        (optim.RMSprop, {"lr": 0.01}),
    ],
)
def test_training_a_linear_model_decreases_the_loss(cls, kw):
    myelin.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x @ rng.standard_normal((5, 2)) + 0.3).astype(np.float32)
    model = nn.Linear(5, 2)
    loss_fn = nn.MSELoss()
    opt = cls(model.parameters(), **kw)
    xs, ys = myelin.from_numpy(x), myelin.from_numpy(y)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(xs), ys)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert all(np.isfinite(losses))
