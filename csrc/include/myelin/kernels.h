/* myelin kernels: the only C API that the Cython bindings see.
 *
 * Conventions
 *   - Outputs first, then inputs, then sizes, then scalars.
 *   - Every size, index and stride is int64_t (no 32-bit wrap-around).
 *   - Strides are in elements, not bytes, and may be negative or zero.
 *   - Arrays without an explicit stride are C-contiguous.
 *   - Every function has an _f32 and an _f64 twin; scalars are passed as double and rounded to the
 *     array dtype once, at the top of the kernel.
 *   - Inputs are validated by the caller (myelin.ops); kernels never raise.
 *   - Kernels are safe to call without the GIL and from several threads at once.
 *   - Reductions are split into fixed chunks by data (MYELIN_CHUNK elements), never by thread count,
 *     and partial results are combined in a fixed order: results do not depend on the thread count.
 */
#ifndef MYELIN_KERNELS_H
#define MYELIN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- setup, dispatch, threads */

/* Instruction-set paths, in order of preference. */
enum myelin_isa { MYELIN_ISA_BASELINE = 0, MYELIN_ISA_AVX2 = 1, MYELIN_ISA_AVX512 = 2 };

/* Pick the best path the CPU supports, or `requested` ("baseline", "avx2", "avx512"; NULL or ""
 * for automatic). Returns 0 on success; -1 for an unknown name, -2 for a path this CPU lacks. */
int myelin_select_isa(const char *requested);
int myelin_isa_supported(int isa);      /* 1 if the CPU (and OS) can run `isa` */
int myelin_current_isa(void);
const char *myelin_isa_name(int isa);   /* "baseline", "avx2", "avx512" */

/* Threads. The count used by a kernel is min(myelin_get_num_threads(), the work's own limit). */
int myelin_has_openmp(void);            /* 0 in a serial build */
int myelin_openmp_version(void);        /* _OPENMP date, 0 in a serial build */
void myelin_set_num_threads(int n);
int myelin_get_num_threads(void);

/* ---------------------------------------------------------------- GEMM */

enum myelin_act {
    MYELIN_ACT_NONE = 0,
    MYELIN_ACT_RELU = 1,
    MYELIN_ACT_LEAKY_RELU = 2,
    MYELIN_ACT_SIGMOID = 3,
    MYELIN_ACT_TANH = 4
};

/* C = act(A @ B + beta * C + bias), one pass: bias and activation are applied in the epilogue.
 * A(i, k) = A[i*rsa + k*csa] is (M, K); B(k, j) = B[k*rsb + j*csb] is (K, N): any strides, so a
 * transpose is a swap of strides. C is (M, N), row-major with leading dimension ldc >= N.
 * beta == 0 means C is not read (it may hold NaN). bias is (N,) or NULL. slope is leaky_relu's
 * negative slope. K == 0 gives act(beta*C + bias). */
void myelin_gemm_f32(float *C, int64_t ldc,
                     const float *A, int64_t rsa, int64_t csa,
                     const float *B, int64_t rsb, int64_t csb,
                     int64_t M, int64_t N, int64_t K,
                     double beta, const float *bias, int act, double slope);
void myelin_gemm_f64(double *C, int64_t ldc,
                     const double *A, int64_t rsa, int64_t csa,
                     const double *B, int64_t rsb, int64_t csb,
                     int64_t M, int64_t N, int64_t K,
                     double beta, const double *bias, int act, double slope);

/* batch independent products: C + p*stride_c = (A + offa[p]) @ (B + offb[p]), each as above
 * with beta = 0, no bias, no activation. offa/offb are element offsets (broadcast batches repeat
 * an offset). Parallel over the batch when it is large, inside each product otherwise. */
void myelin_gemm_batched_f32(float *C, int64_t ldc, int64_t stride_c,
                             const float *A, const int64_t *offa, int64_t rsa, int64_t csa,
                             const float *B, const int64_t *offb, int64_t rsb, int64_t csb,
                             int64_t batch, int64_t M, int64_t N, int64_t K);
