"""sgd_step, adam_step and rmsprop_step as 5-step trajectories against the reference."""

import itertools

import numpy as np
import pytest
from helpers import ULPS, assert_close, randn

from myelin import ops, reference

pytestmark = pytest.mark.usefixtures("isa")

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (17,), (1000,), (100003,), (3, 5)]
STEPS = 5


def _sgd_scales(e, s0, s1, g, kw):
    """Error scales (sum of the magnitudes rounded into each value, errors carried along)."""
    wd, mom, lr = kw.get("weight_decay", 0.0), kw.get("momentum", 0.0), kw["lr"]
    e_g = np.abs(g) + wd * (np.abs(s0["param"]) + e["param"])
    gp = g + wd * s0["param"]
    if mom:
        if kw.get("first_step"):
            e["momentum_buffer"] = e_g.copy()
        else:
            e["momentum_buffer"] = (
                mom * (e["momentum_buffer"] + np.abs(s0["momentum_buffer"]))
                + (1 - kw.get("dampening", 0.0)) * e_g
            )
        e["momentum_buffer"] += np.abs(s1["momentum_buffer"])
        buf = s1["momentum_buffer"]
        e_d = (
            e_g + mom * e["momentum_buffer"] + np.abs(gp + mom * buf)
            if kw.get("nesterov")
            else e["momentum_buffer"]
        )
    else:
        e_d = e_g
    e["param"] = e["param"] + np.abs(s0["param"]) + lr * e_d + np.abs(s1["param"])


def _adam_scales(e, s0, s1, g, kw):
    lr, wd, (b1, b2), eps, t = kw["lr"], kw["weight_decay"], kw["betas"], kw["eps"], kw["step"]
    p0 = s0["param"]
    if kw["decoupled_weight_decay"]:
        p0 = p0 * (1 - lr * wd)
        e["param"] = e["param"] + np.abs(p0)
        gp, e_g = g, np.abs(g)
    else:
        gp, e_g = g + wd * p0, np.abs(g) + wd * (np.abs(p0) + e["param"])
    e["exp_avg"] = (
        b1 * (e["exp_avg"] + np.abs(s0["exp_avg"]))
        + (1 - b1) * (e_g + np.abs(gp))
        + np.abs(s1["exp_avg"])
    )
    e["exp_avg_sq"] = (
        b2 * (e["exp_avg_sq"] + np.abs(s0["exp_avg_sq"]))
        + (1 - b2) * (2 * np.abs(gp) * e_g + gp * gp)
        + s1["exp_avg_sq"]
    )
    vv, e_vv = s1["exp_avg_sq"], e["exp_avg_sq"]
    if kw["amsgrad"]:
        e["max_exp_avg_sq"] = np.fmax(e["max_exp_avg_sq"], e_vv)
        vv, e_vv = s1["max_exp_avg_sq"], e["max_exp_avg_sq"]
    bc2 = np.sqrt(1 - b2**t)
    step_size = lr / (1 - b1**t)
    denom = np.sqrt(vv) / bc2 + eps
    e_den = e_vv / (2 * np.sqrt(vv) * bc2 + 1e-300) + 2 * denom
    u = s1["exp_avg"] / denom
    e_u = e["exp_avg"] / denom + np.abs(u) * e_den / denom + np.abs(u)
    e["param"] = e["param"] + step_size * (e_u + np.abs(u)) + np.abs(s1["param"])


def _rmsprop_scales(e, s0, s1, g, kw):
    lr, wd, a, eps, mom = kw["lr"], kw["weight_decay"], kw["alpha"], kw["eps"], kw["momentum"]
    gp = g + wd * s0["param"]
    e_g = np.abs(g) + wd * (np.abs(s0["param"]) + e["param"])
    e["square_avg"] = (
        a * (e["square_avg"] + s0["square_avg"])
        + (1 - a) * (2 * np.abs(gp) * e_g + gp * gp)
        + s1["square_avg"]
    )
    w, e_w = s1["square_avg"], e["square_avg"]
    if kw["centered"]:
        ga = s1["grad_avg"]
        e["grad_avg"] = (
            a * (e["grad_avg"] + np.abs(s0["grad_avg"])) + (1 - a) * (e_g + np.abs(gp)) + np.abs(ga)
        )
        w = w - ga * ga
        e_w = e_w + 2 * np.abs(ga) * e["grad_avg"] + ga * ga + np.abs(w)
    avg = np.sqrt(w) + eps
    e_avg = e_w / (2 * np.sqrt(w) + 1e-300) + 2 * avg
    u = gp / avg
    e_u = e_g / avg + np.abs(u) * e_avg / avg + np.abs(u)
    if mom:
        e["momentum_buffer"] = (
            mom * (e["momentum_buffer"] + np.abs(s0["momentum_buffer"]))
            + e_u
            + np.abs(s1["momentum_buffer"])
        )
        e_d = e["momentum_buffer"]
    else:
        e_d = e_u
    e["param"] = e["param"] + np.abs(s0["param"]) + lr * e_d + np.abs(s1["param"])


_SCALES = {"sgd_step": _sgd_scales, "adam_step": _adam_scales, "rmsprop_step": _rmsprop_scales}


