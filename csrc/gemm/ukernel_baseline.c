/* Portable GEMM micro-kernels (the x86-64 default flags: SSE2, no FMA; plain C elsewhere).
 * sgemm_baseline_6x8: 6 rows x 2 xmm of float32; dgemm_baseline_6x4: 6 rows x 2 xmm of float64.
 * 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 xmm registers. Without FMA each step
 * is a multiply then an add (two roundings), as the naive twin does.
 * Contract in gemm_internal.h; partial n goes through a small buffer. */
#include "gemm/gemm_internal.h"

#define BASE_MR 6
#define ALWAYS_INLINE static inline __attribute__((always_inline))

#if defined(__SSE2__)
#include <emmintrin.h>

ALWAYS_INLINE void sgemm_baseline_body(const int mr, int64_t k, const float *a, const float *b,
                                       int64_t ldb, float *c, int64_t ldc, int64_t m, int64_t n,
                                       float beta)
{
    __m128 c0[BASE_MR], c1[BASE_MR];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        c0[i] = _mm_setzero_ps();
        c1[i] = _mm_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m128 b0 = _mm_loadu_ps(b);
        const __m128 b1 = _mm_loadu_ps(b + 4);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const __m128 ai = _mm_set1_ps(a[i]);
            c0[i] = _mm_add_ps(c0[i], _mm_mul_ps(ai, b0));
            c1[i] = _mm_add_ps(c1[i], _mm_mul_ps(ai, b1));
        }
        a += BASE_MR;
        b += ldb;
    }
    const __m128 vb = _mm_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        if (i >= m) break;
        float *cr = c + i * ldc;
        if (n == 8) {
            __m128 r0 = c0[i], r1 = c1[i];
            if (beta != 0.0f) {
                r0 = _mm_add_ps(_mm_mul_ps(vb, _mm_loadu_ps(cr)), r0);
                r1 = _mm_add_ps(_mm_mul_ps(vb, _mm_loadu_ps(cr + 4)), r1);
            }
            _mm_storeu_ps(cr, r0);
            _mm_storeu_ps(cr + 4, r1);
        } else {
            float t[8];
            _mm_storeu_ps(t, c0[i]);
            _mm_storeu_ps(t + 4, c1[i]);
            for (int64_t j = 0; j < n; j++) cr[j] = beta != 0.0f ? beta * cr[j] + t[j] : t[j];
        }
    }
}

ALWAYS_INLINE void dgemm_baseline_body(const int mr, int64_t k, const double *a, const double *b,
                                       int64_t ldb, double *c, int64_t ldc, int64_t m, int64_t n,
                                       double beta)
{
    __m128d c0[BASE_MR], c1[BASE_MR];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        c0[i] = _mm_setzero_pd();
        c1[i] = _mm_setzero_pd();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m128d b0 = _mm_loadu_pd(b);
        const __m128d b1 = _mm_loadu_pd(b + 2);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const __m128d ai = _mm_set1_pd(a[i]);
            c0[i] = _mm_add_pd(c0[i], _mm_mul_pd(ai, b0));
            c1[i] = _mm_add_pd(c1[i], _mm_mul_pd(ai, b1));
        }
        a += BASE_MR;
        b += ldb;
    }
    const __m128d vb = _mm_set1_pd(beta);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        if (i >= m) break;
        double *cr = c + i * ldc;
        if (n == 4) {
            __m128d r0 = c0[i], r1 = c1[i];
            if (beta != 0.0) {
                r0 = _mm_add_pd(_mm_mul_pd(vb, _mm_loadu_pd(cr)), r0);
                r1 = _mm_add_pd(_mm_mul_pd(vb, _mm_loadu_pd(cr + 2)), r1);
            }
            _mm_storeu_pd(cr, r0);
            _mm_storeu_pd(cr + 2, r1);
        } else {
            double t[4];
            _mm_storeu_pd(t, c0[i]);
            _mm_storeu_pd(t + 2, c1[i]);
            for (int64_t j = 0; j < n; j++) cr[j] = beta != 0.0 ? beta * cr[j] + t[j] : t[j];
        }
    }
}

#else /* plain C: the same arithmetic, one lane at a time */

#define DEFINE_PLAIN_BODY(T, NAME, NR)                                                           \
    ALWAYS_INLINE void NAME(const int mr, int64_t k, const T *a, const T *b, int64_t ldb, T *c,  \
                            int64_t ldc, int64_t m, int64_t n, T beta)                           \
    {                                                                                            \
        T acc[BASE_MR][NR] = {{0}};                                                              \
        for (int64_t p = 0; p < k; p++, a += BASE_MR, b += ldb)                                  \
            for (int i = 0; i < mr; i++)                                                         \
                for (int j = 0; j < NR; j++) acc[i][j] += a[i] * b[j];                           \
        for (int i = 0; i < mr && i < m; i++)                                                    \
            for (int64_t j = 0; j < n; j++)                                                      \
                c[i * ldc + j] = beta != 0 ? beta * c[i * ldc + j] + acc[i][j] : acc[i][j];      \
    }
DEFINE_PLAIN_BODY(float, sgemm_baseline_body, 8)
DEFINE_PLAIN_BODY(double, dgemm_baseline_body, 4)

#endif

#define SGEMM_BASE(ROWS)                                                                         \
    static void sgemm_baseline_##ROWS##x8(int64_t k, const float *a, const float *b,             \
                                          int64_t ldb, float *c, int64_t ldc, int64_t m,         \
                                          int64_t n, float beta)                                 \
    {                                                                                            \
        sgemm_baseline_body(ROWS, k, a, b, ldb, c, ldc, m, n, beta);                             \
    }
#define DGEMM_BASE(ROWS)                                                                         \
    static void dgemm_baseline_##ROWS##x4(int64_t k, const double *a, const double *b,           \
                                          int64_t ldb, double *c, int64_t ldc, int64_t m,        \
                                          int64_t n, double beta)                                \
    {                                                                                            \
        dgemm_baseline_body(ROWS, k, a, b, ldb, c, ldc, m, n, beta);                             \
    }

SGEMM_BASE(6) SGEMM_BASE(4) SGEMM_BASE(2) SGEMM_BASE(1)
DGEMM_BASE(6) DGEMM_BASE(4) DGEMM_BASE(2) DGEMM_BASE(1)

const struct myelin_sgemm_kernels myelin_sgemm_baseline = {
    "sgemm_baseline_6x8", BASE_MR, 8,
    {NULL, sgemm_baseline_1x8, sgemm_baseline_2x8, sgemm_baseline_4x8, sgemm_baseline_4x8,
     sgemm_baseline_6x8, sgemm_baseline_6x8},
    {NULL}, NULL}; /* no direct-A kernels: A is always packed; portable transposing pack */

const struct myelin_dgemm_kernels myelin_dgemm_baseline = {
    "dgemm_baseline_6x4", BASE_MR, 4,
    {NULL, dgemm_baseline_1x4, dgemm_baseline_2x4, dgemm_baseline_4x4, dgemm_baseline_4x4,
     dgemm_baseline_6x4, dgemm_baseline_6x4},
    {NULL}, NULL};
