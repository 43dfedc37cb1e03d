/* Run-time choice of the instruction-set path, and the thread count.
 * The path is picked once at import from cpuid (through gcc's __builtin_cpu_supports, which also
 * checks that the OS saves the wide registers); MYELIN_CPU, read by the Python side, may force one. */
#include <string.h>

#include "myelin/kernels.h"
#include "myelin/parallel.h"

static int current_isa = MYELIN_ISA_BASELINE;
static int user_threads = 0; /* 0: follow the OpenMP runtime (OMP_NUM_THREADS, threadpoolctl) */

static const char *isa_names[] = {"baseline", "avx2", "avx512"};

int myelin_isa_supported(int isa)
{
    switch (isa) {
    case MYELIN_ISA_BASELINE:
        return 1;
#if defined(__x86_64__) || defined(_M_X64)
    case MYELIN_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case MYELIN_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               myelin_isa_supported(MYELIN_ISA_AVX2);
#endif
    default:
        return 0;
    }
}

const char *myelin_isa_name(int isa)
{
    if (isa < 0 || isa > MYELIN_ISA_AVX512) return "unknown";
    return isa_names[isa];
}

int myelin_current_isa(void) { return current_isa; }

int myelin_select_isa(const char *requested)
{
    if (requested == NULL || requested[0] == '\0') {
        int best = MYELIN_ISA_BASELINE;
        for (int isa = MYELIN_ISA_AVX512; isa > MYELIN_ISA_BASELINE; isa--) {
            if (myelin_isa_supported(isa)) { best = isa; break; }
        }
        current_isa = best;
        return 0;
    }
    for (int isa = MYELIN_ISA_BASELINE; isa <= MYELIN_ISA_AVX512; isa++) {
        if (strcmp(requested, isa_names[isa]) == 0) {
            if (!myelin_isa_supported(isa)) return -2;
            current_isa = isa;
            return 0;
        }
    }
    return -1;
}

int myelin_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int myelin_openmp_version(void)
{
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

void myelin_set_num_threads(int n)
{
    if (n < 1) n = 1;
    user_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int myelin_get_num_threads(void)
{
#ifdef _OPENMP
    /* omp_get_max_threads() carries OMP_NUM_THREADS and threadpoolctl's limit for this thread. */
    int n = omp_get_max_threads();
    if (user_threads > 0 && user_threads < n) n = user_threads;
    return n < 1 ? 1 : n;
#else
    return 1;
#endif
}

int myelin_flush_denormal_mode = 0;
int64_t myelin_parallel_regions = 0;

void myelin_fpenv_sync_slow(void)
{
#if defined(__SSE__) || defined(__x86_64__)
    const unsigned csr = _mm_getcsr() & ~MYELIN_MXCSR_FLUSH;
    _mm_setcsr(csr | (__atomic_load_n(&myelin_flush_denormal_mode, __ATOMIC_RELAXED) ? MYELIN_MXCSR_FLUSH : 0u));
#endif
}

int myelin_set_flush_denormal(int on)
{
#if defined(__SSE__) || defined(__x86_64__)
    /* read by every thread at its next kernel or parallel region; a plain int is enough, as
     * the worker threads see it after the region's fork, which is a synchronisation point */
    __atomic_store_n(&myelin_flush_denormal_mode, on ? 1 : 0, __ATOMIC_RELAXED);
    myelin_fpenv_sync();
    return 1;
#else
    (void)on;
    return 0;
#endif
}

int myelin_get_flush_denormal(void)
{
    return __atomic_load_n(&myelin_flush_denormal_mode, __ATOMIC_RELAXED);
}

int64_t myelin_parallel_region_count(void)
{
    return __atomic_load_n(&myelin_parallel_regions, __ATOMIC_RELAXED);
}

int myelin_threads_for(double work, double grain)
{
    myelin_fpenv_sync(); /* every kernel passes here on its calling thread first */
    int max = myelin_get_num_threads();
    if (max <= 1 || grain <= 0 || work < 2 * grain) return 1;
    double n = work / grain;
    return n >= max ? max : (int)n;
}
