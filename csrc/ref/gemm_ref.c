/* Naive GEMM: the scalar twin of csrc/gemm/gemm.c, one output element at a time.
 * A(i, p) = A[i*rsa + p*csa] is (M, K), B(p, j) = B[p*rsb + j*csb] is (K, N), C is (M, N) with ldc.
 * C = act(A @ B + beta*C + bias); beta == 0 never reads C. */
#include "gemm/gemm_internal.h"
#include "ops/ops_internal.h"

#define DEFINE_GEMM_REF(T, SFX)                                                                  \
    void myelin_gemm_ref_##SFX(T *C, int64_t ldc, const T *A, int64_t rsa, int64_t csa,          \
                               const T *B, int64_t rsb, int64_t csb, int64_t M, int64_t N,       \
                               int64_t K, double beta, const T *bias, int act, double slope)     \
    {                                                                                            \
        const T b = (T)beta;                                                                     \
        for (int64_t i = 0; i < M; i++) {                                                        \
            T *crow = C + i * ldc;                                                               \
            for (int64_t j = 0; j < N; j++) {                                                    \
                T acc = 0;                                                                       \
                for (int64_t p = 0; p < K; p++)                                                  \
                    acc += A[i * rsa + p * csa] * B[p * rsb + j * csb];                          \
                T v = b == 0 ? acc : b * crow[j] + acc;                                          \
                if (bias) v += bias[j];                                                          \
                crow[j] = v;                                                                     \
            }                                                                                    \
            if (act != 0) myelin_act_serial_##SFX(crow, crow, N, act, slope);                    \
        }                                                                                        \
    }

DEFINE_GEMM_REF(float, f32)
DEFINE_GEMM_REF(double, f64)
