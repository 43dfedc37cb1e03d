"""The kernel entries hold up against what an adversarial caller can pass (issue 17):

* sequences read once: a multi-tensor step or a chain of layers takes one snapshot of every
  sequence argument, so an entry swapped during the call (by a step's ``__index__``, a hostile
  ``__getitem__`` or another thread) can neither reach the kernels unchecked nor be seen at all;
* byte order: a big-endian array is read as the numbers it holds on every path, fast paths
  included, and an array the op writes in place in the other byte order gets the right result
  (``out=``) or a ValueError naming it (optimizer parameters and states);
* overlap: arrays an op writes never share memory with its other arrays (ValueError naming both)
  unless the op reads its inputs from copies, so results never depend on the thread count.

The crash reproducers run in a subprocess, so that a crash fails the test instead of the run.
"""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import myelin
from myelin import _kernels, ops, reference

BIG = ">" if sys.byteorder == "little" else "<"  # the byte order that is not the machine's


def swapped(a: np.ndarray) -> np.ndarray:
    """The same values in the other byte order."""
    return a.astype(a.dtype.newbyteorder(BIG))


def unaligned(a: np.ndarray) -> np.ndarray:
    """The same values, C-contiguous at an address that is not a multiple of the item size."""
    buf = np.empty(a.nbytes + 1, np.uint8)
    u = np.frombuffer(buf.data, a.dtype, a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


def _run(code: str, prelude: str = "") -> subprocess.CompletedProcess:
    """Run `prelude` and `code` in a fresh interpreter (a crash there is a return code, not a
    dead test run)."""
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_ran(res: subprocess.CompletedProcess) -> None:
    out = (res.stdout + res.stderr)[-4000:]
    assert res.returncode >= 0, f"crashed with signal {-res.returncode}:\n{out}"
    assert res.returncode == 0, out
    assert "OK" in res.stdout, out


# ---------------------------------------------------------------- finding 1: sequences read once

_GUARD = """
import numpy as np
from myelin import ops, reference
n = 1000
guard = np.full(4 * n, 7.0)  # a swapped-in 4-element view sits at the front of this
small = guard[n : n + 4]

def intact():
    return bool((guard[: n] == 7).all() and (guard[n + 4 :] == 7).all())
"""


def test_adam_multi_step_index_cannot_swap_an_entry():
    """A step's __index__ (and __int__) replacing exp_avgs[0] by a 4-element array: the call
    used to check the old entry and then write 1000 elements into the new one (a heap
    overflow); it now runs on the entries of the call's start, the new one untouched."""
    res = _run(
        """
        ps = [np.linspace(-1, 1, n) for _ in range(2)]
        gs = [np.cos(p) for p in ps]
        ms = [np.zeros(n) for _ in range(2)]
        vs = [np.zeros(n) for _ in range(2)]
        want = [[a.copy() for a in lst] for lst in (ps, gs, ms, vs)]
        class Step:
            def __index__(self):
                ms[0] = small
                return 1
            __int__ = __index__
        first_m = ms[0]
        ops.adam_step_multi(ps, gs, ms, vs, steps=[Step(), 1])
        assert intact(), "the swapped-in array was written past its end"
        reference.adam_step_multi(*want, steps=[1, 1])
        np.testing.assert_allclose(ps[0], want[0][0], rtol=1e-12)
        np.testing.assert_allclose(first_m, want[2][0], rtol=1e-12)
        print("OK")
        """,
        _GUARD,
    )
    _assert_ran(res)


def test_sgd_multi_flag_bool_cannot_swap_an_entry():
    """A first_steps flag whose __bool__ swaps a later entry for a 4-element array, at the
    binding itself: the call used to update entry 0 and then meet the new entry; it now runs
    on the entries of the call's start."""
    res = _run(
        """
        from myelin import _kernels
        ps = [np.linspace(-1, 1, n) for _ in range(2)]
        gs = [np.ones(n) for _ in range(2)]
        bufs = [np.zeros(n) for _ in range(2)]
        class Flag:
            def __bool__(self):
                ps[1] = small
                bufs[1] = small
                return True
        p1, b1 = ps[1], bufs[1]
        _kernels.sgd_multi(ps, gs, bufs, 0.5, 0.9, 0.0, 0.0, False, [Flag(), True])
        assert intact(), "the swapped-in array was written past its end"
        np.testing.assert_allclose(p1, np.linspace(-1, 1, n) - 0.5, rtol=1e-12)
        np.testing.assert_array_equal(b1, 1.0)
        print("OK")
        """,
        _GUARD,
    )
    _assert_ran(res)


@pytest.mark.parametrize("op", ["adam", "sgd"])
def test_multi_sequence_whose_entries_change_on_reread(op):
    """A sequence whose __getitem__ gives an array the first time and 2**62 + 2 afterwards (an
    int read as an array: a crash): read once, it is the array."""
    res = _run(
        f"""
        import numpy as np
        from myelin import ops
        class Fickle:
            def __init__(self, items):
                self.items, self.reads = items, [0] * len(items)
            def __len__(self):
                return len(self.items)
            def __getitem__(self, i):
                if not 0 <= i < len(self.items):
                    raise IndexError(i)
                self.reads[i] += 1
                return self.items[i] if self.reads[i] == 1 else 2**62 + 2
        ps = [np.ones(64) for _ in range(3)]
        gs = [np.full(64, 0.5) for _ in range(3)]
        if "{op}" == "adam":
            ms = [np.zeros(64) for _ in range(3)]
            vs = [np.zeros(64) for _ in range(3)]
            ops.adam_step_multi(Fickle(ps), Fickle(gs), Fickle(ms), Fickle(vs), steps=[1, 1, 1],
                                lr=0.1)
            np.testing.assert_allclose(ps[2], 0.9, rtol=1e-6)
        else:
            ops.sgd_step_multi(Fickle(ps), Fickle(gs), lr=0.1, first_steps=Fickle([1, 1, 1]))
            np.testing.assert_allclose(ps[2], 0.95, rtol=1e-12)
        print("OK")
        """
    )
    _assert_ran(res)


def test_chain_sequence_whose_entries_change_on_reread():
    """linear_chain_fast's flop count read weights[i] once to check and again to measure: a
    weights sequence giving 2**62 + 2 on its second read crashed it (SIGSEGV)."""
    res = _run(
        """
        import numpy as np
        from myelin import ops
        class Fickle:
            def __init__(self, items):
                self.items, self.reads = items, [0] * len(items)
            def __len__(self):
                return len(self.items)
            def __getitem__(self, i):
                if not 0 <= i < len(self.items):
                    raise IndexError(i)
                self.reads[i] += 1
                return self.items[i] if self.reads[i] == 1 else 2**62 + 2
        x = np.ones((4, 3))
        w1, w2 = np.full((5, 3), 0.5), np.full((2, 5), 0.25)
        outs = ops.linear_chain_fast(x, Fickle([w1, w2]), Fickle([None, None]),
                                     Fickle([None, None]), Fickle([0.01, 0.01]))
        np.testing.assert_allclose(outs[-1], x @ w1.T @ w2.T)
        g = np.ones((4, 2))
        grads = ops.linear_chain_backward_fast(g, Fickle(outs), Fickle([w1, w2]),
                                               Fickle([None, None]), Fickle([0.01, 0.01]), True)
        np.testing.assert_allclose(grads[0], g @ w2 @ w1)
        print("OK")
        """
    )
    _assert_ran(res)


def test_multi_list_mutated_by_another_thread():
    """Another thread setting exp_avgs[-1] to a 1-element array while a 4000-entry step runs
    (it used to SIGSEGV: the entry was checked, then re-read): each call updates the entries it
    started with, or, when the swap came first, raises a ValueError naming the entry; it never
    writes past the small array."""
    res = _run(
        """
        import threading, time
        count, size = 4000, 2 * n  # a write of size elements from `small` stays in the guard
        refused = 0
        for trial in range(8):
            ps = [np.ones(size) for _ in range(count)]
            gs = [np.ones(size) for _ in range(count)]
            ms = [np.zeros(size) for _ in range(count)]
            vs = [np.zeros(size) for _ in range(count)]
            good = ms[-1]
            def swap():
                time.sleep(0.004 * trial)
                ms[-1] = small[:1]
            t = threading.Thread(target=swap)
            t.start()
            try:
                ops.adam_step_multi(ps, gs, ms, vs, steps=[1] * count, lr=0.1)
                assert np.allclose(good, 0.1) and np.allclose(ps[-1], 0.9)
            except ValueError as exc:
                assert "entry 3999" in str(exc), exc
                assert (ps[0] == 1).all(), "updated, then raised"
                refused += 1
            t.join()
            assert intact(), f"trial {trial}: the swapped-in array was written past its end"
        print("OK", refused)
        """,
        _GUARD,
    )
    _assert_ran(res)


def test_bindings_read_each_sequence_once():
    """The bindings themselves snapshot their sequence arguments (whatever the caller)."""

    class Counting(list):
        reads = 0

        def __iter__(self):
            type(self).reads += 1
            return super().__iter__()

    p, g, m, v = (np.ones(8) for _ in range(4))
    lists = [Counting([a]) for a in (p, g, m, v)]
    _kernels.adam_multi(*lists, None, Counting([1]), 0.1, 0.9, 0.999, 1e-8, 0.0, False)
    assert Counting.reads == 5
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] must be a numpy.ndarray, got int"):
        _kernels.adam_multi([p], [g], [2**62 + 2], [v], None, [1], 0.1, 0.9, 0.999, 1e-8, 0, 0)
    with pytest.raises(TypeError, match=r"grads\[0\] must be a numpy.ndarray, got str"):
        _kernels.sgd_multi([p], ["x"], None, 0.1, 0.0, 0.0, 0.0, False, [True])


