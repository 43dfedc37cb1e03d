/* Element functions written so that gcc -O3 vectorises the loops that call them: no branches
 * (only selects), no libm calls, bit manipulation through memcpy on unsigned integers (no
 * undefined conversions, even for NaN). Included by every per-ISA kernel file.
 *
 * exp(x): x = n*ln2 + r with |r| <= ln2/2; n is found by the "add 1.5*2^p" rounding trick and
 * read back from the bits of the sum; ln2 is split in two (Cody-Waite) so r is nearly exact;
 * exp(r) is a polynomial (float: degree 6, fitted, 2e-9 relative; double: the Taylor polynomial
 * of degree 13, < 2e-17). 2^n is applied as two power-of-two factors 2^n1 * 2^n2 (n1 ~ n/2), each a
 * normal number, so results in the subnormal range round properly and large x overflows to inf.
 * Inputs are clamped to where the result is already 0 or inf; NaN passes the clamps (the
 * comparisons are false) and gives NaN.
 *
 * tanh uses expm1(-2|x|) (same reduction, 2^n*expm1(r) + (2^n - 1)) so small |x| keeps its
 * relative accuracy; sigmoid uses exp(-|x|) so neither side overflows; log1p on [0, 1] (for the
 * logistic loss) is log of w = 1+e by the atanh series plus the rounding correction of 1+e. */
#ifndef MYELIN_VMATH_H
#define MYELIN_VMATH_H

#include <stdint.h>
#include <string.h>

