/* One dtype of the reference kernels; expanded by ops_ref.c (no include guard on purpose).
 * Everything is computed in double and rounded to T when stored. */

#define REF_CAT2(a, b, c) a##b##c
#define REF_CAT(a, b, c) REF_CAT2(a, b, c)
#define REF(name) REF_CAT(myelin_ref_, name, S)

void REF(act_forward_)(T *y, const T *x, int64_t n, int act, double slope)
{
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], r;
        switch (act) {
        case MYELIN_ACT_RELU: r = isnan(v) ? v : (v > 0 ? v : 0.0); break;
        case MYELIN_ACT_LEAKY_RELU: r = v > 0 ? v : v * slope; break;
        case MYELIN_ACT_SIGMOID: r = v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v)); break;
        case MYELIN_ACT_TANH: r = tanh(v); break;
        default: r = v; break;
        }
        y[i] = (T)r;
    }
}

void REF(act_backward_)(T *dx, const T *dy, const T *y, int64_t n, int act, double slope)
{
    for (int64_t i = 0; i < n; i++) {
        double g = dy[i], v = y[i], r;
        switch (act) {
        case MYELIN_ACT_RELU: r = isnan(v) ? v : (v > 0 ? g : 0.0); break;
        case MYELIN_ACT_LEAKY_RELU: r = isnan(v) ? v : (v > 0 ? g : slope * g); break;
        case MYELIN_ACT_SIGMOID: r = g * v * (1.0 - v); break;
        case MYELIN_ACT_TANH: r = g * (1.0 - v * v); break;
        default: r = g; break;
        }
        dx[i] = (T)r;
    }
}

void REF(softmax_forward_)(T *y, const T *x, int64_t rows, int64_t cols, int log_)
{
    for (int64_t r = 0; r < rows; r++) {
        const T *xr = x + r * cols;
        T *yr = y + r * cols;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < cols; j++) m = (isnan(xr[j]) || xr[j] > m) ? xr[j] : m;
        for (int64_t j = 0; j < cols; j++) s += exp(xr[j] - m);
        for (int64_t j = 0; j < cols; j++)
            yr[j] = (T)(log_ ? (xr[j] - m) - log(s) : exp(xr[j] - m) / s);
    }
}

void REF(softmax_backward_)(T *dx, const T *dy, const T *y, int64_t rows, int64_t cols, int log_)
{
    for (int64_t r = 0; r < rows; r++) {
        const T *dyr = dy + r * cols, *yr = y + r * cols;
        T *dxr = dx + r * cols;
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += log_ ? (double)dyr[j] : (double)dyr[j] * yr[j];
        for (int64_t j = 0; j < cols; j++)
            dxr[j] = (T)(log_ ? dyr[j] - exp(yr[j]) * s : yr[j] * (dyr[j] - s));
    }
}

double REF(softmax_xent_)(T *row_loss, T *dlogits, const T *logits, const int64_t *labels,
                          int64_t rows, int64_t cols, double s, double grad_scale)
{
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const T *z = logits + r * cols;
        int64_t lab = labels[r];
        if (lab < 0 || lab >= cols) {
            double fill = lab < 0 ? 0.0 : NAN;
            if (row_loss) row_loss[r] = (T)fill;
            if (dlogits)
                for (int64_t j = 0; j < cols; j++) dlogits[r * cols + j] = (T)fill;
            total += fill;
            continue;
        }
        /* loss = lse + (1-s) (m - z[lab]) + s mean(m - z), lse = log sum exp(z - m): terms >= 0,
         * added up times k = 2^-(1 + bits of cols) <= 1 / (2 cols), so that nothing overflows
         * even where m - z is beyond the double range (exact but for subnormal products) */
        int e;
        frexp((double)cols, &e);
        const double k = ldexp(1.0, -(1 + e));
        double m = -INFINITY, sum = 0, below = 0;
        for (int64_t j = 0; j < cols; j++) m = (isnan(z[j]) || z[j] > m) ? z[j] : m;
        for (int64_t j = 0; j < cols; j++) sum += exp(z[j] - m);
        for (int64_t j = 0; j < cols; j++) below += m * k - z[j] * k;
        double lk = log(sum) * k;
        if (s != 1) lk += (1 - s) * (m * k - z[lab] * k);
        if (s != 0) lk += s * (below / cols);
        double loss = lk / k;
        if (row_loss) row_loss[r] = (T)loss;
        total += loss;
        if (dlogits)
            for (int64_t j = 0; j < cols; j++)
                dlogits[r * cols + j] =
                    (T)(grad_scale * (exp(z[j] - m) / sum - (j == lab ? 1 - s : 0.0) - s / cols));
    }
    return total;
}

