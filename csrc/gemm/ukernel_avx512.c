/* AVX-512 GEMM micro-kernels (compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma).
 * sgemm_avx512_14x32: 14 rows x 2 zmm of float32; dgemm_avx512_14x16: 14 rows x 2 zmm of float64.
 * 28 accumulators + 2 B vectors + 1 broadcast = 31 of the 32 zmm registers. Per step of k:
 * 2 loads of B, 14 broadcasts of A, 28 FMAs: the FMA pipes are the bottleneck (Zen 4 runs one
 * 512-bit FMA per cycle with 4 cycles latency: 28 independent chains are plenty).
 * Contract in gemm_internal.h; partial n is handled with masked loads and stores, and n <= 16
 * (8 for float64) runs a half-width loop over one zmm column (14 FMAs per step of k): a last
 * panel of 784 columns is 16 wide. */
#include <immintrin.h>

#include "gemm/gemm_internal.h"

#define AVX512_MR 14
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* mr is a compile-time constant in each wrapper: the loops over rows unroll and the accumulator
 * arrays live in registers. */
ALWAYS_INLINE void sgemm_avx512_body(const int mr, const int nv, const int direct, int64_t k,
                                     const float *a, int64_t lda, const float *b, int64_t ldb,
                                     float *c, int64_t ldc, int64_t m, int64_t n, float beta)
{
    __m512 c0[AVX512_MR], c1[AVX512_MR];
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
        _mm_prefetch((const char *)(c + (i < m ? i : 0) * ldc), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < k; p++) {
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = nv == 2 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++) {
            const __m512 ai = _mm512_set1_ps(a[direct ? (i < m ? i : 0) * lda : i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            if (nv == 2) c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
        a += direct ? 1 : AVX512_MR;
        b += ldb;
    }
    const __mmask16 k0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 k1 = n >= 32 ? (__mmask16)0xFFFF
                                 : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : (__mmask16)0;
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++) {
        if (i >= m) break;
        float *cr = c + i * ldc;
        __m512 r0 = c0[i], r1 = c1[i];
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, cr), r0);
            if (nv == 2) r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, cr + 16), r1);
        }
        _mm512_mask_storeu_ps(cr, k0, r0);
        if (nv == 2) _mm512_mask_storeu_ps(cr + 16, k1, r1);
    }
}

ALWAYS_INLINE void dgemm_avx512_body(const int mr, const int nv, const int direct, int64_t k,
                                     const double *a, int64_t lda, const double *b, int64_t ldb,
                                     double *c, int64_t ldc, int64_t m, int64_t n, double beta)
{
    __m512d c0[AVX512_MR], c1[AVX512_MR];
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++) {
        c0[i] = _mm512_setzero_pd();
        c1[i] = _mm512_setzero_pd();
        _mm_prefetch((const char *)(c + (i < m ? i : 0) * ldc), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < k; p++) {
        const __m512d b0 = _mm512_loadu_pd(b);
        const __m512d b1 = nv == 2 ? _mm512_loadu_pd(b + 8) : b0;
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++) {
            const __m512d ai = _mm512_set1_pd(a[direct ? (i < m ? i : 0) * lda : i]);
            c0[i] = _mm512_fmadd_pd(ai, b0, c0[i]);
            if (nv == 2) c1[i] = _mm512_fmadd_pd(ai, b1, c1[i]);
        }
        a += direct ? 1 : AVX512_MR;
        b += ldb;
    }
    const __mmask8 k0 = n >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << n) - 1);
    const __mmask8 k1 = n >= 16 ? (__mmask8)0xFF
                                : n > 8 ? (__mmask8)((1u << (n - 8)) - 1) : (__mmask8)0;
    const __m512d vb = _mm512_set1_pd(beta);
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++) {
        if (i >= m) break;
        double *cr = c + i * ldc;
        __m512d r0 = c0[i], r1 = c1[i];
        if (beta != 0.0) {
            r0 = _mm512_fmadd_pd(vb, _mm512_maskz_loadu_pd(k0, cr), r0);
            if (nv == 2) r1 = _mm512_fmadd_pd(vb, _mm512_maskz_loadu_pd(k1, cr + 8), r1);
        }
        _mm512_mask_storeu_pd(cr, k0, r0);
        if (nv == 2) _mm512_mask_storeu_pd(cr + 8, k1, r1);
    }
}

