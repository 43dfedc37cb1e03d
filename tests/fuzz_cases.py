"""Property-based fuzzing of myelin's public surface: ``myelin.ops``, the ``nn`` modules and
losses, ``nn.functional`` and Tensor operations.

Each example builds a valid call (random shapes with 0-length and odd dimensions, float32 or
float64, contiguous or not, negatively strided, read-only, unaligned or other-byte-order
(big-endian) operands, NaN and inf values), then may corrupt one argument: a dtype numpy has but
myelin refuses (bool, integers, float16, complex, object, datetime, strings), a wrong shape, a
huge-but-empty shape (a dimension over 2**31 next to a 0), a Python scalar, a nested or ragged
list, None; or pass ``out=`` arrays that are strided, reversed, read-only, big-endian, unaligned,
of the wrong dtype or shape, or overlap an input (``linear_backward``'s out tuples too, two of
them overlapping each other). The optimizer updates also get in-place arrays in the other byte
order, unaligned or sharing memory with the parameter, gradients that are the parameter or a
shifted view of it, arrays shared across the entries of a multi-tensor update, and hostile
lists: sequences whose entries change on a second read, steps and flags whose conversion swaps
the caller's entries, and another thread swapping an entry during the call. The call must then
either

* return what ``myelin.reference`` returns on float64 copies of the same inputs, within the
  error bounds of ``helpers`` (and leave its inputs untouched), or
* raise TypeError or ValueError whose message names the corrupted argument, what it got (its
  dtype, shape or type) and what was expected.

Anything else (another exception, a wrong number, a modified input, a crash) is a failure. Run
by ``tests/test_fuzz.py`` in a subprocess, so that a segfault fails the test instead of ending
the test run: ``python tests/fuzz_cases.py GROUP EXAMPLES``.
"""

from __future__ import annotations

import faulthandler
import re
import resource
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import myelin
from myelin import nn, ops, reference

sys.path.insert(0, __file__.rsplit("/", 1)[0] if "/" in __file__ else ".")
from helpers import _SCALES, _compare, _default_scale, assert_close, f64  # noqa: E402

HUGE = 2**31 + 3  # a dimension whose products overflow 32-bit indices
SIDES = [0, 1, 2, 3, 5, 8, 17, 33]
BAD_DTYPES = [
    np.bool_,
    np.int8,
    np.uint8,
    np.int16,
    np.int32,
    np.int64,
    np.uint64,
    np.float16,
    np.complex64,
    np.complex128,
    object,
    "datetime64[s]",
    "timedelta64[ms]",
    "U3",
]
EXPECTED_WORDS = (
    "expect",
    "must",
    "need",
    "one of",
    "should",
    "convert",
    "differ",
    "pass a",
    "required",
)


# ---------------------------------------------------------------- building operands


@dataclass
class Corruption:
    """What was done to one argument, to check the error message against."""

    arg: str  # the argument's name, as the message must say it
    kind: str  # dtype | shape | none | scalar | ragged | string | huge | out_*
    got: list = field(default_factory=list)  # strings of which one must appear in the message


LAYOUTS = ["c", "c", "c", "f", "strided", "reversed", "readonly", "unaligned", "swapped"]


def swapped(a: np.ndarray) -> np.ndarray:
    """The same values in the byte order that is not the machine's (big-endian on x86)."""
    return a.astype(a.dtype.newbyteorder("S"))


def native(x):
    """A float array (or a list of them) in the machine's byte order; anything else as is."""
    if isinstance(x, np.ndarray) and not x.dtype.isnative:
        return x.astype(x.dtype.newbyteorder("="))
    if isinstance(x, list) and any(isinstance(a, np.ndarray) for a in x):
        return [native(a) for a in x]
    return x


def _layout(draw, a: np.ndarray, kinds=LAYOUTS) -> np.ndarray:
    """The same values in another memory layout or byte order (the op must not care)."""
    a = np.array(a)  # a NumPy scalar from the reference becomes a 0-d array
    how = draw(st.sampled_from(kinds))
    if how == "f":
        return a.T.copy().T
    if how == "strided":
        big = np.empty((2,) + a.shape, a.dtype)
        big[0] = a
        return big[0, ...]  # a view with a non-trivial base
    if how == "reversed" and a.ndim:
        r = np.ascontiguousarray(a[..., ::-1])
        return r[..., ::-1]  # negative stride in the last axis, same values
    if how == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if how == "unaligned" and a.size:
        return unaligned(a)
    if how == "swapped":
        return swapped(a)
    return a


def unaligned(a: np.ndarray) -> np.ndarray:
    """The same values, C-contiguous at an address that is not a multiple of the item size."""
    buf = np.empty(a.nbytes + 1, np.uint8)
    u = np.frombuffer(buf.data, a.dtype, a.size, offset=1).reshape(a.shape)
    u[...] = a
    return u


def _values(draw, shape, dtype, lo=-3.0, hi=3.0, special=True) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = np.asarray(rng.uniform(lo, hi, shape), dtype)
    if special and a.size and draw(st.integers(0, 9)) == 0:  # a few special values
        flat = a.reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, a.size - 1))
            flat[i] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e15, -1e15]))
    return a


def farray(draw, shape, dtype, lo=-3.0, hi=3.0, layout=True, kinds=LAYOUTS) -> np.ndarray:
    a = _values(draw, shape, dtype, lo, hi)
    return _layout(draw, a, kinds) if layout else a


def _other_shape(draw, shape: tuple) -> tuple:
    choices = [shape + (2,), (3,) + shape, ()]
    if shape:
        choices += [shape[:-1], shape[:-1] + (shape[-1] + 1,), (shape[0] + 2,) + shape[1:]]
    new = draw(st.sampled_from(choices))
    return new if new != shape else shape + (4,)


