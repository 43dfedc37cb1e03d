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
 * between 1 and myelin_get_num_threads(). Tiny work runs on the calling thread alone. */
int myelin_threads_for(double work, double grain);

/* for (int64_t VAR = 0; VAR < N; VAR++) { ... } on `nt` threads (a variable of that name in the
 * caller), statically scheduled. One thread runs the loop directly: entering an OpenMP region
 * costs about 0.3 us even when its if() clause is false, which is most of a tiny kernel call. */
#ifdef _OPENMP
#define MYELIN_PARALLEL_FOR(VAR, N, ...)                                                         \
    do {                                                                                          \
        if (nt > 1) {                                                                             \
            _Pragma("omp parallel for num_threads(nt) schedule(static)")                          \
            for (int64_t VAR = 0; VAR < (N); VAR++) { __VA_ARGS__ }                               \
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

#endif /* MYELIN_PARALLEL_H */
