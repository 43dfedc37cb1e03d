/* The csrc/ops inner loops, written once. A per-ISA file defines MYELIN_OPS_ISA (baseline, avx2,
 * avx512) and includes this header; its compile flags decide the vector width gcc uses. The
 * loops are plain C that gcc -O3 vectorises (see vmath.h); eltwise_type_impl.h is expanded once
 * for float and once for double. The result is the table myelin_ops_<isa>. */
#ifndef MYELIN_OPS_ISA
#error "define MYELIN_OPS_ISA before including eltwise_impl.h"
#endif

#include <math.h>
#include <string.h>

#include "myelin/kernels.h"
#include "ops/ops_table.h"
#include "ops/vmath.h"

/* Reductions keep their partial sums in registers through gcc's generic vector types (lowered
 * to whatever width the ISA has): 16 double lanes, element i of a row or chunk going to lane
 * i % 16, the lanes added pairwise in a fixed order at the end. The order of additions is thus
 * the same on every ISA and for every thread count. */
typedef double ops_vd8 __attribute__((vector_size(64)));
typedef float ops_vf8 __attribute__((vector_size(32)));
typedef float ops_vf16 __attribute__((vector_size(64)));
typedef int32_t ops_vi16 __attribute__((vector_size(64)));
typedef int64_t ops_vl8 __attribute__((vector_size(64)));

typedef struct { ops_vd8 lo, hi; } ops_acc; /* lanes 0-7, 8-15 */

static inline void ops_acc_zero(ops_acc *s)
{
    memset(s, 0, sizeof *s);
}

static inline double ops_acc_total(const ops_acc *s)
{
    double t[16];
    memcpy(t, &s->lo, sizeof s->lo);
    memcpy(t + 8, &s->hi, sizeof s->hi);
    for (int w = 8; w > 0; w /= 2)
        for (int l = 0; l < w; l++) t[l] += t[l + w];
    return t[0];
}

/* lane l (< 16) += v, for the tail of a row */
static inline void ops_acc_add1(ops_acc *s, int l, double v)
{
    if (l < 8) s->lo[l] += v;
    else s->hi[l - 8] += v;
}

/* the next 16 elements: lanes += x, x*x, or x*y */
static inline void ops_add16_f32(ops_acc *s, const float *x)
{
    ops_vf8 u, w;
    memcpy(&u, x, sizeof u);
    memcpy(&w, x + 8, sizeof w);
    s->lo += __builtin_convertvector(u, ops_vd8);
    s->hi += __builtin_convertvector(w, ops_vd8);
}
static inline void ops_add16_f64(ops_acc *s, const double *x)
{
    ops_vd8 u, w;
    memcpy(&u, x, sizeof u);
    memcpy(&w, x + 8, sizeof w);
    s->lo += u;
    s->hi += w;
}
static inline void ops_addsq16_f32(ops_acc *s, const float *x)
{
    ops_vf8 u, w;
    memcpy(&u, x, sizeof u);
    memcpy(&w, x + 8, sizeof w);
    ops_vd8 a = __builtin_convertvector(u, ops_vd8), b = __builtin_convertvector(w, ops_vd8);
    s->lo += a * a;
    s->hi += b * b;
}
static inline void ops_addsq16_f64(ops_acc *s, const double *x)
{
    ops_vd8 u, w;
    memcpy(&u, x, sizeof u);
    memcpy(&w, x + 8, sizeof w);
    s->lo += u * u;
    s->hi += w * w;
}
static inline void ops_dot16_f32(ops_acc *s, const float *x, const float *y)
{
    ops_vf8 u, w, p, q;
    memcpy(&u, x, sizeof u);
    memcpy(&w, x + 8, sizeof w);
    memcpy(&p, y, sizeof p);
    memcpy(&q, y + 8, sizeof q);
    s->lo += __builtin_convertvector(u, ops_vd8) * __builtin_convertvector(p, ops_vd8);
    s->hi += __builtin_convertvector(w, ops_vd8) * __builtin_convertvector(q, ops_vd8);
}
static inline void ops_dot16_f64(ops_acc *s, const double *x, const double *y)
{
    ops_vd8 u, w, p, q;
    memcpy(&u, x, sizeof u);
    memcpy(&w, x + 8, sizeof w);
    memcpy(&p, y, sizeof p);
    memcpy(&q, y + 8, sizeof q);
    s->lo += u * p;
    s->hi += w * q;
}

