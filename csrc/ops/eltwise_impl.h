/* The csrc/ops inner loops, written once. A per-ISA file defines MYELIN_OPS_ISA (baseline, avx2,
 * avx512) and includes this header; its compile flags decide the vector width gcc uses. Most
 * loops are plain C that gcc -O3 vectorises (see vmath.h); eltwise_type_impl.h is expanded once
 * for float and once for double. The hottest exp loops (softmax / cross-entropy sums, float
 * sigmoid and tanh) have intrinsics versions under __AVX512F__ / __AVX2__ below, with the plain C
 * as the fallback. The result is the table myelin_ops_<isa>. */
#ifndef MYELIN_OPS_ISA
#error "define MYELIN_OPS_ISA before including eltwise_impl.h"
#endif

#include <math.h>
#include <string.h>

#include "myelin/kernels.h"
#include "ops/ops_table.h"
#include "ops/vmath.h"
#if defined(__SSE2__)
#include <immintrin.h>
#endif

/* Reductions keep their partial sums in registers through gcc's generic vector types, at the
 * ISA's native width (wider types would be split clumsily): 16 double lanes, element i of a row
 * or chunk going to lane i % 16, the lanes added pairwise in a fixed order at the end. The
 * order of additions is thus the same on every ISA and for every thread count. */
#if defined(__AVX512F__)
#define OPS_VW 8 /* doubles per register */
#elif defined(__AVX__)
#define OPS_VW 4
#else
#define OPS_VW 2
#endif
#define OPS_NV (16 / OPS_VW) /* registers per 16 lanes */

typedef double ops_vd __attribute__((vector_size(OPS_VW * 8)));    /* VW doubles */
typedef float ops_vfh __attribute__((vector_size(OPS_VW * 4)));    /* VW floats */
typedef float ops_vf __attribute__((vector_size(OPS_VW * 8)));     /* a register of floats */
typedef int32_t ops_vi __attribute__((vector_size(OPS_VW * 8)));
typedef int64_t ops_vl __attribute__((vector_size(OPS_VW * 8)));

typedef struct { ops_vd v[OPS_NV]; } ops_acc; /* lane l is v[l / VW][l % VW] */

static inline void ops_acc_zero(ops_acc *s)
{
    for (int k = 0; k < OPS_NV; k++) s->v[k] = (ops_vd){0};
}

static inline double ops_acc_total(const ops_acc *s)
{
    double t[16];
    memcpy(t, s->v, sizeof t);
    for (int w = 8; w > 0; w /= 2)
        for (int l = 0; l < w; l++) t[l] += t[l + w];
    return t[0];
}

/* lane l (< 16) += v, for the tail of a row */
static inline void ops_acc_add1(ops_acc *s, int l, double v)
{
    s->v[l / OPS_VW][l % OPS_VW] += v;
}

/* the next 16 elements: lanes += x, x*x, or x*y */
static inline void ops_add16_f32(ops_acc *s, const float *x)
{
    for (int k = 0; k < OPS_NV; k++) {
        ops_vfh u;
        memcpy(&u, x + k * OPS_VW, sizeof u);
        s->v[k] += __builtin_convertvector(u, ops_vd);
    }
}
static inline void ops_add16_f64(ops_acc *s, const double *x)
{
    for (int k = 0; k < OPS_NV; k++) {
        ops_vd u;
        memcpy(&u, x + k * OPS_VW, sizeof u);
        s->v[k] += u;
    }
}
static inline void ops_addsq16_f32(ops_acc *s, const float *x)
{
    for (int k = 0; k < OPS_NV; k++) {
        ops_vfh u;
        memcpy(&u, x + k * OPS_VW, sizeof u);
        ops_vd a = __builtin_convertvector(u, ops_vd);
        s->v[k] += a * a;
    }
}
static inline void ops_addsq16_f64(ops_acc *s, const double *x)
{
    for (int k = 0; k < OPS_NV; k++) {
        ops_vd u;
        memcpy(&u, x + k * OPS_VW, sizeof u);
        s->v[k] += u * u;
    }
}
static inline void ops_dot16_f32(ops_acc *s, const float *x, const float *y)
{
    for (int k = 0; k < OPS_NV; k++) {
        ops_vfh u, w;
        memcpy(&u, x + k * OPS_VW, sizeof u);
        memcpy(&w, y + k * OPS_VW, sizeof w);
        s->v[k] += __builtin_convertvector(u, ops_vd) * __builtin_convertvector(w, ops_vd);
    }
}
static inline void ops_dot16_f64(ops_acc *s, const double *x, const double *y)
{
    for (int k = 0; k < OPS_NV; k++) {
        ops_vd u, w;
        memcpy(&u, x + k * OPS_VW, sizeof u);
        memcpy(&w, y + k * OPS_VW, sizeof w);
        s->v[k] += u * w;
    }
}

