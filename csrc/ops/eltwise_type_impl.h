/* One dtype's inner loops; expanded by eltwise_impl.h with T = float and T = double (no include
 * guard on purpose). FN(name) suffixes the dtype; VEXP, VLOG1P_UNIT, VABS,
 * VSQRT are the dtype's element functions.
 * Sums inside a row or chunk use the 16-lane accumulators of eltwise_impl.h. */

/* ---------------------------------------------------------------- activations */

// x is (n,), y is (n,); y may equal x
static void FN(act_forward)(T *y, const T *x, int64_t n, int act, T slope)
{
    switch (act) {
    case MYELIN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) {
            T v = x[i];
            y[i] = v < 0 ? (T)0 : v;        /* NaN is not < 0: it passes through */
        }
        break;
    case MYELIN_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            T v = x[i];
            y[i] = v > 0 ? v : v * slope;
        }
        break;
    case MYELIN_ACT_SIGMOID:
        FN(ops_sigmoid_block)(y, x, n);
        break;
    case MYELIN_ACT_TANH:
        FN(ops_tanh_block)(y, x, n);
        break;
    default:
        if (y != x && n > 0) memmove(y, x, (size_t)n * sizeof(T));
        break;
    }
}

// x is (n,), y is (n,), not overlapping x: computed by L1 tiles, then streamed to y
static void FN(act_forward_stream)(T *y, const T *x, int64_t n, int act, T slope)
{
    T tile[2048];
    for (int64_t i = 0; i < n; i += 2048) {
        int64_t nb = n - i < 2048 ? n - i : 2048;
        FN(act_forward)(tile, x + i, nb, act, slope);
        ops_stream_copy(y + i, tile, nb * (int64_t)sizeof(T));
    }
    ops_stream_fence();
}

// dy, y are (n,), dx is (n,); dx may equal dy
static void FN(act_backward)(T *dx, const T *dy, const T *y, int64_t n, int act, T slope)
{
    switch (act) {
    case MYELIN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) {
            T yv = y[i];
            dx[i] = yv > 0 ? dy[i] : (yv == yv ? (T)0 : yv);
        }
        break;
    case MYELIN_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            T yv = y[i];
            dx[i] = yv > 0 ? dy[i] : (yv == yv ? slope * dy[i] : yv);
        }
        break;
    case MYELIN_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) {
            T yv = y[i];
            dx[i] = dy[i] * yv * (1 - yv);
        }
        break;
    case MYELIN_ACT_TANH:
        for (int64_t i = 0; i < n; i++) {
            T yv = y[i];
            dx[i] = dy[i] * (1 - yv * yv);
        }
        break;
    default:
        if (dx != dy && n > 0) memmove(dx, dy, (size_t)n * sizeof(T));
        break;
    }
}

/* ---------------------------------------------------------------- row helpers */

/* Elements needing an exp are processed in tiles: the exps go to the output (or a local tile),
 * then are added to the lane sums from L1. */
#define OPS_TILE 256

/* lane sums of x[0..n) */
static void FN(acc_add)(ops_acc *s, const T *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) FN(ops_add16)(s, x + i);
    for (int l = 0; i + l < n; l++) ops_acc_add1(s, l, x[i + l]);
}

/* e[j] = exp(x[j] - m) written to e (e may equal x, or be NULL); returns sum e[j] */
static double FN(row_exp_sum)(T *e, const T *x, int64_t n, T m)
{
    T tile[OPS_TILE];
    ops_acc s;
    ops_acc_zero(&s);
    for (int64_t i0 = 0; i0 < n; i0 += OPS_TILE) {
        int64_t nb = n - i0 < OPS_TILE ? n - i0 : OPS_TILE;
        FN(ops_exp_sum)(e ? e + i0 : tile, x + i0, nb, m, &s);
    }
    return ops_acc_total(&s);
}

/* sum of x[j] in double */
static double FN(row_sum)(const T *x, int64_t n)
{
    ops_acc s;
    ops_acc_zero(&s);
    FN(acc_add)(&s, x, n);
    return ops_acc_total(&s);
}