def corrupt(draw, value, name: str):
    """A bad replacement for the float array ``value`` named ``name``, and what it is."""
    shape = np.shape(value)
    kind = draw(
        st.sampled_from(["dtype", "dtype", "shape", "none", "scalar", "ragged", "string", "huge"])
    )
    if kind == "dtype":
        dt = np.dtype(draw(st.sampled_from(BAD_DTYPES)))
        if dt.kind == "O":
            bad = np.empty(shape, object)
            bad[...] = 1.5
        elif dt.kind in "Mm":
            bad = np.zeros(shape, "int64").astype(dt)
        elif dt.kind == "U":
            bad = np.full(shape, "ab", dt)
        else:
            bad = np.ones(shape, dt)
        return bad, Corruption(name, kind, [dt.name, str(dt)])
    if kind == "shape":
        s = _other_shape(draw, shape)
        return np.ones(s, np.asarray(value).dtype), Corruption(name, kind, [str(s)])
    if kind == "huge":
        # empty, so cheap; (HUGE, 0) where a sum over the leading axis would have HUGE outputs
        s = (HUGE, 0) if name == "grad_y" else (0, HUGE)
        return np.empty(s, np.asarray(value).dtype), Corruption(name, kind, [str(s)])
    if kind == "none":
        return None, Corruption(name, kind, ["None"])
    if kind == "scalar":
        v = draw(st.sampled_from([1.5, 3, True, 2 + 1j]))
        got = [type(v).__name__, "()", "scalar", "complex", "float64"]
        return v, Corruption(name, kind, got)
    if kind == "ragged":
        return [[1.0, 2.0], [3.0]], Corruption(name, kind, ["inhomogeneous", "ragged", "list"])
    return "abc", Corruption(name, kind, ["str", "<U3"])


def check_message(exc: BaseException, c: Corruption, call: str, names=(), aliases=()) -> None:
    """The message names the argument (or, for a shape that does not match another argument's,
    either of them), what it got and what was expected."""
    msg = str(exc)
    assert isinstance(exc, (TypeError, ValueError)), (
        f"{call}: {c.arg} corrupted ({c.kind}) raised {type(exc).__name__}: {msg}"
    )
    named = [c.arg, *aliases] + (list(names) if c.kind in ("shape", "huge") else [])
    assert any(re.search(rf"(?<![A-Za-z_]){re.escape(a)}(?![A-Za-z_])", msg) for a in named), (
        f"{call}: the message does not name {c.arg!r} ({c.kind}): {msg!r}"
    )
    if c.got:
        assert any(g in msg for g in c.got), (
            f"{call}: the message does not say what {c.arg} got ({c.kind}, one of {c.got}): {msg!r}"
        )
    assert any(w in msg.lower() for w in EXPECTED_WORDS), (
        f"{call}: the message does not say what was expected: {msg!r}"
    )


# ---------------------------------------------------------------- myelin.ops cases


@dataclass
class Case:
    name: str
    args: list
    kwargs: dict
    names: list  # the names of args in error messages
    out: object = None  # out= to pass, or None
    out_kind: str = ""
    fickle: bool = False  # pass its lists as sequences whose entries change on a second read


def _dims(draw, n, sides=SIDES):
    return tuple(draw(st.sampled_from(sides)) for _ in range(n))


@st.composite
def op_cases(draw):
    name = draw(
        st.sampled_from(
            [
                "matmul",
                "linear",
                "linear_backward",
                "relu",
                "leaky_relu",
                "sigmoid",
                "tanh",
                "relu_backward",
                "leaky_relu_backward",
                "sigmoid_backward",
                "tanh_backward",
                "softmax",
                "log_softmax",
                "softmax_backward",
                "log_softmax_backward",
                "softmax_cross_entropy",
                "binary_cross_entropy_with_logits",
                "mse_loss",
                "bias_grad",
                "global_norm",
            ]
        )
    )
    dt = draw(st.sampled_from([np.float32, np.float64]))
    fa = lambda shape, **kw: farray(draw, shape, dt, **kw)  # noqa: E731
    kw: dict = {}
    if name == "matmul":
        m, k, n = _dims(draw, 3)
        batch = draw(st.sampled_from([(), (), (2,), (1, 3)]))
        ta, tb = draw(st.booleans()), draw(st.booleans())
        a = fa(batch + ((k, m) if ta else (m, k)))
        b = fa((n, k) if tb else (k, n))
        if draw(st.integers(0, 5)) == 0:
            a = fa((k,))
            ta = False
        kw = {"trans_a": ta, "trans_b": tb}
        return Case(name, [a, b], kw, ["a", "b"])
    if name in ("linear", "linear_backward"):
        lead = draw(st.sampled_from([(), (2,), (0,), (3, 2)]))
        m, k, n = _dims(draw, 3)
        shape_x = lead + (m, k) if draw(st.booleans()) else (m, k)
        x, w = fa(shape_x), fa((n, k))
        b = fa((n,)) if draw(st.booleans()) else None
        act = draw(st.sampled_from([None, "relu", "leaky_relu", "sigmoid", "tanh"]))
        kw = {"activation": act, "negative_slope": draw(st.sampled_from([0.01, 0.2, 0.0]))}
        if name == "linear":
            return Case(name, [x, w, b], kw, ["x", "weight", "bias"])
        y = reference.linear(*map(native, (x, w, b)), **kw)
        g = fa(y.shape)
        kw["need_grad_x"] = draw(st.booleans())
        return Case(name, [g, x, w, y], kw, ["grad_y", "x", "weight", "y"])
    if name in ("relu", "leaky_relu", "sigmoid", "tanh"):
        x = fa(_dims(draw, draw(st.integers(0, 3))), lo=-20, hi=20)
        if name == "leaky_relu":
            kw = {"negative_slope": draw(st.sampled_from([0.01, 0.5, 0.0]))}
        return Case(name, [x], kw, ["x"])
    if name.endswith("_backward") and name != "softmax_backward" and "log_softmax" not in name:
        act = name[: -len("_backward")]
        shape = _dims(draw, draw(st.integers(0, 3)))
        ykw = {"negative_slope": 0.3} if act == "leaky_relu" else {}
        y = getattr(reference, act)(fa(shape, layout=False), **ykw)
        kw = ykw
        return Case(name, [fa(shape), _layout(draw, y)], kw, ["grad_y", "y"])
    if name in ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward"):
        shape = _dims(draw, draw(st.integers(1, 3)))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        kw = {"axis": axis}
        if name in ("softmax", "log_softmax"):
            return Case(name, [fa(shape, lo=-50, hi=50)], kw, ["x"])
        y = getattr(reference, name[: -len("_backward")])(fa(shape, layout=False), axis=axis)
        return Case(name, [fa(shape), _layout(draw, y)], kw, ["grad_y", "y"])
    if name == "softmax_cross_entropy":
        n, c = _dims(draw, 2)
        c = max(c, draw(st.sampled_from([0, 1, 1, 1])))
        logits = fa((n, c), lo=-30, hi=30)
        labels = np.random.default_rng(draw(st.integers(0, 99))).integers(0, max(c, 1), n)
        labels = labels.astype(draw(st.sampled_from([np.int64, np.int32, np.uint8, np.int16])))
        ignore = draw(st.sampled_from([None, -100, 0]))
        if ignore is not None and n and draw(st.booleans()) and labels.dtype.kind == "i":
            labels[draw(st.integers(0, n - 1))] = ignore
        if c == 0 and n:
            labels = np.full(n, -100, np.int64)
            ignore = -100
        kw = {
            "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
            "ignore_index": ignore,
            "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 1.0])),
        }
        return Case(name, [logits, labels], kw, ["logits", "labels"])
    if name in ("binary_cross_entropy_with_logits", "mse_loss"):
        shape = _dims(draw, draw(st.integers(1, 3)))
        kw = {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}
        t = fa(shape, lo=0, hi=1)
        names = ["logits", "targets"] if name.startswith("binary") else ["input", "target"]
        return Case(name, [fa(shape, lo=-30, hi=30), t], kw, names)
    if name == "bias_grad":
        return Case(name, [fa(_dims(draw, draw(st.integers(1, 3))))], {}, ["grad_y"])
    arrays = [fa(_dims(draw, draw(st.integers(0, 2)))) for _ in range(draw(st.integers(0, 3)))]
    return Case(name, [arrays], {}, ["arrays"], fickle=draw(st.booleans()))