# ---------------------------------------------------------------- finding 2: byte order


def _native_and_swapped(rng, shape, dtype):
    a = rng.standard_normal(shape).astype(dtype)
    return a, swapped(a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_big_endian_inputs_give_the_numbers_they_hold(isa, rng, dtype):
    """Every op on arrays in the other byte order gives exactly what it gives on the same values
    in the machine's order (the fast paths used to read the raw bytes: ``matmul`` of a
    big-endian arange gave zeros, ``global_norm`` 0.0)."""
    x, xs = _native_and_swapped(rng, (6, 5), dtype)
    w, ws = _native_and_swapped(rng, (4, 5), dtype)
    b, bs = _native_and_swapped(rng, (4,), dtype)
    got = ops.matmul(np.arange(6, dtype=BIG + "f4").reshape(2, 3), np.ones((3, 2), BIG + "f4"))
    np.testing.assert_array_equal(got, [[3, 3], [12, 12]])
    assert ops.global_norm([np.ones(4, BIG + "f8")]) == 2.0
    cases = [
        ("matmul", (x, w.T), (xs, ws.T), {}),
        ("matmul", (x, w), (xs, ws), {"trans_b": True}),
        ("linear", (x, w, b), (xs, ws, bs), {"activation": "tanh"}),
        ("linear", (x, w, None), (xs, w, None), {"activation": "relu"}),
        ("relu", (x,), (xs,), {}),
        ("sigmoid", (x,), (xs,), {}),
        ("softmax", (x,), (xs,), {"axis": 0}),
        ("log_softmax", (x,), (xs,), {}),
        ("bias_grad", (x,), (xs,), {}),
        ("mse_loss", (x, x * 0.5), (xs, swapped(x * 0.5)), {}),
        ("binary_cross_entropy_with_logits", (x, np.abs(x) / 9), (xs, np.abs(x) / 9), {}),
        ("global_norm", ([x, w],), ([xs, ws],), {}),
    ]
    labels = np.array([0, 4, 1, 2, 3, 0])
    cases.append(("softmax_cross_entropy", (x, labels), (xs, swapped(labels)), {}))
    cases.append(("softmax_cross_entropy", (x, labels), (xs, labels), {"reduction": "sum"}))
    y = ops.linear(x, w, b, "tanh")
    g = rng.standard_normal(y.shape).astype(dtype)
    cases.append(("linear_backward", (g, x, w, y), (swapped(g), xs, ws, swapped(y)), {}))
    cases.append(("linear_backward", (g, x, w, y, "tanh"), (g, x, ws, swapped(y), "tanh"), {}))
    cases.append(("tanh_backward", (g, y), (swapped(g), swapped(y)), {}))
    cases.append(("softmax_backward", (g, y), (g, swapped(y)), {}))
    for name, native, other, kw in cases:
        want = getattr(ops, name)(*native, **kw)
        got = getattr(ops, name)(*other, **kw)
        want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
        for a, c in zip(want, got, strict=True):
            assert np.asarray(c).dtype.isnative, name
            np.testing.assert_array_equal(c, a, err_msg=name)
    want = reference.matmul(x.astype(np.float64), w.T.astype(np.float64))
    np.testing.assert_allclose(ops.matmul(xs, ws.T), want, rtol=1e-5)


def test_big_endian_chain_and_fast_entries_decline(rng):
    """The fast entries answer None for an array in the other byte order (the general path then
    converts it), so a chain of layers over one gives the layer-by-layer numbers."""
    x = rng.standard_normal((5, 3)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    assert _kernels.matmul_fast(swapped(x), w, False, True) is None
    assert _kernels.linear_fast(x, swapped(w), None, None, 0.01) is None
    assert _kernels.sumsq_fast([x, swapped(w)]) is None
    labels = np.zeros(5, np.int64)
    assert _kernels.softmax_xent_fast(swapped(x), labels, None, 0.0, True) is None
    assert _kernels.softmax_xent_fast(x, swapped(labels), None, 0.0, True) is None
    assert ops.linear_chain_fast(x, [swapped(w)], [None], [None], [0.01]) is None
    y = ops.linear(x, w)
    assert _kernels.linear_backward_fast(swapped(y), x, w, y, None, 0.01, True) is None
    with pytest.raises(TypeError, match="byte order"):
        _kernels.sumsq(swapped(x))
    with pytest.raises(TypeError, match="byte order"):
        _kernels.gemm(np.empty((5, 5), np.float32), x, swapped(x.T))


@pytest.mark.parametrize("layout", ["swapped", "unaligned", "swapped-strided"])
def test_out_in_any_byte_order_or_alignment_gets_the_result(rng, layout):
    """``out=`` follows NumPy's: the result is written into it whatever its byte order or
    alignment (a big-endian ``out`` of ``linear`` used to receive the raw bytes)."""
    x = rng.standard_normal((6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)

    def make(shape):
        z = np.full(shape, np.nan, np.float32)
        if layout == "swapped":
            return swapped(z)
        if layout == "unaligned":
            return unaligned(z)
        return swapped(np.full(shape + (2,), np.nan, np.float32))[..., 0]

    for name, args, kw in [
        ("matmul", (x, w.T), {}),
        ("linear", (x, w), {"activation": "relu"}),
        ("relu", (x,), {}),
        ("tanh", (x,), {}),
        ("leaky_relu_backward", (x, x), {}),
    ]:
        want = getattr(ops, name)(*args, **kw)
        out = make(want.shape)
        assert getattr(ops, name)(*args, out=out, **kw) is out
        np.testing.assert_array_equal(out, want, err_msg=name)
    y = ops.linear(x, w, None, "tanh")
    g = rng.standard_normal(y.shape).astype(np.float32)
    want = ops.linear_backward(g, x, w, y, "tanh")
    outs = (make(x.shape), make(w.shape), make((4,)))
    got = ops.linear_backward(g, x, w, y, "tanh", out=outs)
    for a, b, o in zip(got, want, outs, strict=True):
        assert a is o
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("which", ["param", "grad", "state"])
@pytest.mark.parametrize("layout", ["swapped", "unaligned"])
def test_optimizer_arrays_in_another_byte_order_or_unaligned(rng, which, layout):
    """A gradient in the other byte order or unaligned is read from a native copy (the numbers
    it holds); a parameter or state updated in place must be what the kernels update directly:
    ValueError naming it (the multi-tensor step used to update the raw bytes)."""
    p = rng.standard_normal(7)
    g = rng.standard_normal(7)
    m, v = np.zeros(7), np.zeros(7)
    change = swapped if layout == "swapped" else unaligned
    want = [a.copy() for a in (p, g, m, v)]
    ops.adam_step(*want, step=1, lr=0.1)
    args = [p, g, m, v]
    index = {"param": 0, "grad": 1, "state": 3}[which]
    args[index] = change(args[index])
    before = [a.copy() for a in args]
    name = {"param": "param", "state": "exp_avg_sq"}.get(which)
    for call in ("single", "multi"):
        work = [change(a) if i == index else a.copy() for i, a in enumerate(before)]
        if which == "grad":
            if call == "single":
                ops.adam_step(*work, step=1, lr=0.1)
            else:
                ops.adam_step_multi(*([a] for a in work), steps=[1], lr=0.1)
            for a, b in zip(work, want, strict=True):
                np.testing.assert_array_equal(a, b)
            continue
        what = "byte order" if layout == "swapped" else "not aligned"
        with pytest.raises(ValueError, match=f"{name}.*{what}") as exc:
            if call == "single":
                ops.adam_step(*work, step=1, lr=0.1)
            else:
                ops.adam_step_multi(*([a] for a in work), steps=[1], lr=0.1)
        if call == "multi":
            assert "entry 0" in str(exc.value)
        for a, b in zip(work, before, strict=True):
            np.testing.assert_array_equal(a, b)  # nothing updated
    sgd_p = change(rng.standard_normal(5))
    with pytest.raises(ValueError, match="param"):
        ops.sgd_step(sgd_p, np.ones(5), lr=0.1)
    with pytest.raises(ValueError, match=r"entry 0: param"):
        ops.sgd_step_multi([sgd_p], [np.ones(5)], lr=0.1, first_steps=[False])


def test_bindings_refuse_unaligned_and_swapped_arrays():
    x = np.ones(6)
    with pytest.raises(ValueError, match="aligned"):
        _kernels.act_forward(np.empty(6), unaligned(x), 0, 0.0)
    with pytest.raises(TypeError, match="byte order"):
        _kernels.act_forward(swapped(np.empty(6)), x, 0, 0.0)
    with pytest.raises(TypeError, match="byte order"):
        _kernels.sgd_step(swapped(x), None, np.ones(6), 0.1, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="labels"):
        _kernels.softmax_xent(None, None, np.ones((2, 3)), swapped(np.zeros(2, np.int64)), 0, 1)
    lab, valid, bad = _kernels.prepare_labels(swapped(np.array([2, 0, 1])), 3, None)
    np.testing.assert_array_equal(lab, [2, 0, 1])
    assert (valid, bad) == (3, -1)


# ---------------------------------------------------------------- finding 6: overlap


@pytest.mark.parametrize("threads", [1, 2])
def test_sgd_step_with_a_shifted_view_of_the_parameter_as_gradient(threads):
    """grad = param shifted by one element: used to be wrong in one element on 2 threads and
    right on 1; the gradient is now read as it was before the update, on any thread count."""
    n = 1 << 18  # several chunks, so several threads take part
    buf = np.arange(n + 1, dtype=np.float64)
    p, g = buf[:n], buf[1:]
    want = p - 0.5 * g
    previous = myelin.get_num_threads()
    myelin.set_num_threads(threads)
    try:
        ops.sgd_step(p, g, lr=0.5)
        np.testing.assert_array_equal(p, want)
        buf = np.arange(n + 1, dtype=np.float64)
        ps = [buf[:n]]
        ops.sgd_step_multi(ps, [buf[1:]], lr=0.5, first_steps=[False])
        np.testing.assert_array_equal(ps[0], want)
    finally:
        myelin.set_num_threads(previous)


def test_gradient_that_is_the_parameter_itself_is_updated_in_place():
    p = np.linspace(-1, 1, 9)
    ops.sgd_step(p, p, lr=0.25)
    np.testing.assert_allclose(p, np.linspace(-1, 1, 9) * 0.75)
    q = [np.linspace(-1, 1, 9)]
    ops.sgd_step_multi(q, q, lr=0.25, first_steps=[False])
    np.testing.assert_allclose(q[0], np.linspace(-1, 1, 9) * 0.75)


def test_overlapping_optimizer_states_are_refused_naming_both():
    p, g = np.ones(8), np.ones(8)
    buf = np.zeros(9)
    for call in (
        lambda: ops.adam_step(p, g, buf[:8], buf[1:], step=1),
        lambda: ops.adam_step_multi([p], [g], [buf[:8]], [buf[1:]], steps=[1]),
        lambda: _kernels.adam_step(p, buf[:8], buf[1:], None, g, 0.1, 0.9, 0.99, 1e-8, 0, 0, 1),
    ):
        with pytest.raises(ValueError, match="share") as exc:
            call()
        named = set(re.findall(r"exp_avg\w*", str(exc.value)))
        assert named in ({"exp_avg", "exp_avg_sq"}, {"exp_avgs", "exp_avg_sqs"}), exc.value
    m, v = np.zeros(8), np.zeros(8)
    with pytest.raises(ValueError, match="max_exp_avg_sq shares memory with exp_avg_sq"):
        ops.adam_step(p, g, m, v, step=1, amsgrad=True, max_exp_avg_sq=v)
    with pytest.raises(ValueError, match="grad_avg shares memory with square_avg"):
        ops.rmsprop_step(p, g, m, centered=True, grad_avg=m[::-1][::-1])
    with pytest.raises(ValueError, match="grad and momentum_buffer share memory"):
        _kernels.sgd_step(p, buf[1:], buf[:8], 0.1, 0.9, 0.0, 0.0, False, False)
    assert (p == 1).all() and (buf == 0).all()


def test_multi_step_refuses_an_array_written_by_two_entries():
    """The same parameter (or a state) twice across entries would be updated twice, in an order
    the thread count could change: refused, naming both entries, before any update."""
    p, g = np.ones(8), np.ones(8)
    ms = [np.zeros(8), np.zeros(8)]
    vs = [np.zeros(8), np.zeros(8)]
    with pytest.raises(ValueError, match=r"params\[0\] and params\[1\] are the same memory"):
        ops.adam_step_multi([p, p], [g, g], ms, vs, steps=[1, 1])
    with pytest.raises(ValueError, match=r"exp_avgs\[0\] and exp_avg_sqs\[1\]"):
        ops.adam_step_multi([p, np.ones(8)], [g, g], ms, [vs[0], ms[0]], steps=[1, 1])
    big = np.ones(12)
    with pytest.raises(ValueError, match=r"params\[0\] and params\[1\] share memory"):
        ops.sgd_step_multi([big[:8], big[4:]], [g, g], lr=0.1, first_steps=[False, False])
    with pytest.raises(ValueError, match=r"momentum_buffers\[0\] and grads\[1\]"):
        ops.sgd_step_multi(
            [p, np.ones(8)],
            [g, ms[0]],
            [ms[0], vs[0]],
            lr=0.1,
            momentum=0.9,
            first_steps=[False, False],
        )
    assert (p == 1).all() and (big == 1).all() and not ms[0].any() and not vs[0].any()
    # a gradient shared by two entries is only read: fine
    ps = [np.ones(8), np.ones(8)]
    ops.sgd_step_multi(ps, [g, g], lr=0.5, first_steps=[False, False])
    np.testing.assert_array_equal(ps[1], 0.5)


def test_linear_backward_outputs_sharing_memory_are_refused():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4))
    w = rng.standard_normal((3, 4))
    y = ops.linear(x, w)
    g = rng.standard_normal((8, 3))
    big = np.zeros(100)
    with pytest.raises(ValueError, match=r"out \(grad_weight\) and out \(grad_bias\) share"):
        ops.linear_backward(g, x, w, y, out=(None, big[:12].reshape(3, 4), big[2:5]))
    with pytest.raises(ValueError, match=r"out \(grad_x\) and out \(grad_weight\) share"):
        ops.linear_backward(
            g, x, w, y, out=(big[:32].reshape(8, 4), big[20:32].reshape(3, 4), None)
        )
    assert not big.any()
    # interleaved outputs share no element: accepted (an exact test, not the bounds)
    inter = np.zeros(24)
    gw, gb = inter[0::2].reshape(3, 4), inter[1::2][:3]
    got = ops.linear_backward(g, x, w, y, out=(None, gw, gb))
    want = ops.linear_backward(g, x, w, y)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    # an output sharing memory with an input: the inputs are read first
    xs = x.copy()
    got = ops.linear_backward(g, xs, w, y, out=(xs, None, None))
    np.testing.assert_array_equal(got[0], want[0])


def test_fast_linear_entries_decline_overlapping_outputs():
    x = np.ones((4, 3), np.float32)
    w = np.ones((2, 3), np.float32)
    y = np.ones((4, 2), np.float32)
    scratch = np.zeros(64, np.float32)
    assert _kernels.linear_fast(x, w, None, None, 0.01, x[:, :2].copy()) is not None
    assert (
        _kernels.linear_fast(
            scratch[:12].reshape(4, 3), w, None, None, 0.01, scratch[4:12].reshape(4, 2)
        )
        is None
    )
    ow, ob = scratch[:6].reshape(2, 3), scratch[5:7]
    assert _kernels.linear_backward_fast(y, x, w, y, None, 0.01, True, None, ow, ob) is None
    ow2 = scratch[:6].reshape(2, 3)
    assert (
        _kernels.linear_backward_fast(
            y, x, w, y, "relu", 0.01, True, None, ow2, None, scratch[2:10].reshape(4, 2)
        )
        is None
    )
    assert not scratch.any()  # declined before anything was written
    g = y.copy()
    assert _kernels.linear_backward_fast(g, x, w, y, "relu", 0.01, True, work=g) is not None


def test_overlap_checks_are_exact_for_strided_operands():
    """matmul/linear refuse an out that shares memory with an input, by an exact test: an
    interleaved out whose bounds overlap an input's but shares no element is fine."""
    buf = np.zeros((4, 8))
    a = buf[:, 0::2]
    a[...] = np.arange(16).reshape(4, 4)
    out = buf[:, 1::2]
    b = np.eye(4)
    assert ops.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, a)
    with pytest.raises(ValueError, match="out shares memory with a"):
        ops.matmul(a, b, out=buf[:, 0::2])
    rows = np.zeros((8, 4))  # the rows of a and of the out interleave: unit column strides
    a = rows[0::2]
    a[...] = np.arange(16).reshape(4, 4)
    with pytest.raises(ValueError, match="out shares memory with a"):
        _kernels.gemm(rows[0::2], a, b)
    _kernels.gemm(rows[1::2], a, b)
    np.testing.assert_array_equal(rows[1::2], a)