/* sum of (m - x[j]) * k in double, given mk = m * k with k a power of two: every term is >= 0
 * when m is the row max, so nothing cancels (a sum of x[j] then m - mean would lose the small
 * differences of large equal-ish logits); with k <= 1 / (2 n) no term and no partial sum can
 * overflow, even where m - x[j] is beyond the double range (see xent_scale) */
static double FN(row_sum_below)(const T *x, int64_t n, double mk, double k)
{
    ops_acc s;
    ops_acc_zero(&s);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) FN(ops_subk16)(&s, x + i, mk, k);
    for (int l = 0; i + l < n; l++) ops_acc_add1(&s, l, mk - (double)x[i + l] * k);
    return ops_acc_total(&s);
}

/* sum of a[j]*b[j] in double */
static double FN(row_dot)(const T *a, const T *b, int64_t n)
{
    ops_acc s;
    ops_acc_zero(&s);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) FN(ops_dot16)(&s, a + i, b + i);
    for (int l = 0; i + l < n; l++) ops_acc_add1(&s, l, (double)a[i + l] * b[i + l]);
    return ops_acc_total(&s);
}

/* ---------------------------------------------------------------- softmax */

// x is (rows, cols), y is (rows, cols); y may equal x
static void FN(softmax_forward)(T *y, const T *x, int64_t rows, int64_t cols, int use_log)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const T *xr = x + r * cols;
        T *yr = y + r * cols;
        T m = FN(ops_max)(xr, cols);
        if (!use_log) {
            double s = FN(row_exp_sum)(yr, xr, cols, m);
            T inv = (T)(1.0 / s);
            for (int64_t j = 0; j < cols; j++) yr[j] *= inv;
        } else {
            double s = FN(row_exp_sum)(NULL, xr, cols, m);
            T off = (T)log(s);
            for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - m) - off;
        }
    }
}

// dy, y are (rows, cols), dx is (rows, cols); dx may equal dy
static void FN(softmax_backward)(T *dx, const T *dy, const T *y, int64_t rows, int64_t cols,
                                 int use_log)
{
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const T *dyr = dy + r * cols, *yr = y + r * cols;
        T *dxr = dx + r * cols;
        if (!use_log) {
            T dot = (T)FN(row_dot)(dyr, yr, cols);
            for (int64_t j = 0; j < cols; j++) dxr[j] = yr[j] * (dyr[j] - dot);
        } else {
            T sum = (T)FN(row_sum)(dyr, cols);
            for (int64_t j = 0; j < cols; j++) dxr[j] = dyr[j] - VEXP(yr[j]) * sum;
        }
    }
}

/* ---------------------------------------------------------------- losses */

/* One row's cross-entropy from its max m and lse, the log-sum-exp of the row minus m:
 *   loss = lse + (1-s) * (m - z[label]) + s * sum_j (m - z[j]) / cols,
 * every term >= 0, so nothing cancels. It is added up times k, a power of two: k = 1 first, and
 * should that overflow (possible for double only: m - z[j] can reach 2 DBL_MAX), again with
 * k = xent_scale(cols), under which no term or partial sum can overflow. A term of weight 0 is
 * left out (no 0 * inf from a -inf logit). */
static double FN(xent_row_loss)(const T *z, int64_t cols, int64_t lab, T m, double lse, double s,
                                double k)
{
    const double mk = (double)m * k;
    double lk = lse * k;
    if (s != 1) lk += (1.0 - s) * (mk - (double)z[lab] * k);
    if (s != 0) lk += s * (FN(row_sum_below)(z, cols, mk, k) / (double)cols);
    return lk / k;
}

/* k = 2^-(1 + bits of cols) <= 1 / (2 cols): each (m - z[j]) * k < 2 DBL_MAX k <= DBL_MAX / cols,
 * so the scaled terms and sums stay finite and the loss overflows only when its exact value
 * does. Scaling by k is exact but for subnormal products, and a row that needs it has a loss far
 * above those. */
static double FN(xent_scale)(int64_t cols)
{
    int e;
    frexp((double)(cols > 0 ? cols : 1), &e); /* cols < 2^e */
    return ldexp(1.0, -(1 + e));
}