/* the next 16 elements: lanes += mk - x*k (m*k minus the scaled element; see row_sum_below) */
static inline void ops_subk16_f32(ops_acc *s, const float *x, double mk, double k)
{
    for (int v = 0; v < OPS_NV; v++) {
        ops_vfh u;
        memcpy(&u, x + v * OPS_VW, sizeof u);
        s->v[v] += mk - __builtin_convertvector(u, ops_vd) * k;
    }
}
static inline void ops_subk16_f64(ops_acc *s, const double *x, double mk, double k)
{
    for (int v = 0; v < OPS_NV; v++) {
        ops_vd u;
        memcpy(&u, x + v * OPS_VW, sizeof u);
        s->v[v] += mk - u * k;
    }
}

/* max of x[0..n), n >= 1 (a NaN may be skipped: it reaches the row's sum of exps anyway) */
static inline float ops_max_f32(const float *x, int64_t n)
{
    enum { W = 2 * OPS_VW };
    int64_t i = 0;
    float m = x[0];
    if (n >= 2 * W) {
        ops_vf m0, m1, v0, v1;
        memcpy(&m0, x, sizeof m0);
        memcpy(&m1, x + W, sizeof m1);
        for (i = 2 * W; i + 2 * W <= n; i += 2 * W) {
            memcpy(&v0, x + i, sizeof v0);
            memcpy(&v1, x + i + W, sizeof v1);
            ops_vi g0 = v0 > m0, g1 = v1 > m1;
            m0 = (ops_vf)(((ops_vi)v0 & g0) | ((ops_vi)m0 & ~g0));
            m1 = (ops_vf)(((ops_vi)v1 & g1) | ((ops_vi)m1 & ~g1));
        }
        for (int l = 0; l < W; l++) {
            m = m0[l] > m ? m0[l] : m;
            m = m1[l] > m ? m1[l] : m;
        }
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
static inline double ops_max_f64(const double *x, int64_t n)
{
    enum { W = OPS_VW };
    int64_t i = 0;
    double m = x[0];
    if (n >= 2 * W) {
        ops_vd m0, m1, v0, v1;
        memcpy(&m0, x, sizeof m0);
        memcpy(&m1, x + W, sizeof m1);
        for (i = 2 * W; i + 2 * W <= n; i += 2 * W) {
            memcpy(&v0, x + i, sizeof v0);
            memcpy(&v1, x + i + W, sizeof v1);
            ops_vl g0 = v0 > m0, g1 = v1 > m1;
            m0 = (ops_vd)(((ops_vl)v0 & g0) | ((ops_vl)m0 & ~g0));
            m1 = (ops_vd)(((ops_vl)v1 & g1) | ((ops_vl)m1 & ~g1));
        }
        for (int l = 0; l < W; l++) {
            m = m0[l] > m ? m0[l] : m;
            m = m1[l] > m ? m1[l] : m;
        }
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* dst[j] = exp(src[j] - shift), j < n <= 256 (one tile); the exps are added to the lane sums s
 * (element j to lane j % 16). float: the tile is summed in 16 float lanes first (at most 16
 * terms each), then added to the double lanes. dst may equal src. */
static inline void ops_exp_sum_f32(float *dst, const float *src, int64_t n, float shift, ops_acc *s)
{
    int64_t i = 0;
#ifdef __AVX512F__
    const __m512 sh = _mm512_set1_ps(shift);
    __m512 f = _mm512_setzero_ps();
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = vm_exp_ps512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, src + i), sh));
        _mm512_mask_storeu_ps(dst + i, k, e);
        f = _mm512_mask_add_ps(f, k, f, e);
    }
    s->v[0] += (ops_vd)_mm512_cvtps_pd(_mm512_castps512_ps256(f));
    s->v[1] += (ops_vd)_mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
#elif defined(__AVX2__) && defined(__FMA__)
    const __m256 sh = _mm256_set1_ps(shift);
    __m256 f0 = _mm256_setzero_ps(), f1 = _mm256_setzero_ps();
    float t[16];
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = vm_exp_ps256(_mm256_sub_ps(_mm256_loadu_ps(src + i), sh));
        __m256 e1 = vm_exp_ps256(_mm256_sub_ps(_mm256_loadu_ps(src + i + 8), sh));
        _mm256_storeu_ps(dst + i, e0);
        _mm256_storeu_ps(dst + i + 8, e1);
        f0 = _mm256_add_ps(f0, e0);
        f1 = _mm256_add_ps(f1, e1);
    }
    _mm256_storeu_ps(t, f0);
    _mm256_storeu_ps(t + 8, f1);
    for (int l = 0; i + l < n; l++) {
        float e = vm_exp_f32(src[i + l] - shift);
        dst[i + l] = e;
        t[l] += e;
    }
    for (int l = 0; l < 16; l++) ops_acc_add1(s, l, t[l]);