double REF(bce_logits_)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, double grad_scale)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], tv = t[i];
        double loss = (v > 0 ? v : 0.0) - v * tv + log1p(exp(-fabs(v)));
        double sg = v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));
        if (elem_loss) elem_loss[i] = (T)loss;
        if (dx) dx[i] = (T)(grad_scale * (sg - tv));
        total += loss;
    }
    return total;
}

double REF(mse_)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, double grad_scale)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - t[i];
        if (elem_loss) elem_loss[i] = (T)(d * d);
        if (dx) dx[i] = (T)(grad_scale * 2 * d);
        total += d * d;
    }
    return total;
}

void REF(colsum_)(T *out, const T *x, int64_t rows, int64_t cols, double beta)
{
    for (int64_t j = 0; j < cols; j++) {
        double s = 0;
        for (int64_t i = 0; i < rows; i++) s += x[i * cols + j];
        out[j] = (T)(beta != 0 ? s + beta * out[j] : s);
    }
}

double REF(sumsq_)(const T *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void REF(sgd_step_)(T *p, T *buf, const T *g, int64_t n, double lr, double momentum,
                    double dampening, double weight_decay, int nesterov, int first_step)
{
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i] + weight_decay * p[i], d = gi;
        if (weight_decay == 0) gi = d = g[i];
        if (momentum != 0) {
            double b = first_step ? gi : momentum * buf[i] + (1 - dampening) * gi;
            buf[i] = (T)b;
            d = nesterov ? gi + momentum * b : b;
        }
        p[i] = (T)(p[i] - lr * d);
    }
}

void REF(adam_step_)(T *p, T *m, T *v, T *vmax, const T *g, int64_t n, double lr, double beta1,
                     double beta2, double eps, double weight_decay, int decoupled, int64_t step)
{
    double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    for (int64_t i = 0; i < n; i++) {
        double pi = p[i], gi = g[i];
        if (weight_decay != 0) {
            if (decoupled) pi *= 1 - lr * weight_decay;
            else gi += weight_decay * pi;
        }
        double mi = beta1 * m[i] + (1 - beta1) * gi;
        double vi = beta2 * v[i] + (1 - beta2) * gi * gi;
        m[i] = (T)mi;
        v[i] = (T)vi;
        if (vmax) {
            double vm = vmax[i];
            vi = (vm > vi || vm != vm) ? vm : vi; /* NaN propagates, as torch.maximum */
            vmax[i] = (T)vi;
        }
        p[i] = (T)(pi - lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + eps));
    }
}

void REF(rmsprop_step_)(T *p, T *sq, T *buf, T *gavg, const T *g, int64_t n, double lr,
                        double alpha, double eps, double weight_decay, double momentum)
{
    for (int64_t i = 0; i < n; i++) {
        double pi = p[i], gi = weight_decay != 0 ? g[i] + weight_decay * pi : g[i];
        double s = alpha * sq[i] + (1 - alpha) * gi * gi, avg;
        sq[i] = (T)s;
        if (gavg) {
            double ga = alpha * gavg[i] + (1 - alpha) * gi;
            gavg[i] = (T)ga;
            avg = sqrt(s - ga * ga) + eps;
        } else {
            avg = sqrt(s) + eps;
        }
        if (momentum != 0) {
            double b = momentum * buf[i] + gi / avg;
            buf[i] = (T)b;
            p[i] = (T)(pi - lr * b);
        } else {
            p[i] = (T)(pi - lr * gi / avg);
        }
    }
}

#undef REF_CAT2
#undef REF_CAT
#undef REF