// logits is (rows, cols), labels (rows,), row_loss (rows,) or NULL, dlogits (rows, cols) or NULL
static double FN(softmax_xent)(T *row_loss, T *dlogits, const T *logits, const int64_t *labels,
                               int64_t rows, int64_t cols, double smoothing, double grad_scale)
{
    const double s = smoothing;
    const T g_uniform = cols > 0 ? (T)(grad_scale * s / (double)cols) : 0;
    const T g_label = (T)(grad_scale * (1.0 - s));
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const T *z = logits + r * cols;
        T *d = dlogits ? dlogits + r * cols : NULL;
        int64_t lab = labels[r];
        if (lab < 0 || lab >= cols) {
            /* ignored row; an out-of-range label (the caller validates) shows up as NaN */
            T fill = lab < 0 ? (T)0 : (T)NAN;
            if (row_loss) row_loss[r] = fill;
            if (d)
                for (int64_t j = 0; j < cols; j++) d[j] = fill;
            total += fill;
            continue;
        }
        T m = FN(ops_max)(z, cols);
        double sum = FN(row_exp_sum)(d, z, cols, m);
        double lse = log(sum);
        double loss = FN(xent_row_loss)(z, cols, lab, m, lse, s, 1.0);
        if (loss == (double)INFINITY)
            loss = FN(xent_row_loss)(z, cols, lab, m, lse, s, FN(xent_scale)(cols));
        if (row_loss) row_loss[r] = (T)loss;
        total += loss;
        if (d) {
            T inv = (T)(grad_scale / sum);
            for (int64_t j = 0; j < cols; j++) d[j] = d[j] * inv - g_uniform;
            d[lab] -= g_label;
        }
    }
    return total;
}

// x, t are (n,); elem_loss and dx (n,) or NULL
static double FN(bce_logits)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, T gs)
{
    ops_acc acc;
    ops_acc_zero(&acc);
    T ebuf[OPS_TILE], lbuf[OPS_TILE];
    for (int64_t i0 = 0; i0 < n; i0 += OPS_TILE) {
        int64_t nb = n - i0 < OPS_TILE ? n - i0 : OPS_TILE;
        const T *xs = x + i0, *ts = t + i0;
        for (int64_t i = 0; i < nb; i++) ebuf[i] = VEXP(-VABS(xs[i]));
        for (int64_t i = 0; i < nb; i++) {
            T xv = xs[i];
            lbuf[i] = (xv > 0 ? xv : (T)0) - xv * ts[i] + VLOG1P_UNIT(ebuf[i]);
        }
        if (elem_loss) memcpy(elem_loss + i0, lbuf, (size_t)nb * sizeof(T));
        FN(acc_add)(&acc, lbuf, nb);
        if (dx) {
            T *ds = dx + i0;
            for (int64_t i = 0; i < nb; i++) {
                T e = ebuf[i], r = 1 / (1 + e);
                T sg = xs[i] >= 0 ? r : e * r;
                ds[i] = gs * (sg - ts[i]);
            }
        }
    }
    return ops_acc_total(&acc);
}

// x, t are (n,); elem_loss and dx (n,) or NULL; gs2 = 2 * grad_scale
static double FN(mse)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, T gs2)
{
    ops_acc acc;
    ops_acc_zero(&acc);
    T lbuf[OPS_TILE];
    for (int64_t i0 = 0; i0 < n; i0 += OPS_TILE) {
        int64_t nb = n - i0 < OPS_TILE ? n - i0 : OPS_TILE;
        const T *xs = x + i0, *ts = t + i0;
        for (int64_t i = 0; i < nb; i++) {
            T d = xs[i] - ts[i];
            lbuf[i] = d * d;
        }
        if (elem_loss) memcpy(elem_loss + i0, lbuf, (size_t)nb * sizeof(T));
        FN(acc_add)(&acc, lbuf, nb);
        if (dx) {
            T *ds = dx + i0;
            for (int64_t i = 0; i < nb; i++) ds[i] = gs2 * (xs[i] - ts[i]);
        }
    }
    return ops_acc_total(&acc);
}

/* ---------------------------------------------------------------- reductions */

// x is (n,)
static double FN(sumsq)(const T *x, int64_t n)
{
    ops_acc s;
    ops_acc_zero(&s);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) FN(ops_addsq16)(&s, x + i);
    for (int l = 0; i + l < n; l++) ops_acc_add1(&s, l, (double)x[i + l] * x[i + l]);
    return ops_acc_total(&s);
}

