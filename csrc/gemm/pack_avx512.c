/* AVX-512 transposing pack (compiled with the AVX-512 flags): the packing of a micro-panel whose
 * rows are contiguous, i.e. A panels of a row-major A and B panels of a transposed B (x @ w.T).
 *   dst[q*DW + r] = src[r*ld + q]   for r < R, q < kc   (dst rows R..DW-1 are left alone)
 * Rows are taken 16 (float32) or 8 (float64) at a time, loaded 16 (8) columns wide, transposed
 * in registers (unpack, shuffle, then two 128-bit lane shuffles: 64 shuffles per 16x16 floats,
 * 24 per 8x8 doubles) and stored as masked rows of the panel. Columns past kc are masked off at
 * the load, rows past R are never stored (their loads repeat the last valid row). A copy: no
 * arithmetic, so the kernels see exactly the values of the portable packing. */
#include <immintrin.h>

#include "gemm/gemm_internal.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* v[0..15] rows -> v[0..15] columns (v[c] = column c) */
ALWAYS_INLINE void transpose16_ps(__m512 v[16])
{
    __m512 u[16];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        /* chunk j of u[4k + c] holds rows 4k..4k+3 of column 4j + c */
        const __m512 t0 = _mm512_unpacklo_ps(v[4 * k], v[4 * k + 1]);
        const __m512 t1 = _mm512_unpackhi_ps(v[4 * k], v[4 * k + 1]);
        const __m512 t2 = _mm512_unpacklo_ps(v[4 * k + 2], v[4 * k + 3]);
        const __m512 t3 = _mm512_unpackhi_ps(v[4 * k + 2], v[4 * k + 3]);
        u[4 * k + 0] = _mm512_shuffle_ps(t0, t2, 0x44);
        u[4 * k + 1] = _mm512_shuffle_ps(t0, t2, 0xEE);
        u[4 * k + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
        u[4 * k + 3] = _mm512_shuffle_ps(t1, t3, 0xEE);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        const __m512 y0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 x1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const __m512 y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        v[c] = _mm512_shuffle_f32x4(x0, x1, 0x88);
        v[c + 8] = _mm512_shuffle_f32x4(x0, x1, 0xDD);
        v[c + 4] = _mm512_shuffle_f32x4(y0, y1, 0x88);
        v[c + 12] = _mm512_shuffle_f32x4(y0, y1, 0xDD);
    }
}

/* v[0..7] rows -> v[0..7] columns */
ALWAYS_INLINE void transpose8_pd(__m512d v[8])
{
    __m512d t[8];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        /* chunk j of t[2k + c] holds rows 2k, 2k+1 of column 2j + c */
        t[2 * k] = _mm512_unpacklo_pd(v[2 * k], v[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_pd(v[2 * k], v[2 * k + 1]);
    }
#pragma GCC unroll 2
    for (int c = 0; c < 2; c++) {
        const __m512d x0 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0x88);
        const __m512d y0 = _mm512_shuffle_f64x2(t[c], t[2 + c], 0xDD);
        const __m512d x1 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0x88);
        const __m512d y1 = _mm512_shuffle_f64x2(t[4 + c], t[6 + c], 0xDD);
        v[c] = _mm512_shuffle_f64x2(x0, x1, 0x88);
        v[c + 4] = _mm512_shuffle_f64x2(x0, x1, 0xDD);
        v[c + 2] = _mm512_shuffle_f64x2(y0, y1, 0x88);
        v[c + 6] = _mm512_shuffle_f64x2(y0, y1, 0xDD);
    }
}

void myelin_tpack_f32_avx512(float *restrict dst, int64_t DW, const float *src, int64_t ld,
                             int64_t R, int64_t kc)
{
    for (int64_t r0 = 0; r0 < R; r0 += 16) {
        const int64_t rows = R - r0 < 16 ? R - r0 : 16;
        const __mmask16 rmask = (__mmask16)((1u << rows) - 1);
        const float *s[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) s[r] = src + (r0 + (r < rows ? r : rows - 1)) * ld;
        for (int64_t q = 0; q < kc; q += 16) {
            const int64_t cols = kc - q < 16 ? kc - q : 16;
            const __mmask16 cmask = (__mmask16)((1u << cols) - 1);
            __m512 v[16];
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++) v[r] = _mm512_maskz_loadu_ps(cmask, s[r] + q);
            transpose16_ps(v);
            float *d = dst + q * DW + r0;
            if (cols == 16) {
#pragma GCC unroll 16
                for (int c = 0; c < 16; c++) _mm512_mask_storeu_ps(d + c * DW, rmask, v[c]);
            } else {
                for (int c = 0; c < cols; c++) _mm512_mask_storeu_ps(d + c * DW, rmask, v[c]);
            }
        }
    }
}

void myelin_tpack_f64_avx512(double *restrict dst, int64_t DW, const double *src, int64_t ld,
                             int64_t R, int64_t kc)
{
    for (int64_t r0 = 0; r0 < R; r0 += 8) {
        const int64_t rows = R - r0 < 8 ? R - r0 : 8;
        const __mmask8 rmask = (__mmask8)((1u << rows) - 1);
        const double *s[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) s[r] = src + (r0 + (r < rows ? r : rows - 1)) * ld;
        for (int64_t q = 0; q < kc; q += 8) {
            const int64_t cols = kc - q < 8 ? kc - q : 8;
            const __mmask8 cmask = (__mmask8)((1u << cols) - 1);
            __m512d v[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) v[r] = _mm512_maskz_loadu_pd(cmask, s[r] + q);
            transpose8_pd(v);
            double *d = dst + q * DW + r0;
            if (cols == 8) {
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++) _mm512_mask_storeu_pd(d + c * DW, rmask, v[c]);
            } else {
                for (int c = 0; c < cols; c++) _mm512_mask_storeu_pd(d + c * DW, rmask, v[c]);
            }
        }
    }
}
