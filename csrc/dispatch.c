/* Run-time choice of the instruction-set path, and the thread count.
 * The path is picked once at import from cpuid (through gcc's __builtin_cpu_supports, which also
 * checks that the OS saves the wide registers); MYELIN_CPU, read by the Python side, may force one. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <unistd.h>
#define MYELIN_POSIX 1
#endif

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

/* ---------------------------------------------------------------- thread counts
 *
 * However it is asked for (set_num_threads, OMP_NUM_THREADS, threadpoolctl), a kernel runs on at
 * most MYELIN_THREADS_PER_CPU threads per CPU of the machine: more only add switching, and each
 * costs a stack (8 MiB of address space by default).
 *
 * libgomp cannot fail gracefully: when it cannot create a thread for a team (no address space
 * left under RLIMIT_AS, a process limit) it prints "Thread creation failed" and exits the
 * process, in its dynamic mode too (omp_set_dynamic only sizes teams by the load average). Each
 * calling thread has its own pool, which libgomp resizes to every team that thread leads: the
 * threads a smaller team does not need exit, and a larger team creates new ones. So before a
 * team larger than its pool, right before it, the missing threads are tried here: started
 * together, then joined, with the default attributes as libgomp's own (unless OMP_STACKSIZE is
 * set); their stacks go to glibc's cache for libgomp to reuse, or back to the free address space.
 * When only some start, teams are capped at what did (get_num_threads says so) until the next
 * myelin_check_threads. Another OpenMP user resizing the same thread's pool goes unseen. */
#define MYELIN_THREADS_PER_CPU 4

static int max_threads_cached;        /* myelin_max_threads(), 0 until first computed */
static int threads_ceiling = INT_MAX; /* teams could not be larger when last tried */
static _Thread_local int pool_team = 1; /* the last team this thread led: libgomp's pool size */

static int machine_cpus(void)
{
    long n = 1;
#if defined(MYELIN_POSIX) && defined(_SC_NPROCESSORS_ONLN)
    n = sysconf(_SC_NPROCESSORS_ONLN); /* os.cpu_count() */
#elif defined(_OPENMP)
    n = omp_get_num_procs();
#endif
    const long most = INT_MAX / MYELIN_THREADS_PER_CPU;
    return n < 1 ? 1 : (n > most ? (int)most : (int)n);
}

int myelin_max_threads(void)
{
    int m = __atomic_load_n(&max_threads_cached, __ATOMIC_RELAXED);
    if (m == 0) {
        m = MYELIN_THREADS_PER_CPU * machine_cpus();
        __atomic_store_n(&max_threads_cached, m, __ATOMIC_RELAXED);
    }
    return m;
}

int myelin_threads_per_cpu(void) { return MYELIN_THREADS_PER_CPU; }

#if defined(_OPENMP) && defined(MYELIN_POSIX)
static void *probe_thread(void *arg) { return arg; }

/* Starts k threads, all alive together as a team's are, then joins them; returns how many
 * started. */
static int probe_threads(int k)
{
    if (k <= 0) return 0;
    pthread_t *ids = (pthread_t *)malloc((size_t)k * sizeof *ids);
    if (ids == NULL) return 0;
    int started = 0;
    while (started < k && pthread_create(&ids[started], NULL, probe_thread, NULL) == 0) started++;
    for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
    free(ids);
    return started;
}
#endif

/* The size, at most nt, of a team this thread can start now (nt > pool_team). A probe proves
 * nothing for later: the stacks it frees beyond glibc's cache may be gone by then. */
static int startable_team(int nt)
{
#if defined(_OPENMP) && defined(MYELIN_POSIX)
    const int got = pool_team + probe_threads(nt - pool_team);
    if (got < nt) {
        __atomic_store_n(&threads_ceiling, got, __ATOMIC_RELAXED);
        nt = got;
    }
#endif
    return nt;
}

int myelin_check_threads(int n)
{
    if (n < 1) n = 1;
    __atomic_store_n(&threads_ceiling, INT_MAX, __ATOMIC_RELAXED);
    return n > pool_team ? startable_team(n) : n;
}