// x is (rows, cols); out[j0 .. j0+nj) = column sums (+ beta * out), rows walked in order
static void FN(colsum)(T *out, const T *x, int64_t rows, int64_t cols, int64_t j0, int64_t nj,
                       double beta)
{
    double acc[MYELIN_OPS_COLBLOCK];
    if (nj > MYELIN_OPS_COLBLOCK) nj = MYELIN_OPS_COLBLOCK;
    for (int64_t j = 0; j < nj; j++) acc[j] = 0;
    for (int64_t i = 0; i < rows; i++) {
        const T *xr = x + i * cols + j0;
        for (int64_t j = 0; j < nj; j++) acc[j] += xr[j];
    }
    T *o = out + j0;
    if (beta != 0)
        for (int64_t j = 0; j < nj; j++) o[j] = (T)(acc[j] + beta * (double)o[j]);
    else
        for (int64_t j = 0; j < nj; j++) o[j] = (T)acc[j];
}

/* ---------------------------------------------------------------- optimizer updates */

// p, g (n,), buf (n,) or NULL when momentum == 0; in place
static void FN(sgd_step)(T *p, T *buf, const T *g, int64_t n, T lr, T momentum, T one_m_damp,
                         T wd, int nesterov, int first_step)
{
    if (momentum == 0 || !buf) {
        if (wd != 0)
            for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * (g[i] + wd * p[i]);
        else
            for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * g[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        T pi = p[i];
        T gi = wd != 0 ? g[i] + wd * pi : g[i];
        T b = first_step ? gi : momentum * buf[i] + one_m_damp * gi;
        buf[i] = b;
        T d = nesterov ? gi + momentum * b : b;
        p[i] = pi - lr * d;
    }
}

// p, m, v, g (n,), vmax (n,) or NULL; in place
static void FN(adam_step)(T *p, T *m, T *v, T *vmax, const T *g, int64_t n, T beta1,
                          T one_m_beta1, T beta2, T one_m_beta2, T step_size, T bc2_sqrt, T eps,
                          T wd, int decoupled, T decay)
{
    const int l2 = !decoupled && wd != 0;
    const int shrink = decoupled && wd != 0;
#define OPS_ADAM_BODY(VMAX_STMT)                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                             \
        T pi = p[i], gi = g[i];                                                                   \
        if (shrink) pi = pi * decay;                                                              \
        if (l2) gi = gi + wd * pi;                                                                \
        T mi = beta1 * m[i] + one_m_beta1 * gi;                                                   \
        T vi = beta2 * v[i] + one_m_beta2 * gi * gi;                                              \
        m[i] = mi;                                                                                \
        v[i] = vi;                                                                                \
        VMAX_STMT                                                                                 \
        T denom = VSQRT(vi) / bc2_sqrt + eps;                                                     \
        p[i] = pi - step_size * mi / denom;                                                       \
    }
    if (vmax) {
        OPS_ADAM_BODY(T vm = vmax[i]; vi = (vm > vi || vm != vm) ? vm : vi; vmax[i] = vi;)
    } else {
        OPS_ADAM_BODY()
    }
#undef OPS_ADAM_BODY
}

// p, sq, g (n,), buf (n,) or NULL when momentum == 0, gavg (n,) or NULL; in place
static void FN(rmsprop_step)(T *p, T *sq, T *buf, T *gavg, const T *g, int64_t n, T lr, T alpha,
                             T one_m_alpha, T eps, T wd, T momentum)
{
    const int use_buf = momentum != 0 && buf;
    for (int64_t i = 0; i < n; i++) {
        T pi = p[i];
        T gi = wd != 0 ? g[i] + wd * pi : g[i];
        T s = alpha * sq[i] + one_m_alpha * gi * gi;
        sq[i] = s;
        T avg;
        if (gavg) {
            T ga = alpha * gavg[i] + one_m_alpha * gi;
            gavg[i] = ga;
            avg = VSQRT(s - ga * ga) + eps;
        } else {
            avg = VSQRT(s) + eps;
        }
        if (use_buf) {
            T b = momentum * buf[i] + gi / avg;
            buf[i] = b;
            p[i] = pi - lr * b;
        } else {
            p[i] = pi - lr * gi / avg;
        }
    }
}

#undef OPS_TILE