void myelin_gemm_batched_f64(double *C, int64_t ldc, int64_t stride_c,
                             const double *A, const int64_t *offa, int64_t rsa, int64_t csa,
                             const double *B, const int64_t *offb, int64_t rsb, int64_t csb,
                             int64_t batch, int64_t M, int64_t N, int64_t K);

/* ---------------------------------------------------------------- activations */

/* y = act(x), n contiguous elements; y may equal x (in place). NaN propagates. */
void myelin_act_forward_f32(float *y, const float *x, int64_t n, int act, double slope);
void myelin_act_forward_f64(double *y, const double *x, int64_t n, int act, double slope);

/* dx = dy * act'(x) written in terms of the output y = act(x):
 *   relu: dy where y > 0, 0 where y <= 0;  leaky_relu (slope >= 0): dy where y > 0, slope*dy else;
 *   sigmoid: dy*y*(1-y);  tanh: dy*(1-y*y);  none: dy.
 * A NaN in y gives NaN in dx. dx may equal dy. */
void myelin_act_backward_f32(float *dx, const float *dy, const float *y, int64_t n, int act,
                             double slope);
void myelin_act_backward_f64(double *dx, const double *dy, const double *y, int64_t n, int act,
                             double slope);

/* ---------------------------------------------------------------- softmax */

/* Over the last axis of a (rows, cols) contiguous array; y may equal x. log != 0: log_softmax. */
void myelin_softmax_forward_f32(float *y, const float *x, int64_t rows, int64_t cols, int log);
void myelin_softmax_forward_f64(double *y, const double *x, int64_t rows, int64_t cols, int log);

/* Gradient through softmax (log == 0: dx = y*(dy - sum(dy*y))) or log_softmax
 * (log != 0: dx = dy - exp(y)*sum(dy)), y being the forward output. dx may equal dy. */
void myelin_softmax_backward_f32(float *dx, const float *dy, const float *y, int64_t rows,
                                 int64_t cols, int log);
void myelin_softmax_backward_f64(double *dx, const double *dy, const double *y, int64_t rows,
                                 int64_t cols, int log);

/* ---------------------------------------------------------------- losses */

/* Fused softmax cross-entropy, one pass over each row of logits (rows, cols).
 * labels are int64 in [0, cols), or < 0 for a row to ignore (loss 0, gradient 0).
 * Row loss (label smoothing s): (1-s) * (lse - z[label]) + s * (lse - mean(z)).
 * row_loss (rows,) or NULL receives each row's loss. dlogits (rows, cols) or NULL receives
 * grad_scale * (softmax(z) - (1-s)*onehot(label) - s/cols). Returns the sum of the row losses,
 * accumulated in double in fixed chunks. Stable for any finite logits. */
double myelin_softmax_xent_f32(float *row_loss, float *dlogits, const float *logits,
                               const int64_t *labels, int64_t rows, int64_t cols,
                               double label_smoothing, double grad_scale);
double myelin_softmax_xent_f64(double *row_loss, double *dlogits, const double *logits,
                               const int64_t *labels, int64_t rows, int64_t cols,
                               double label_smoothing, double grad_scale);

/* Binary cross-entropy on logits x with targets t, n elements:
 *   loss_i = max(x,0) - x*t + log1p(exp(-|x|));  dx_i = grad_scale * (sigmoid(x) - t).
 * elem_loss (n,) and dx (n,) may be NULL. Returns the sum of loss_i (double, fixed chunks). */
double myelin_bce_logits_f32(float *elem_loss, float *dx, const float *x, const float *t,
                             int64_t n, double grad_scale);
double myelin_bce_logits_f64(double *elem_loss, double *dx, const double *x, const double *t,
                             int64_t n, double grad_scale);