OUT_OPS = {
    "matmul",
    "linear",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "relu_backward",
    "leaky_relu_backward",
    "sigmoid_backward",
    "tanh_backward",
}


def _out_variant(draw, case: Case, shape: tuple, dtype):
    """An out= array for the case and what it is."""
    kind = draw(
        st.sampled_from(
            [
                "plain",
                "strided",
                "reversed",
                "readonly",
                "dtype",
                "shape",
                "alias",
                "overlap",
                "swapped",
                "unaligned",
            ]
        )
    )
    if kind == "strided":
        return np.full(shape + (2,), np.nan, dtype)[..., 0], kind
    if kind == "swapped":  # NumPy's out= takes the other byte order: so does myelin's
        return swapped(np.full(shape, np.nan, dtype)), kind
    if kind == "unaligned":
        return unaligned(np.full(shape, np.nan, dtype)), kind
    if kind == "reversed" and shape:
        return np.full(shape, np.nan, dtype)[..., ::-1], kind
    if kind == "readonly":
        o = np.zeros(shape, dtype)
        o.flags.writeable = False
        return o, kind
    if kind == "dtype":
        return np.zeros(shape, np.float64 if dtype == np.float32 else np.float32), kind
    if kind == "shape":
        return np.zeros(_other_shape(draw, shape), dtype), kind
    src = case.args[0]
    if kind == "alias" and isinstance(src, np.ndarray) and src.shape == shape:
        if src.dtype == dtype and src.flags.writeable:
            return src, kind  # out is the input itself (in place)
    n = int(np.prod(shape))
    if kind == "overlap" and isinstance(src, np.ndarray) and src.dtype == dtype and src.size and n:
        # out is a shifted view of the input's buffer: the two overlap partially (an empty out
        # has no memory to share)
        buf = np.empty(n + src.size, dtype)
        buf[: src.size] = src.reshape(-1)
        case.args[0] = buf[: src.size].reshape(src.shape)
        return buf[1 : 1 + n].reshape(shape), kind
    return np.full(shape, np.nan, dtype), "plain"


def _backward_outs(draw, case: Case):
    """An out= tuple (grad_x, grad_weight, grad_bias) for a linear_backward case, and, when
    two of its arrays share memory, the Corruption that names them."""
    g, x, w, _ = case.args
    dt = np.result_type(*(native(a) for a in case.args if isinstance(a, np.ndarray)))
    shapes = [np.shape(x), np.shape(w), np.shape(w)[:1]]
    kind = draw(st.sampled_from(["plain", "swapped", "strided", "some", "shared", "input"]))
    if kind == "shared" and all(np.prod(sh) for sh in shapes[1:]):
        # grad_weight and grad_bias in one buffer, overlapping by one element
        nw = int(np.prod(shapes[1]))
        buf = np.full(nw + shapes[2][0], np.nan, dt)
        outs = (None, buf[:nw].reshape(shapes[1]), buf[nw - 1 : nw - 1 + shapes[2][0]])
        return outs, Corruption("out (grad_weight)", "out_shared", ["share memory"])
    if kind == "input" and isinstance(x, np.ndarray) and x.flags.writeable:
        return (x, None, None), None  # grad_x into x itself: x is read first
    outs = []
    for sh in shapes:
        a = np.full(sh, np.nan, dt)
        if kind == "swapped":
            a = swapped(a)
        elif kind == "strided":
            a = np.full(sh + (2,), np.nan, dt)[..., 1]
        elif kind == "some" and draw(st.booleans()):
            a = None
        outs.append(a)
    return tuple(outs), None


def _reference(name, args, kwargs):
    args = [native(a) for a in args]  # the reference keeps only native float32 as float32
    with np.errstate(all="ignore"):
        same = getattr(reference, name)(*args, **kwargs)
        args64 = [f64(a) for a in args]
        kw64 = {k: f64(v) for k, v in kwargs.items()}
        want = getattr(reference, name)(*args64, **kw64)
        scale = _SCALES.get(name, _default_scale)(args64, kw64, want)
    if name == "softmax_cross_entropy":
        # the gradient's scale p * (sqrt(C) + |z - max|) is 0 * inf at a -inf logit, where the
        # gradient is only the label terms, each at most 1
        scale = (scale[0], np.where(np.isnan(scale[1]), 2.0, scale[1]))
    return same, want, scale


