# cython: language_level=3
"""Thin bindings of the C kernels (csrc/include/myelin/kernels.h).

Private: myelin.ops validates user input and calls these. Each binding still checks what keeps
memory safe (dtype, size, contiguity, writability, label range), so a wrong call raises instead
of reading or writing out of bounds, then releases the GIL around the C call.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t


import numpy as np

cnp.import_array()

ACT_NONE = 0
ACT_RELU = 1
ACT_LEAKY_RELU = 2
ACT_SIGMOID = 3
ACT_TANH = 4


# ---------------------------------------------------------------- checks

cdef inline bint _is_f64(cnp.ndarray a) except -1:
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT32:
        return False
    if t == cnp.NPY_FLOAT64:
        return True
    raise TypeError(f"myelin kernels take float32 or float64 arrays, got {a.dtype}")


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


cdef inline void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline int64_t _elem_stride(cnp.ndarray a, int axis) except? -1:
    cdef Py_ssize_t s = cnp.PyArray_STRIDE(a, axis)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(a)
    if s % item:
        raise ValueError("array strides are not a multiple of its item size")
    return s // item


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
    cdef bint f64 = _is_f64(x)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _same(x, f64, n, False)
    _same(y, f64, n, True)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef void *px = cnp.PyArray_DATA(x)
    with nogil:
        if f64:
            myelin_act_forward_f64(<double *>py, <const double *>px, n, act, slope)
        else:
            myelin_act_forward_f32(<float *>py, <const float *>px, n, act, slope)
    return y


def act_backward(cnp.ndarray dx, cnp.ndarray dy, cnp.ndarray y, int act, double slope):
    cdef bint f64 = _is_f64(dy)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(dy)
    _same(dy, f64, n, False)
    _same(y, f64, n, False)
    _same(dx, f64, n, True)
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
    cdef cnp.ndarray src = np.ascontiguousarray(labels, dtype=np.int64)
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


def softmax_xent(object row_loss, object dlogits, cnp.ndarray logits, cnp.ndarray labels,
                 double label_smoothing, double grad_scale):
    """Sum of row losses; labels come from prepare_labels (int64, -1 = ignored)."""
    if logits.ndim != 2:
        raise ValueError("softmax_xent takes 2-D logits")
    cdef bint f64 = _is_f64(logits)
    cdef int64_t rows = logits.shape[0], cols = logits.shape[1], i
    _same(logits, f64, rows * cols, False)
    if cnp.PyArray_TYPE(labels) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(labels) \
            or cnp.PyArray_SIZE(labels) != rows:
        raise ValueError("softmax_xent: labels must be a contiguous int64 array of one per row")
    cdef const int64_t *lab = <const int64_t *>cnp.PyArray_DATA(labels)
    for i in range(rows):
        if lab[i] >= cols:
            raise ValueError("softmax_xent: label out of range")
    if row_loss is not None:
        _same(row_loss, f64, rows, True)
    if dlogits is not None:
        _same(dlogits, f64, rows * cols, True)
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
    if elem_loss is not None:
        _same(elem_loss, f64, n, True)
    if dx is not None:
        _same(dx, f64, n, True)
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

def sgd_step(cnp.ndarray p, object buf, cnp.ndarray g, double lr, double momentum,
             double dampening, double weight_decay, bint nesterov, bint first_step):
    cdef bint f64 = _is_f64(p)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    _same(p, f64, n, True)
    _same(g, f64, n, False)
    if buf is not None:
        _same(buf, f64, n, True)
    elif momentum != 0.0:
        raise ValueError("sgd_step: momentum needs a buffer")
    cdef void *pp = cnp.PyArray_DATA(p)
    cdef void *pbuf = _ptr(buf)
    cdef void *pg = cnp.PyArray_DATA(g)
    with nogil:
        if f64:
            myelin_sgd_step_f64(<double *>pp, <double *>pbuf, <const double *>pg, n, lr,
                                momentum, dampening, weight_decay, nesterov, first_step)
        else:
            myelin_sgd_step_f32(<float *>pp, <float *>pbuf, <const float *>pg, n, lr,
                                momentum, dampening, weight_decay, nesterov, first_step)


def adam_step(cnp.ndarray p, cnp.ndarray m, cnp.ndarray v, object vmax, cnp.ndarray g,
              double lr, double beta1, double beta2, double eps, double weight_decay,
              bint decoupled, int64_t step):
    cdef bint f64 = _is_f64(p)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    _same(p, f64, n, True)
    _same(m, f64, n, True)
    _same(v, f64, n, True)
    _same(g, f64, n, False)
    if vmax is not None:
        _same(vmax, f64, n, True)
    if step < 1:
        raise ValueError("adam_step: step must be >= 1")
    cdef void *pp = cnp.PyArray_DATA(p)
    cdef void *pm = cnp.PyArray_DATA(m)
    cdef void *pv = cnp.PyArray_DATA(v)
    cdef void *pvmax = _ptr(vmax)
    cdef void *pg = cnp.PyArray_DATA(g)
    with nogil:
        if f64:
            myelin_adam_step_f64(<double *>pp, <double *>pm, <double *>pv, <double *>pvmax,
                                 <const double *>pg, n, lr, beta1, beta2, eps, weight_decay,
                                 decoupled, step)
        else:
            myelin_adam_step_f32(<float *>pp, <float *>pm, <float *>pv, <float *>pvmax,
                                 <const float *>pg, n, lr, beta1, beta2, eps, weight_decay,
                                 decoupled, step)


def rmsprop_step(cnp.ndarray p, cnp.ndarray sq, object buf, object gavg, cnp.ndarray g,
                 double lr, double alpha, double eps, double weight_decay, double momentum):
    cdef bint f64 = _is_f64(p)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    _same(p, f64, n, True)
    _same(sq, f64, n, True)
    _same(g, f64, n, False)
    if buf is not None:
        _same(buf, f64, n, True)
    elif momentum != 0.0:
        raise ValueError("rmsprop_step: momentum needs a buffer")
    if gavg is not None:
        _same(gavg, f64, n, True)
    cdef void *pp = cnp.PyArray_DATA(p)
    cdef void *psq = cnp.PyArray_DATA(sq)
    cdef void *pbuf = _ptr(buf)
    cdef void *pgavg = _ptr(gavg)
    cdef void *pg = cnp.PyArray_DATA(g)
    with nogil:
        if f64:
            myelin_rmsprop_step_f64(<double *>pp, <double *>psq, <double *>pbuf,
                                    <double *>pgavg, <const double *>pg, n, lr, alpha, eps,
                                    weight_decay, momentum)
        else:
            myelin_rmsprop_step_f32(<float *>pp, <float *>psq, <float *>pbuf, <float *>pgavg,
                                    <const float *>pg, n, lr, alpha, eps, weight_decay, momentum)