#else
    enum { FW = 2 * OPS_VW, NF = 16 / FW }; /* floats per register, registers per 16 lanes */
    ops_vf f[NF], v;
    float t[16];
    for (int k = 0; k < NF; k++) f[k] = (ops_vf){0};
    for (int64_t j = 0; j < n; j++) dst[j] = vm_exp_f32(src[j] - shift);
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < NF; k++) {
            memcpy(&v, dst + i + k * FW, sizeof v);
            f[k] += v;
        }
    memcpy(t, f, sizeof t);
    for (int l = 0; i + l < n; l++) t[l] += dst[i + l];
    for (int l = 0; l < 16; l++) ops_acc_add1(s, l, t[l]);
#endif
}

static inline void ops_exp_sum_f64(double *dst, const double *src, int64_t n, double shift,
                                   ops_acc *s)
{
    int64_t i = 0;
#ifdef __AVX512F__
    const __m512d sh = _mm512_set1_pd(shift);
    __m512d lo = (__m512d)s->v[0], hi = (__m512d)s->v[1];
    for (; i < n; i += 16) {
        int64_t r = n - i;
        __mmask8 k0 = r >= 8 ? (__mmask8)0xff : (__mmask8)((1u << r) - 1);
        __mmask8 k1 = r >= 16 ? (__mmask8)0xff : r <= 8 ? (__mmask8)0 : (__mmask8)((1u << (r - 8)) - 1);
        __m512d e0 = vm_exp_pd512(_mm512_sub_pd(_mm512_maskz_loadu_pd(k0, src + i), sh));
        __m512d e1 = vm_exp_pd512(_mm512_sub_pd(_mm512_maskz_loadu_pd(k1, src + i + 8), sh));
        _mm512_mask_storeu_pd(dst + i, k0, e0);
        _mm512_mask_storeu_pd(dst + i + 8, k1, e1);
        lo = _mm512_mask_add_pd(lo, k0, lo, e0);
        hi = _mm512_mask_add_pd(hi, k1, hi, e1);
    }
    s->v[0] = (ops_vd)lo;
    s->v[1] = (ops_vd)hi;
#else
    for (int64_t j = 0; j < n; j++) dst[j] = vm_exp_f64(src[j] - shift);
    for (; i + 16 <= n; i += 16) ops_add16_f64(s, dst + i);
    for (int l = 0; i + l < n; l++) ops_acc_add1(s, l, dst[i + l]);
#endif
}

/* y = sigmoid(x), tanh(x) on n elements; y may equal x. AVX-512, float: vscalef-based exp and
 * a refined reciprocal estimate instead of a division (the division limits the throughput). */
static inline void ops_sigmoid_block_f32(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
#ifdef __AVX512F__
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m512 e = vm_exp_ps512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(v)));
        __m512 d = _mm512_add_ps(one, e);               /* in [1, 2] or NaN */
        __m512 r = _mm512_rcp14_ps(d);
        r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, one), r); /* one Newton step */
        __m512 er = _mm512_mul_ps(e, r);
        __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mask_blend_ps(pos, er, r));
    }
#else
    for (; i < n; i++) y[i] = vm_sigmoid_f32(x[i]);
#endif
}