def fuzz_ops(data):
    draw = data.draw
    case = draw(op_cases())
    bad = None
    if draw(st.integers(0, 2)) == 0:  # corrupt one argument
        i = draw(st.integers(0, len(case.names) - 1))
        value = case.args[i] if case.name != "global_norm" else None
        if case.name == "global_norm":
            if case.args[0] and draw(st.booleans()):
                j = draw(st.integers(0, len(case.args[0]) - 1))
                value, c = corrupt(draw, case.args[0][j], f"arrays[{j}]")
                if c.kind in ("shape", "huge", "scalar"):
                    value, c = None, Corruption(f"arrays[{j}]", "none", ["None"])
                case.args[0][j] = value
                bad = c
            else:
                case.args[0] = None
                bad = Corruption("arrays", "none", ["NoneType"])
        elif value is not None:
            new, c = corrupt(draw, value, case.names[i])
            # an ndarray's dtype is refused; a list of numbers or a Python scalar is converted
            # (int and bool ones to float64), so such a corruption may be a valid call
            if c.kind == "shape" and np.ndim(value) == 0:
                return
            if case.names[i] == "labels" and c.kind == "dtype" and new.dtype.kind in "iu":
                c.got = []  # integer labels of any width are labels; their values are checked
            case.args[i] = new
            bad = c
            if case.name == "linear_backward" and c.arg == "y" and not case.kwargs["activation"]:
                return  # y is only read by an activation's derivative: unused here
            if case.name == "linear" and c.arg == "bias" and c.kind == "none":
                bad = None  # no bias: a valid call
    if case.name == "linear_backward" and bad is None and draw(st.integers(0, 2)) == 0:
        case.out, bad = _backward_outs(draw, case)
        case.out_kind = "tuple"
    if case.name in OUT_OPS and bad is None and draw(st.integers(0, 2)) == 0:
        with np.errstate(all="ignore"):
            same = getattr(reference, case.name)(*map(native, case.args), **case.kwargs)
        out, kind = _out_variant(draw, case, np.shape(same), np.asarray(same).dtype)
        case.out, case.out_kind = out, kind
        if kind in ("overlap", "alias") and case.name in ("matmul", "linear") and out.size:
            bad = Corruption("out", "out_overlap", ["shares memory"])  # refused, as documented
        if kind in ("readonly", "dtype", "shape"):
            got = [str(out.shape)] if kind == "shape" else [str(out.dtype), "read-only"]
            bad = Corruption("out", "out_" + kind, got)
    run_op_case(case, bad)


def _label_problem(case: Case) -> bool:
    """Whether softmax_cross_entropy's labels are invalid (checked separately)."""
    if case.name != "softmax_cross_entropy":
        return False
    logits, labels = case.args
    if not isinstance(labels, np.ndarray) or not isinstance(logits, np.ndarray):
        return False
    return False


def run_op_case(case: Case, bad: Corruption | None) -> None:
    name = case.name
    call = f"ops.{name}"
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in case.args]
    kwargs = dict(case.kwargs)
    if case.out is not None:
        kwargs["out"] = case.out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                args = [Fickle(a) if case.fickle and isinstance(a, list) else a for a in case.args]
                got = getattr(ops, name)(*args, **kwargs)
            except (TypeError, ValueError) as exc:
                if bad is None:
                    raise AssertionError(f"{call} refused a valid call: {exc!r}") from exc
                check_message(exc, bad, call, case.names)
                return
            except MemoryError:
                if bad is not None and bad.kind == "huge":
                    return  # a valid call whose result does not fit
                raise
    if bad is not None and bad.kind.startswith("out_"):
        raise AssertionError(f"{call} accepted a bad out= ({bad.kind})")
    if bad is not None and bad.kind in ("none", "ragged", "string"):
        raise AssertionError(f"{call} accepted {bad.arg} = {bad.kind}")
    outs = case.out if isinstance(case.out, tuple) else (case.out,)
    for a, b in zip(case.args, before, strict=True):
        if isinstance(a, np.ndarray) and not any(
            o is not None and np.shares_memory(a, o) for o in outs
        ):
            assert np.array_equal(a, b, equal_nan=True), f"{call} modified an input"
    try:
        same, want, scale = _reference(name, before, case.kwargs)
    except MemoryError:
        if bad is not None and bad.kind == "huge":
            return  # the reference's float64 copies of a huge operand do not fit
        raise
    except Exception:
        if bad is not None:
            raise AssertionError(
                f"{call} accepted {bad.arg} ({bad.kind}) that the reference cannot compute"
            ) from None
        raise
    if case.out is not None and case.out_kind == "tuple":
        for got_i, out_i in zip(got, case.out, strict=True):
            assert out_i is None or got_i is out_i or got_i is None, f"{call}: out not returned"
    elif case.out is not None:
        assert got is case.out, f"{call}(out=...) did not return out"
    got = tuple(native(a) for a in got) if isinstance(got, tuple) else native(got)
    if name == "linear_backward" and not case.kwargs["need_grad_x"]:
        assert got[0] is None, f"{call}(need_grad_x=False) returned a grad_x"
        got, same, want, scale = got[1:], same[1:], want[1:], scale[1:]
    _compare(name, got, same, want, scale)


# ---------------------------------------------------------------- modules and functional


@st.composite
def module_cases(draw):
    kind = draw(
        st.sampled_from(
            [
                "Linear",
                "Sequential",
                "ReLU",
                "LeakyReLU",
                "Sigmoid",
                "Tanh",
                "Softmax",
                "LogSoftmax",
                "Flatten",
                "CrossEntropyLoss",
                "NLLLoss",
                "BCEWithLogitsLoss",
                "BCELoss",
                "MSELoss",
            ]
        )
    )
    dt = draw(st.sampled_from([np.float32, np.float64]))
    n, c = _dims(draw, 2, [0, 1, 2, 3, 7, 16])
    c = max(c, 1)
    return kind, dt, n, c


def _as_input(draw, a: np.ndarray):
    how = draw(st.sampled_from(["tensor", "tensor", "array", "list"]))
    if how == "list" and (a.dtype != np.float32 or 0 in a.shape):
        how = "array"  # a list becomes float32 and loses empty dimensions
    if how == "tensor":
        return myelin.tensor(a, requires_grad=True)
    if how == "list":
        return a.tolist()
    return a