/* One wrapper per row count and A layout: sgemm_avx512_<rows>x32 (packed A) and
 * sgemm_avx512_<rows>x32_da (A read in place); dgemm_avx512_<rows>x16 likewise. */
#define SGEMM_AVX512(ROWS)                                                                       \
    static void sgemm_avx512_##ROWS##x32(int64_t k, const float *a, const float *b, int64_t ldb, \
                                         float *c, int64_t ldc, int64_t m, int64_t n, float beta) \
    {                                                                                            \
        if (n <= 16)                                                                             \
            sgemm_avx512_body(ROWS, 1, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                  \
        else                                                                                     \
            sgemm_avx512_body(ROWS, 2, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                  \
    }                                                                                            \
    static void sgemm_avx512_##ROWS##x32_da(int64_t k, const float *a, int64_t lda,              \
                                            const float *b, int64_t ldb, float *c, int64_t ldc,  \
                                            int64_t m, int64_t n, float beta)                    \
    {                                                                                            \
        if (n <= 16)                                                                             \
            sgemm_avx512_body(ROWS, 1, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                \
        else                                                                                     \
            sgemm_avx512_body(ROWS, 2, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                \
    }
#define DGEMM_AVX512(ROWS)                                                                       \
    static void dgemm_avx512_##ROWS##x16(int64_t k, const double *a, const double *b,            \
                                         int64_t ldb, double *c, int64_t ldc, int64_t m,         \
                                         int64_t n, double beta)                                 \
    {                                                                                            \
        if (n <= 8)                                                                              \
            dgemm_avx512_body(ROWS, 1, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                  \
        else                                                                                     \
            dgemm_avx512_body(ROWS, 2, 0, k, a, 0, b, ldb, c, ldc, m, n, beta);                  \
    }                                                                                            \
    static void dgemm_avx512_##ROWS##x16_da(int64_t k, const double *a, int64_t lda,             \
                                            const double *b, int64_t ldb, double *c,             \
                                            int64_t ldc, int64_t m, int64_t n, double beta)      \
    {                                                                                            \
        if (n <= 8)                                                                              \
            dgemm_avx512_body(ROWS, 1, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                \
        else                                                                                     \
            dgemm_avx512_body(ROWS, 2, 1, k, a, lda, b, ldb, c, ldc, m, n, beta);                \
    }

SGEMM_AVX512(14) SGEMM_AVX512(12) SGEMM_AVX512(10) SGEMM_AVX512(8)
SGEMM_AVX512(6) SGEMM_AVX512(4) SGEMM_AVX512(2) SGEMM_AVX512(1)
DGEMM_AVX512(14) DGEMM_AVX512(12) DGEMM_AVX512(10) DGEMM_AVX512(8)
DGEMM_AVX512(6) DGEMM_AVX512(4) DGEMM_AVX512(2) DGEMM_AVX512(1)

/* ukr[m] / uka[m]: the kernel with the fewest rows that covers m rows. */
#define AVX512_TABLE(P, W, S)                                                                    \
    {NULL, P##_1x##W##S, P##_2x##W##S, P##_4x##W##S, P##_4x##W##S, P##_6x##W##S, P##_6x##W##S,   \
     P##_8x##W##S, P##_8x##W##S, P##_10x##W##S, P##_10x##W##S, P##_12x##W##S, P##_12x##W##S,     \
     P##_14x##W##S, P##_14x##W##S}

const struct myelin_sgemm_kernels myelin_sgemm_avx512 = {
    "sgemm_avx512_14x32", AVX512_MR, 32, AVX512_TABLE(sgemm_avx512, 32, ),
    AVX512_TABLE(sgemm_avx512, 32, _da), myelin_tpack_f32_avx512};

const struct myelin_dgemm_kernels myelin_dgemm_avx512 = {
    "dgemm_avx512_14x16", AVX512_MR, 16, AVX512_TABLE(dgemm_avx512, 16, ),
    AVX512_TABLE(dgemm_avx512, 16, _da), myelin_tpack_f64_avx512};
