/* The machine's float32 arithmetic peak, measured: the denominator of "fraction of peak" in the
 * benchmarks. Each thread runs 12 independent multiply-add chains on the widest vectors the CPU
 * has (AVX-512, else AVX2+FMA, else SSE2 multiply then add, else scalar). Twelve chains cover
 * the latency of two FMA pipes (4 cycles x 2 pipes = 8 in flight, with room to spare), so the
 * loop runs at the throughput of the FMA units and nothing else: no loads, no stores.
 *
 * Each chain runs c = c * a + b with a slightly below 1, so c settles near b / (1 - a) and never
 * overflows or becomes subnormal however long the probe runs. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#endif
#include <stdint.h>
#include <time.h>

#include "myelin/kernels.h"
#include "myelin/parallel.h"

#if defined(MYELIN_X86) && (defined(__x86_64__) || defined(_M_X64))
#define FMA_PEAK_X86 1
/* fma_peak_avx2.c / fma_peak_avx512.c: `iters` rounds of 12 chains of 8 / 16 floats. */
float myelin_fma_chains_avx2(int64_t iters, float a, float b);
float myelin_fma_chains_avx512(int64_t iters, float a, float b);
#endif

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Float lanes per chain of the portable path. */
#if defined(__SSE2__)
#define BASE_LANES 4
#else
#define BASE_LANES 1
#endif

float myelin_fma_chains_baseline(int64_t iters, float a, float b);

/* The portable path: a multiply then an add per step (SSE2 has no FMA), counted as 2 flops per
 * lane like an FMA. */
float myelin_fma_chains_baseline(int64_t iters, float a, float b)
{
#if defined(__SSE2__)
    const __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
    __m128 c[12];
    for (int i = 0; i < 12; i++) c[i] = _mm_set1_ps(b * (float)(i + 1));
    for (int64_t it = 0; it < iters; it++) {
        c[0] = _mm_add_ps(_mm_mul_ps(c[0], va), vb);
        c[1] = _mm_add_ps(_mm_mul_ps(c[1], va), vb);
        c[2] = _mm_add_ps(_mm_mul_ps(c[2], va), vb);
        c[3] = _mm_add_ps(_mm_mul_ps(c[3], va), vb);
        c[4] = _mm_add_ps(_mm_mul_ps(c[4], va), vb);
        c[5] = _mm_add_ps(_mm_mul_ps(c[5], va), vb);
        c[6] = _mm_add_ps(_mm_mul_ps(c[6], va), vb);
        c[7] = _mm_add_ps(_mm_mul_ps(c[7], va), vb);
        c[8] = _mm_add_ps(_mm_mul_ps(c[8], va), vb);
        c[9] = _mm_add_ps(_mm_mul_ps(c[9], va), vb);
        c[10] = _mm_add_ps(_mm_mul_ps(c[10], va), vb);
        c[11] = _mm_add_ps(_mm_mul_ps(c[11], va), vb);
    }
    __m128 s = c[0];
    for (int i = 1; i < 12; i++) s = _mm_add_ps(s, c[i]);
    float lanes[4];
    _mm_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
#else
    float c[12];
    for (int i = 0; i < 12; i++) c[i] = b * (float)(i + 1);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) c[i] = c[i] * a + b;
    }
    float s = 0.0f;
    for (int i = 0; i < 12; i++) s += c[i];
    return s;
#endif
}

typedef float (*chains_fn)(int64_t iters, float a, float b);

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sinks the chains' results, so the compiler cannot drop the loops. */
static volatile float fma_peak_sink;

/* One timed run: every thread of the team runs `iters` rounds. Returns flop/s of the team. */
static double run_team(chains_fn fn, int lanes, int threads, int64_t iters, float a, float b)
{
    int team = 1;
    float sum = 0.0f;
    double t0 = now_seconds();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    {
#pragma omp master
        team = omp_get_num_threads();
        sum += fn(iters, a, b);
    }
#else
    (void)threads;
    sum = fn(iters, a, b);
#endif
    double dt = now_seconds() - t0;
    fma_peak_sink = sum;
    double flops = (double)team * (double)iters * 12.0 * (double)lanes * 2.0;
    return dt > 0 ? flops / dt : 0.0;
}

/* The float32 peak in GFLOP/s of `threads` threads (at most the OpenMP runtime's; one in a serial
 * build), measured for about `seconds` in total: the best of three timed runs after a warm-up that
 * wakes the threads and lets the clock settle. An FMA counts as 2 flops. */
double myelin_fma_peak_gflops(int threads, double seconds)
{
    chains_fn fn = myelin_fma_chains_baseline;
    int lanes = BASE_LANES;
#ifdef FMA_PEAK_X86
    if (myelin_isa_supported(MYELIN_ISA_AVX512)) {
        fn = myelin_fma_chains_avx512;
        lanes = 16;
    } else if (myelin_isa_supported(MYELIN_ISA_AVX2)) {
        fn = myelin_fma_chains_avx2;
        lanes = 8;
    }
#endif
    if (threads < 1) threads = 1;
    if (!(seconds > 0.0)) seconds = 0.2; /* also catches NaN */
    /* a and b come through a volatile, so nothing about the chains is known at compile time. */
    volatile float va = 0.99999f, vb = 1e-3f;
    const float a = va, b = vb;

    /* Calibrate: double the rounds until one single-thread run takes a millisecond. */
    int64_t iters = 1024;
    double rate = 0.0;
    for (;;) {
        double t0 = now_seconds();
        fma_peak_sink = fn(iters, a, b);
        double dt = now_seconds() - t0;
        if (dt >= 1e-3 || iters >= ((int64_t)1 << 40)) {
            rate = (double)iters / (dt > 0 ? dt : 1e-9);
            break;
        }
        iters *= 2;
    }
    /* A quarter of the time warms up the team, then three timed runs share the rest. */
    int64_t warm = (int64_t)(rate * seconds * 0.25) + 1;
    int64_t timed = (int64_t)(rate * seconds * 0.25) + 1;
    run_team(fn, lanes, threads, warm, a, b);
    double best = 0.0;
    for (int r = 0; r < 3; r++) {
        double f = run_team(fn, lanes, threads, timed, a, b);
        if (f > best) best = f;
    }
    return best * 1e-9;
}