def fuzz_modules(data):
    draw = data.draw
    kind, dt, n, c = draw(module_cases())
    x = farray(draw, (n, c), dt)
    corrupt_it = draw(st.integers(0, 2)) == 0
    arg = "input"
    if kind == "Linear":
        m = nn.Linear(c, 4)
        m.weight.data, m.bias.data = m.weight.data.astype(dt), m.bias.data.astype(dt)
        want = reference.linear(x, m.weight.data, m.bias.data)
    elif kind == "Sequential":
        m = nn.Sequential(nn.Linear(c, 5), nn.ReLU(), nn.Linear(5, 3))
        for p in m.parameters():
            p.data = p.data.astype(dt)
        h = reference.linear(x, m[0].weight.data, m[0].bias.data, "relu")
        want = reference.linear(h, m[2].weight.data, m[2].bias.data)
    elif kind in ("ReLU", "Sigmoid", "Tanh"):
        m = getattr(nn, kind)()
        want = getattr(reference, kind.lower())(x)
    elif kind == "LeakyReLU":
        m = nn.LeakyReLU(0.2)
        want = reference.leaky_relu(x, 0.2)
    elif kind in ("Softmax", "LogSoftmax"):
        m = getattr(nn, kind)(dim=1)
        want = getattr(reference, "softmax" if kind == "Softmax" else "log_softmax")(x, axis=1)
    elif kind == "Flatten":
        m = nn.Flatten()
        want = x
    else:
        m = getattr(nn, kind)()
        arg = "input"
        if kind in ("CrossEntropyLoss", "NLLLoss"):
            t = np.random.default_rng(n * 31 + c).integers(0, c, n)
            if kind == "CrossEntropyLoss":
                want = reference.softmax_cross_entropy(x, t)[0]
            else:
                want = -np.mean(x[np.arange(n), t]) if n else np.nan
        elif kind == "BCELoss":
            x = np.clip(farray(draw, (n, c), dt, lo=0.01, hi=0.99), 0, 1)
            t = farray(draw, (n, c), dt, lo=0, hi=1, layout=False)
            with np.errstate(all="ignore"):
                want = np.mean(-(t * np.log(x) + (1 - t) * np.log1p(-x))) if x.size else np.nan
        elif kind == "BCEWithLogitsLoss":
            t = farray(draw, (n, c), dt, lo=0, hi=1, layout=False)
            want = reference.binary_cross_entropy_with_logits(x, t)[0]
        else:
            t = farray(draw, (n, c), dt, layout=False)
            want = reference.mse_loss(x, t)[0]
        if corrupt_it and draw(st.booleans()):
            arg = "target"
    call = repr(m)
    inp = _as_input(draw, x)
    bad = None
    if corrupt_it:
        value = t if arg == "target" else x
        new, bad = corrupt(draw, value, arg)
        if arg == "target":
            t = new
        else:
            inp = new
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                out = m(inp, t) if arg == "target" or kind.endswith("Loss") else m(inp)
            except (TypeError, ValueError, NotImplementedError, IndexError) as exc:
                if isinstance(exc, IndexError) or "out of range" in str(exc):
                    # dim=1 of a 1-D input: PyTorch's IndexError too
                    assert bad is not None and bad.kind == "shape", f"{call}: {exc!r}"
                    assert "dim" in str(exc) or "axis" in str(exc), f"{call}: {exc!r}"
                    return
                if bad is None:
                    raise AssertionError(f"{call} refused a valid call: {exc!r}") from exc
                if isinstance(exc, NotImplementedError):
                    raise AssertionError(f"{call}: {exc!r}") from None
                # a module's input reaches myelin.ops as x or logits (its target as targets or
                # labels), and a layer names itself and the shape it got
                synonyms = {
                    "input": ["x", "logits", "input", type(m).__name__],
                    "target": ["targets", "labels", "target"],
                }[bad.arg]
                named = Corruption(synonyms[0], bad.kind, bad.got)
                check_message(exc, named, call, aliases=synonyms)
                return
    if bad is not None:
        if bad.kind == "huge" and np.size(out.data) == 0:
            return
        shaped = np.shape(inp) if bad.arg == "input" else ()
        if bad.kind == "shape" and kind in ("CrossEntropyLoss", "NLLLoss"):
            if len(shaped) == 2 and shaped[0] == n:
                return  # other class counts are as valid
        if bad.kind == "shape" and not kind.endswith("Loss"):
            if kind not in ("Linear", "Sequential") or shaped[-1:] == (c,):
                return  # elementwise layers take any shape, Linear any leading dimensions
        if bad.kind in ("none", "ragged", "string", "huge", "shape"):
            raise AssertionError(f"{call} accepted {bad.arg} = {bad.kind}: got {out!r}")
        return  # a converted scalar or list: the numbers are checked elsewhere
    assert isinstance(out, myelin.Tensor), f"{call} returned {type(out).__name__}"
    want = np.asarray(want, np.float64)
    tol = 1e-4 if dt == np.float32 else 1e-10
    with np.errstate(invalid="ignore"):
        assert_close(out.data, want, tol * (1 + np.abs(want)), call)
    if isinstance(inp, myelin.Tensor) and np.all(np.isfinite(out.data)):
        out.sum().backward()
        assert inp.grad is None or inp.grad.shape == inp.shape, f"{call}: gradient shape"


# ---------------------------------------------------------------- Tensor operations

TENSOR_BINARY = ["+", "-", "*", "/", "@"]