static inline uint32_t vm_bits_f32(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static inline float vm_float_f32(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }
static inline uint64_t vm_bits_f64(double x) { uint64_t u; memcpy(&u, &x, sizeof u); return u; }
static inline double vm_float_f64(uint64_t u) { double x; memcpy(&x, &u, sizeof x); return x; }

/* ---------------------------------------------------------------- float32 */

#define VM_MAGIC_F32 12582912.0f            /* 1.5 * 2^23: adding it rounds to an integer */
#define VM_LOG2E_F32 1.44269504088896341f
#define VM_LN2HI_F32 0.693359375f           /* 9 significant bits: n * hi is exact */
#define VM_LN2LO_F32 -2.12194440e-4f        /* ln2 - hi */

/* e^r - 1 for |r| <= ln2/2: degree 6, coefficients fitted for minimal relative error of e^r
 * (Lawson iterations; 2e-9 before rounding to float) */
#define VM_EXP_C1_F32 1.0f
#define VM_EXP_C2_F32 0.49999994f
#define VM_EXP_C3_F32 0.16666432f
#define VM_EXP_C4_F32 0.041668f
#define VM_EXP_C5_F32 0.0083741555f
#define VM_EXP_C6_F32 0.0013843654f
static inline float vm_expm1_poly_f32(float r)
{
    return r * (VM_EXP_C1_F32 + r * (VM_EXP_C2_F32 + r * (VM_EXP_C3_F32 + r * (VM_EXP_C4_F32 +
           r * (VM_EXP_C5_F32 + r * VM_EXP_C6_F32)))));
}

static inline float vm_exp_f32(float x)
{
    x = x > 89.0f ? 89.0f : x;              /* exp(89) overflows: still inf after the clamp */
    x = x < -104.0f ? -104.0f : x;          /* exp(-104) rounds to 0 */
    float t = x * VM_LOG2E_F32 + VM_MAGIC_F32;
    float nf = t - VM_MAGIC_F32;
    float r = x - nf * VM_LN2HI_F32;
    r = r - nf * VM_LN2LO_F32;
    float p = 1.0f + vm_expm1_poly_f32(r);
    uint32_t n = vm_bits_f32(t) - vm_bits_f32(VM_MAGIC_F32);
    uint32_t n1 = vm_bits_f32(nf * 0.5f + VM_MAGIC_F32) - vm_bits_f32(VM_MAGIC_F32);
    uint32_t n2 = n - n1;
    return p * vm_float_f32((n1 + 127u) << 23) * vm_float_f32((n2 + 127u) << 23);
}

/* e^y - 1 for y <= 0 (or NaN) */
static inline float vm_expm1_neg_f32(float y)
{
    y = y < -80.0f ? -80.0f : y;            /* 2^n stays normal; e^-80 - 1 == -1 */
    float t = y * VM_LOG2E_F32 + VM_MAGIC_F32;
    float nf = t - VM_MAGIC_F32;
    float r = y - nf * VM_LN2HI_F32;
    r = r - nf * VM_LN2LO_F32;
    float q = vm_expm1_poly_f32(r);
    uint32_t n = vm_bits_f32(t) - vm_bits_f32(VM_MAGIC_F32);
    float s = vm_float_f32((n + 127u) << 23);
    return s * q + (s - 1.0f);
}

static inline float vm_sigmoid_f32(float x)
{
    float e = vm_exp_f32(-__builtin_fabsf(x));
    float r = 1.0f / (1.0f + e);
    return x >= 0.0f ? r : e * r;           /* NaN: e*r is NaN */
}

static inline float vm_tanh_f32(float x)
{
    float em = vm_expm1_neg_f32(-2.0f * __builtin_fabsf(x));
    return __builtin_copysignf(-em / (em + 2.0f), x);
}

/* log(1 + e) for e in [0, 1] (or NaN) */
static inline float vm_log1p_unit_f32(float e)
{
    float w = 1.0f + e;
    int big = w > 1.41421356f;
    float f = big ? 0.5f * w : w;           /* f in [1, sqrt2], exact */
    float k = big ? 1.0f : 0.0f;
    float s = (f - 1.0f) / (f + 1.0f);      /* log f = 2 atanh s, |s| <= 0.172 */
    float z = s * s;
    float lf = 2.0f * s + 2.0f * s * z * (1.0f / 3 + z * (1.0f / 5 + z * (1.0f / 7 +
               z * (1.0f / 9 + z * (1.0f / 11)))));
    float c = (e - (w - 1.0f)) / w;         /* what the rounding of 1+e lost */
    return k * VM_LN2HI_F32 + (lf + c + k * VM_LN2LO_F32);
}

/* ---------------------------------------------------------------- float64 */

#define VM_MAGIC_F64 6755399441055744.0     /* 1.5 * 2^52 */
#define VM_LOG2E_F64 1.4426950408889634
#define VM_LN2HI_F64 6.93147180369123816490e-01 /* 33 significant bits */
#define VM_LN2LO_F64 1.90821492927058770002e-10

/* e^r - 1 for |r| <= ln2/2, Taylor to degree 13 */
static inline double vm_expm1_poly_f64(double r)
{
    return r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 +
           r * (1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 +
           r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 +
           r * (1.0 / 6227020800.0)))))))))))));
}

static inline double vm_exp_f64(double x)
{
    x = x > 710.0 ? 710.0 : x;
    x = x < -746.0 ? -746.0 : x;
    double t = x * VM_LOG2E_F64 + VM_MAGIC_F64;
    double nf = t - VM_MAGIC_F64;
    double r = x - nf * VM_LN2HI_F64;
    r = r - nf * VM_LN2LO_F64;
    double p = 1.0 + vm_expm1_poly_f64(r);
    uint64_t n = vm_bits_f64(t) - vm_bits_f64(VM_MAGIC_F64);
    uint64_t n1 = vm_bits_f64(nf * 0.5 + VM_MAGIC_F64) - vm_bits_f64(VM_MAGIC_F64);
    uint64_t n2 = n - n1;
    return p * vm_float_f64((n1 + 1023u) << 52) * vm_float_f64((n2 + 1023u) << 52);
}

