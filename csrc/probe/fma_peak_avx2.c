/* The avx2 chains of the peak probe (fma_peak.c): 12 independent FMA chains of 8 floats. */
#include <immintrin.h>
#include <stdint.h>

float myelin_fma_chains_avx2(int64_t iters, float a, float b);

float myelin_fma_chains_avx2(int64_t iters, float a, float b)
{
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    /* distinct starting values, so no two chains are the same computation */
    __m256 c0 = _mm256_set1_ps(b), c1 = _mm256_set1_ps(2 * b), c2 = _mm256_set1_ps(3 * b);
    __m256 c3 = _mm256_set1_ps(4 * b), c4 = _mm256_set1_ps(5 * b), c5 = _mm256_set1_ps(6 * b);
    __m256 c6 = _mm256_set1_ps(7 * b), c7 = _mm256_set1_ps(8 * b), c8 = _mm256_set1_ps(9 * b);
    __m256 c9 = _mm256_set1_ps(10 * b), c10 = _mm256_set1_ps(11 * b), c11 = _mm256_set1_ps(12 * b);
    for (int64_t it = 0; it < iters; it++) {
        c0 = _mm256_fmadd_ps(c0, va, vb);
        c1 = _mm256_fmadd_ps(c1, va, vb);
        c2 = _mm256_fmadd_ps(c2, va, vb);
        c3 = _mm256_fmadd_ps(c3, va, vb);
        c4 = _mm256_fmadd_ps(c4, va, vb);
        c5 = _mm256_fmadd_ps(c5, va, vb);
        c6 = _mm256_fmadd_ps(c6, va, vb);
        c7 = _mm256_fmadd_ps(c7, va, vb);
        c8 = _mm256_fmadd_ps(c8, va, vb);
        c9 = _mm256_fmadd_ps(c9, va, vb);
        c10 = _mm256_fmadd_ps(c10, va, vb);
        c11 = _mm256_fmadd_ps(c11, va, vb);
    }
    __m256 s0 = _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3));
    __m256 s1 = _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7));
    __m256 s2 = _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11));
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(s0, _mm256_add_ps(s1, s2)));
    float total = 0.0f;
    for (int i = 0; i < 8; i++) total += lanes[i];
    return total;
}