void myelin_set_num_threads(int n)
{
    __atomic_store_n(&max_threads_cached, 0, __ATOMIC_RELAXED); /* recounted: CPUs may change */
    const int max = myelin_max_threads();
    if (n < 1) n = 1;
    if (n > max) n = max;
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
    const int max = myelin_max_threads();
    const int ceiling = __atomic_load_n(&threads_ceiling, __ATOMIC_RELAXED);
    if (n > max) n = max;
    if (n > ceiling) n = ceiling;
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

/* ---------------------------------------------------------------- contention backoff
 *
 * A parallel region ends when every thread of its team is done. When something else keeps the
 * cores busy (other programs, or another thread pool of this process still spinning after its
 * last call, as OpenBLAS's does for milliseconds), a worker waits for a core, and a region that
 * should take 5 us takes 2-8 ms: small products on two threads then run hundreds of times slower
 * than on one. Each region's master times it; a region that overran what its work explains by
 * MYELIN_STALL_NS means the cores are shared, and for a while after it work under
 * MYELIN_BACKOFF_GRAINS grains runs on the calling thread (larger work still splits: a stall
 * costs it proportionally little). The while starts at 20 ms and doubles with every stall that
 * follows one, up to 2 s, so that persistent contention costs one stalled region every 2 s; a
 * region that runs clean sets it back to 20 ms, so a machine that has become quiet gets both
 * cores back at once. Only the regions of small work, the ones the backoff governs, judge it:
 * a large region's time is mostly its own work, which the memory traffic of other programs can
 * stretch well past what a grain explains. In a benchmark run on a shared VM, 16M-element ReLU
 * regions (512 grains, 3.3 ms when quiet) took 7-11 ms four times in a row; taken for stalls,
 * they raised the backoff to 160 ms, a time in which small products run on one thread. The
 * thread count never changes results (work is cut by data, not by threads), only the time. */
#define MYELIN_GRAIN_NS 5000.0         /* a grain is at most ~5 us of one thread's work */
#define MYELIN_STALL_NS 1000000        /* 1 ms beyond what the work explains: a thread waited */
#define MYELIN_BACKOFF_MIN_NS 20000000   /* one thread for small work for 20 ms after a stall, */
#define MYELIN_BACKOFF_MAX_NS 2000000000 /* ... doubling with each further stall up to 2 s */
#define MYELIN_BACKOFF_GRAINS 512.0    /* work of this many grains or more is always shared */

static int64_t backoff_until_ns;                      /* CLOCK_MONOTONIC; accessed atomically */
static int64_t backoff_len_ns = MYELIN_BACKOFF_MIN_NS; /* the next backoff's length */
static int backoff_off;                               /* 1: never back off (tests) */
static _Thread_local int64_t region_t0_ns;
static _Thread_local double region_grains;
static _Thread_local int team_cap; /* myelin_set_team_cap's, on this thread; 0: none */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int myelin_threads_for(double work, double grain)
{
    myelin_fpenv_sync(); /* every kernel passes here on its calling thread first */
    int max = myelin_get_num_threads();
    if (team_cap > 0 && team_cap < max) max = team_cap;
    if (max <= 1 || grain <= 0 || work < 2 * grain) return 1;
    double n = work / grain;
    const int64_t t = now_ns();
    if (n < MYELIN_BACKOFF_GRAINS && t < __atomic_load_n(&backoff_until_ns, __ATOMIC_RELAXED))
        return 1;
    int nt = n >= max ? max : (int)n;
    int64_t t0 = t;
    if (nt > pool_team) {
        nt = startable_team(nt); /* a team larger than this thread's pool: threads tried first */
        t0 = now_ns();
    }
    region_t0_ns = t0; /* the region the caller is about to run, timed by myelin_region_exit */
    region_grains = n;
    return nt;
}

int myelin_set_team_cap(int cap)
{
    const int prev = team_cap;
    team_cap = cap > 0 ? cap : 0;
    return prev;
}

void myelin_region_exit(int nt)
{
    pool_team = nt > 1 ? nt : 1; /* libgomp's pool for this thread now holds the team */
    if (nt <= 1) return; /* a team of one (myelin_threads_for said 1): nothing was timed */
    if (region_grains >= MYELIN_BACKOFF_GRAINS) return; /* large work: not a judge (above) */
    const int64_t t = now_ns();
    const double expected = region_grains * MYELIN_GRAIN_NS / (nt > 0 ? nt : 1);
    const int64_t len = __atomic_load_n(&backoff_len_ns, __ATOMIC_RELAXED);
    if ((double)(t - region_t0_ns) > MYELIN_STALL_NS + 4.0 * expected) {
        if (__atomic_load_n(&backoff_off, __ATOMIC_RELAXED)) return;
        __atomic_store_n(&backoff_until_ns, t + len, __ATOMIC_RELAXED);
        const int64_t next = 2 * len;
        __atomic_store_n(&backoff_len_ns, next < MYELIN_BACKOFF_MAX_NS ? next : MYELIN_BACKOFF_MAX_NS,
                         __ATOMIC_RELAXED);
    } else if (len != MYELIN_BACKOFF_MIN_NS) {
        __atomic_store_n(&backoff_len_ns, (int64_t)MYELIN_BACKOFF_MIN_NS, __ATOMIC_RELAXED);
    }
}

void myelin_backoff_set(double seconds)
{
    const int64_t until = seconds > 0 ? now_ns() + (int64_t)(seconds * 1e9) : 0;
    __atomic_store_n(&backoff_off, seconds < 0, __ATOMIC_RELAXED);
    __atomic_store_n(&backoff_len_ns, (int64_t)MYELIN_BACKOFF_MIN_NS, __ATOMIC_RELAXED);
    __atomic_store_n(&backoff_until_ns, until, __ATOMIC_RELAXED);
}

double myelin_backoff_remaining(void)
{
    const int64_t left = __atomic_load_n(&backoff_until_ns, __ATOMIC_RELAXED) - now_ns();
    return left > 0 ? (double)left * 1e-9 : 0.0;
}