static inline void ops_tanh_block_f32(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
#ifdef __AVX512F__
    const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        /* em = expm1(-2|x|) = 2^n * expm1(r) + (2^n - 1) */
        __m512 t = _mm512_mul_ps(_mm512_abs_ps(v), _mm512_set1_ps(-2.0f));
        t = _mm512_max_ps(_mm512_set1_ps(-80.0f), t); /* NaN passes */
        __m512 nn = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(VM_LOG2E_F32)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(nn, _mm512_set1_ps(VM_LN2HI_F32), t);
        r = _mm512_fnmadd_ps(nn, _mm512_set1_ps(VM_LN2LO_F32), r);
        __m512 q = _mm512_set1_ps(VM_EXP_C6_F32);
        q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(VM_EXP_C5_F32));
        q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(VM_EXP_C4_F32));
        q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(VM_EXP_C3_F32));
        q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(VM_EXP_C2_F32));
        q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(VM_EXP_C1_F32));
        q = _mm512_mul_ps(q, r);
        __m512 s = _mm512_scalef_ps(one, nn);
        __m512 em = _mm512_fmadd_ps(s, q, _mm512_sub_ps(s, one));
        /* |tanh| = -em / (em + 2), em + 2 in [1, 2] */
        __m512 d = _mm512_add_ps(em, two);
        __m512 rc = _mm512_rcp14_ps(d);
        rc = _mm512_fmadd_ps(rc, _mm512_fnmadd_ps(d, rc, one), rc);
        __m512 a = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), em), rc);
        __m512i sg = _mm512_and_si512(_mm512_castps_si512(v), sign);
        _mm512_mask_storeu_ps(y + i, k, _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), sg)));
    }
#else
    for (; i < n; i++) y[i] = vm_tanh_f32(x[i]);
#endif
}

static inline void ops_sigmoid_block_f64(double *y, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = vm_sigmoid_f64(x[i]);
}

static inline void ops_tanh_block_f64(double *y, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = vm_tanh_f64(x[i]);
}

/* dst[0..n) = src[0..n) with non-temporal stores where the ISA has them (dst bypasses the
 * caches: an output larger than the cache then costs one write instead of read + write). The
 * caller ends with ops_stream_fence(). */
static inline void ops_stream_copy(void *dst, const void *src, int64_t bytes)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
#if defined(__AVX512F__)
    enum { A = 64 };
#elif defined(__AVX__)
    enum { A = 32 };
#elif defined(__SSE2__)
    enum { A = 16 };
#else
    enum { A = 1 };
#endif
    int64_t head = (int64_t)((A - ((uintptr_t)d & (A - 1))) & (A - 1));
    if (A == 1 || head > bytes || (head & 3)) {
        memcpy(d, s, (size_t)bytes);
        return;
    }
    memcpy(d, s, (size_t)head);
    d += head, s += head, bytes -= head;
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + 64 <= bytes; i += 64) _mm512_stream_si512((void *)(d + i), _mm512_loadu_si512(s + i));
#elif defined(__AVX__)
    for (; i + 32 <= bytes; i += 32)
        _mm256_stream_si256((__m256i *)(d + i), _mm256_loadu_si256((const __m256i *)(s + i)));
#elif defined(__SSE2__)
    for (; i + 16 <= bytes; i += 16)
        _mm_stream_si128((__m128i *)(d + i), _mm_loadu_si128((const __m128i *)(s + i)));
#endif
    memcpy(d + i, s + i, (size_t)(bytes - i));
}

static inline void ops_stream_fence(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

#define OPS_CAT2(a, b) a##b
#define OPS_CAT(a, b) OPS_CAT2(a, b)

#define T float
#define FN(name) name##_f32
#define VEXP vm_exp_f32
#define VLOG1P_UNIT vm_log1p_unit_f32
#define VABS __builtin_fabsf
#define VSQRT __builtin_sqrtf
#include "ops/eltwise_type_impl.h"
#undef T
#undef FN
#undef VEXP
#undef VLOG1P_UNIT
#undef VABS
#undef VSQRT

#define T double
#define FN(name) name##_f64
#define VEXP vm_exp_f64
#define VLOG1P_UNIT vm_log1p_unit_f64
#define VABS __builtin_fabs
#define VSQRT __builtin_sqrt
#include "ops/eltwise_type_impl.h"

#define OPS_ENTRY(name) .name##_f32 = name##_f32, .name##_f64 = name##_f64

const myelin_ops_table OPS_CAT(myelin_ops_, MYELIN_OPS_ISA) = {
    OPS_ENTRY(act_forward),
    OPS_ENTRY(act_forward_stream),
    OPS_ENTRY(act_backward),
    OPS_ENTRY(softmax_forward),
    OPS_ENTRY(softmax_backward),
    OPS_ENTRY(softmax_xent),
    OPS_ENTRY(bce_logits),
    OPS_ENTRY(mse),
    OPS_ENTRY(sumsq),
    OPS_ENTRY(colsum),
    OPS_ENTRY(sgd_step),
    OPS_ENTRY(adam_step),
    OPS_ENTRY(rmsprop_step),
};