/* max of x[0..n), n >= 1 (a NaN may be skipped: it reaches the row's sum of exps anyway) */
static inline float ops_max_f32(const float *x, int64_t n)
{
    int64_t i = 0;
    float m = x[0];
    if (n >= 16) {
        ops_vf16 vm, v;
        memcpy(&vm, x, sizeof vm);
        for (i = 16; i + 16 <= n; i += 16) {
            memcpy(&v, x + i, sizeof v);
            ops_vi16 gt = v > vm;
            vm = (ops_vf16)(((ops_vi16)v & gt) | ((ops_vi16)vm & ~gt));
        }
        for (int l = 0; l < 16; l++) m = vm[l] > m ? vm[l] : m;
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
static inline double ops_max_f64(const double *x, int64_t n)
{
    int64_t i = 0;
    double m = x[0];
    if (n >= 8) {
        ops_vd8 vm, v;
        memcpy(&vm, x, sizeof vm);
        for (i = 8; i + 8 <= n; i += 8) {
            memcpy(&v, x + i, sizeof v);
            ops_vl8 gt = v > vm;
            vm = (ops_vd8)(((ops_vl8)v & gt) | ((ops_vl8)vm & ~gt));
        }
        for (int l = 0; l < 8; l++) m = vm[l] > m ? vm[l] : m;
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
    s->lo += (ops_vd8)_mm512_cvtps_pd(_mm512_castps512_ps256(f));
    s->hi += (ops_vd8)_mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
#else
    ops_vf16 f = {0}, v;
    for (int64_t j = 0; j < n; j++) dst[j] = vm_exp_f32(src[j] - shift);
    for (; i + 16 <= n; i += 16) {
        memcpy(&v, dst + i, sizeof v);
        f += v;
    }
    for (int l = 0; i + l < n; l++) f[l] += dst[i + l];
    for (int l = 0; l < 8; l++) {
        s->lo[l] += f[l];
        s->hi[l] += f[l + 8];
    }
#endif
}

static inline void ops_exp_sum_f64(double *dst, const double *src, int64_t n, double shift,
                                   ops_acc *s)
{
    int64_t i = 0;
#ifdef __AVX512F__
    const __m512d sh = _mm512_set1_pd(shift);
    __m512d lo = (__m512d)s->lo, hi = (__m512d)s->hi;
    for (; i < n; i += 16) {
        int64_t r = n - i;
        __mmask8 k0 = r >= 8 ? (__mmask8)0xff : (__mmask8)((1u << r) - 1);
        __mmask8 k1 = r >= 16 ? (__mmask8)0xff : r <= 8 ? (__mmask8)0 : (__mmask8)((1u << (r - 8)) - 1);
        __m512d e0 = vm_exp_pd512(_mm512_sub_pd(_mm512_maskz_loadu_pd(k0, src + i), sh));
        __m512d e1 = vm_exp_pd512(_mm512_sub_pd(_mm512_maskz_loadu_pd(k1, src + i + 8), sh));
        e0 = _mm512_maskz_mov_pd(k0, e0);
        e1 = _mm512_maskz_mov_pd(k1, e1);
        _mm512_mask_storeu_pd(dst + i, k0, e0);
        _mm512_mask_storeu_pd(dst + i + 8, k1, e1);
        lo = _mm512_add_pd(lo, e0);
        hi = _mm512_add_pd(hi, e1);
    }
    s->lo = (ops_vd8)lo;
    s->hi = (ops_vd8)hi;
#else
    for (int64_t j = 0; j < n; j++) dst[j] = vm_exp_f64(src[j] - shift);
    for (; i + 16 <= n; i += 16) ops_add16_f64(s, dst + i);
    for (int l = 0; i + l < n; l++) ops_acc_add1(s, l, dst[i + l]);
#endif
}

#define OPS_CAT2(a, b) a##b
#define OPS_CAT(a, b) OPS_CAT2(a, b)

#define T float
#define FN(name) name##_f32
#define VEXP vm_exp_f32
#define VSIGMOID vm_sigmoid_f32
#define VTANH vm_tanh_f32
#define VLOG1P_UNIT vm_log1p_unit_f32
#define VABS __builtin_fabsf
#define VSQRT __builtin_sqrtf
#include "ops/eltwise_type_impl.h"
#undef T
#undef FN
#undef VEXP
#undef VSIGMOID
#undef VTANH
#undef VLOG1P_UNIT
#undef VABS
#undef VSQRT

#define T double
#define FN(name) name##_f64
#define VEXP vm_exp_f64
#define VSIGMOID vm_sigmoid_f64
#define VTANH vm_tanh_f64
#define VLOG1P_UNIT vm_log1p_unit_f64
#define VABS __builtin_fabs
#define VSQRT __builtin_sqrt
#include "ops/eltwise_type_impl.h"

#define OPS_ENTRY(name) .name##_f32 = name##_f32, .name##_f64 = name##_f64

const myelin_ops_table OPS_CAT(myelin_ops_, MYELIN_OPS_ISA) = {
    OPS_ENTRY(act_forward),
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