def fuzz_tensor(data):
    draw = data.draw
    dt = draw(st.sampled_from([np.float32, np.float64]))
    op = draw(st.sampled_from(TENSOR_BINARY + ["sum", "mean", "relu", "softmax", "reshape"]))
    shape = _dims(draw, draw(st.integers(1, 3)), [0, 1, 2, 3, 5])
    a = farray(draw, shape, dt)
    ta = myelin.tensor(a, requires_grad=True)
    with np.errstate(all="ignore"):
        if op in TENSOR_BINARY:
            kind = draw(st.sampled_from(["same", "row", "scalar", "list", "bad"]))
            if op == "@":
                other = farray(draw, (shape[-1], 2), dt)
            elif kind == "row":
                other = farray(draw, shape[-1:], dt)
            elif kind == "scalar":
                other = draw(st.sampled_from([2.0, 3, np.float32(0.5)]))
            else:
                other = farray(draw, shape, dt)
            if kind == "list" and isinstance(other, np.ndarray):
                other = other.tolist()
            if kind == "bad":
                other, _c = corrupt(draw, other, "other")
            fn = {
                "+": lambda p, q: p + q,
                "-": lambda p, q: p - q,
                "*": lambda p, q: p * q,
                "/": lambda p, q: p / q,
                "@": lambda p, q: p @ q,
            }[op]
            try:
                # a list operand becomes a float32 tensor, as torch.tensor(list) does
                want = fn(a, np.asarray(other, np.float32) if isinstance(other, list) else other)
                want_exc = None
            except Exception as exc:  # numpy refuses it: myelin must refuse it too
                want, want_exc = None, exc
            try:
                got = fn(ta, other)
            except MemoryError:
                assert kind == "bad", f"Tensor {op}: MemoryError on small operands"
                return  # a huge-but-empty operand whose product is huge
            except (TypeError, ValueError) as exc:
                if want_exc is None and kind != "bad":
                    raise AssertionError(f"Tensor {op} refused a valid operand: {exc!r}") from exc
                return
            if want_exc is not None:
                return  # myelin is more permissive than numpy here: the value is checked below
            if not isinstance(got, myelin.Tensor):
                raise AssertionError(f"Tensor {op} returned {type(got).__name__}")
            if np.asarray(want).dtype.kind != "f":
                return
            tol = 1e-5 if np.asarray(got.data).dtype == np.float32 else 1e-12
            scale = np.abs(a).max() if a.size else 1.0
            if op == "@":
                scale = (
                    scale * (np.abs(np.asarray(other)).max() if np.size(other) else 1) * shape[-1]
                )
            want = np.asarray(want, np.float64)
            scale = np.nan_to_num(scale, nan=0.0, posinf=0.0)
            assert_close(got.data, want, tol * (1 + np.abs(want) + scale), f"Tensor {op}")
            return
        if op in ("sum", "mean"):
            dim = draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
            got = getattr(ta, op)(dim=dim)
            want = getattr(a.astype(np.float64), op)(axis=dim)
            tol = (1e-5 if dt == np.float32 else 1e-12) * (1 + np.abs(a).sum())
            tol = np.nan_to_num(tol, nan=np.inf)  # inf - inf: NaN must meet NaN
            assert_close(got.data, want, tol, f"Tensor.{op}")
            return
        if op == "relu":
            assert_close(ta.relu().data, reference.relu(a), 0.0, "Tensor.relu")
            return
        if op == "softmax":
            got = ta.softmax(dim=-1).data
            want = reference.softmax(a.astype(np.float64))
            assert_close(got, want, 1e-5 if dt == np.float32 else 1e-13, "Tensor.softmax")
            return
        new = draw(st.sampled_from([(-1,), (a.size,), (a.size + 1,), (2, -1)]))
        try:
            want = a.reshape(new)
        except ValueError:
            try:
                ta.reshape(*new)
            except (TypeError, ValueError) as exc:
                assert str(a.size) in str(exc) or str(shape) in str(exc), str(exc)
                return
            raise AssertionError(f"Tensor.reshape{new} of {shape} accepted") from None
        assert np.array_equal(ta.reshape(*new).data, want, equal_nan=True)


# ---------------------------------------------------------------- optimizer updates

OPTIM_STATES = {
    "sgd_step": ["momentum_buffer"],
    "adam_step": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
    "rmsprop_step": ["square_avg", "momentum_buffer", "grad_avg"],
}


def _optim_call(draw, name, dt, shape):
    """(positional args, kwargs, names of the arrays) of a valid in-place update."""
    # finite values: the update rules' handling of inf and NaN is held by test_nan/test_optim
    vals = lambda lo=-3.0, hi=3.0: _values(draw, shape, dt, lo, hi, special=False)  # noqa: E731
    p = vals()
    g = _layout(draw, vals())
    pos = lambda: np.asarray(np.abs(vals(0, 1)) + 1, dt)  # noqa: E731
    if name == "sgd_step":
        mom = draw(st.sampled_from([0.0, 0.9]))
        kw = {
            "lr": draw(st.sampled_from([0.1, 0.0, 1e-3])),
            "momentum": mom,
            "weight_decay": draw(st.sampled_from([0.0, 0.01])),
            "nesterov": mom > 0 and draw(st.booleans()),
            "first_step": draw(st.booleans()),
        }
        buf = vals() if mom else None
        return [p, g, buf], kw, ["param", "grad", "momentum_buffer"]
    if name == "adam_step":
        ams = draw(st.booleans())
        kw = {
            "step": draw(st.integers(1, 5)),
            "lr": 1e-2,
            "weight_decay": draw(st.sampled_from([0.0, 0.01])),
            "decoupled_weight_decay": draw(st.booleans()),
            "amsgrad": ams,
            "max_exp_avg_sq": pos() if ams else None,
        }
        return (
            [p, g, vals(), pos()],
            kw,
            ["param", "grad", "exp_avg", "exp_avg_sq"],
        )
    mom = draw(st.sampled_from([0.0, 0.9]))
    centered = draw(st.booleans())
    kw = {
        "lr": 1e-2,
        "momentum": mom,
        "centered": centered,
        "weight_decay": draw(st.sampled_from([0.0, 0.01])),
        "momentum_buffer": vals() if mom else None,
        "grad_avg": np.zeros(shape, dt) if centered else None,
    }
    return [p, g, pos()], kw, ["param", "grad", "square_avg"]


def _optim_bad(draw, value, name: str):
    """A bad array for an in-place argument: refused dtypes, shapes, layouts, byte orders,
    None, read-only, or memory shared with the parameter."""
    kind = draw(
        st.sampled_from(
            [
                "dtype",
                "shape",
                "none",
                "readonly",
                "strided",
                "list",
                "alias",
                "swapped",
                "unaligned",
                "overlap",
            ]
        )
    )
    if kind == "swapped" and isinstance(value, np.ndarray):
        return swapped(value), Corruption(name, kind, ["byte order"])
    if kind == "unaligned" and isinstance(value, np.ndarray) and value.size:
        return unaligned(value), Corruption(name, kind, ["aligned"])
    if kind == "overlap":
        return "overlap", Corruption(name, kind, ["shares memory"])
    if kind == "readonly" and isinstance(value, np.ndarray):
        v = value.copy()
        v.flags.writeable = False
        return v, Corruption(name, kind, ["read-only"])
    if kind == "strided" and isinstance(value, np.ndarray) and value.size > 1:
        v = np.repeat(value.reshape(-1), 2)[::2].reshape(value.shape)
        return v, Corruption(name, kind, ["contiguous"])
    if kind == "list" and isinstance(value, np.ndarray):
        return value.tolist(), Corruption(name, kind, ["list", "ndarray"])
    if kind == "alias":
        return "alias", Corruption(name, kind, ["shares memory"])
    if kind in ("none", "shape", "dtype"):
        return corrupt_kind(draw, value, name, kind)
    return corrupt(draw, value, name)


