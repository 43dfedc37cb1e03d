/* csrc/ops public entries: activations, softmax, losses, reductions, optimizer updates.
 * Each call looks up the inner-loop table of the current ISA (ops_table.h), picks its thread
 * count with myelin_threads_for, splits independent outputs between threads, and cuts every
 * reduction into fixed chunks by data whose partial sums are added in chunk order. */
#include <math.h>
#include <stdlib.h>

#include "myelin/kernels.h"
#include "myelin/parallel.h"
#include "ops/ops_internal.h"
#include "ops/ops_table.h"

/* Work units one thread should get at least: about 3-4 us of work (a unit measured 0.085-0.13 ns
 * on one Zen 4 core: relu, adam and softmax at 2^16-2^20 elements), above the cost of waking a
 * thread team on a quiet machine; on cores shared with other programs the contention backoff
 * (dispatch.c) keeps small work on one thread. A unit is one cheap element operation (one load,
 * op, store). */
#define OPS_GRAIN 32768.0
/* Cost in units of an element needing an exp (sigmoid, tanh, softmax). */
#define OPS_EXP_COST 8.0
/* Outputs at least this large (half the 32 MiB L3 of the target machine) are written with
 * streaming stores by act_forward: they would not stay in the cache anyway. */
#define OPS_STREAM_BYTES (16.0 * 1024 * 1024)
/* Partial sums kept on the stack; more chunks than this use malloc. */
#define OPS_STACK_PARTIALS 256

static const myelin_ops_table *ops_table(void)
{
#ifdef MYELIN_X86
    switch (myelin_current_isa()) {
    case MYELIN_ISA_AVX512:
        return &myelin_ops_avx512;
    case MYELIN_ISA_AVX2:
        return &myelin_ops_avx2;
    default:
        break;
    }
#endif
    return &myelin_ops_baseline;
}

static inline int64_t ops_nchunks(int64_t n, int64_t chunk) { return n <= 0 ? 0 : (n + chunk - 1) / chunk; }
static inline int64_t ops_min(int64_t a, int64_t b) { return a < b ? a : b; }

static double ops_act_cost(int act)
{
    return act == MYELIN_ACT_SIGMOID || act == MYELIN_ACT_TANH ? OPS_EXP_COST : 1.0;
}

/* Room for nc partial sums: the stack buffer, or malloc (NULL if that fails: the caller then
 * adds the chunks serially, in the same order, so the result is the same). */
static double *ops_partials(double *stack, int64_t nc)
{
    if (nc <= OPS_STACK_PARTIALS) return stack;
    return malloc((size_t)nc * sizeof(double));
}

/* Sum of fn(c) over chunks c = 0..nc-1, evaluated in parallel and added in chunk order.
 * The statement list is expanded inside the loop with `c` and must yield `part_c`. */
#define OPS_REDUCE(total, nc, work, CHUNK_EXPR)                                                  \
    do {                                                                                          \
        double ops_stack_[OPS_STACK_PARTIALS];                                                    \
        double *ops_part_ = ops_partials(ops_stack_, (nc));                                       \
        int ops_nt_ = (int)ops_min(myelin_threads_for((work), OPS_GRAIN), (nc));                  \
        if (!ops_part_ || ops_nt_ <= 1) { /* same sums in the same order, no OpenMP region */    \
            for (int64_t c = 0; c < (nc); c++) (total) += (CHUNK_EXPR);                           \
        } else {                                                                                  \
            _Pragma("omp parallel num_threads(ops_nt_)")                                          \
            {                                                                                     \
                myelin_region_enter();                                                            \
                _Pragma("omp for schedule(static)")                                               \
                for (int64_t c = 0; c < (nc); c++) ops_part_[c] = (CHUNK_EXPR);                   \
            }                                                                                     \
            myelin_region_exit(ops_nt_);                                                          \
            for (int64_t c = 0; c < (nc); c++) (total) += ops_part_[c];                           \
            if (ops_part_ != ops_stack_) free(ops_part_);                                         \
        }                                                                                         \
    } while (0)

int myelin_ops_threads(double work) { return myelin_threads_for(work, OPS_GRAIN); }

#define T float
#define S f32
#include "ops/ops_api_impl.h"
#undef T
#undef S

#define T double
#define S f64
#include "ops/ops_api_impl.h"
#undef T
#undef S
