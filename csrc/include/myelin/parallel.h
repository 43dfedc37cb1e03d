/* The one place that touches omp.h. Every kernel includes this instead of <omp.h>, so a compiler
 * without OpenMP builds a working serial library: the pragmas are ignored and these helpers
 * answer as a single thread would. */
#ifndef MYELIN_PARALLEL_H
#define MYELIN_PARALLEL_H

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
static inline int myelin_thread_id(void) { return omp_get_thread_num(); }
#else
static inline int myelin_thread_id(void) { return 0; }
#endif

/* Reductions are cut into chunks of this many elements, whatever the thread count, and the
 * chunks' partial results are combined in chunk order: results never depend on threads. */
#define MYELIN_CHUNK 16384

/* Threads worth using for `work` units when one thread should get at least `grain` of them:
 * between 1 and myelin_get_num_threads(). Tiny work runs on the calling thread alone. Every
 * kernel calls it on the calling thread before it runs, so it also brings that thread's
 * floating-point mode in line with myelin_set_flush_denormal. */
int myelin_threads_for(double work, double grain);

/* Caps the threads myelin_threads_for gives on the calling thread at `cap` (0: no cap) until the
 * next call, and returns the previous cap: a caller that knows more about a sequence of kernels
 * than each kernel does (a chain of layers, see myelin_chain_threads) sizes them together. */
int myelin_set_team_cap(int cap);

/* Called by the master thread right after the parallel region that myelin_threads_for sized
 * (with the team's thread count): a region that took far longer than its work explains turns
 * on the contention backoff (dispatch.c). */
void myelin_region_exit(int nt);
/* The backoff by hand, for tests: small work on one thread for `seconds` (0 ends it; a negative
 * value ends it and turns it off until the next call). */
void myelin_backoff_set(double seconds);
/* Seconds left of the backoff (0 when small work may use every thread). */
double myelin_backoff_remaining(void);

/* Flush-to-zero mode (FTZ and DAZ bits of MXCSR on x86) that the kernels run with: 0 or 1. */
extern int myelin_flush_denormal_mode;
/* Sets this thread's mode to myelin_flush_denormal_mode if it differs (one MXCSR read). */
void myelin_fpenv_sync_slow(void);
/* Parallel regions entered so far (a count for tests of the thread-count decisions). */
extern int64_t myelin_parallel_regions;

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define MYELIN_MXCSR_FLUSH 0x8040u /* FTZ (bit 15) | DAZ (bit 6) */
static inline void myelin_fpenv_sync(void)
{
    const unsigned want = __atomic_load_n(&myelin_flush_denormal_mode, __ATOMIC_RELAXED) ? MYELIN_MXCSR_FLUSH : 0u;
    if ((_mm_getcsr() & MYELIN_MXCSR_FLUSH) != want) myelin_fpenv_sync_slow();
}
#else
static inline void myelin_fpenv_sync(void) {}
#endif

/* At the start of a parallel region, in every thread of the team (the master too): applies
 * the flush-to-zero mode; the master also counts the region. */
static inline void myelin_region_enter(void)
{
    myelin_fpenv_sync();
    if (myelin_thread_id() == 0) __atomic_fetch_add(&myelin_parallel_regions, 1, __ATOMIC_RELAXED);
}

/* for (int64_t VAR = 0; VAR < N; VAR++) { ... } on `nt` threads (a variable of that name in the
 * caller), statically scheduled. One thread runs the loop directly: entering an OpenMP region
 * costs about 0.3 us even when its if() clause is false, which is most of a tiny kernel call. */
#ifdef _OPENMP
#define MYELIN_PARALLEL_FOR(VAR, N, ...)                                                         \
    do {                                                                                          \
        if (nt > 1) {                                                                             \
            _Pragma("omp parallel num_threads(nt)")                                               \
            {                                                                                     \
                myelin_region_enter();                                                            \
                _Pragma("omp for schedule(static)")                                               \
                for (int64_t VAR = 0; VAR < (N); VAR++) { __VA_ARGS__ }                           \
            }                                                                                     \
            myelin_region_exit(nt);                                                               \
        } else {                                                                                  \
            for (int64_t VAR = 0; VAR < (N); VAR++) { __VA_ARGS__ }                               \
        }                                                                                         \
    } while (0)
#else
#define MYELIN_PARALLEL_FOR(VAR, N, ...)                                                         \
    do {                                                                                          \
        for (int64_t VAR = 0; VAR < (N); VAR++) { __VA_ARGS__ }                                   \
    } while (0)
#endif

/* The entries the bindings call (declared here with the state they control). */
/* Turns the flush-to-zero mode on (1) or off (0) for every thread that runs a kernel from now
 * on, the calling thread at once; 1 if the CPU has the mode (x86 SSE), 0 (and no change) if not. */
int myelin_set_flush_denormal(int on);
int myelin_get_flush_denormal(void);
int64_t myelin_parallel_region_count(void);
/* Threads a GEMM of (M, K) @ (K, N) would run on now (f64: float64, else float32). */
int myelin_gemm_threads(int64_t M, int64_t N, int64_t K, int f64);
/* The thread cap for one pass of a chain of layers whose products add up to `flops` (float32
 * flops; float64 ones count double): 1 when the pass is too small to gain from sharing, else 0
 * (no cap). For myelin_set_team_cap around the pass. */
int myelin_chain_threads(double flops);
/* Threads an elementwise-kind op of `work` cost units would run on now (ops.c's grain). */
int myelin_ops_threads(double work);
/* The most threads a kernel runs on, however many are asked for: myelin_threads_per_cpu() (4)
 * per CPU of the machine (os.cpu_count()); myelin_set_num_threads clamps to it. */
int myelin_max_threads(void);
int myelin_threads_per_cpu(void);
/* Starts n - 1 threads at once and joins them, and returns how many of n threads could run
 * (n when all started; fewer when thread creation failed: out of address space, a process
 * limit). Teams are capped at that until the next call; a kernel about to run a team larger
 * than any tried so far makes the same check first (dispatch.c), so that a failed thread
 * creation means fewer threads, not libgomp ending the process. */
int myelin_check_threads(int n);

#endif /* MYELIN_PARALLEL_H */
