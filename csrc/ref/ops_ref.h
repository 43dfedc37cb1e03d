/* Naive scalar twins of the csrc/ops kernels: same signatures and semantics as kernels.h, one
 * obvious loop each, computed in double with libm, no threads, no chunking. Tests hold the fast
 * kernels against these. */
#ifndef MYELIN_OPS_REF_H
#define MYELIN_OPS_REF_H

#include <stdint.h>

#define MYELIN_REF_DECLARE(T, S)                                                                  \
    void myelin_ref_act_forward_##S(T *y, const T *x, int64_t n, int act, double slope);         \
    void myelin_ref_act_backward_##S(T *dx, const T *dy, const T *y, int64_t n, int act,          \
                                     double slope);                                               \
    void myelin_ref_softmax_forward_##S(T *y, const T *x, int64_t rows, int64_t cols, int log);   \
    void myelin_ref_softmax_backward_##S(T *dx, const T *dy, const T *y, int64_t rows,            \
                                         int64_t cols, int log);                                  \
    double myelin_ref_softmax_xent_##S(T *row_loss, T *dlogits, const T *logits,                  \
                                       const int64_t *labels, int64_t rows, int64_t cols,         \
                                       double label_smoothing, double grad_scale);                \
    double myelin_ref_bce_logits_##S(T *elem_loss, T *dx, const T *x, const T *t, int64_t n,      \
                                     double grad_scale);                                          \
    double myelin_ref_mse_##S(T *elem_loss, T *dx, const T *x, const T *t, int64_t n,             \
                              double grad_scale);                                                 \
    void myelin_ref_colsum_##S(T *out, const T *x, int64_t rows, int64_t cols, double beta);      \
    double myelin_ref_sumsq_##S(const T *x, int64_t n);                                           \
    void myelin_ref_sgd_step_##S(T *p, T *buf, const T *g, int64_t n, double lr, double momentum, \
                                 double dampening, double weight_decay, int nesterov,             \
                                 int first_step);                                                 \
    void myelin_ref_adam_step_##S(T *p, T *m, T *v, T *vmax, const T *g, int64_t n, double lr,    \
                                  double beta1, double beta2, double eps, double weight_decay,    \
                                  int decoupled, int64_t step);                                   \
    void myelin_ref_rmsprop_step_##S(T *p, T *sq, T *buf, T *gavg, const T *g, int64_t n,         \
                                     double lr, double alpha, double eps, double weight_decay,    \
                                     double momentum);

MYELIN_REF_DECLARE(float, f32)
MYELIN_REF_DECLARE(double, f64)

#endif /* MYELIN_OPS_REF_H */