static inline double vm_expm1_neg_f64(double y)
{
    y = y < -700.0 ? -700.0 : y;
    double t = y * VM_LOG2E_F64 + VM_MAGIC_F64;
    double nf = t - VM_MAGIC_F64;
    double r = y - nf * VM_LN2HI_F64;
    r = r - nf * VM_LN2LO_F64;
    double q = vm_expm1_poly_f64(r);
    uint64_t n = vm_bits_f64(t) - vm_bits_f64(VM_MAGIC_F64);
    double s = vm_float_f64((n + 1023u) << 52);
    return s * q + (s - 1.0);
}

static inline double vm_sigmoid_f64(double x)
{
    double e = vm_exp_f64(-__builtin_fabs(x));
    double r = 1.0 / (1.0 + e);
    return x >= 0.0 ? r : e * r;
}

static inline double vm_tanh_f64(double x)
{
    double em = vm_expm1_neg_f64(-2.0 * __builtin_fabs(x));
    return __builtin_copysign(-em / (em + 2.0), x);
}

static inline double vm_log1p_unit_f64(double e)
{
    double w = 1.0 + e;
    int big = w > 1.4142135623730951;
    double f = big ? 0.5 * w : w;
    double k = big ? 1.0 : 0.0;
    double s = (f - 1.0) / (f + 1.0);
    double z = s * s;
    double lf = 2.0 * s + 2.0 * s * z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 +
                z * (1.0 / 11 + z * (1.0 / 13 + z * (1.0 / 15 + z * (1.0 / 17 + z * (1.0 / 19 +
                z * (1.0 / 21))))))))));
    double c = (e - (w - 1.0)) / w;
    return k * VM_LN2HI_F64 + (lf + c + k * VM_LN2LO_F64);
}

/* ---------------------------------------------------------------- AVX2 + FMA, float */
/* vm_exp_f32 on 8 lanes, written out: gcc's version of the plain loop spends extra
 * instructions on the clamps. */
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#include <immintrin.h>

static inline __m256 vm_exp_ps256(__m256 x)
{
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);   /* min/max return the 2nd operand on NaN */
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(VM_LOG2E_F32)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VM_LN2HI_F32), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VM_LN2LO_F32), r);
    __m256 p = _mm256_set1_ps(VM_EXP_C6_F32);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_C5_F32));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_C4_F32));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_C3_F32));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_C2_F32));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VM_EXP_C1_F32));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n as 2^n1 * 2^n2, both normal (NaN: n is garbage, p is NaN, the product NaN) */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
#endif

/* ---------------------------------------------------------------- AVX-512 (vscalefps) */
/* Same reduction and polynomial, but 2^n is applied by vscalef, which rounds once and handles
 * overflow, underflow and subnormal results itself: fewer instructions than the bit tricks. */
#ifdef __AVX512F__
#include <immintrin.h>

static inline __m512 vm_exp_ps512(__m512 x)
{
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);   /* min/max return the 2nd operand on NaN */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(VM_LOG2E_F32)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(VM_LN2HI_F32), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(VM_LN2LO_F32), r);
    __m512 p = _mm512_set1_ps(VM_EXP_C6_F32);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_C5_F32));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_C4_F32));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_C3_F32));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_C2_F32));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_C1_F32));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512d vm_exp_pd512(__m512d x)
{
    x = _mm512_min_pd(_mm512_set1_pd(710.0), x);
    x = _mm512_max_pd(_mm512_set1_pd(-746.0), x);
    __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(VM_LOG2E_F64)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(VM_LN2HI_F64), x);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(VM_LN2LO_F64), r);
    static const double c[] = {1.0 / 6227020800.0, 1.0 / 479001600, 1.0 / 39916800,
                               1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720,
                               1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0};
    __m512d p = _mm512_set1_pd(c[0]);
    for (int k = 1; k < 14; k++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[k]));
    return _mm512_scalef_pd(p, n);
}
#endif /* __AVX512F__ */

#endif /* MYELIN_VMATH_H */