def check_trajectory(name, rng, shape, dtype, buffers, kwargs, nan_buffers=(), per_step=None):
    """STEPS updates by ops.<name> and by the reference from the same state and gradients.

    `buffers` are the state arrays' names (zero-initialised, as PyTorch does; those in
    `nan_buffers` are NaN-filled, for a first step that must not read them). After every step,
    param and each buffer must match the float64 reference trajectory within ULPS * eps * E,
    E being the error scale of the update's arithmetic (the magnitudes rounded into each value
    over the steps so far, with earlier errors carried through), and the same-dtype reference
    within twice that. `per_step(t)` gives step-dependent keyword arguments.
    """
    param0 = randn(rng, shape, dtype)
    grads = [randn(rng, shape, dtype) for _ in range(STEPS)]

    def state(dt):
        s = {"param": param0.astype(dt)}
        for b in buffers:
            s[b] = np.full(shape, np.nan if b in nan_buffers else 0.0, dt)
        return s

    got, same, want = state(dtype), state(dtype), state(np.float64)
    err = {k: np.zeros(shape) for k in want}
    eps = np.finfo(dtype).eps
    for t in range(STEPS):
        kw = {**kwargs, **(per_step(t) if per_step else {})}
        res = getattr(ops, name)(got["param"], grads[t], **{b: got[b] for b in buffers}, **kw)
        assert res is None, f"{name} returned {res!r}"
        getattr(reference, name)(same["param"], grads[t], **{b: same[b] for b in buffers}, **kw)
        before = {k: v.copy() for k, v in want.items()}
        g64 = grads[t].astype(np.float64)
        getattr(reference, name)(want["param"], g64, **{b: want[b] for b in buffers}, **kw)
        _SCALES[name](err, before, want, g64, kw)
        for k in want:
            tol = ULPS * eps * err[k]
            assert got[k].dtype == dtype
            assert_close(got[k], want[k], tol, f"{name} {k} after step {t + 1}")
            assert_close(got[k], same[k], 2 * tol, f"{name} {k} vs same-dtype reference")


# PyTorch's valid SGD options: nesterov needs momentum and no dampening.
SGD = [
    {"momentum": m, "dampening": d, "nesterov": n, "weight_decay": wd}
    for m, d, n, wd in itertools.product([0.0, 0.9], [0.0, 0.5], [False, True], [0.0, 0.01])
    if not (n and (m == 0 or d != 0)) and not (m == 0 and d != 0)
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("opts", SGD, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd(rng, opts, shape, dtype):
    if opts["momentum"]:
        # PyTorch's first step copies the gradient into the buffer: it must not read the old one.
        check_trajectory(
            "sgd_step",
            rng,
            shape,
            dtype,
            ["momentum_buffer"],
            {"lr": 0.1, **opts},
            nan_buffers=["momentum_buffer"],
            per_step=lambda t: {"first_step": t == 0},
        )
        # A buffer carried over (zeros), never a first step.
        check_trajectory("sgd_step", rng, shape, dtype, ["momentum_buffer"], {"lr": 0.1, **opts})
    else:
        check_trajectory("sgd_step", rng, shape, dtype, [], {"lr": 0.1, **opts})


ADAM = [
    {"amsgrad": a, "decoupled_weight_decay": d, "weight_decay": wd, "betas": b}
    for a, d, wd, b in itertools.product(
        [False, True], [False, True], [0.0, 0.1], [(0.9, 0.999), (0.8, 0.9)]
    )
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("opts", ADAM, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_adam(rng, opts, shape, dtype):
    buffers = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if opts["amsgrad"] else [])
    check_trajectory(
        "adam_step",
        rng,
        shape,
        dtype,
        buffers,
        {"lr": 1e-2, "eps": 1e-8, **opts},
        per_step=lambda t: {"step": t + 1},
    )


RMSPROP = [
    {"centered": c, "momentum": m, "weight_decay": wd, "alpha": al}
    for c, m, wd, al in itertools.product([False, True], [0.0, 0.9], [0.0, 0.1], [0.99, 0.9])
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("opts", RMSPROP, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_rmsprop(rng, opts, shape, dtype):
    buffers = (
        ["square_avg"]
        + (["momentum_buffer"] if opts["momentum"] else [])
        + (["grad_avg"] if opts["centered"] else [])
    )
    check_trajectory("rmsprop_step", rng, shape, dtype, buffers, {"lr": 1e-2, "eps": 1e-8, **opts})


def test_optimizer_errors(rng):
    p, g = randn(rng, (6,)), randn(rng, (6,))
    with pytest.raises(ValueError, match="momentum_buffer"):
        ops.sgd_step(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        ops.adam_step(p, g, np.zeros(6), np.zeros(6), step=1, amsgrad=True)
    with pytest.raises(ValueError, match="grad_avg"):
        ops.rmsprop_step(p, g, np.zeros(6), centered=True)
    with pytest.raises(ValueError, match="momentum_buffer"):
        ops.rmsprop_step(p, g, np.zeros(6), momentum=0.9)
    with pytest.raises(ValueError, match="param"):  # not contiguous
        ops.sgd_step(randn(rng, (12,))[::2], g, lr=0.1)
    ro = p.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param"):
        ops.sgd_step(ro, g, lr=0.1)
    with pytest.raises(ValueError, match="grad"):
        ops.sgd_step(p, randn(rng, (7,)), lr=0.1)
    with pytest.raises(TypeError, match="grad"):
        ops.sgd_step(p, g.astype(np.float32), lr=0.1)
    with pytest.raises(TypeError, match="param"):
        ops.sgd_step(np.zeros(6, np.int64), g, lr=0.1)
    with pytest.raises(ValueError, match="exp_avg_sq"):
        ops.adam_step(p, g, np.zeros(6), np.zeros(5), step=1)
    assert np.isfinite(p).all()  # none of the refused calls touched param
