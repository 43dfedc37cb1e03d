/* AVX2 + FMA GEMM micro-kernels (compiled with -mavx2 -mfma).
 * sgemm_avx2_6x16: 6 rows x 2 ymm of float32; dgemm_avx2_6x8: 6 rows x 2 ymm of float64.
 * 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers; per step of k: 2 loads,
 * 6 broadcasts, 12 FMAs (two FMA pipes, 4 cycles latency: 8 chains keep them busy, 12 do).
 * Contract in gemm_internal.h; partial n is handled with vmaskmov loads and stores, and n <= 8
 * (4 for float64) runs a half-width loop over one ymm column. */
#include <immintrin.h>

#include "gemm/gemm_internal.h"

#define AVX2_MR 6
#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void sgemm_avx2_body(const int mr, const int nv, const int direct, int64_t k,
                                   const float *a, int64_t lda, const float *b, int64_t ldb,
                                   float *c, int64_t ldc, int64_t m, int64_t n, float beta)
{
    __m256 c0[AVX2_MR], c1[AVX2_MR];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = nv == 2 ? _mm256_loadu_ps(b + 8) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + (direct ? (i < m ? i : 0) * lda : i));
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            if (nv == 2) c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
        a += direct ? 1 : AVX2_MR;
        b += ldb;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i k0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
    const __m256i k1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n - 8), lane);
    const int full = n == 16;
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        if (i >= m) break;
        float *cr = c + i * ldc;
        __m256 r0 = c0[i], r1 = c1[i];
        if (full) {
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), r1);
            }
            _mm256_storeu_ps(cr, r0);
            _mm256_storeu_ps(cr + 8, r1);
        } else {
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, k0), r0);
                if (nv == 2) r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, k1), r1);
            }
            _mm256_maskstore_ps(cr, k0, r0);
            if (nv == 2) _mm256_maskstore_ps(cr + 8, k1, r1);
        }
    }
}

ALWAYS_INLINE void dgemm_avx2_body(const int mr, const int nv, const int direct, int64_t k,
                                   const double *a, int64_t lda, const double *b, int64_t ldb,
                                   double *c, int64_t ldc, int64_t m, int64_t n, double beta)
{
    __m256d c0[AVX2_MR], c1[AVX2_MR];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        c0[i] = _mm256_setzero_pd();
        c1[i] = _mm256_setzero_pd();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m256d b0 = _mm256_loadu_pd(b);
        const __m256d b1 = nv == 2 ? _mm256_loadu_pd(b + 4) : b0;
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const __m256d ai = _mm256_broadcast_sd(a + (direct ? (i < m ? i : 0) * lda : i));
            c0[i] = _mm256_fmadd_pd(ai, b0, c0[i]);
            if (nv == 2) c1[i] = _mm256_fmadd_pd(ai, b1, c1[i]);
        }
        a += direct ? 1 : AVX2_MR;
        b += ldb;
    }
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i k0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lane);
    const __m256i k1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - 4), lane);
    const int full = n == 8;
    const __m256d vb = _mm256_set1_pd(beta);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        if (i >= m) break;
        double *cr = c + i * ldc;
        __m256d r0 = c0[i], r1 = c1[i];
        if (full) {
            if (beta != 0.0) {
                r0 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(cr), r0);
                r1 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(cr + 4), r1);
            }
            _mm256_storeu_pd(cr, r0);
            _mm256_storeu_pd(cr + 4, r1);
        } else {
            if (beta != 0.0) {
                r0 = _mm256_fmadd_pd(vb, _mm256_maskload_pd(cr, k0), r0);
                if (nv == 2) r1 = _mm256_fmadd_pd(vb, _mm256_maskload_pd(cr + 4, k1), r1);
            }
            _mm256_maskstore_pd(cr, k0, r0);
            if (nv == 2) _mm256_maskstore_pd(cr + 4, k1, r1);
        }
    }
}

/* One wrapper per row count and A layout: sgemm_avx2_<rows>x16 (packed A) and
 * sgemm_avx2_<rows>x16_da (A read in place); dgemm_avx2_<rows>x8 likewise. */
#define SGEMM_AVX2(ROWS)                                                                         \
    static void sgemm_avx2_##ROWS##x16(int64_t k, const float *a, const float *b, int64_t ldb,   \
                                       float *c, int64_t ldc, int64_t m, int64_t n, float beta)  \
    {                                                                                            \
        if (n <= 8)                                                                              \
            sgemm_avx2_body(ROWS, 1, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                    \
        else                                                                                     \
            sgemm_avx2_body(ROWS, 2, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                    \
    }                                                                                            \
    static void sgemm_avx2_##ROWS##x16_da(int64_t k, const float *a, int64_t lda,                \
                                          const float *b, int64_t ldb, float *c, int64_t ldc,    \
                                          int64_t m, int64_t n, float beta)                      \
    {                                                                                            \
        if (n <= 8)                                                                              \
            sgemm_avx2_body(ROWS, 1, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                  \
        else                                                                                     \
            sgemm_avx2_body(ROWS, 2, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                  \
    }
#define DGEMM_AVX2(ROWS)                                                                         \
    static void dgemm_avx2_##ROWS##x8(int64_t k, const double *a, const double *b, int64_t ldb,  \
                                      double *c, int64_t ldc, int64_t m, int64_t n, double beta) \
    {                                                                                            \
        if (n <= 4)                                                                              \
            dgemm_avx2_body(ROWS, 1, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                    \
        else                                                                                     \
            dgemm_avx2_body(ROWS, 2, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                    \
    }                                                                                            \
    static void dgemm_avx2_##ROWS##x8_da(int64_t k, const double *a, int64_t lda,                \
                                         const double *b, int64_t ldb, double *c, int64_t ldc,   \
                                         int64_t m, int64_t n, double beta)                      \
    {                                                                                            \
        if (n <= 4)                                                                              \
            dgemm_avx2_body(ROWS, 1, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                  \
        else                                                                                     \
            dgemm_avx2_body(ROWS, 2, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                  \
    }

SGEMM_AVX2(6) SGEMM_AVX2(5) SGEMM_AVX2(4) SGEMM_AVX2(3) SGEMM_AVX2(2) SGEMM_AVX2(1)
DGEMM_AVX2(6) DGEMM_AVX2(5) DGEMM_AVX2(4) DGEMM_AVX2(3) DGEMM_AVX2(2) DGEMM_AVX2(1)

#define AVX2_TABLE(P, W, S)                                                                      \
    {NULL, P##_1x##W##S, P##_2x##W##S, P##_3x##W##S, P##_4x##W##S, P##_5x##W##S, P##_6x##W##S}

const struct myelin_sgemm_kernels myelin_sgemm_avx2 = {
    "sgemm_avx2_6x16", AVX2_MR, 16, AVX2_TABLE(sgemm_avx2, 16, ), AVX2_TABLE(sgemm_avx2, 16, _da),
    NULL};

const struct myelin_dgemm_kernels myelin_dgemm_avx2 = {
    "dgemm_avx2_6x8", AVX2_MR, 8, AVX2_TABLE(dgemm_avx2, 8, ), AVX2_TABLE(dgemm_avx2, 8, _da),
    NULL};
