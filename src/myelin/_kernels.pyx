# cython: language_level=3
"""Thin bindings of the C kernels (csrc/include/myelin/kernels.h).

Private: myelin.ops validates user input and calls these. Each binding still checks what keeps
memory safe and the numbers right (dtype and byte order, alignment, size, contiguity,
writability, label range, no memory shared with an array it writes), so a wrong call raises
instead of reading or writing out of bounds or computing garbage, then releases the GIL around
the C call. A binding that takes sequences reads each once, into a tuple it holds, before it
checks anything, and then reads only that snapshot.
"""
cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t
from libc.stdlib cimport qsort


import numpy as np

cnp.import_array()

ACT_NONE = 0
ACT_RELU = 1
ACT_LEAKY_RELU = 2
ACT_SIGMOID = 3
ACT_TANH = 4


# ---------------------------------------------------------------- checks
#
# One place for what every kernel entry needs of its arrays, fast paths included: a float32 or
# float64 dtype in the machine's byte order (a type number alone ignores byte order: a
# big-endian array would be read as garbage), an aligned data pointer, C-contiguity where the
# kernel walks the memory flat, and no memory shared between an array a call writes and any
# other array of the call (see _check_spans).

cdef inline bint _is_f64(cnp.ndarray a) except -1:
    """Whether a is float64 (else float32); raises unless a is a float32/float64 array in the
    machine's byte order with an aligned data pointer."""
    if a is None:  # a typed argument lets None through: never read it as an array
        raise TypeError("myelin kernels take float32 or float64 arrays, got None")
    cdef int t = cnp.PyArray_TYPE(a)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise TypeError(f"myelin kernels take float32 or float64 arrays, got {a.dtype}")
    if not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(
            f"myelin kernels take arrays in the machine's byte order, got {a.dtype.str}")
    if not cnp.PyArray_ISALIGNED(a):
        raise ValueError("myelin kernels take aligned arrays, got an unaligned one")
    return t == cnp.NPY_FLOAT64


