/* One dtype's public entries; expanded by ops.c with T = float / double and S = f32 / f64
 * (no include guard on purpose). */

#define API_CAT2(a, b, c) a##b##c
#define API_CAT(a, b, c) API_CAT2(a, b, c)
#define API(name) API_CAT(myelin_, name, S)
#define K(name) API_CAT(name, _, S)

/* ---------------------------------------------------------------- activations */

// x is (n,), y is (n,) on the calling thread (the GEMM epilogue's entry)
void API(act_serial_)(T *y, const T *x, int64_t n, int act, double slope)
{
    ops_table()->K(act_forward)(y, x, n, act, (T)slope);
}

// x is (n,), y is (n,); y may equal x
void API(act_forward_)(T *y, const T *x, int64_t n, int act, double slope)
{
    const myelin_ops_table *k = ops_table();
    const T sl = (T)slope;
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    /* a large output that does not overlap x goes around the caches */
    const uintptr_t ya = (uintptr_t)y, xa = (uintptr_t)x, bytes = (uintptr_t)n * sizeof(T);
    const int stream = (double)n * sizeof(T) >= OPS_STREAM_BYTES &&
                       (ya + bytes <= xa || xa + bytes <= ya);
    int nt = myelin_threads_for((double)n * ops_act_cost(act), OPS_GRAIN);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(c, nc,
        int64_t i0 = c * MYELIN_CHUNK;
        if (stream)
            k->K(act_forward_stream)(y + i0, x + i0, ops_min(MYELIN_CHUNK, n - i0), act, sl);
        else
            k->K(act_forward)(y + i0, x + i0, ops_min(MYELIN_CHUNK, n - i0), act, sl);
    );
}

// dy, y are (n,), dx is (n,); dx may equal dy
void API(act_backward_)(T *dx, const T *dy, const T *y, int64_t n, int act, double slope)
{
    const myelin_ops_table *k = ops_table();
    const T sl = (T)slope;
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    int nt = myelin_threads_for((double)n * 1.5, OPS_GRAIN);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(c, nc,
        int64_t i0 = c * MYELIN_CHUNK;
        k->K(act_backward)(dx + i0, dy + i0, y + i0, ops_min(MYELIN_CHUNK, n - i0), act, sl);
    );
}

/* ---------------------------------------------------------------- softmax */

// x is (rows, cols), y is (rows, cols); parallel over blocks of rows
void API(softmax_forward_)(T *y, const T *x, int64_t rows, int64_t cols, int log)
{
    if (rows <= 0 || cols <= 0) return;
    const myelin_ops_table *k = ops_table();
    int nt = (int)ops_min(myelin_threads_for((double)rows * cols * OPS_EXP_COST, OPS_GRAIN), rows);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(t, nt,
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        k->K(softmax_forward)(y + r0 * cols, x + r0 * cols, r1 - r0, cols, log);
    );
}

// dy, y are (rows, cols), dx is (rows, cols)
void API(softmax_backward_)(T *dx, const T *dy, const T *y, int64_t rows, int64_t cols, int log)
{
    if (rows <= 0 || cols <= 0) return;
    const myelin_ops_table *k = ops_table();
    double cost = log ? OPS_EXP_COST : 2.0;
    int nt = (int)ops_min(myelin_threads_for((double)rows * cols * cost, OPS_GRAIN), rows);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(t, nt,
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        k->K(softmax_backward)(dx + r0 * cols, dy + r0 * cols, y + r0 * cols, r1 - r0, cols,
                               log);
    );
}

/* ---------------------------------------------------------------- losses */

// logits is (rows, cols), labels (rows,); chunks of about MYELIN_CHUNK elements (whole rows)
double API(softmax_xent_)(T *row_loss, T *dlogits, const T *logits, const int64_t *labels,
                          int64_t rows, int64_t cols, double label_smoothing, double grad_scale)
{
    if (rows <= 0) return 0.0;
    const myelin_ops_table *k = ops_table();
    const int64_t rc = cols > 0 && cols < MYELIN_CHUNK ? MYELIN_CHUNK / cols : 1; /* rows/chunk */
    const int64_t nc = ops_nchunks(rows, rc);
    double total = 0;
    OPS_REDUCE(total, nc, (double)rows * (cols > 0 ? cols : 1) * OPS_EXP_COST,
               k->K(softmax_xent)(row_loss ? row_loss + c * rc : NULL,
                                  dlogits ? dlogits + c * rc * cols : NULL,
                                  logits + c * rc * cols, labels + c * rc,
                                  ops_min(rc, rows - c * rc), cols, label_smoothing, grad_scale));
    return total;
}

// x, t are (n,); elem_loss and dx (n,) or NULL
double API(bce_logits_)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, double grad_scale)
{
    const myelin_ops_table *k = ops_table();
    const T gs = (T)grad_scale;
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    double total = 0;
    OPS_REDUCE(total, nc, (double)n * OPS_EXP_COST,
               k->K(bce_logits)(elem_loss ? elem_loss + c * MYELIN_CHUNK : NULL,
                                dx ? dx + c * MYELIN_CHUNK : NULL, x + c * MYELIN_CHUNK,
                                t + c * MYELIN_CHUNK, ops_min(MYELIN_CHUNK, n - c * MYELIN_CHUNK),
                                gs));
    return total;
}