/* Mean squared error pieces: loss_i = (x-t)^2, dx_i = grad_scale * 2*(x-t). As above. */
double myelin_mse_f32(float *elem_loss, float *dx, const float *x, const float *t, int64_t n,
                      double grad_scale);
double myelin_mse_f64(double *elem_loss, double *dx, const double *x, const double *t, int64_t n,
                      double grad_scale);

/* ---------------------------------------------------------------- reductions */

/* out[j] = sum_i x[i, j] (+ beta*out[j] when beta != 0): the bias gradient; x is (rows, cols).
 * Parallel over columns; each column is summed in row order. */
void myelin_colsum_f32(float *out, const float *x, int64_t rows, int64_t cols, double beta);
void myelin_colsum_f64(double *out, const double *x, int64_t rows, int64_t cols, double beta);

/* sum of x_i^2 over n elements in double, fixed chunks combined in order. */
double myelin_sumsq_f32(const float *x, int64_t n);
double myelin_sumsq_f64(const double *x, int64_t n);

/* ---------------------------------------------------------------- optimizer updates, in place */

/* PyTorch's SGD. g' = g + wd*p; if momentum != 0: buf = first_step ? g' : momentum*buf +
 * (1-dampening)*g'; d = nesterov ? g' + momentum*buf : buf; else d = g'. p -= lr*d.
 * buf may be NULL when momentum == 0. One pass over memory. */
void myelin_sgd_step_f32(float *p, float *buf, const float *g, int64_t n, double lr,
                         double momentum, double dampening, double weight_decay, int nesterov,
                         int first_step);
void myelin_sgd_step_f64(double *p, double *buf, const double *g, int64_t n, double lr,
                         double momentum, double dampening, double weight_decay, int nesterov,
                         int first_step);

/* PyTorch's Adam / AdamW at step t >= 1. decoupled == 0: g' = g + wd*p (Adam, L2);
 * decoupled != 0: p *= 1 - lr*wd (AdamW), g' = g. m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2;
 * vmax = max(vmax, v) when vmax != NULL (amsgrad) and v is replaced by vmax below;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void myelin_adam_step_f32(float *p, float *m, float *v, float *vmax, const float *g, int64_t n,
                          double lr, double beta1, double beta2, double eps, double weight_decay,
                          int decoupled, int64_t step);
void myelin_adam_step_f64(double *p, double *m, double *v, double *vmax, const double *g,
                          int64_t n, double lr, double beta1, double beta2, double eps,
                          double weight_decay, int decoupled, int64_t step);

/* PyTorch's RMSprop. g' = g + wd*p; sq = alpha*sq + (1-alpha)*g'^2; if gavg != NULL (centered):
 * gavg = alpha*gavg + (1-alpha)*g', avg = sqrt(sq - gavg^2) + eps, else avg = sqrt(sq) + eps;
 * if momentum != 0: buf = momentum*buf + g'/avg, p -= lr*buf; else p -= lr*g'/avg. */
void myelin_rmsprop_step_f32(float *p, float *sq, float *buf, float *gavg, const float *g,
                             int64_t n, double lr, double alpha, double eps, double weight_decay,
                             double momentum);
void myelin_rmsprop_step_f64(double *p, double *sq, double *buf, double *gavg, const double *g,
                             int64_t n, double lr, double alpha, double eps, double weight_decay,
                             double momentum);

/* ---------------------------------------------------------------- machine probe */

/* The float32 FMA peak of `threads` threads in GFLOP/s (an FMA counts as 2 flops), measured for
 * about `seconds` with 12 independent FMA chains per thread on the widest vectors the CPU has
 * (csrc/probe/fma_peak.c); threads < 1 means 1. For the benchmarks' "fraction of peak". */
double myelin_fma_peak_gflops(int threads, double seconds);

#ifdef __cplusplus
}
#endif
#endif /* MYELIN_KERNELS_H */