cdef inline int _same(cnp.ndarray a, bint f64, Py_ssize_t size, bint write) except -1:
    """a is C-contiguous, of the dtype, with `size` elements (any shape), writable if `write`."""
    if _is_f64(a) != f64:
        raise TypeError(f"array of dtype {a.dtype} mixed with {'float64' if f64 else 'float32'}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError("myelin kernels need C-contiguous arrays here")
    if cnp.PyArray_SIZE(a) != size:
        raise ValueError(f"array of {cnp.PyArray_SIZE(a)} elements where {size} were expected")
    if write and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError("output array is read-only")
    return 0


cdef inline cnp.ndarray _arr(object a, tuple names, int role, Py_ssize_t entry, bint multi):
    """a as an ndarray, checked: an unchecked cast of anything else would be read as one. The
    argument is names[role] (of entry `entry` of a multi-tensor call)."""
    if not isinstance(a, cnp.ndarray):
        name = f"{names[role]}[{entry}]" if multi else names[role]
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    return <cnp.ndarray>a


cdef int _same_dims(cnp.ndarray a, cnp.ndarray b) except -1:
    """a and b have one shape (not only one size)."""
    cdef int d
    if a.ndim == b.ndim:
        for d in range(a.ndim):
            if a.shape[d] != b.shape[d]:
                break
        else:
            return 0
    raise ValueError(f"arrays of shapes {(<object>a).shape} and {(<object>b).shape} where one "
                     f"shape was expected")


cdef inline void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline int64_t _elem_stride(cnp.ndarray a, int axis) except? -1:
    cdef Py_ssize_t s = cnp.PyArray_STRIDE(a, axis)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(a)
    if s % item:
        raise ValueError("array strides are not a multiple of its item size")
    return s // item


# ---------------------------------------------------------------- overlap
#
# A kernel that writes an array while it reads another one (or writes a second one) over the
# same memory gives results that depend on the order of its loads and stores, hence on the
# number of threads. So every entry describes its arrays as byte ranges (spans) and
# _check_spans refuses any sharing that involves a written array, with one exception an
# element-wise kernel allows: an input it reads may be exactly the memory of one array it
# writes (in place: each element is read before it is written). For C-contiguous arrays the
# byte range is exactly the memory used, so the test is exact; strided operands (the GEMM's)
# take _apart_strided, exact through numpy.shares_memory when their bounds meet.

cdef struct _Span:
    const char *lo           # the bytes [lo, hi) of one array
    const char *hi
    Py_ssize_t entry         # the entry of a multi-tensor call (0 elsewhere)
    int role                 # the argument's index in the names of _check_spans
    int written              # the call writes it
    int inplace              # read-only, and may be exactly a written array of its entry


cdef inline void _span(_Span *s, cnp.ndarray a, Py_ssize_t entry, int role, bint written,
                       bint inplace) noexcept:
    """s describes the C-contiguous array a."""
    s.lo = <const char *>cnp.PyArray_DATA(a)
    s.hi = s.lo + cnp.PyArray_NBYTES(a)
    s.entry = entry
    s.role = role
    s.written = written
    s.inplace = inplace


cdef inline int _span_order(const void *a, const void *b) noexcept nogil:
    cdef const _Span *x = <const _Span *>a
    cdef const _Span *y = <const _Span *>b
    if x.lo != y.lo:
        return -1 if x.lo < y.lo else 1
    if x.hi != y.hi:
        return -1 if x.hi < y.hi else 1
    if x.entry != y.entry:
        return -1 if x.entry < y.entry else 1
    return x.role - y.role


cdef str _span_name(const _Span *s, tuple names, bint multi):
    return f"{names[s.role]}[{s.entry}]" if multi else names[s.role]


cdef int _shared(const _Span *a, const _Span *b, tuple names, bint multi) except -1:
    if (a.entry, a.role) > (b.entry, b.role):
        a, b = b, a
    cdef str na = _span_name(a, names, multi), nb = _span_name(b, names, multi)
    cdef str what = "are the same memory" if a.lo == b.lo and a.hi == b.hi else "share memory"
    raise ValueError(f"{na} and {nb} {what}; expected arrays that do not overlap, since "
                     f"{na if a.written else nb} is written by this call (the result would "
                     f"depend on the order of the loads and stores)")


cdef int _check_spans(_Span *s, Py_ssize_t n, tuple names, bint multi) except -1:
    """Refuse any two spans that share memory when one of them is written, unless they are the
    same bytes, of one entry, and the read one is `inplace`. Sorted by start, one sweep: a span
    meets an earlier one exactly when that one ends past its start, so keeping the furthest end
    of all spans and of written spans seen so far finds any such pair (O(n log n))."""
    cdef Py_ssize_t i = 0, j, k, m = 0, w, far_any = -1, far_written = -1
    cdef int small[64]  # the order of the spans, sorted here for the usual few arrays
    cdef const char *keys[64]  # their starts, in that order
    cdef int x
    cdef int *order = small
    cdef const char *lo
    cdef const char *far = NULL
    if n > 64:  # many: the spans themselves sorted in place, by qsort
        qsort(s, n, sizeof(_Span), _span_order)
    for j in range(n):  # empty spans share nothing: dropped
        lo = s[j].lo
        if lo == s[j].hi:
            continue
        if n > 64:
            s[m] = s[j]
            m += 1
            continue
        x = <int>j  # insertion sort of indices, by start (then the full order on a tie)
        k = m - 1
        while k >= 0 and (keys[k] > lo or keys[k] == lo and _span_order(&s[order[k]], &s[x]) > 0):
            order[k + 1] = order[k]
            keys[k + 1] = keys[k]
            k -= 1
        order[k + 1] = x
        keys[k + 1] = lo
        m += 1
    if n > 64:
        order = NULL  # the spans are in order themselves
    for i in range(m):  # the usual case: no span meets an earlier one, nothing is shared
        if _at(s, order, i).lo < far:
            break
        if _at(s, order, i).hi > far:
            far = _at(s, order, i).hi
    else:
        return 0
    i = 0
    while i < m:
        j = i + 1  # the group [i, j) spans the same bytes
        while j < m and _at(s, order, j).lo == _at(s, order, i).lo \
                and _at(s, order, j).hi == _at(s, order, i).hi:
            j += 1
        w = -1
        for k in range(i, j):
            if _at(s, order, k).written:
                if w >= 0:
                    _shared(_at(s, order, w), _at(s, order, k), names, multi)
                w = k
        if w >= 0:
            for k in range(i, j):
                if k != w and not (_at(s, order, k).inplace
                                   and _at(s, order, k).entry == _at(s, order, w).entry):
                    _shared(_at(s, order, w), _at(s, order, k), names, multi)
            if far_any >= 0 and _at(s, order, far_any).hi > _at(s, order, i).lo:
                _shared(_at(s, order, far_any), _at(s, order, w), names, multi)
        elif far_written >= 0 and _at(s, order, far_written).hi > _at(s, order, i).lo:
            _shared(_at(s, order, far_written), _at(s, order, i), names, multi)
        if far_any < 0 or _at(s, order, i).hi > _at(s, order, far_any).hi:
            far_any = i if w < 0 else w
        if w >= 0 and (far_written < 0 or _at(s, order, i).hi > _at(s, order, far_written).hi):
            far_written = w
        i = j
    return 0


cdef inline const _Span *_at(const _Span *s, const int *order, Py_ssize_t i) noexcept nogil:
    """The i-th span in sorted order (order NULL: the spans are sorted themselves)."""
    return &s[i] if order == NULL else &s[order[i]]


cdef inline bint _meets(object a, object b):
    """Whether two C-contiguous arrays (or None) share memory: their byte ranges intersect."""
    if a is None or b is None:
        return False
    cdef cnp.ndarray x = <cnp.ndarray>a, y = <cnp.ndarray>b
    cdef const char *px = <const char *>cnp.PyArray_DATA(x)
    cdef const char *py = <const char *>cnp.PyArray_DATA(y)
    cdef Py_ssize_t nx = cnp.PyArray_NBYTES(x), ny = cnp.PyArray_NBYTES(y)
    return nx > 0 and ny > 0 and px < py + ny and py < px + nx


def read_apart(cnp.ndarray a, tuple written, bint in_place=False):
    """The C-contiguous input a as a kernel writing the C-contiguous arrays `written` (None
    entries skipped) may read it: a itself when it shares memory with none of them or, with
    in_place (an element-wise kernel), is exactly the memory of one; else a copy of a, so that
    the op reads its inputs as they were before it writes. At C speed: the hot paths call it."""
    cdef const char *lo = <const char *>cnp.PyArray_DATA(a)
    cdef const char *hi = lo + cnp.PyArray_NBYTES(a)
    cdef const char *wlo
    cdef const char *whi
    cdef cnp.ndarray w
    if lo == hi:
        return a
    for item in written:
        if item is None:
            continue
        w = _arr(item, ("written",), 0, 0, False)
        wlo = <const char *>cnp.PyArray_DATA(w)
        whi = wlo + cnp.PyArray_NBYTES(w)
        if wlo == whi or whi <= lo or hi <= wlo:
            continue
        if in_place and wlo == lo and whi == hi and cnp.PyArray_TYPE(w) == cnp.PyArray_TYPE(a):
            continue
        return a.copy()
    return a


cdef void _bounds(cnp.ndarray a, const char **lo, const char **hi) noexcept:
    """The bytes [lo, hi) that a strided array a (of any sign of stride) may touch."""
    cdef const char *p = <const char *>cnp.PyArray_DATA(a)
    lo[0] = p
    hi[0] = p
    if cnp.PyArray_SIZE(a) == 0:
        return
    cdef int d
    cdef Py_ssize_t step
    for d in range(a.ndim):
        step = cnp.PyArray_STRIDE(a, d) * (a.shape[d] - 1)
        if step > 0:
            hi[0] += step
        else:
            lo[0] += step
    hi[0] += cnp.PyArray_ITEMSIZE(a)


_TooHardError = getattr(getattr(np, "exceptions", np), "TooHardError")


cdef int _apart_strided(cnp.ndarray out, str out_name, object a, str name) except -1:
    """The written array `out` shares no memory with `a` (None: nothing), any strides: bounds
    first, and numpy.shares_memory (work-bounded; undecided counts as shared) when they meet."""
    if a is None:
        return 0
    cdef const char *lo1
    cdef const char *hi1
    cdef const char *lo2
    cdef const char *hi2
    _bounds(out, &lo1, &hi1)
    _bounds(<cnp.ndarray>a, &lo2, &hi2)
    if lo1 == hi1 or lo2 == hi2 or hi1 <= lo2 or hi2 <= lo1:
        return 0
    try:
        shared = np.shares_memory(out, a, max_work=_SHARES_MAX_WORK)
    except _TooHardError:
        shared = True
    if shared:
        raise ValueError(f"{out_name} shares memory with {name}; expected an output that does not "
                         f"overlap an input")
    return 0


# the work bound of numpy.shares_memory's exact test (about a millisecond)
_SHARES_MAX_WORK = 1 << 16


# ---------------------------------------------------------------- dispatch and threads

def select_isa(str name):
    """Select an ISA path by name ("" for the best one). Returns 0, -1 unknown, -2 unsupported."""
    cdef bytes b = name.encode()
    return myelin_select_isa(b)


def isa_supported(int isa):
    return bool(myelin_isa_supported(isa))


def current_isa():
    return myelin_current_isa()


def isa_name(int isa):
    return myelin_isa_name(isa).decode()


def has_openmp():
    return bool(myelin_has_openmp())


def openmp_version():
    return myelin_openmp_version()


def set_num_threads(int n):
    myelin_set_num_threads(n)


def get_num_threads():
    return myelin_get_num_threads()


cdef extern from "myelin/parallel.h" nogil:
    int myelin_set_flush_denormal(int on)
    int myelin_get_flush_denormal()
    int64_t myelin_parallel_region_count()
    int myelin_gemm_threads(int64_t M, int64_t N, int64_t K, int f64)
    int myelin_ops_threads(double work)
    int myelin_set_team_cap(int cap)
    int myelin_chain_threads(double flops)
    void myelin_backoff_set(double seconds)
    double myelin_backoff_remaining()


def set_flush_denormal(bint on):
    """Flush-to-zero mode of the kernels; False if this CPU has none."""
    return bool(myelin_set_flush_denormal(on))


def get_flush_denormal():
    return bool(myelin_get_flush_denormal())


def parallel_region_count():
    """Parallel regions the kernels have entered so far in this process."""
    return myelin_parallel_region_count()


def gemm_threads(int64_t m, int64_t n, int64_t k, bint f64=False):
    """Threads a contiguous (m, k) @ (k, n) product would use now."""
    return myelin_gemm_threads(m, n, k, f64)


def ops_threads(double work):
    """Threads an elementwise op of `work` cost units (about one per element) would use now."""
    return myelin_ops_threads(work)


def backoff_set(double seconds):
    """Keep small work on one thread for `seconds`, as after a stalled parallel region; 0 ends
    the backoff, a negative value ends it and turns it off until the next call (for tests)."""
    myelin_backoff_set(seconds)


def backoff_remaining():
    """Seconds left during which small work runs on one thread (0.0: none)."""
    return myelin_backoff_remaining()


# ---------------------------------------------------------------- machine probe

def fma_peak_gflops(int threads, double seconds):
    """The float32 FMA peak of `threads` threads in GFLOP/s, measured for about `seconds`;
    `threads` from 1 to max_threads() (its OpenMP region starts them all)."""
    cdef double gflops
    cdef int most = max_threads()
    if threads < 1 or threads > most:
        raise ValueError(f"threads must be from 1 to {most} (max_threads()), got {threads}")
    with nogil:
        gflops = myelin_fma_peak_gflops(threads, seconds)
    return gflops


# ---------------------------------------------------------------- GEMM

def gemm(cnp.ndarray out, cnp.ndarray a, cnp.ndarray b, double beta=0.0, object bias=None,
         int act=0, double slope=0.01):
    """out = act(a @ b + beta*out + bias). a (M, K) and b (K, N) with any strides; out (M, N)
    with unit column stride; bias (N,) contiguous or None."""
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
        raise ValueError("gemm takes 2-D arrays")
    cdef bint f64 = _is_f64(out)
    cdef int64_t M = a.shape[0], K = a.shape[1], N = b.shape[1]
    if b.shape[0] != K or out.shape[0] != M or out.shape[1] != N:
        raise ValueError("gemm: shapes do not agree")
    if _is_f64(a) != f64 or _is_f64(b) != f64:
        raise TypeError("gemm: arrays of different dtypes")
    if not cnp.PyArray_ISWRITEABLE(out):
        raise ValueError("gemm: output array is read-only")
    if bias is not None:
        _same(bias, f64, N, False)
    if M == 0 or N == 0:
        return out
    _apart_strided(out, "out", a, "a")
    _apart_strided(out, "out", b, "b")
    _apart_strided(out, "out", bias, "bias")
    cdef int64_t rsa = _elem_stride(a, 0), csa = _elem_stride(a, 1)
    cdef int64_t rsb = _elem_stride(b, 0), csb = _elem_stride(b, 1)
    cdef int64_t ldc = _elem_stride(out, 0)
    if N > 1 and _elem_stride(out, 1) != 1:
        raise ValueError("gemm: output rows must be contiguous")
    if M > 1 and ldc < N:
        raise ValueError("gemm: output rows must not overlap")
    if M <= 1:
        ldc = N
    cdef void *pa = cnp.PyArray_DATA(a)
    cdef void *pb = cnp.PyArray_DATA(b)
    cdef void *pc = cnp.PyArray_DATA(out)
    cdef void *pbias = _ptr(bias)
    with nogil:
        if f64:
            myelin_gemm_f64(<double *>pc, ldc, <const double *>pa, rsa, csa,
                            <const double *>pb, rsb, csb, M, N, K, beta,
                            <const double *>pbias, act, slope)
        else:
            myelin_gemm_f32(<float *>pc, ldc, <const float *>pa, rsa, csa,
                            <const float *>pb, rsb, csb, M, N, K, beta,
                            <const float *>pbias, act, slope)
    return out


cdef cnp.ndarray _batch_offsets(cnp.ndarray a, int nbatch, int64_t batch):
    """Element offsets of each of the `batch` leading-index positions of a, in C order."""
    cdef cnp.ndarray offs = np.empty(batch, dtype=np.int64)
    cdef int64_t *o = <int64_t *>cnp.PyArray_DATA(offs)
    cdef int64_t idx[32]
    cdef int64_t strides[32]
    cdef int64_t dims[32]
    cdef int d
    cdef int64_t p, off = 0
    for d in range(nbatch):
        idx[d] = 0
        dims[d] = a.shape[d]
        strides[d] = _elem_stride(a, d)
    for p in range(batch):
        o[p] = off
        d = nbatch - 1
        while d >= 0:
            idx[d] += 1
            off += strides[d]
            if idx[d] < dims[d]:
                break
            off -= strides[d] * dims[d]
            idx[d] = 0
            d -= 1
    return offs


def gemm_batched(cnp.ndarray out, cnp.ndarray a, cnp.ndarray b):
    """out[i] = a[i] @ b[i] over the leading (batch) axes, which a, b and out share exactly
    (broadcast a and b first with np.broadcast_to). out is C-contiguous."""
    cdef int nd = out.ndim
    if nd < 3 or a.ndim != nd or b.ndim != nd or nd > 34:
        raise ValueError("gemm_batched takes arrays of equal rank, 3 to 34")
    cdef bint f64 = _is_f64(out)
    if _is_f64(a) != f64 or _is_f64(b) != f64:
        raise TypeError("gemm_batched: arrays of different dtypes")
    cdef int d
    for d in range(nd - 2):
        if a.shape[d] != out.shape[d] or b.shape[d] != out.shape[d]:
            raise ValueError("gemm_batched: batch shapes differ")
    cdef int64_t M = a.shape[nd - 2], K = a.shape[nd - 1], N = b.shape[nd - 1]
    if b.shape[nd - 2] != K or out.shape[nd - 2] != M or out.shape[nd - 1] != N:
        raise ValueError("gemm_batched: shapes do not agree")
    _same(out, f64, cnp.PyArray_SIZE(out), True)
    cdef int64_t batch = 1
    for d in range(nd - 2):
        batch *= out.shape[d]
    if batch == 0 or M == 0 or N == 0:
        return out
    _apart_strided(out, "out", a, "a")
    _apart_strided(out, "out", b, "b")
    cdef cnp.ndarray offa = _batch_offsets(a, nd - 2, batch)
    cdef cnp.ndarray offb = _batch_offsets(b, nd - 2, batch)
    cdef int64_t rsa = _elem_stride(a, nd - 2), csa = _elem_stride(a, nd - 1)
    cdef int64_t rsb = _elem_stride(b, nd - 2), csb = _elem_stride(b, nd - 1)
    cdef void *pa = cnp.PyArray_DATA(a)
    cdef void *pb = cnp.PyArray_DATA(b)
    cdef void *pc = cnp.PyArray_DATA(out)
    cdef const int64_t *oa = <const int64_t *>cnp.PyArray_DATA(offa)
    cdef const int64_t *ob = <const int64_t *>cnp.PyArray_DATA(offb)
    with nogil:
        if f64:
            myelin_gemm_batched_f64(<double *>pc, N, M * N, <const double *>pa, oa, rsa, csa,
                                    <const double *>pb, ob, rsb, csb, batch, M, N, K)
        else:
            myelin_gemm_batched_f32(<float *>pc, N, M * N, <const float *>pa, oa, rsa, csa,
                                    <const float *>pb, ob, rsb, csb, batch, M, N, K)
    return out


# ---------------------------------------------------------------- element-wise

def act_forward(cnp.ndarray y, cnp.ndarray x, int act, double slope):
    """y = act(x); y may be x itself (in place), else shares no memory with it."""
    cdef bint f64 = _is_f64(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _same(x, f64, n, False)
    _same(y, f64, n, True)
    cdef _Span s[2]
    _span(&s[0], y, 0, 0, True, False)
    _span(&s[1], x, 0, 1, False, True)
    _check_spans(s, 2, ("y", "x"), False)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef void *px = cnp.PyArray_DATA(x)
    with nogil:
        if f64:
            myelin_act_forward_f64(<double *>py, <const double *>px, n, act, slope)
        else:
            myelin_act_forward_f32(<float *>py, <const float *>px, n, act, slope)
    return y


def act_backward(cnp.ndarray dx, cnp.ndarray dy, cnp.ndarray y, int act, double slope):
    """dx = dy * act'(y); dx may be dy itself (in place), and shares no other memory."""
    cdef bint f64 = _is_f64(dy)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(dy)
    _same(dy, f64, n, False)
    _same(y, f64, n, False)
    _same(dx, f64, n, True)
    cdef _Span s[3]
    _span(&s[0], dx, 0, 0, True, False)
    _span(&s[1], dy, 0, 1, False, True)
    _span(&s[2], y, 0, 2, False, False)
    _check_spans(s, 3, ("dx", "dy", "y"), False)
    cdef void *pdx = cnp.PyArray_DATA(dx)
    cdef void *pdy = cnp.PyArray_DATA(dy)
    cdef void *py = cnp.PyArray_DATA(y)
    with nogil:
        if f64:
            myelin_act_backward_f64(<double *>pdx, <const double *>pdy, <const double *>py, n,
                                    act, slope)
        else:
            myelin_act_backward_f32(<float *>pdx, <const float *>pdy, <const float *>py, n,
                                    act, slope)
    return dx


# ---------------------------------------------------------------- softmax

def softmax_forward(cnp.ndarray y, cnp.ndarray x, int64_t rows, int64_t cols, bint log):
    cdef bint f64 = _is_f64(x)
    _same(x, f64, rows * cols, False)
    _same(y, f64, rows * cols, True)
    cdef _Span s[2]
    _span(&s[0], y, 0, 0, True, False)
    _span(&s[1], x, 0, 1, False, False)
    _check_spans(s, 2, ("y", "x"), False)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef void *px = cnp.PyArray_DATA(x)
    with nogil:
        if f64:
            myelin_softmax_forward_f64(<double *>py, <const double *>px, rows, cols, log)
        else:
            myelin_softmax_forward_f32(<float *>py, <const float *>px, rows, cols, log)
    return y


def softmax_backward(cnp.ndarray dx, cnp.ndarray dy, cnp.ndarray y, int64_t rows, int64_t cols,
                     bint log):
    cdef bint f64 = _is_f64(y)
    _same(dy, f64, rows * cols, False)
    _same(y, f64, rows * cols, False)
    _same(dx, f64, rows * cols, True)
    cdef _Span s[3]
    _span(&s[0], dx, 0, 0, True, False)
    _span(&s[1], dy, 0, 1, False, False)
    _span(&s[2], y, 0, 2, False, False)
    _check_spans(s, 3, ("dx", "dy", "y"), False)
    cdef void *pdx = cnp.PyArray_DATA(dx)
    cdef void *pdy = cnp.PyArray_DATA(dy)
    cdef void *py = cnp.PyArray_DATA(y)
    with nogil:
        if f64:
            myelin_softmax_backward_f64(<double *>pdx, <const double *>pdy, <const double *>py,
                                        rows, cols, log)
        else:
            myelin_softmax_backward_f32(<float *>pdx, <const float *>pdy, <const float *>py,
                                        rows, cols, log)
    return dx


# ---------------------------------------------------------------- losses

def prepare_labels(object labels, int64_t n_classes, object ignore_index):
    """Labels as a contiguous int64 copy with ignored rows set to -1.

    Returns (labels64, n_valid, bad): bad is the position of the first label that is neither in
    [0, n_classes) nor ignore_index, or -1 when all are good. labels is a 1-D integer ndarray."""
    # native byte order (np.int64 is), C-contiguous and aligned, converted if it is not
    cdef cnp.ndarray src = np.require(labels, np.int64, ["C", "A"])
    cdef Py_ssize_t n = cnp.PyArray_SIZE(src), i
    cdef cnp.ndarray dst = np.empty(n, dtype=np.int64)
    cdef const int64_t *s = <const int64_t *>cnp.PyArray_DATA(src)
    cdef int64_t *t = <int64_t *>cnp.PyArray_DATA(dst)
    cdef bint has_ignore = ignore_index is not None
    cdef int64_t ign = ignore_index if has_ignore else 0
    cdef int64_t valid = 0, bad = -1, v
    with nogil:
        for i in range(n):
            v = s[i]
            if has_ignore and v == ign:
                t[i] = -1
            elif 0 <= v < n_classes:
                t[i] = v
                valid += 1
            else:
                bad = i
                break
    return dst, valid, bad


cdef inline bint _plain_labels(cnp.ndarray labels):
    """labels is a C-contiguous, aligned int64 array in the machine's byte order."""
    return cnp.PyArray_TYPE(labels) == cnp.NPY_INT64 and cnp.PyArray_ISNOTSWAPPED(labels) \
        and cnp.PyArray_IS_C_CONTIGUOUS(labels) and cnp.PyArray_ISALIGNED(labels)


def softmax_xent(object row_loss, object dlogits, cnp.ndarray logits, cnp.ndarray labels,
                 double label_smoothing, double grad_scale):
    """Sum of row losses; labels come from prepare_labels (int64, -1 = ignored)."""
    if logits.ndim != 2:
        raise ValueError("softmax_xent takes 2-D logits")
    cdef bint f64 = _is_f64(logits)
    cdef int64_t rows = logits.shape[0], cols = logits.shape[1], i
    _same(logits, f64, rows * cols, False)
    if labels is None or not _plain_labels(labels) or cnp.PyArray_SIZE(labels) != rows:
        raise ValueError("softmax_xent: labels must be a contiguous int64 array of one per row")
    cdef const int64_t *lab = <const int64_t *>cnp.PyArray_DATA(labels)
    for i in range(rows):
        if lab[i] >= cols:
            raise ValueError("softmax_xent: label out of range")
    cdef _Span s[4]
    cdef int ns = 2
    _span(&s[0], logits, 0, 0, False, False)
    _span(&s[1], labels, 0, 1, False, False)
    if row_loss is not None:
        _same(row_loss, f64, rows, True)
        _span(&s[ns], row_loss, 0, 2, True, False)
        ns += 1
    if dlogits is not None:
        _same(dlogits, f64, rows * cols, True)
        _span(&s[ns], dlogits, 0, 3, True, False)
        ns += 1
    _check_spans(s, ns, ("logits", "labels", "row_loss", "dlogits"), False)
    cdef void *prl = _ptr(row_loss)
    cdef void *pdl = _ptr(dlogits)
    cdef void *pl = cnp.PyArray_DATA(logits)
    cdef double total
    with nogil:
        if f64:
            total = myelin_softmax_xent_f64(<double *>prl, <double *>pdl, <const double *>pl, lab,
                                            rows, cols, label_smoothing, grad_scale)
        else:
            total = myelin_softmax_xent_f32(<float *>prl, <float *>pdl, <const float *>pl, lab,
                                            rows, cols, label_smoothing, grad_scale)
    return total


def pointwise_loss(int kind, object elem_loss, object dx, cnp.ndarray x, cnp.ndarray t,
                   double grad_scale):
    """kind 0: binary cross-entropy on logits; kind 1: squared error. Returns the sum."""
    cdef bint f64 = _is_f64(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _same(x, f64, n, False)
    _same(t, f64, n, False)
    cdef _Span s[4]
    cdef int ns = 2
    _span(&s[0], x, 0, 0, False, False)
    _span(&s[1], t, 0, 1, False, False)
    if elem_loss is not None:
        _same(elem_loss, f64, n, True)
        _span(&s[ns], elem_loss, 0, 2, True, False)
        ns += 1
    if dx is not None:
        _same(dx, f64, n, True)
        _span(&s[ns], dx, 0, 3, True, False)
        ns += 1
    _check_spans(s, ns, ("x", "t", "elem_loss", "dx"), False)
    cdef void *pel = _ptr(elem_loss)
    cdef void *pdx = _ptr(dx)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *pt = cnp.PyArray_DATA(t)
    cdef double total
    with nogil:
        if kind == 0 and f64:
            total = myelin_bce_logits_f64(<double *>pel, <double *>pdx, <const double *>px,
                                          <const double *>pt, n, grad_scale)
        elif kind == 0:
            total = myelin_bce_logits_f32(<float *>pel, <float *>pdx, <const float *>px,
                                          <const float *>pt, n, grad_scale)
        elif f64:
            total = myelin_mse_f64(<double *>pel, <double *>pdx, <const double *>px,
                                   <const double *>pt, n, grad_scale)
        else:
            total = myelin_mse_f32(<float *>pel, <float *>pdx, <const float *>px,
                                   <const float *>pt, n, grad_scale)
    return total


# ---------------------------------------------------------------- reductions

def colsum(cnp.ndarray out, cnp.ndarray x, int64_t rows, int64_t cols, double beta=0.0):
    cdef bint f64 = _is_f64(x)
    _same(x, f64, rows * cols, False)
    _same(out, f64, cols, True)
    cdef _Span s[2]
    _span(&s[0], out, 0, 0, True, False)
    _span(&s[1], x, 0, 1, False, False)
    _check_spans(s, 2, ("out", "x"), False)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef void *px = cnp.PyArray_DATA(x)
    with nogil:
        if f64:
            myelin_colsum_f64(<double *>po, <const double *>px, rows, cols, beta)
        else:
            myelin_colsum_f32(<float *>po, <const float *>px, rows, cols, beta)
    return out


def sumsq(cnp.ndarray x):
    cdef bint f64 = _is_f64(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _same(x, f64, n, False)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef double s
    with nogil:
        if f64:
            s = myelin_sumsq_f64(<const double *>px, n)
        else:
            s = myelin_sumsq_f32(<const float *>px, n)
    return s


# ---------------------------------------------------------------- optimizer updates
#
# One checked entry of an update: the arrays' data pointers and size, taken while the checks
# run and then the only thing the kernel call reads (the single-tensor bindings and the
# multi-tensor ones share it, so a multi-tensor call checks each entry exactly as a single call
# would). The gradient is read-only and may be exactly the parameter (or a state) of its entry.

cdef struct _Entry:
    void *p
    void *s1                 # sgd: buf; adam: m; rmsprop: sq
    void *s2                 # adam: v; rmsprop: buf
    void *s3                 # adam: vmax; rmsprop: gavg
    const void *g
    int64_t n
    int64_t step             # adam: the step number; sgd: first_step
    bint f64


cdef int _entry(_Entry *e, _Span *spans, Py_ssize_t i, object p, object g, object s1,
                object s2, object s3, int required, tuple names, bint multi) except -1:
    """Check one entry (p and the states s1..s3 written, g read) into e and its five spans.
    The first `required` states must be arrays; a later one may be None (unused: a NULL
    pointer, an empty span)."""
    cdef cnp.ndarray P = _arr(p, names, 0, i, multi), G = _arr(g, names, 1, i, multi)
    cdef bint f64 = _is_f64(P)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(P)
    _same(P, f64, n, True)
    _same(G, f64, n, False)
    _same_dims(P, G)
    e.p = cnp.PyArray_DATA(P)
    e.g = cnp.PyArray_DATA(G)
    e.n = n
    e.f64 = f64
    _span(&spans[0], P, i, 0, True, False)
    _span(&spans[1], G, i, 1, False, True)
    e.s1 = _state(&spans[2], s1, required >= 1, P, f64, i, 2, names, multi)
    e.s2 = _state(&spans[3], s2, required >= 2, P, f64, i, 3, names, multi)
    e.s3 = _state(&spans[4], s3, required >= 3, P, f64, i, 4, names, multi)
    return 0


cdef void *_state(_Span *span, object state, bint required, cnp.ndarray P, bint f64,
                  Py_ssize_t i, int role, tuple names, bint multi) except? NULL:
    """The data of the optimizer state `state` of parameter P (NULL for an unused None: a kernel
    takes a NULL state as absent), checked."""
    if state is None and not required:
        span.lo = span.hi = NULL
        return NULL
    cdef cnp.ndarray S = _arr(state, names, role, i, multi)
    _same(S, f64, cnp.PyArray_SIZE(P), True)
    _same_dims(P, S)
    _span(span, S, i, role, True, False)
    return cnp.PyArray_DATA(S)


cdef void _sgd_run(const _Entry *e, double lr, double momentum, double dampening,
                   double weight_decay, bint nesterov) noexcept nogil:
    if e.f64:
        myelin_sgd_step_f64(<double *>e.p, <double *>e.s1, <const double *>e.g, e.n, lr,
                            momentum, dampening, weight_decay, nesterov, <int>e.step)
    else:
        myelin_sgd_step_f32(<float *>e.p, <float *>e.s1, <const float *>e.g, e.n, lr,
                            momentum, dampening, weight_decay, nesterov, <int>e.step)


cdef void _adam_run(const _Entry *e, double lr, double beta1, double beta2, double eps,
                    double weight_decay, bint decoupled) noexcept nogil:
    if e.f64:
        myelin_adam_step_f64(<double *>e.p, <double *>e.s1, <double *>e.s2, <double *>e.s3,
                             <const double *>e.g, e.n, lr, beta1, beta2, eps, weight_decay,
                             decoupled, e.step)
    else:
        myelin_adam_step_f32(<float *>e.p, <float *>e.s1, <float *>e.s2, <float *>e.s3,
                             <const float *>e.g, e.n, lr, beta1, beta2, eps, weight_decay,
                             decoupled, e.step)


_SGD_NAMES = ("param", "grad", "momentum_buffer", "", "")
_SGD_MULTI_NAMES = ("params", "grads", "momentum_buffers", "", "")
_ADAM_NAMES = ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
_ADAM_MULTI_NAMES = ("params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")
_RMSPROP_NAMES = ("param", "grad", "square_avg", "momentum_buffer", "grad_avg")


def sgd_step(cnp.ndarray p, object buf, cnp.ndarray g, double lr, double momentum,
             double dampening, double weight_decay, bint nesterov, bint first_step):
    if buf is None and momentum != 0.0:
        raise ValueError("sgd_step: momentum needs a buffer")
    cdef _Entry e
    cdef _Span s[5]
    _entry(&e, s, 0, p, g, buf, None, None, momentum != 0.0, _SGD_NAMES, False)
    e.step = first_step
    _check_spans(s, 5, _SGD_NAMES, False)
    with nogil:
        _sgd_run(&e, lr, momentum, dampening, weight_decay, nesterov)


def adam_step(cnp.ndarray p, cnp.ndarray m, cnp.ndarray v, object vmax, cnp.ndarray g,
              double lr, double beta1, double beta2, double eps, double weight_decay,
              bint decoupled, int64_t step):
    if step < 1:
        raise ValueError("adam_step: step must be >= 1")
    cdef _Entry e
    cdef _Span s[5]
    _entry(&e, s, 0, p, g, m, v, vmax, 2, _ADAM_NAMES, False)
    e.step = step
    _check_spans(s, 5, _ADAM_NAMES, False)
    with nogil:
        _adam_run(&e, lr, beta1, beta2, eps, weight_decay, decoupled)


def rmsprop_step(cnp.ndarray p, cnp.ndarray sq, object buf, object gavg, cnp.ndarray g,
                 double lr, double alpha, double eps, double weight_decay, double momentum):
    if buf is None and momentum != 0.0:
        raise ValueError("rmsprop_step: momentum needs a buffer")
    cdef _Entry e
    cdef _Span s[5]
    _entry(&e, s, 0, p, g, sq, buf, gavg, 2 if momentum != 0.0 else 1, _RMSPROP_NAMES, False)
    _check_spans(s, 5, _RMSPROP_NAMES, False)
    with nogil:
        if e.f64:
            myelin_rmsprop_step_f64(<double *>e.p, <double *>e.s1, <double *>e.s2,
                                    <double *>e.s3, <const double *>e.g, e.n, lr, alpha, eps,
                                    weight_decay, momentum)
        else:
            myelin_rmsprop_step_f32(<float *>e.p, <float *>e.s1, <float *>e.s2, <float *>e.s3,
                                    <const float *>e.g, e.n, lr, alpha, eps, weight_decay,
                                    momentum)


# ---------------------------------------------------------------- fast paths of the hot loop
#
# A training step makes a dozen kernel calls on arrays the framework itself allocated: 2-D,
# C-contiguous, one float dtype. For that common case these entries check the whole call at C
# speed and run it; for anything else they return None and myelin.ops takes its general path,
# which converts, validates and raises the user-facing errors. Both paths call the same kernels
# with the same strides, so the numbers are the same.

cdef inline int _plain_type(object a):
    """The float type number of a C-contiguous, aligned float32/float64 ndarray in the machine's
    byte order, else -1 (_is_f64's rule, answered rather than raised)."""
    if type(a) is not cnp.ndarray:
        return -1
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int t = cnp.PyArray_TYPE(arr)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        return -1
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISALIGNED(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        return -1
    return t


cdef inline int _act_code(object activation):
    if activation is None:
        return 0
    if activation == "relu":
        return 1
    if activation == "leaky_relu":
        return 2
    if activation == "sigmoid":
        return 3
    if activation == "tanh":
        return 4
    return -1


cdef inline cnp.ndarray _empty2(int64_t rows, int64_t cols, int t):
    cdef cnp.npy_intp dims[2]
    dims[0] = rows
    dims[1] = cols
    return cnp.PyArray_EMPTY(2, dims, t, 0)


cdef inline cnp.ndarray _empty1(int64_t n, int t):
    cdef cnp.npy_intp dims[1]
    dims[0] = n
    return cnp.PyArray_EMPTY(1, dims, t, 0)


cdef void _gemm(bint f64, void *c, int64_t ldc, const void *a, int64_t rsa, int64_t csa,
                const void *b, int64_t rsb, int64_t csb, int64_t M, int64_t N, int64_t K,
                const void *bias, int act, double slope) noexcept nogil:
    if f64:
        myelin_gemm_f64(<double *>c, ldc, <const double *>a, rsa, csa, <const double *>b, rsb,
                        csb, M, N, K, 0.0, <const double *>bias, act, slope)
    else:
        myelin_gemm_f32(<float *>c, ldc, <const float *>a, rsa, csa, <const float *>b, rsb,
                        csb, M, N, K, 0.0, <const float *>bias, act, slope)


cdef inline bint _buffer_ok(object a, int t, int64_t rows, int64_t cols, int ndim):
    """a is a writable plain array of type t and shape (rows, cols) (ndim 2) or (rows,)."""
    if _plain_type(a) != t:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if arr.ndim != ndim or not cnp.PyArray_ISWRITEABLE(arr) or arr.shape[0] != rows:
        return False
    return ndim == 1 or arr.shape[1] == cols


def matmul_fast(object a, object b, bint trans_a, bint trans_b):
    """a @ b (each optionally transposed) for 2-D C-contiguous arrays of one float dtype, as a
    new array; None for anything else."""
    cdef int t = _plain_type(a)
    if t < 0 or _plain_type(b) != t:
        return None
    cdef cnp.ndarray A = <cnp.ndarray>a, B = <cnp.ndarray>b
    if A.ndim != 2 or B.ndim != 2:
        return None
    cdef int64_t ra = A.shape[0], ca = A.shape[1], rb = B.shape[0], cb = B.shape[1]
    cdef int64_t M = ca if trans_a else ra
    cdef int64_t K = ra if trans_a else ca
    cdef int64_t N = rb if trans_b else cb
    if (cb if trans_b else rb) != K:
        return None
    cdef int64_t rsa = 1 if trans_a else ca, csa = ca if trans_a else 1
    cdef int64_t rsb = 1 if trans_b else cb, csb = cb if trans_b else 1
    cdef cnp.ndarray out = _empty2(M, N, t)
    cdef bint f64 = t == cnp.NPY_FLOAT64
    cdef void *pa = cnp.PyArray_DATA(A)
    cdef void *pb = cnp.PyArray_DATA(B)
    cdef void *pc = cnp.PyArray_DATA(out)
    if M > 0 and N > 0:
        with nogil:
            _gemm(f64, pc, N, pa, rsa, csa, pb, rsb, csb, M, N, K, NULL, 0, 0.0)
    return out


def linear_fast(object x, object w, object bias, object activation, object negative_slope,
                object out=None):
    """act(x @ w.T + bias) for x (M, K), w (N, K), bias (N,) or None, all C-contiguous of one
    float dtype, into `out` (a writable C-contiguous (M, N) array of the dtype sharing no memory
    with an input) or a new array; None for anything else."""
    cdef int t = _plain_type(x)
    if t < 0 or _plain_type(w) != t:
        return None
    cdef cnp.ndarray X = <cnp.ndarray>x, W = <cnp.ndarray>w
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[1]:
        return None
    cdef int64_t M = X.shape[0], K = X.shape[1], N = W.shape[0]
    cdef void *pbias = NULL
    if bias is not None:
        if _plain_type(bias) != t or (<cnp.ndarray>bias).ndim != 1 \
                or (<cnp.ndarray>bias).shape[0] != N:
            return None
        pbias = cnp.PyArray_DATA(<cnp.ndarray>bias)
    cdef int act = _act_code(activation)
    if act < 0 or type(negative_slope) is not float:
        return None
    cdef double slope = <double>negative_slope
    if not slope >= 0.0:
        return None
    if out is None:
        out = _empty2(M, N, t)
    elif not _buffer_ok(out, t, M, N, 2) or _meets(out, x) or _meets(out, w) \
            or _meets(out, bias):
        return None
    cdef bint f64 = t == cnp.NPY_FLOAT64
    cdef void *px = cnp.PyArray_DATA(X)
    cdef void *pw = cnp.PyArray_DATA(W)
    cdef void *pc = cnp.PyArray_DATA(<cnp.ndarray>out)
    if M > 0 and N > 0:
        with nogil:
            _gemm(f64, pc, N, px, K, 1, pw, 1, K, M, N, K, pbias, act, slope)
    return out


def linear_backward_fast(object grad_y, object x, object w, object y, object activation,
                         object negative_slope, bint need_grad_x, object out_x=None,
                         object out_w=None, object out_b=None, object work=None):
    """(grad_x or None, grad_w, grad_b) of linear_fast's case, written into the given out_*
    arrays (else new ones); `work` (M, N) receives the activation's gradient and may be grad_y
    itself (overwritten). None for anything else, and when an array written shares memory with
    another array of the call (work being grad_y excepted)."""
    cdef int t = _plain_type(grad_y)
    if t < 0 or _plain_type(x) != t or _plain_type(w) != t:
        return None
    cdef cnp.ndarray G = <cnp.ndarray>grad_y, X = <cnp.ndarray>x, W = <cnp.ndarray>w
    if G.ndim != 2 or X.ndim != 2 or W.ndim != 2:
        return None
    cdef int64_t M = X.shape[0], K = X.shape[1], N = W.shape[0]
    if W.shape[1] != K or G.shape[0] != M or G.shape[1] != N:
        return None
    cdef int act = _act_code(activation)
    if act < 0 or type(negative_slope) is not float:
        return None
    cdef double slope = <double>negative_slope
    if not slope >= 0.0:
        return None
    cdef bint f64 = t == cnp.NPY_FLOAT64
    cdef cnp.ndarray Y
    if act != 0:
        if _plain_type(y) != t:
            return None
        Y = <cnp.ndarray>y
        if Y.ndim != 2 or Y.shape[0] != M or Y.shape[1] != N:
            return None
        if work is not None and not (_buffer_ok(work, t, M, N, 2)
                                     and (work is grad_y or not _meets(work, grad_y))
                                     and not _meets(work, x) and not _meets(work, w)
                                     and not _meets(work, y)):
            return None
    else:
        y = work = None  # neither is read nor written
    if out_w is not None and not _buffer_ok(out_w, t, N, K, 2):
        return None
    if out_b is not None and not _buffer_ok(out_b, t, N, 0, 1):
        return None
    if not need_grad_x:
        out_x = None
    if out_x is not None and not _buffer_ok(out_x, t, M, K, 2):
        return None
    cdef tuple outs = (out_x, out_w, out_b)
    cdef int i, j
    for i in range(3):  # each written: apart from every other array of the call
        o = outs[i]
        if o is None:
            continue
        if _meets(o, grad_y) or _meets(o, x) or _meets(o, w) or _meets(o, y) or _meets(o, work):
            return None
        for j in range(i + 1, 3):
            if _meets(o, outs[j]):
                return None
    # all checked: from here on the call runs
    cdef cnp.ndarray gz = G
    cdef void *pg
    cdef void *py
    if act != 0:
        gz = _empty2(M, N, t) if work is None else <cnp.ndarray>work
        pg = cnp.PyArray_DATA(G)
        py = cnp.PyArray_DATA(Y)
        with nogil:
            if f64:
                myelin_act_backward_f64(<double *>cnp.PyArray_DATA(gz), <const double *>pg,
                                        <const double *>py, M * N, act, slope)
            else:
                myelin_act_backward_f32(<float *>cnp.PyArray_DATA(gz), <const float *>pg,
                                        <const float *>py, M * N, act, slope)
    cdef cnp.ndarray gw = _empty2(N, K, t) if out_w is None else <cnp.ndarray>out_w
    cdef cnp.ndarray gb = _empty1(N, t) if out_b is None else <cnp.ndarray>out_b
    cdef object gx = None
    cdef void *pgx = NULL
    if need_grad_x:
        gx = _empty2(M, K, t) if out_x is None else out_x
        pgx = cnp.PyArray_DATA(<cnp.ndarray>gx)
    cdef void *pgz = cnp.PyArray_DATA(gz)
    cdef void *px = cnp.PyArray_DATA(X)
    cdef void *pw = cnp.PyArray_DATA(W)
    cdef void *pgw = cnp.PyArray_DATA(gw)
    cdef void *pgb = cnp.PyArray_DATA(gb)
    with nogil:
        if need_grad_x and M > 0 and K > 0:
            _gemm(f64, pgx, K, pgz, N, 1, pw, K, 1, M, K, N, NULL, 0, 0.0)
        if N > 0 and K > 0:
            _gemm(f64, pgw, K, pgz, 1, N, px, K, 1, N, K, M, NULL, 0, 0.0)
        if f64:
            myelin_colsum_f64(<double *>pgb, <const double *>pgz, M, N, 0.0)
        else:
            myelin_colsum_f32(<float *>pgb, <const float *>pgz, M, N, 0.0)
    return gx, gw, gb


def adam_multi(object params, object grads, object exp_avgs, object exp_avg_sqs,
               object max_exp_avg_sqs, object steps, double lr, double beta1, double beta2,
               double eps, double weight_decay, bint decoupled):
    """adam_step over sequences of tensors in one call (multi-tensor apply). Each sequence is
    read once, into a tuple the call holds, before anything is checked; each step is converted
    once; each entry is then checked as adam_step checks it, and no array written shares memory
    with another array of any entry, all before the first update."""
    cdef tuple P = tuple(params), G = tuple(grads), M = tuple(exp_avgs), V = tuple(exp_avg_sqs)
    cdef tuple VM = None if max_exp_avg_sqs is None else tuple(max_exp_avg_sqs)
    cdef tuple S = tuple(steps)
    cdef Py_ssize_t n = len(P), i
    if len(G) != n or len(M) != n or len(V) != n or len(S) != n \
            or (VM is not None and len(VM) != n):
        raise ValueError("adam_multi: lists of different lengths")
    cdef _Entry *e = <_Entry *>PyMem_Malloc(max(n, 1) * sizeof(_Entry))
    cdef _Span *spans = <_Span *>PyMem_Malloc(max(5 * n, 1) * sizeof(_Span))
    if e == NULL or spans == NULL:
        PyMem_Free(e)
        PyMem_Free(spans)
        raise MemoryError()
    try:
        for i in range(n):  # Python code (a step's __index__) runs here, before any check
            e[i].step = S[i]
            if e[i].step < 1:
                raise ValueError(f"adam_multi: steps[{i}] must be >= 1")
        for i in range(n):
            _entry(&e[i], &spans[5 * i], i, P[i], G[i], M[i], V[i],
                   None if VM is None else VM[i], 2 if VM is None else 3, _ADAM_MULTI_NAMES,
                   True)
        _check_spans(spans, 5 * n, _ADAM_MULTI_NAMES, True)
        with nogil:
            for i in range(n):
                _adam_run(&e[i], lr, beta1, beta2, eps, weight_decay, decoupled)
    finally:
        PyMem_Free(e)
        PyMem_Free(spans)


def sgd_multi(object params, object grads, object bufs, double lr, double momentum,
              double dampening, double weight_decay, bint nesterov, object first_steps):
    """sgd_step over sequences of tensors in one call, read and checked as adam_multi's."""
    cdef tuple P = tuple(params), G = tuple(grads), F = tuple(first_steps)
    cdef tuple B = None if bufs is None else tuple(bufs)
    cdef Py_ssize_t n = len(P), i
    if len(G) != n or len(F) != n or (B is not None and len(B) != n):
        raise ValueError("sgd_multi: lists of different lengths")
    if B is None and momentum != 0.0:
        raise ValueError("sgd_multi: momentum needs buffers")
    cdef _Entry *e = <_Entry *>PyMem_Malloc(max(n, 1) * sizeof(_Entry))
    cdef _Span *spans = <_Span *>PyMem_Malloc(max(5 * n, 1) * sizeof(_Span))
    if e == NULL or spans == NULL:
        PyMem_Free(e)
        PyMem_Free(spans)
        raise MemoryError()
    try:
        for i in range(n):  # Python code (a flag's __bool__) runs here, before any check
            e[i].step = 1 if F[i] else 0
        for i in range(n):
            _entry(&e[i], &spans[5 * i], i, P[i], G[i], None if B is None else B[i], None,
                   None, momentum != 0.0, _SGD_MULTI_NAMES, True)
        _check_spans(spans, 5 * n, _SGD_MULTI_NAMES, True)
        with nogil:
            for i in range(n):
                _sgd_run(&e[i], lr, momentum, dampening, weight_decay, nesterov)
    finally:
        PyMem_Free(e)
        PyMem_Free(spans)


def softmax_xent_fast(object logits, object labels, object ignore_index, object label_smoothing,
                      bint mean):
    """(loss, grad) of softmax cross-entropy, "mean" or "sum" reduction, for 2-D C-contiguous
    float logits and a 1-D C-contiguous int64 labels array all in range (or equal to
    ignore_index); None for anything else, bad labels included (the general path names them)."""
    cdef int t = _plain_type(logits)
    if t < 0 or type(labels) is not cnp.ndarray or type(label_smoothing) is not float:
        return None
    cdef cnp.ndarray L = <cnp.ndarray>logits, Y = <cnp.ndarray>labels
    if L.ndim != 2 or Y.ndim != 1 or not _plain_labels(Y):
        return None
    cdef int64_t rows = L.shape[0], cols = L.shape[1], i, lab, valid = 0
    cdef double smoothing = <double>label_smoothing
    if Y.shape[0] != rows or not (0.0 <= smoothing <= 1.0):
        return None
    cdef int64_t ignore = -1
    cdef bint has_ignore = ignore_index is not None
    if has_ignore:
        if type(ignore_index) is not int:
            return None
        ignore = <int64_t>ignore_index
    cdef const int64_t *src = <const int64_t *>cnp.PyArray_DATA(Y)
    cdef cnp.ndarray prepared = Y
    cdef int64_t *dst
    if has_ignore:
        for i in range(rows):
            if src[i] == ignore:
                break
        else:
            has_ignore = False
    if has_ignore:
        prepared = _empty1(rows, cnp.NPY_INT64)
        dst = <int64_t *>cnp.PyArray_DATA(prepared)
    for i in range(rows):
        lab = src[i]
        if has_ignore and lab == ignore:
            dst[i] = -1
            continue
        if lab < 0 or lab >= cols:
            return None
        if has_ignore:
            dst[i] = lab
        valid += 1
    cdef double scale = 1.0 / valid if (mean and valid) else 1.0
    cdef cnp.ndarray grad = _empty2(rows, cols, t)
    cdef const int64_t *plab = <const int64_t *>cnp.PyArray_DATA(prepared)
    cdef void *pl = cnp.PyArray_DATA(L)
    cdef void *pg = cnp.PyArray_DATA(grad)
    cdef double total
    with nogil:
        if t == cnp.NPY_FLOAT64:
            total = myelin_softmax_xent_f64(NULL, <double *>pg, <const double *>pl, plab, rows,
                                            cols, smoothing, scale)
        else:
            total = myelin_softmax_xent_f32(NULL, <float *>pg, <const float *>pl, plab, rows,
                                            cols, smoothing, scale)
    if mean:
        total = total / valid if valid else float("nan")
    return total, grad


# ---------------------------------------------------------------- a chain of linear layers
#
# Several linear layers applied in turn, in one call: a small MLP then pays the Python cost of
# one call per pass instead of one per layer. Each layer is linear_fast's (linear_backward_fast's)
# case; for anything else these return None and the caller takes its general path.

def chain_forward_fast(object x, object weights, object biases, object activations,
                       object slopes, int64_t pool_from):
    """[x, y_1, ..., y_L], each layer's output a new array, for sequences of L weights, biases
    (or None), activations and slopes; None unless every layer is linear_fast's case. With
    pool_from > 0, also None when any weight or output would have pool_from elements or more
    (the caller then takes those buffers from its pool). Each sequence is read once, into a
    tuple the call holds."""
    cdef tuple W = tuple(weights), B = tuple(biases), A = tuple(activations), S = tuple(slopes)
    cdef Py_ssize_t i, n = len(W)
    if len(B) != n or len(A) != n or len(S) != n:
        return None
    cdef list outs = [x]
    cdef object h = x, w
    cdef int64_t rows
    if pool_from > 0:
        if _plain_type(x) < 0 or (<cnp.ndarray>x).ndim != 2:
            return None
        rows = (<cnp.ndarray>x).shape[0]
        for i in range(n):
            w = W[i]
            if _plain_type(w) < 0 or (<cnp.ndarray>w).ndim != 2:
                return None
            if cnp.PyArray_SIZE(<cnp.ndarray>w) >= pool_from \
                    or rows * (<cnp.ndarray>w).shape[0] >= pool_from:
                return None
    cdef int prev = myelin_set_team_cap(myelin_chain_threads(_chain_flops(x, W, NULL)))
    try:
        for i in range(n):
            h = linear_fast(h, W[i], B[i], A[i], S[i])
            if h is None:
                return None
            outs.append(h)
    finally:
        myelin_set_team_cap(prev)
    return outs


def chain_backward_fast(object g, object outs, object weights, object activations,
                        object slopes, bint need_input_grad):
    """[grad_x, grad_w1, grad_b1, ..., grad_wL, grad_bL] for the upstream gradient g of
    chain_forward_fast's outputs `outs`, each a new array (grad_x None unless need_input_grad);
    None unless every layer is linear_backward_fast's case. Each sequence is read once, into a
    tuple the call holds."""
    cdef tuple O = tuple(outs), W = tuple(weights), A = tuple(activations), S = tuple(slopes)
    cdef Py_ssize_t i, n = len(W)
    if len(O) != n + 1 or len(A) != n or len(S) != n:
        return None
    cdef list grads = [None] * (1 + 2 * n)
    cdef object res
    cdef double first = 0.0
    cdef double flops = 2.0 * _chain_flops(O[0], W, &first)
    if not need_input_grad:
        flops -= first  # no input gradient for the first layer
    cdef int prev = myelin_set_team_cap(myelin_chain_threads(flops))
    try:
        for i in range(n - 1, -1, -1):
            res = linear_backward_fast(g, O[i], W[i], O[i + 1], A[i], S[i],
                                       i > 0 or need_input_grad)
            if res is None:
                return None
            g = (<tuple>res)[0]
            grads[1 + 2 * i] = (<tuple>res)[1]
            grads[2 + 2 * i] = (<tuple>res)[2]
    finally:
        myelin_set_team_cap(prev)
    grads[0] = g
    return grads


cdef double _chain_flops(object x, tuple weights, double *first):
    """The flops of the products of a forward pass of the chain, float64 ones counting double
    (a backward pass makes twice as many, less the first layer's input gradient when it is not
    wanted: its flops go to *first unless first is NULL); 0 when x or a weight is not a plain
    2-D array (the layers' own checks then refuse the call)."""
    cdef int t = _plain_type(x)
    if t < 0 or (<cnp.ndarray>x).ndim != 2:
        return 0.0
    cdef double rows = <double>(<cnp.ndarray>x).shape[0], total = 0.0, f
    cdef double scale = 2.0 if t == cnp.NPY_FLOAT64 else 1.0
    cdef Py_ssize_t i
    cdef object item
    cdef cnp.ndarray w
    for i in range(len(weights)):
        item = weights[i]  # read once: the array checked is the array measured
        if _plain_type(item) != t or (<cnp.ndarray>item).ndim != 2:
            return 0.0
        w = <cnp.ndarray>item
        f = 2.0 * rows * <double>w.shape[0] * <double>w.shape[1] * scale
        if i == 0 and first != NULL:
            first[0] = f
        total += f
    return total


def sumsq_fast(object arrays):
    """The sum of squares of all the arrays of the list `arrays` together (a float), each summed
    by sumsq; None unless every one is a C-contiguous, aligned float32/float64 ndarray in the
    machine's byte order. The list is read once, into a tuple the call holds."""
    if type(arrays) is not list:
        return None
    cdef tuple items = tuple(<list>arrays)
    cdef Py_ssize_t i, n = len(items)
    cdef double total = 0.0
    for i in range(n):
        if _plain_type(items[i]) < 0:
            return None
    for i in range(n):
        total += sumsq(<cnp.ndarray>items[i])
    return total


# ---------------------------------------------------------------- thread limits

cdef extern from "myelin/parallel.h" nogil:
    int myelin_max_threads()
    int myelin_threads_per_cpu()
    int myelin_check_threads(int n)


def max_threads():
    """The most threads a kernel runs on (threads_per_cpu() per CPU of the machine)."""
    return myelin_max_threads()


def threads_per_cpu():
    return myelin_threads_per_cpu()


def check_threads(int n):
    """How many of n threads could run at once (n unless thread creation fails); kernels use
    no more until the next call."""
    cdef int got
    with nogil:
        got = myelin_check_threads(n)
    return got