def test_multi_step_entries_that_are_not_arrays_are_named():
    """A missing state (None) in a multi-tensor step is refused naming it; the kernel would
    otherwise take it for an unused state (a NULL pointer)."""
    p, g = np.ones(4), np.ones(4)
    with pytest.raises(TypeError, match=r"exp_avg.*None"):
        ops.adam_step_multi([p], [g], [None], [np.zeros(4)], steps=[1])
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[0\] must be a numpy.ndarray, got NoneType"):
        _kernels.adam_multi([p], [g], [np.zeros(4)], [None], None, [1], 0.1, 0.9, 0.99, 1e-8, 0, 0)
    with pytest.raises(TypeError, match=r"max_exp_avg_sqs\[0\]"):
        _kernels.adam_multi(
            [p], [g], [np.zeros(4)], [np.zeros(4)], [None], [1], 0.1, 0.9, 0.99, 1e-8, 0, 0
        )
    with pytest.raises(TypeError, match=r"momentum_buffers\[0\]"):
        _kernels.sgd_multi([p], [g], [None], 0.1, 0.9, 0.0, 0.0, False, [False])
    with pytest.raises(ValueError, match="momentum needs a buffer"):
        _kernels.sgd_step(p, None, g, 0.1, 0.9, 0, 0, 0, 0)
    assert (p == 1).all()


