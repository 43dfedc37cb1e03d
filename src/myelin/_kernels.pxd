# The C API of csrc/include/myelin/kernels.h, declared nogil for the bindings in _kernels.pyx.
from libc.stdint cimport int64_t

cdef extern from "myelin/kernels.h" nogil:
    int myelin_select_isa(const char *requested)
    int myelin_isa_supported(int isa)
    int myelin_current_isa()
    const char *myelin_isa_name(int isa)
    int myelin_has_openmp()
    int myelin_openmp_version()
    void myelin_set_num_threads(int n)
    int myelin_get_num_threads()

    void myelin_gemm_f32(float *C, int64_t ldc, const float *A, int64_t rsa, int64_t csa,
                         const float *B, int64_t rsb, int64_t csb, int64_t M, int64_t N,
                         int64_t K, double beta, const float *bias, int act, double slope)
    void myelin_gemm_f64(double *C, int64_t ldc, const double *A, int64_t rsa, int64_t csa,
                         const double *B, int64_t rsb, int64_t csb, int64_t M, int64_t N,
                         int64_t K, double beta, const double *bias, int act, double slope)
    void myelin_gemm_batched_f32(float *C, int64_t ldc, int64_t stride_c,
                                 const float *A, const int64_t *offa, int64_t rsa, int64_t csa,
                                 const float *B, const int64_t *offb, int64_t rsb, int64_t csb,
                                 int64_t batch, int64_t M, int64_t N, int64_t K)
    void myelin_gemm_batched_f64(double *C, int64_t ldc, int64_t stride_c,
                                 const double *A, const int64_t *offa, int64_t rsa, int64_t csa,
                                 const double *B, const int64_t *offb, int64_t rsb, int64_t csb,
                                 int64_t batch, int64_t M, int64_t N, int64_t K)

    void myelin_act_forward_f32(float *y, const float *x, int64_t n, int act, double slope)
    void myelin_act_forward_f64(double *y, const double *x, int64_t n, int act, double slope)
    void myelin_act_backward_f32(float *dx, const float *dy, const float *y, int64_t n, int act,
                                 double slope)
    void myelin_act_backward_f64(double *dx, const double *dy, const double *y, int64_t n,
                                 int act, double slope)

    void myelin_softmax_forward_f32(float *y, const float *x, int64_t rows, int64_t cols, int log)
    void myelin_softmax_forward_f64(double *y, const double *x, int64_t rows, int64_t cols,
                                    int log)
    void myelin_softmax_backward_f32(float *dx, const float *dy, const float *y, int64_t rows,
                                     int64_t cols, int log)
    void myelin_softmax_backward_f64(double *dx, const double *dy, const double *y, int64_t rows,
                                     int64_t cols, int log)

    double myelin_softmax_xent_f32(float *row_loss, float *dlogits, const float *logits,
                                   const int64_t *labels, int64_t rows, int64_t cols,
                                   double label_smoothing, double grad_scale)
    double myelin_softmax_xent_f64(double *row_loss, double *dlogits, const double *logits,
                                   const int64_t *labels, int64_t rows, int64_t cols,
                                   double label_smoothing, double grad_scale)
    double myelin_bce_logits_f32(float *elem_loss, float *dx, const float *x, const float *t,
                                 int64_t n, double grad_scale)
    double myelin_bce_logits_f64(double *elem_loss, double *dx, const double *x,
                                 const double *t, int64_t n, double grad_scale)
    double myelin_mse_f32(float *elem_loss, float *dx, const float *x, const float *t, int64_t n,
                          double grad_scale)
    double myelin_mse_f64(double *elem_loss, double *dx, const double *x, const double *t,
                          int64_t n, double grad_scale)

    void myelin_colsum_f32(float *out, const float *x, int64_t rows, int64_t cols, double beta)
    void myelin_colsum_f64(double *out, const double *x, int64_t rows, int64_t cols, double beta)
    double myelin_sumsq_f32(const float *x, int64_t n)
    double myelin_sumsq_f64(const double *x, int64_t n)

    void myelin_sgd_step_f32(float *p, float *buf, const float *g, int64_t n, double lr,
                             double momentum, double dampening, double weight_decay,
                             int nesterov, int first_step)
    void myelin_sgd_step_f64(double *p, double *buf, const double *g, int64_t n, double lr,
                             double momentum, double dampening, double weight_decay,
                             int nesterov, int first_step)
    void myelin_adam_step_f32(float *p, float *m, float *v, float *vmax, const float *g,
                              int64_t n, double lr, double beta1, double beta2, double eps,
                              double weight_decay, int decoupled, int64_t step)
    void myelin_adam_step_f64(double *p, double *m, double *v, double *vmax, const double *g,
                              int64_t n, double lr, double beta1, double beta2, double eps,
                              double weight_decay, int decoupled, int64_t step)
    void myelin_rmsprop_step_f32(float *p, float *sq, float *buf, float *gavg, const float *g,
                                 int64_t n, double lr, double alpha, double eps,
                                 double weight_decay, double momentum)
    void myelin_rmsprop_step_f64(double *p, double *sq, double *buf, double *gavg,
                                 const double *g, int64_t n, double lr, double alpha, double eps,
                                 double weight_decay, double momentum)

    double myelin_fma_peak_gflops(int threads, double seconds)