def corrupt_kind(draw, value, name, kind):
    for _ in range(50):
        new, c = corrupt(draw, value, name)
        if c.kind == kind:
            return new, c
    return corrupt(draw, value, name)


def fuzz_optim(data):
    draw = data.draw
    name = draw(st.sampled_from(list(OPTIM_STATES) + ["sgd_step_multi", "adam_step_multi"]))
    dt = draw(st.sampled_from([np.float32, np.float64]))
    multi = name.endswith("_multi")
    base = name[: -len("_multi")] if multi else name
    count = draw(st.integers(1, 3)) if multi else 1
    calls = [
        _optim_call(draw, base, dt, _dims(draw, draw(st.integers(0, 2)))) for _ in range(count)
    ]
    if multi:  # one set of hyperparameters for the lists
        kw0 = calls[0][1]
        calls = [
            (
                a,
                {
                    **kw0,
                    **{
                        k: v for k, v in kw.items() if k in ("max_exp_avg_sq", "step", "first_step")
                    },
                },
                nm,
            )
            for a, kw, nm in calls
        ]
        if base == "sgd_step" and kw0["momentum"]:
            calls = [
                ([a[0], a[1], a[2] if a[2] is not None else np.zeros_like(a[0])], kw, nm)
                for a, kw, nm in calls
            ]
        if base == "adam_step" and kw0["amsgrad"]:
            calls = [
                (
                    a,
                    kw
                    if kw["max_exp_avg_sq"] is not None
                    else {**kw, "max_exp_avg_sq": np.array(np.abs(a[3]))},
                    nm,
                )
                for a, kw, nm in calls
            ]
    bad = None
    which = draw(st.integers(0, count - 1))
    args, kw, names = calls[which]
    if draw(st.integers(0, 2)) == 0:
        i = draw(st.integers(0, len(names) - 1))
        if args[i] is not None:
            new, bad = _optim_bad(draw, args[i], names[i])
            if isinstance(new, str) and new == "alias":
                if i == 0 or args[i].size == 0:
                    bad, new = None, args[i]
                elif names[i] == "grad":
                    bad, new = None, args[0]  # grad is param: read first, then written
                else:
                    new = args[0]
            if isinstance(new, str) and new == "overlap":
                if i > 0:
                    args[0], new = _overlapping(args[0], args[i], shift=names[i] == "grad")
                else:
                    new = None
                if new is None:  # nothing to overlap (param itself, or under two elements)
                    bad, new = None, args[i]
                elif names[i] == "grad":
                    bad = None  # a shifted view of param: read as it was before the update
            unused = names[i] == "momentum_buffer" and not kw.get("momentum", 0)
            if (
                unused
                or bad is not None
                and names[i] == "grad"
                and bad.kind in ("readonly", "strided", "swapped", "unaligned")
            ):
                bad = None  # grad is only read: any layout or byte order will do
            if bad is not None and names[i] == "grad" and bad.kind == "list":
                bad = None if dt == np.float64 else Corruption("grad", "dtype", ["float64"])
            args[i] = new
        elif multi and count > 1 and draw(st.booleans()):  # an array in two entries
            bad = _cross_entry(draw, calls, base)
        elif draw(st.booleans()):  # a bad hyperparameter
            key, val = draw(st.sampled_from([("lr", -1.0), ("lr", float("nan")), ("lr", "fast")]))
            kw = {**kw, key: val}
            bad = Corruption(key, "value", ["-1.0", "nan", "str"])
            calls[which] = (args, kw, names)
            if multi:
                calls = [(a, {**k, key: val}, n) for a, k, n in calls]
    before = [[a.copy() if isinstance(a, np.ndarray) else a for a in c[0]] for c in calls]
    kw_before = [
        {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in c[1].items()} for c in calls
    ]
    # how ops receives the lists of a multi-tensor call: plain lists, hostile sequences (an
    # entry read twice is an int the second time; a step's __index__ or a flag's __bool__
    # swaps an entry of the caller's list), or lists another thread changes during the call
    hostile = draw(st.sampled_from(["plain", "plain", "fickle", "swap", "thread"])) if multi else ""
    if hostile == "thread" and bad is not None:
        hostile = "plain"  # a refusal must name the corrupted argument, not the swapped entry

    def invoke(module, cs, how="plain"):
        if not multi:
            a, k, _ = cs[0]
            return getattr(module, name)(*a, **k)
        k0 = dict(cs[0][1])
        lists = [[c[0][j] for c in cs] for j in range(len(cs[0][0]))]
        callers = [list(lst) for lst in lists]  # what a hostile step or thread changes
        seq = (lambda lst: Fickle(lst)) if how == "fickle" else (lambda lst: lst)
        if base == "sgd_step":
            k0.pop("first_step")
            bufs = None if k0["momentum"] == 0 else seq(callers[2])
            flags = [c[1]["first_step"] for c in cs]
            if how == "swap":
                flags = [Swapping(f, callers[0]) for f in flags]
            with _thread_swapping(callers[0] if how == "thread" else None):
                return module.sgd_step_multi(
                    seq(callers[0]), seq(callers[1]), bufs, first_steps=seq(flags), **k0
                )
        k0.pop("step")
        k0.pop("max_exp_avg_sq")
        vmax = [c[1]["max_exp_avg_sq"] for c in cs] if k0["amsgrad"] else None
        steps = [c[1]["step"] for c in cs]
        if how == "swap":
            steps = [Swapping(s, callers[2]) for s in steps]
        with _thread_swapping(callers[2] if how == "thread" else None):
            return module.adam_step_multi(
                *map(seq, callers),
                steps=seq(steps),
                max_exp_avg_sqs=None if vmax is None else seq(vmax),
                **k0,
            )

    call = f"ops.{name}" + (f" ({hostile} lists)" if multi else "")
    with np.errstate(all="ignore"):
        try:
            invoke(ops, calls, hostile)
        except (TypeError, ValueError) as exc:
            if bad is None and not (hostile == "thread" and "entry 0" in str(exc)):
                # (a thread may swap the entry before the call reads its lists: then refused)
                raise AssertionError(f"{call} refused a valid call: {exc!r}") from exc
            if bad is not None:
                check_message(exc, bad, call)
            # refused: nothing was updated, in any entry
            for c, b, kb in zip(calls, before, kw_before, strict=True):
                for a, a0 in zip(c[0], b, strict=True):
                    if isinstance(a, np.ndarray) and isinstance(a0, np.ndarray):
                        same = np.array_equal(a, a0, equal_nan=a.dtype.kind == "f")
                        assert same, f"{call} updated, then raised"
                for k, v in c[1].items():
                    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                        assert np.array_equal(v, kb[k], equal_nan=True), f"{call} updated {k}"
            return
        if bad is not None:
            raise AssertionError(f"{call} accepted {bad.arg} ({bad.kind})")
        want = [
            (
                [np.array(a) if a is not None else a for a in b],
                {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kb.items()},
                c[2],
            )
            for b, kb, c in zip(before, kw_before, calls, strict=True)
        ]
        invoke(reference, want)
    eps = np.finfo(dt).eps
    for c, w, b in zip(calls, want, before, strict=True):
        pairs = [p for j, p in enumerate(zip(c[0], w[0], b, strict=True)) if j != 1]  # not grad
        pairs += [
            (c[1][k], w[1][k], kw_before[0].get(k)) for k in c[1] if isinstance(c[1][k], np.ndarray)
        ]
        for got, exp, old in pairs:
            if not isinstance(got, np.ndarray) or got.dtype.kind != "f":
                continue
            old = old if isinstance(old, np.ndarray) and old.shape == got.shape else exp
            with np.errstate(all="ignore"):
                tol = 16 * eps * (np.abs(exp) + 4 * np.abs(exp - old) + eps)
            assert_close(got, exp, np.nan_to_num(tol, nan=np.inf), call)