// x, t are (n,); elem_loss and dx (n,) or NULL
double API(mse_)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, double grad_scale)
{
    const myelin_ops_table *k = ops_table();
    const T gs2 = (T)(2.0 * grad_scale);
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    double total = 0;
    OPS_REDUCE(total, nc, (double)n * 2.0,
               k->K(mse)(elem_loss ? elem_loss + c * MYELIN_CHUNK : NULL,
                         dx ? dx + c * MYELIN_CHUNK : NULL, x + c * MYELIN_CHUNK,
                         t + c * MYELIN_CHUNK, ops_min(MYELIN_CHUNK, n - c * MYELIN_CHUNK), gs2));
    return total;
}

/* ---------------------------------------------------------------- reductions */

// x is (rows, cols), out is (cols,); parallel over blocks of columns, each summed in row order
void API(colsum_)(T *out, const T *x, int64_t rows, int64_t cols, double beta)
{
    if (cols <= 0) return;
    const myelin_ops_table *k = ops_table();
    int nt = myelin_threads_for((double)(rows > 0 ? rows : 1) * cols, OPS_GRAIN);
    int64_t width = MYELIN_OPS_COLBLOCK;
    if (nt > 1 && cols < (int64_t)nt * MYELIN_OPS_COLBLOCK) {
        width = (cols + nt - 1) / nt;
        width = (width + 15) / 16 * 16; /* whole cache lines of floats */
    }
    const int64_t nb = ops_nchunks(cols, width);
    nt = (int)ops_min(nt, nb);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(b, nb,
        k->K(colsum)(out, x, rows, cols, b * width, ops_min(width, cols - b * width), beta);
    );
}

// x is (n,)
double API(sumsq_)(const T *x, int64_t n)
{
    const myelin_ops_table *k = ops_table();
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    double total = 0;
    OPS_REDUCE(total, nc, (double)n,
               k->K(sumsq)(x + c * MYELIN_CHUNK, ops_min(MYELIN_CHUNK, n - c * MYELIN_CHUNK)));
    return total;
}

/* ---------------------------------------------------------------- optimizer updates */

// p, g (n,), buf (n,) or NULL when momentum == 0; in place
void API(sgd_step_)(T *p, T *buf, const T *g, int64_t n, double lr, double momentum,
                    double dampening, double weight_decay, int nesterov, int first_step)
{
    const myelin_ops_table *k = ops_table();
    const T lr_ = (T)lr, mom = (T)momentum, omd = (T)(1.0 - dampening), wd = (T)weight_decay;
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    int nt = myelin_threads_for((double)n * 2.0, OPS_GRAIN);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(c, nc,
        int64_t i0 = c * MYELIN_CHUNK;
        k->K(sgd_step)(p + i0, buf ? buf + i0 : NULL, g + i0, ops_min(MYELIN_CHUNK, n - i0), lr_,
                       mom, omd, wd, nesterov, first_step);
    );
}

// p, m, v, g (n,), vmax (n,) or NULL; in place
void API(adam_step_)(T *p, T *m, T *v, T *vmax, const T *g, int64_t n, double lr, double beta1,
                     double beta2, double eps, double weight_decay, int decoupled, int64_t step)
{
    const myelin_ops_table *k = ops_table();
    /* bias corrections in double, each scalar rounded to the dtype once (as PyTorch does) */
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    const T b1 = (T)beta1, omb1 = (T)(1.0 - beta1), b2 = (T)beta2, omb2 = (T)(1.0 - beta2);
    const T step_size = (T)(lr / bc1), bc2s = (T)sqrt(bc2), eps_ = (T)eps;
    const T wd = (T)weight_decay, decay = (T)(1.0 - lr * weight_decay);
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    int nt = myelin_threads_for((double)n * 4.0, OPS_GRAIN);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(c, nc,
        int64_t i0 = c * MYELIN_CHUNK;
        k->K(adam_step)(p + i0, m + i0, v + i0, vmax ? vmax + i0 : NULL, g + i0,
                        ops_min(MYELIN_CHUNK, n - i0), b1, omb1, b2, omb2, step_size, bc2s, eps_,
                        wd, decoupled, decay);
    );
}

// p, sq, g (n,), buf (n,) or NULL when momentum == 0, gavg (n,) or NULL; in place
void API(rmsprop_step_)(T *p, T *sq, T *buf, T *gavg, const T *g, int64_t n, double lr,
                        double alpha, double eps, double weight_decay, double momentum)
{
    const myelin_ops_table *k = ops_table();
    const T lr_ = (T)lr, a = (T)alpha, oma = (T)(1.0 - alpha), eps_ = (T)eps;
    const T wd = (T)weight_decay, mom = (T)momentum;
    const int64_t nc = ops_nchunks(n, MYELIN_CHUNK);
    int nt = myelin_threads_for((double)n * 4.0, OPS_GRAIN);
    (void)nt; /* unused in a serial build */
    MYELIN_PARALLEL_FOR(c, nc,
        int64_t i0 = c * MYELIN_CHUNK;
        k->K(rmsprop_step)(p + i0, sq + i0, buf ? buf + i0 : NULL, gavg ? gavg + i0 : NULL,
                           g + i0, ops_min(MYELIN_CHUNK, n - i0), lr_, a, oma, eps_, wd, mom);
    );
}

#undef API_CAT2
#undef API_CAT
#undef API
#undef K