# ---------------------------------------------------------------- finding 12: the fuzz layouts


def test_fuzz_layouts_are_generated_as_named():
    """tests/fuzz_cases.py sampled "unaligned" but tested how == "unalign": unaligned operands
    were never generated. Each layout it names now gives the same values laid out so."""
    import fuzz_cases

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    checks = {
        "c": lambda u: u.flags.c_contiguous and u.flags.aligned and u.dtype.isnative,
        "f": lambda u: u.flags.f_contiguous and not u.flags.c_contiguous,
        "strided": lambda u: u.base is not None,
        "reversed": lambda u: u.strides[-1] < 0,
        "readonly": lambda u: not u.flags.writeable,
        "unaligned": lambda u: not u.flags.aligned,
        "swapped": lambda u: not u.dtype.isnative and u.dtype.newbyteorder("=") == a.dtype,
    }
    for how, check in checks.items():
        got = fuzz_cases._layout(lambda strategy, how=how: how, a)
        np.testing.assert_array_equal(got, a, err_msg=how)
        assert check(got), how


@pytest.mark.parametrize("entries", [3, 20])  # 15 and 60 arrays: both ways of sorting them
def test_overlap_sweep_agrees_with_every_pair(entries):
    """The multi-tensor entry's sweep over sorted byte ranges refuses a call exactly when some
    pair of its arrays shares memory with one of them written (a gradient being exactly its own
    entry's parameter or buffer excepted), as checking every pair says."""
    rng = np.random.default_rng(17)
    span = 24 * entries + 8
    buf = np.zeros(span)
    for trial in range(200):
        size = int(rng.integers(1, 6))
        params, grads, bufs, roles = [], [], [], []
        for e in range(entries):
            trio = []
            for role in range(3):
                if trial % 2 and rng.random() < 0.9:  # half the trials: mostly disjoint
                    start = 8 * (3 * e + role)
                else:
                    start = int(rng.integers(0, span - size))
                trio.append(buf[start : start + size])
            if rng.random() < 0.1:
                trio[1] = trio[int(rng.choice([0, 2]))]  # the gradient in place
            params.append(trio[0])
            grads.append(trio[1])
            bufs.append(trio[2])
            roles += [(e, "p", trio[0]), (e, "g", trio[1]), (e, "b", trio[2])]
        want = False
        for i, (ei, ri, ai) in enumerate(roles):
            for ej, rj, aj in roles[i + 1 :]:
                if "g" == ri == rj or not np.shares_memory(ai, aj):
                    continue
                exact = ai.ctypes.data == aj.ctypes.data
                if exact and ei == ej and "g" in (ri, rj):
                    continue
                want = True
        try:
            _kernels.sgd_multi(params, grads, bufs, 0.0, 0.9, 0.0, 0.0, False, [True] * entries)
            refused = False
        except ValueError as exc:
            assert "memory" in str(exc), exc
            refused = True
        assert refused == want, (trial, roles)