class Fickle:
    """A sequence that gives each entry the first time it is read and 2**62 + 2 (an int that a
    binding casting blindly would read as an array) every time after."""

    def __init__(self, items):
        self.items, self.reads = list(items), [0] * len(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if not 0 <= i < len(self.items):
            raise IndexError(i)
        self.reads[i] += 1
        return self.items[i] if self.reads[i] == 1 else 2**62 + 2


class Swapping:
    """A step (or flag) whose conversion replaces every entry of the caller's list `victims` by
    a 4-element array: the call must go on with the entries it started with."""

    def __init__(self, value, victims: list):
        self.value, self.victims = value, victims

    def _swap(self):
        for j in range(len(self.victims)):
            self.victims[j] = np.zeros(4)

    def __index__(self):
        self._swap()
        return int(self.value)

    __int__ = __index__

    def __bool__(self):
        self._swap()
        return bool(self.value)


class _thread_swapping:
    """While the block runs, another thread replaces entry 0 of `victims` (unless None) by a
    1-element array of 5 dimensions (never a valid entry here), once, after a moment."""

    def __init__(self, victims):
        self.victims = victims

    def __enter__(self):
        if self.victims is None or not self.victims:
            self.thread = None
            return self

        def swap():
            time.sleep(2e-5)
            self.victims[0] = np.zeros((1, 1, 1, 1, 1))

        self.thread = threading.Thread(target=swap)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.thread is not None:
            self.thread.join()
        return False


def _overlapping(param: np.ndarray, value: np.ndarray, shift: bool):
    """(param, value) rebuilt over one buffer with the same values where they do not meet: for
    shift (a gradient), value is param's buffer one element on; otherwise the two share one
    element. (param, None) when param has fewer than two elements."""
    n = param.size
    if n < 2 or not isinstance(value, np.ndarray) or value.shape != param.shape:
        return param, None
    if shift:
        buf = np.empty(n + 1, param.dtype)
        buf[1:] = np.asarray(value, param.dtype).reshape(-1)
        buf[0] = param.reshape(-1)[0]
        return buf[:n].reshape(param.shape), buf[1:].reshape(param.shape)
    buf = np.empty(2 * n - 1, param.dtype)
    buf[n - 1 :] = value.reshape(-1)
    buf[: n - 1] = param.reshape(-1)[: n - 1]
    return buf[:n].reshape(param.shape), buf[n - 1 :].reshape(param.shape)


def _cross_entry(draw, calls, base):
    """Make two entries of a multi-tensor call share an array (when two have one shape); the
    Corruption to expect, or None when the sharing is legal (a gradient read by both)."""
    pairs = [
        (i, j)
        for i in range(len(calls))
        for j in range(len(calls))
        if i < j and calls[i][0][0].shape == calls[j][0][0].shape and calls[i][0][0].size
    ]
    if not pairs:
        return None
    i, j = draw(st.sampled_from(pairs))
    roles = ["params", "grads"] + (["exp_avgs", "exp_avg_sqs"] if base == "adam_step" else [])
    if base == "sgd_step" and calls[0][0][2] is not None and calls[0][1]["momentum"]:
        roles.append("momentum_buffers")
    src, dst = draw(st.sampled_from(roles)), draw(st.sampled_from(roles))
    k_src, k_dst = roles.index(src), roles.index(dst)
    if src == dst == "grads":
        calls[j][0][1] = calls[i][0][1]  # one gradient read by two entries: fine
        return None
    calls[j][0][k_dst] = calls[i][0][k_src]
    shared = "same memory" if k_src == k_dst else "share memory"
    return Corruption(f"{dst}[{j}]", "cross_entry", ["same memory", "share memory", shared])


GROUPS = {"ops": fuzz_ops, "modules": fuzz_modules, "tensor": fuzz_tensor, "optim": fuzz_optim}


def run(group: str, examples: int, isa: str | None = None) -> None:
    if isa:
        myelin._config.set_isa(isa)
    test = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )(given(st.data())(GROUPS[group]))
    test()


if __name__ == "__main__":
    faulthandler.enable()
    # a valid call on a huge-but-empty operand may ask for a huge result (a (1, 2**31) product
    # of (1, 0) and (0, 2**31)): cap the address space so that it is a MemoryError, not a
    # machine out of memory
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    run(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    print(f"fuzz {sys.argv[1]}: {sys.argv[2]} examples passed")
