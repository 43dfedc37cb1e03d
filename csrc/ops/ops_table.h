/* The per-ISA table of csrc/ops inner loops. eltwise_impl.h fills one table per instruction set
 * (eltwise_baseline.c, eltwise_avx2.c, eltwise_avx512.c); ops.c looks the table up by
 * myelin_current_isa() at every call and does the threading and the chunked reductions.
 * Every entry runs on the calling thread only; scalars arrive already rounded to the dtype. */
#ifndef MYELIN_OPS_TABLE_H
#define MYELIN_OPS_TABLE_H

#include <stdint.h>

#define MYELIN_OPS_ENTRIES(T, S)                                                                  \
    /* y = act(x), n elements; y may equal x */                                                   \
    void (*act_forward_##S)(T *y, const T *x, int64_t n, int act, T slope);                       \
    /* the same for a y that does not overlap x and will not be read soon: streaming stores */    \
    void (*act_forward_stream_##S)(T *y, const T *x, int64_t n, int act, T slope);                \
    /* dx = dy * act'(y), n elements; dx may equal dy */                                          \
    void (*act_backward_##S)(T *dx, const T *dy, const T *y, int64_t n, int act, T slope);        \
    /* rows of (rows, cols) */                                                                    \
    void (*softmax_forward_##S)(T *y, const T *x, int64_t rows, int64_t cols, int log);           \
    void (*softmax_backward_##S)(T *dx, const T *dy, const T *y, int64_t rows, int64_t cols,      \
                                 int log);                                                        \
    /* fused softmax cross-entropy on `rows` rows; returns their losses summed in row order */    \
    double (*softmax_xent_##S)(T *row_loss, T *dlogits, const T *logits, const int64_t *labels,   \
                               int64_t rows, int64_t cols, double smoothing, double grad_scale);  \
    /* one chunk of n elements; return the chunk's loss sum in double */                          \
    double (*bce_logits_##S)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, T gs);       \
    double (*mse_##S)(T *elem_loss, T *dx, const T *x, const T *t, int64_t n, T gs2);             \
    double (*sumsq_##S)(const T *x, int64_t n);                                                   \
    /* out[j0 .. j0+nj) of a column sum, nj <= MYELIN_OPS_COLBLOCK */                             \
    void (*colsum_##S)(T *out, const T *x, int64_t rows, int64_t cols, int64_t j0, int64_t nj,    \
                       double beta);                                                              \
    void (*sgd_step_##S)(T *p, T *buf, const T *g, int64_t n, T lr, T momentum, T one_m_damp,     \
                         T wd, int nesterov, int first_step);                                     \
    void (*adam_step_##S)(T *p, T *m, T *v, T *vmax, const T *g, int64_t n, T beta1,              \
                          T one_m_beta1, T beta2, T one_m_beta2, T step_size, T bc2_sqrt, T eps,  \
                          T wd, int decoupled, T decay);                                          \
    void (*rmsprop_step_##S)(T *p, T *sq, T *buf, T *gavg, const T *g, int64_t n, T lr, T alpha,  \
                             T one_m_alpha, T eps, T wd, T momentum);

/* Columns per block of the column sum: the block's double accumulators (4 KiB) stay in L1. */
#define MYELIN_OPS_COLBLOCK 512

typedef struct myelin_ops_table {
    MYELIN_OPS_ENTRIES(float, f32)
    MYELIN_OPS_ENTRIES(double, f64)
} myelin_ops_table;

extern const myelin_ops_table myelin_ops_baseline;
#ifdef MYELIN_X86
extern const myelin_ops_table myelin_ops_avx2;
extern const myelin_ops_table myelin_ops_avx512;
#endif

#endif /* MYELIN_OPS_TABLE_H */
