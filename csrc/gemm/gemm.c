/* GEMM: C = act(A @ B + beta*C + bias), BLIS-style.
 * A is (M, K) and B is (K, N) with any element strides; C is (M, N) row-major with ldc.
 *
 * The loops (BLIS's, written for row-major C, whose vector dimension is N):
 *   for each macro-tile of C (mc x nc)               <- OpenMP: tiles are independent outputs
 *     for each block of K (kc), in order             <- one thread: the reduction is never split
 *       pack the B block (kc x nc) into NR-column micro-panels            -> lives in L2
 *       for each MR-row micro-panel of A: pack it (MR x kc)               -> lives in L1
 *         for each B micro-panel: micro-kernel C[MR, NR] (+)= A_panel @ B_panel
 *         last K block only: epilogue on the finished rows (+ bias, activation)
 * Packing reads through the strides, so transposes, negative and zero strides need no copy by
 * the caller; the first K block applies beta (beta == 0 never reads C), the later ones add.
 * Contiguous B rows are packed a few rows at a time across the whole block (B read in row
 * order: +4% at 1024^3, +7% at 2048^3 against panel by panel); contiguous rows of a panel
 * (A rows, or B columns of x @ w.T) go through a transposing pack, in registers with AVX-512.
 * A last micro-panel at most half as wide as NR runs the half-width kernels (784 columns =
 * 24.5 panels: +2% for the MLP layer products).
 *
 * Block sizes, from this CPU's caches (Zen 4: 32 KiB L1d, 1 MiB L2 per core, 32 MiB L3 shared):
 *   kc: the A micro-panel is reused against every B micro-panel of the block, so it should stay
 *       in L1 beside the B panel streaming through: kc = 256, so 1 KiB per float32 row (a 14 KiB
 *       panel for the 14-row AVX-512 kernel, under half of L1) and 2 KiB per float64 row (28 KiB).
 *       float64 keeps the same kc rather than the same bytes: its micro-kernel does half the
 *       multiply-adds per C tile load/store, and halving kc to 128 cost about 5-15% at
 *       1024-2048 (measured: 76-92 -> 97 GFLOP/s at 1024, 93 -> 95-99 at 2048, 2 threads).
 *   nc: the B block is reread once per A micro-panel: kc*nc*esz = 1 MiB at most (nc = 1024 for
 *       float32, 512 for float64), the size of L2. Half of L2 (nc = 512) was the textbook
 *       choice, but it cut the MLP products into several tiles per thread, each repacking its A
 *       rows (and B columns) again; wider tiles measured faster (2 threads, against nc = 512):
 *       g.T @ x at 512x128x784 (10 tiles of 256x160 -> 2 of 256x800) 115-160 -> 180-195
 *       GFLOP/s, 2048x256x2048 (A transposed) +5-10%, x @ w.T at 256x2048x2048 +5-10%;
 *       square 512-2048 unchanged within noise. Half as many bytes when B is read in place.
 *   mc: A micro-panels are packed just before use, so the A block needs no cache of its own;
 *       mc only sets how often a B block is repacked (once per tile): up to 960 rows (about 1%
 *       of the multiply-adds), then cut so the tiles share out evenly between the threads.
 * K blocks depend on K alone (equal blocks of at most kc), and each element of C is one FMA chain
 * per block in the same order whatever the tiling: results are bitwise the same for any
 * number of threads.
 *
 * Operands are read in place, unpacked, where the layout allows it (the micro-kernels read the
 * same values in the same order, so the result is bitwise that of the packed path):
 *   B, when its rows are contiguous, for M <= 128, or M <= 256 or a single K block when its
 *     rows are not a multiple of 4 KiB apart (only a last, partial micro-panel is packed, into
 *     a stack buffer);
 *   A, through the direct-A micro-kernels, when its rows are contiguous, M <= 512 and the rows
 *     are not a multiple of 4 KiB apart.
 * A 64^3 product then does no copying and no malloc. Batches of small products run in parallel
 * over the batch. Tiles: the split (rows of A, columns of B) with the least estimated time for
 * the busiest thread, counting multiply-adds (a half-width last panel at half price), packing
 * and first reads of operands read in place.
 * Parallel regions: one per call, tiles handed out dynamically, a single barrier at the end.
 *
 * Tried and not kept (each build run alternately with the kept code on the 2-core Zen 4):
 *   - x @ w.T at 256x2048x2048, where the transposing packs take ~9% of the samples (B's ~7%):
 *     B packed one micro-panel at a time, outermost, against an A block packed once per K
 *     block, with the next panel's source prefetched into L2 during the current one's
 *     micro-kernels. The packing share fell to ~4% but the time did not improve (one thread,
 *     medians of 8 runs: 20.8-21.6 ms against 20.8-21.1); with kc = 128 there, so that the B
 *     panel fits in L1, ~4% slower. nc = 512 or 768 in the usual order: no change. C^T = w x^T
 *     would not help: w becomes the A operand, whose panels need the same transposing pack.
 *   - Static tile assignment when there is one tile per thread; a static schedule for batched
 *     products (+2-4% on a quiet machine, but when one core is slowed a static split waits for
 *     its slow half, where the dynamic one rebalances); prefetching the second cache line of
 *     each C row in the AVX-512 micro-kernel; prefetching ahead in the AVX-512 transposing pack
 *     (also tried again for the x @ w.T packs above, one and two row groups ahead: no change).
 *   - Prefetching the C tile late in the micro-kernel's K loop (both lines of every row, 16, 32
 *     or 64 steps before the end), so that the loads of C after it (3-5% of the micro-kernel's
 *     samples at 1024^3, where rows 4 KiB apart share L1 sets) hit L1: one thread at 1024^3,
 *     the four builds alternated, all within 19.9-20.8 ms.
 *   - More, smaller tiles, so that a thread the host slows hands work to the other: 256^3 in 4
 *     or 6 row tiles instead of 2 (nothing is packed there) was 0.9 and 1.4 us slower over 285
 *     alternated runs of 2001 products (median 147.8 us); the five products of a
 *     1024-2048-2048-10 step with nc = 256 (8 column tiles) took 1.7 ms more (against 41.2 ms)
 *     on a quiet machine; a process busy 10% of the time on one core slowed them by 3.3 ms
 *     against 3.8 for the kept tiles: repacking A in every tile costs more than the balance wins.
 */
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "myelin/kernels.h"
#include "myelin/parallel.h"
#include "gemm/gemm_internal.h"
#include "ops/ops_internal.h"

/* Blocking and threading constants (reasoning above); -D on the command line overrides them for
 * tuning experiments. */
#ifndef GEMM_KC
#define GEMM_KC 256                  /* elements of one packed A row within a K block */
#endif
#ifndef GEMM_NC
#define GEMM_NC 1024                 /* columns of a float32 B block (float64: half as many) */
#endif
#ifndef GEMM_MC
#define GEMM_MC 960                  /* rows of a macro-tile before load balancing */
#endif
#ifndef GEMM_DIRECT_B_MAX_M
#define GEMM_DIRECT_B_MAX_M 128      /* read B rows in place when M is at most this, */
#endif
#ifndef GEMM_DIRECT_B_MAX_M2
#define GEMM_DIRECT_B_MAX_M2 256     /* ... or this (or K <= kc), rows not 4 KiB apart */
#endif
#ifndef GEMM_DIRECT_A_MAX_M
#define GEMM_DIRECT_A_MAX_M 512      /* read A rows in place when M is at most this */
#endif
#ifndef GEMM_BSTACK_BYTES
#define GEMM_BSTACK_BYTES 32768      /* B packing buffers up to this size live on the stack */
#endif
#ifndef GEMM_DIRECT_A_ALIAS
#define GEMM_DIRECT_A_ALIAS 4096     /* ... unless the row stride is a multiple of this (bytes) */
#endif
#ifndef GEMM_PACK_ROWS
#define GEMM_PACK_ROWS 8             /* rows of B copied together when packing contiguous rows */
#endif
/* Float32 flops one thread should get before a product is shared: about 2.5 us on one Zen 4
 * core, float64 flops counting double (half the rate). Waking the second thread costs a few us
 * on a quiet machine, and sharing from there on is what makes 64^3 and 128^3 products faster
 * than NumPy's. On cores shared with other programs, a region can wait a whole time slice for a
 * descheduled thread: the contention backoff (dispatch.c) then keeps small products on one
 * thread for a while (a 64-128-64-10 epoch at batch 32 took 1.5 s on 2 threads against 13 ms
 * on one under load without it). */
#ifndef GEMM_GRAIN
#define GEMM_GRAIN (1 << 18)
#endif

/* A pass of a chain of layers (nn.Sequential's fused Linear runs, forward or backward) under
 * this many grains runs on one thread, whatever each product's own size. Each layer hands its
 * output to the next, and the optimizer then rewrites the weights on one core: on two threads
 * every small product first pulls half its operands from the other core's cache. Measured on a
 * Zen 4 pair, a whole training step (forward, loss, backward, Adam) of a 64-128-64-10 MLP at
 * batch 32 (products of 4 and 6 grains per pass) took 47 us on one thread and 57 us on two,
 * while 784-64-10 and 64-256-128-10 (12 grains per pass) took 1.09-1.14x less on two. */
#ifndef GEMM_CHAIN_GRAINS
#define GEMM_CHAIN_GRAINS 8.0
#endif

/* A float64 flop takes twice the time of a float32 one (the vectors hold half as many). */
#define GEMM_FLOP_COST(T) ((double)sizeof(T) / sizeof(float))

/* OpenMP pragmas inside the per-dtype macro below; nothing at all in a serial build. */
#ifdef _OPENMP
#define GEMM_OMP(directive) _Pragma(#directive)
#else
#define GEMM_OMP(directive)
#endif

/* ---------------------------------------------------------------- plan, buffers (any dtype) */

struct gemm_problem {
    void *C;
    int64_t ldc;
    const void *A;
    int64_t rsa, csa;
    const void *B;
    int64_t rsb, csb;
    int64_t M, N, K;
    double beta;
    const void *bias;
    int act;
    double slope;
};

struct gemm_plan {
    int64_t kc;       /* K block */
    int64_t mcb, ncb; /* macro-tile size; the last tile in each direction may be smaller */
    int64_t mt, ntn;  /* tiles along M and N */
    int direct_a;     /* read A rows in place (direct-A kernels) instead of packing them */
    int direct_b;     /* read full-width B micro-panels in place */
    size_t b_elems;   /* B packing buffer size in elements (0: none needed) */
    int b_stack;      /* the buffer fits on the stack whatever the tiling (never malloc) */
};

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Packing one element, in multiply-adds of the micro-kernel: a copy of contiguous runs, a
 * transpose of contiguous rows (AVX-512 16x16 or SSE2 4x4: 0.5-0.7 cycles per element measured,
 * 16 multiply-adds per cycle), or a gather through two non-unit strides. An operand read in
 * place costs its first trip from L2 per tile and K block, more for A (MR rows, broadcast one
 * element at a time) than for B (whole vectors): 128^3 measured 3-5% faster in 64x128 tiles
 * (A rows split) than in 128x64. */
#ifndef GEMM_COST_DIRECT_A
#define GEMM_COST_DIRECT_A 2.0
#endif
#ifndef GEMM_COST_DIRECT_B
#define GEMM_COST_DIRECT_B 1.0
#endif
static double pack_cost(int64_t sr, int64_t sq)
{
    return sq == 1 ? 8.0 : sr == 1 ? 2.0 : 24.0;
}

/* Columns a tile w wide costs: a last partial panel of at most half the width runs the
 * half-width kernels. */
static int64_t tile_cols(int64_t w, int64_t nr)
{
    const int64_t r = w % nr;
    return w - r + (r == 0 ? 0 : 2 * r <= nr ? nr / 2 : nr);
}

/* Estimated time of the busiest thread when the mt x ntn tiles (mcb x ncb, smaller at the
 * ends) are handed out to whichever thread is free: its share of tiles at the average tile's
 * cost, one of them the largest. O(1), as this runs before every product, however small. */
static double tiles_cost(int64_t M, int64_t N, int64_t mcb, int64_t ncb, int64_t nr, int nt,
                         double cost_a, double cost_b)
{
    const int64_t mt = ceil_div(M, mcb), ntn = ceil_div(N, ncb), tiles = mt * ntn;
    const int64_t hl = M - (mt - 1) * mcb, wl = N - (ntn - 1) * ncb; /* last row / column */
#define TILE_WORK(h, w) ((double)(h) * (double)tile_cols(w, nr) + cost_a * (h) + cost_b * (w))
    const double full = TILE_WORK(mt > 1 ? mcb : hl, ntn > 1 ? ncb : wl); /* the largest */
    const double total = (double)((mt - 1) * (ntn - 1)) * full +
                         (double)(mt - 1) * TILE_WORK(mcb, wl) +
                         (double)(ntn - 1) * TILE_WORK(hl, ncb) + TILE_WORK(hl, wl);
#undef TILE_WORK
    return (double)(ceil_div(tiles, nt) - 1) * (total / (double)tiles) + full;
}

/* Tiles for nt threads: among a few splits of M (even) and N (multiples of nr), the one
 * with the least estimated time for the busiest thread (its tiles' multiply-adds and packing). */
static void gemm_make_plan(struct gemm_plan *pl, int64_t M, int64_t N, int64_t K, int mr, int nr,
                           size_t esz, int nt, int has_uka, int64_t rsa, int64_t csa,
                           int64_t rsb, int64_t csb)
{
    const int64_t kc_max = GEMM_KC;
    pl->kc = K > 0 ? ceil_div(K, ceil_div(K, kc_max)) : 1;
    /* B rows in place (no packing) when they are contiguous and the product is small or its
     * K is a single block: a packed B micro-panel streams from L2 without set conflicts, which
     * pays when the block is reread by many A micro-panels and over many K blocks (in place
     * measured 5-10% slower at 768^3-1536^3, 1-3% faster at 256^3 and 512x784x128). Never
     * with a row stride that is a multiple of 4 KiB with M large: those rows share the sets of
     * L1 and L2 (measured 10% slower at 256x2048x2048). */
    const int64_t ldb_bytes = (rsb < 0 ? -rsb : rsb) * (int64_t)esz;
    pl->direct_b = csb == 1 && (M <= GEMM_DIRECT_B_MAX_M ||
                                ((M <= GEMM_DIRECT_B_MAX_M2 || K <= kc_max) &&
                                 ldb_bytes % GEMM_DIRECT_A_ALIAS != 0));
    /* A rows in place, through the direct-A kernels: up to a few hundred rows (a packed panel
     * costs a transposing copy; in place, its 14 rows stay in L1 while the B micro-panels
     * stream past: measured 1-5% faster at 192^3-512^3 and 256x784x512, even at 1000^3), but
     * not when the row stride is a multiple of 4 KiB, which puts all MR rows in the same sets
     * of the 8-way L1 (4 KiB per way): measured 25% slower at 128x1024x1024. */
    const int64_t lda_bytes = (rsa < 0 ? -rsa : rsa) * (int64_t)esz;
    pl->direct_a = has_uka && csa == 1 && M <= GEMM_DIRECT_A_MAX_M &&
                   lda_bytes % GEMM_DIRECT_A_ALIAS != 0;
    const double cost_a = pl->direct_a ? GEMM_COST_DIRECT_A : pack_cost(rsa, csa);
    const double cost_b = pl->direct_b ? GEMM_COST_DIRECT_B : pack_cost(csb, rsb);

    /* packed B: up to 1 MiB (kc = 256: nc = 1024 float32, 512 float64). B read in place: the
     * block it rereads is rows ldb apart, so half of that (512 KiB: 512 columns at kc = 256,
     * 1024 at kc = 128), as g @ w at 128x512x784 measured 4-6% slower with 2 tiles of 64x800
     * than with 10 of 64x160 (whose B columns stay in L2) */
    const int64_t nc_max =
        pl->direct_b ? (int64_t)GEMM_NC * 2 * GEMM_KC / (pl->kc * (int64_t)esz) / nr * nr
                     : GEMM_NC * 4 / (int64_t)esz;
    const int64_t mt0 = ceil_div(M, GEMM_MC), ntn0 = ceil_div(N, nc_max);
    const int64_t mt_max = ceil_div(M, mr), ntn_max = ceil_div(N, nr);
    double best = -1;
    for (int64_t mt = mt0; mt <= min64(mt_max, mt0 + 2 * nt); mt++) {
        for (int64_t ntn = ntn0; ntn <= min64(ntn_max, ntn0 + 2 * nt); ntn++) {
            /* rows need not be a multiple of mr: the table has kernels for fewer rows */
            const int64_t mcb = round_up(ceil_div(M, mt), 2);
            const int64_t ncb = round_up(ceil_div(N, ntn), nr);
            const double cost = tiles_cost(M, N, mcb, ncb, nr, nt, cost_a, cost_b);
            if (best < 0 || cost < best) {
                best = cost;
                pl->mcb = mcb;
                pl->ncb = ncb;
            }
            if (nt == 1) break;
        }
        if (nt == 1) break;
    }
    pl->mt = ceil_div(M, pl->mcb);
    pl->ntn = ceil_div(N, pl->ncb);
    /* direct: only a last, partial panel is packed */
    pl->b_elems = (size_t)((pl->direct_b ? (N % nr ? nr : 0)
                                         : round_up(pl->ncb, nr)) * pl->kc);
    /* decided on the largest buffer any thread count could ask for, so that the fallback after
     * a failed malloc (the naive twin) is taken or not whatever the number of threads */
    const int64_t b_max = (pl->direct_b ? (N % nr ? nr : 0) : round_up(N, nr)) * pl->kc;
    pl->b_stack = (size_t)b_max * esz <= GEMM_BSTACK_BYTES;
}

/* Rows of the next A micro-panel when `rest` rows remain: MR, except that a last panel of
 * fewer than MR/2 rows is avoided by splitting the last MR + rest rows in two (128 = 8 x 14 +
 * 8 + 8 rather than 9 x 14 + 2): a short panel rereads the whole B block for few rows. */
static int64_t panel_rows(int64_t rest, int64_t MR)
{
    if (rest <= MR) return rest;
    if (rest < MR + MR / 2) return round_up(ceil_div(rest, 2), 2);
    return MR;
}

/* 64-byte aligned allocation, portable (no aligned_alloc / posix_memalign). NULL on failure. */
static void *gemm_alloc(size_t bytes)
{
    unsigned char *raw = malloc(bytes + 64 + sizeof(void *));
    if (raw == NULL) return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void gemm_free(void *p)
{
    if (p != NULL) free(((void **)p)[-1]);
}

/* ---------------------------------------------------------------- per-dtype code */

/* Transposing copy of one micro-panel whose rows are contiguous: dst[q*DW + r] = src[r*ld + q]
 * for r < R, q < kc. 4x4 (float) or 2x2 (double) register transposes where SSE2 exists. */
static void tpack_f32(float *restrict dst, int64_t DW, const float *src, int64_t ld, int64_t R,
                      int64_t kc)
{
    int64_t r = 0;
#if defined(__SSE2__)
    for (; r + 4 <= R; r += 4) {
        const float *s0 = src + r * ld, *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
        float *d = dst + r;
        int64_t q = 0;
        for (; q + 4 <= kc; q += 4) {
            __m128 x0 = _mm_loadu_ps(s0 + q), x1 = _mm_loadu_ps(s1 + q);
            __m128 x2 = _mm_loadu_ps(s2 + q), x3 = _mm_loadu_ps(s3 + q);
            _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
            _mm_storeu_ps(d + (q + 0) * DW, x0);
            _mm_storeu_ps(d + (q + 1) * DW, x1);
            _mm_storeu_ps(d + (q + 2) * DW, x2);
            _mm_storeu_ps(d + (q + 3) * DW, x3);
        }
        for (; q < kc; q++) {
            d[q * DW + 0] = s0[q];
            d[q * DW + 1] = s1[q];
            d[q * DW + 2] = s2[q];
            d[q * DW + 3] = s3[q];
        }
    }
#endif
    for (; r < R; r++) {
        const float *s = src + r * ld;
        for (int64_t q = 0; q < kc; q++) dst[q * DW + r] = s[q];
    }
}

static void tpack_f64(double *restrict dst, int64_t DW, const double *src, int64_t ld, int64_t R,
                      int64_t kc)
{
    int64_t r = 0;
#if defined(__SSE2__)
    for (; r + 2 <= R; r += 2) {
        const double *s0 = src + r * ld, *s1 = s0 + ld;
        double *d = dst + r;
        int64_t q = 0;
        for (; q + 2 <= kc; q += 2) {
            const __m128d x0 = _mm_loadu_pd(s0 + q), x1 = _mm_loadu_pd(s1 + q);
            _mm_storeu_pd(d + q * DW, _mm_unpacklo_pd(x0, x1));
            _mm_storeu_pd(d + (q + 1) * DW, _mm_unpackhi_pd(x0, x1));
        }
        for (; q < kc; q++) {
            d[q * DW + 0] = s0[q];
            d[q * DW + 1] = s1[q];
        }
    }
#endif
    for (; r < R; r++) {
        const double *s = src + r * ld;
        for (int64_t q = 0; q < kc; q++) dst[q * DW + r] = s[q];
    }
}

/* Straight copy of R contiguous elements per q, with a compile-time width for the usual tiles. */
#define COPY_ROWS(T, W)                                                                          \
    for (int64_t q = 0; q < kc; q++) memcpy(dst + q * (W), src + q * sq, (W) * sizeof(T))

#define DEFINE_PANEL_COPY(T, SFX)                                                                \
    static void cpack_##SFX(T *restrict dst, int64_t DW, const T *src, int64_t sq, int64_t R,    \
                            int64_t kc)                                                          \
    {                                                                                            \
        if (R == DW) {                                                                           \
            switch (DW) {                                                                        \
            case 32: COPY_ROWS(T, 32); return;                                                   \
            case 16: COPY_ROWS(T, 16); return;                                                   \
            case 14: COPY_ROWS(T, 14); return;                                                   \
            case 8: COPY_ROWS(T, 8); return;                                                     \
            case 6: COPY_ROWS(T, 6); return;                                                     \
            case 4: COPY_ROWS(T, 4); return;                                                     \
            default: break;                                                                      \
            }                                                                                    \
        }                                                                                        \
        for (int64_t q = 0; q < kc; q++)                                                         \
            memcpy(dst + q * DW, src + q * sq, (size_t)R * sizeof(T));                           \
    }
DEFINE_PANEL_COPY(float, f32)
DEFINE_PANEL_COPY(double, f64)

/* rows x W elements from rows ld apart into one dense block (W the panel width): dst[q*W + j] =
 * src[q*ld + j]. A compile-time width for the widths the kernel tables use. */
#define COPY_W(T, W)                                                                             \
    for (int64_t q = 0; q < rows; q++) memcpy(dst + q * (W), src + q * ld, (W) * sizeof(T))

#define DEFINE_ROWS_COPY(T, SFX)                                                                 \
    static void copy_rows_##SFX(T *restrict dst, const T *src, int64_t ld, int64_t W,            \
                                int64_t rows)                                                    \
    {                                                                                            \
        switch (W) {                                                                             \
        case 32: COPY_W(T, 32); return;                                                          \
        case 16: COPY_W(T, 16); return;                                                          \
        case 8: COPY_W(T, 8); return;                                                            \
        case 4: COPY_W(T, 4); return;                                                            \
        default:                                                                                 \
            for (int64_t q = 0; q < rows; q++)                                                   \
                memcpy(dst + q * W, src + q * ld, (size_t)W * sizeof(T));                        \
        }                                                                                        \
    }
DEFINE_ROWS_COPY(float, f32)
DEFINE_ROWS_COPY(double, f64)

/* SFX: f32 / f64; KT: the kernel table type; UKR, UKA: its micro-kernel types. */
#define DEFINE_GEMM(T, SFX, KT, UKR, UKA, TP)                                                    \
                                                                                                 \
    /* One micro-panel, DW wide and kc deep: dst[q*DW + r] = X(r, q) = src[r*sr + q*sq] for      \
     * r < R, zero for R <= r < DW. An A panel is (rows i, depth p): sr = rsa, sq = csa; a B     \
     * panel is (columns j, depth p): sr = csb, sq = rsb. */                                     \
    static void pack_panel_##SFX(T *restrict dst, int64_t DW, const T *src, int64_t sr,          \
                                 int64_t sq, int64_t R, int64_t kc, TP tp)                       \
    {                                                                                            \
        if (R < DW) memset(dst, 0, (size_t)(DW * kc) * sizeof(T)); /* padding: zero */           \
        if (sq == 1)                                                                             \
            (tp != NULL ? tp : tpack_##SFX)(dst, DW, src, sr, R, kc);                            \
        else if (sr == 1)                                                                        \
            cpack_##SFX(dst, DW, src, sq, R, kc);                                                \
        else                                                                                     \
            for (int64_t q = 0; q < kc; q++)                                                     \
                for (int64_t r = 0; r < R; r++) dst[q * DW + r] = src[r * sr + q * sq];          \
    }                                                                                            \
                                                                                                 \
    /* B block (kc x nc) -> NR-column micro-panels, b[p*NR + j], columns past nc zero. When the  \
     * rows of B are contiguous, a few rows at a time across all panels: B is then read in       \
     * nearly row order (whole cache lines, a few streams) instead of NR columns down kc rows. */ \
    static void pack_b_##SFX(T *restrict dst, const T *B, int64_t rsb, int64_t csb, int64_t kc,  \
                             int64_t nc, int64_t NR, TP tp)                                      \
    {                                                                                            \
        int64_t j0 = 0;                                                                          \
        if (csb == 1 && nc >= NR) {                                                              \
            j0 = nc / NR * NR;                                                                   \
            for (int64_t p0 = 0; p0 < kc; p0 += GEMM_PACK_ROWS) {                                \
                const int64_t pe = min64(kc, p0 + GEMM_PACK_ROWS);                               \
                for (int64_t jr = 0; jr < j0; jr += NR)                                          \
                    copy_rows_##SFX(dst + jr * kc + p0 * NR, B + p0 * rsb + jr, rsb, NR,         \
                                    pe - p0);                                                    \
            }                                                                                    \
        }                                                                                        \
        for (int64_t jr = j0; jr < nc; jr += NR)                                                 \
            pack_panel_##SFX(dst + jr * kc, NR, B + jr * csb, csb, rsb, min64(NR, nc - jr), kc,  \
                             tp);                                                                \
    }                                                                                            \
                                                                                                 \
    /* Finished rows: + bias, then the activation, row by row while they are in cache. */        \
    static void epilogue_##SFX(T *c, int64_t ldc, int64_t m, int64_t n, const T *bias, int act,  \
                               double slope)                                                     \
    {                                                                                            \
        for (int64_t i = 0; i < m; i++) {                                                        \
            T *row = c + i * ldc;                                                                \
            if (bias != NULL)                                                                    \
                for (int64_t j = 0; j < n; j++) row[j] += bias[j];                               \
            if (act != MYELIN_ACT_NONE) myelin_act_serial_##SFX(row, row, n, act, slope);        \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* One macro-tile of C, all of K. bbuf holds plan->b_elems elements. */                      \
    static void tile_##SFX(const struct gemm_problem *g, const KT *kt,                           \
                           const struct gemm_plan *pl, int64_t t, T *bbuf)                       \
    {                                                                                            \
        /* the A micro-panel being used, packed just before its row of micro-kernels: L1 */      \
        _Alignas(64) T apanel[MYELIN_GEMM_MAX_MR * GEMM_KC];                                     \
        const T *A = (const T *)g->A, *B = (const T *)g->B, *bias = (const T *)g->bias;          \
        T *C = (T *)g->C;                                                                        \
        const int64_t MR = kt->mr, NR = kt->nr, K = g->K, ldc = g->ldc;                          \
        const int64_t rsa = g->rsa, csa = g->csa, rsb = g->rsb, csb = g->csb;                    \
        const int64_t i0 = (t / pl->ntn) * pl->mcb, j0 = (t % pl->ntn) * pl->ncb;                \
        const int64_t mc = min64(pl->mcb, g->M - i0), nc = min64(pl->ncb, g->N - j0);            \
        const int64_t nfull = pl->direct_b ? nc / NR * NR : 0; /* panels read in place */        \
        const int epi = bias != NULL || g->act != MYELIN_ACT_NONE;                               \
        for (int64_t p0 = 0; p0 < K; p0 += pl->kc) {                                             \
            const int64_t kc = min64(pl->kc, K - p0);                                            \
            const T beta = p0 == 0 ? (T)g->beta : (T)1;                                          \
            const int last = p0 + kc == K;                                                       \
            if (nfull < nc)                                                                      \
                pack_b_##SFX(bbuf, B + p0 * rsb + (j0 + nfull) * csb, rsb, csb, kc, nc - nfull,  \
                             NR, kt->tpack);                                                     \
            const T *bdirect = B + p0 * rsb + j0;                                                \
            for (int64_t ir = 0, m; ir < mc; ir += m) {                                          \
                m = panel_rows(mc - ir, MR);                                                     \
                const UKR ukr = kt->ukr[m];                                                      \
                T *cp = C + (i0 + ir) * ldc + j0;                                                \
                if (pl->direct_a) {                                                              \
                    const UKA uka = kt->uka[m];                                                  \
                    const T *ap = A + (i0 + ir) * rsa + p0;                                      \
                    for (int64_t jr = 0; jr < nfull; jr += NR)                                   \
                        uka(kc, ap, rsa, bdirect + jr, rsb, cp + jr, ldc, m, NR, beta);          \
                    for (int64_t jr = nfull; jr < nc; jr += NR)                                  \
                        uka(kc, ap, rsa, bbuf + (jr - nfull) * kc, NR, cp + jr, ldc, m,          \
                            min64(NR, nc - jr), beta);                                           \
                } else {                                                                         \
                    pack_panel_##SFX(apanel, MR, A + (i0 + ir) * rsa + p0 * csa, rsa, csa, m,    \
                                     kc, kt->tpack);                                             \
                    for (int64_t jr = 0; jr < nfull; jr += NR)                                   \
                        ukr(kc, apanel, bdirect + jr, rsb, cp + jr, ldc, m, NR, beta);           \
                    for (int64_t jr = nfull; jr < nc; jr += NR)                                  \
                        ukr(kc, apanel, bbuf + (jr - nfull) * kc, NR, cp + jr, ldc, m,           \
                            min64(NR, nc - jr), beta);                                           \
                }                                                                                \
                if (last && epi)                                                                 \
                    epilogue_##SFX(cp, ldc, m, nc, bias ? bias + j0 : NULL, g->act, g->slope);   \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* The same tile through the naive twin: the fallback when buffers cannot be allocated. */   \
    static void tile_ref_##SFX(const struct gemm_problem *g, const struct gemm_plan *pl,         \
                               int64_t t)                                                        \
    {                                                                                            \
        const int64_t i0 = (t / pl->ntn) * pl->mcb, j0 = (t % pl->ntn) * pl->ncb;                \
        const T *bias = (const T *)g->bias;                                                      \
        myelin_gemm_ref_##SFX((T *)g->C + i0 * g->ldc + j0, g->ldc,                              \
                              (const T *)g->A + i0 * g->rsa, g->rsa, g->csa,                     \
                              (const T *)g->B + j0 * g->csb, g->rsb, g->csb,                     \
                              min64(pl->mcb, g->M - i0), min64(pl->ncb, g->N - j0), g->K,        \
                              g->beta, bias ? bias + j0 : NULL, g->act, g->slope);               \
    }                                                                                            \
                                                                                                 \
    /* All tiles of one product on the calling thread, with the caller's buffers. */             \
    static void run_serial_##SFX(const struct gemm_problem *g, const KT *kt,                     \
                                 const struct gemm_plan *pl, int ok, T *bbuf)                    \
    {                                                                                            \
        const int64_t tiles = pl->mt * pl->ntn;                                                  \
        for (int64_t t = 0; t < tiles; t++) {                                                    \
            if (ok)                                                                              \
                tile_##SFX(g, kt, pl, t, bbuf);                                                  \
            else                                                                                 \
                tile_ref_##SFX(g, pl, t);                                                        \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* The B packing buffer of one thread: its stack array when the plan's buffer fits (small    \
     * problems then never call malloc), else the heap; NULL when none is needed or malloc       \
     * fails. */                                                                                 \
    static T *bbuf_get_##SFX(const struct gemm_plan *pl, T *bstack)                              \
    {                                                                                            \
        if (pl->b_elems == 0) return NULL;                                                       \
        if (pl->b_stack) return bstack;                                                          \
        return gemm_alloc(pl->b_elems * sizeof(T));                                              \
    }                                                                                            \
                                                                                                 \
    static void bbuf_put_##SFX(T *bbuf, T *bstack)                                               \
    {                                                                                            \
        if (bbuf != bstack) gemm_free(bbuf);                                                     \
    }                                                                                            \
                                                                                                 \
    /* K == 0: C = act(beta*C + bias); beta == 0 does not read C. */                             \
    static void gemm_k0_##SFX(const struct gemm_problem *g)                                      \
    {                                                                                            \
        const T beta = (T)g->beta, *bias = (const T *)g->bias;                                   \
        for (int64_t i = 0; i < g->M; i++) {                                                     \
            T *row = (T *)g->C + i * g->ldc;                                                     \
            for (int64_t j = 0; j < g->N; j++) {                                                 \
                const T v = beta == 0 ? (T)0 : beta * row[j];                                    \
                row[j] = bias == NULL ? v : beta == 0 ? bias[j] : v + bias[j];                   \
            }                                                                                    \
            if (g->act != MYELIN_ACT_NONE)                                                       \
                myelin_act_serial_##SFX(row, row, g->N, g->act, g->slope);                       \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    static void gemm_run_##SFX(const struct gemm_problem *g, const KT *kt)                       \
    {                                                                                            \
        if (g->M <= 0 || g->N <= 0) return;                                                      \
        if (g->K <= 0) {                                                                         \
            gemm_k0_##SFX(g);                                                                    \
            return;                                                                              \
        }                                                                                        \
        const double flops = 2.0 * (double)g->M * (double)g->N * (double)g->K;                   \
        int nt = myelin_threads_for(flops * GEMM_FLOP_COST(T), GEMM_GRAIN);                      \
        struct gemm_plan pl;                                                                     \
        gemm_make_plan(&pl, g->M, g->N, g->K, kt->mr, kt->nr, sizeof(T), nt,                     \
                       kt->uka[1] != NULL, g->rsa, g->csa, g->rsb, g->csb);                      \
        const int64_t tiles = pl.mt * pl.ntn;                                                    \
        if (tiles < nt) nt = (int)tiles;                                                         \
        if (nt <= 1) {                                                                           \
            _Alignas(64) T bstack[GEMM_BSTACK_BYTES / sizeof(T)];                                \
            T *bbuf = bbuf_get_##SFX(&pl, bstack);                                               \
            run_serial_##SFX(g, kt, &pl, bbuf != NULL || pl.b_elems == 0, bbuf);                 \
            bbuf_put_##SFX(bbuf, bstack);                                                        \
            return;                                                                              \
        }                                                                                        \
        GEMM_OMP(omp parallel num_threads(nt))                                                   \
        {                                                                                        \
            myelin_region_enter();                                                               \
            _Alignas(64) T bstack[GEMM_BSTACK_BYTES / sizeof(T)]; /* one per thread */           \
            T *bbuf = bbuf_get_##SFX(&pl, bstack);                                               \
            const int ok = bbuf != NULL || pl.b_elems == 0;                                      \
            GEMM_OMP(omp for schedule(dynamic, 1) nowait)                                        \
            for (int64_t t = 0; t < tiles; t++) {                                                \
                if (ok)                                                                          \
                    tile_##SFX(g, kt, &pl, t, bbuf);                                             \
                else                                                                             \
                    tile_ref_##SFX(g, &pl, t);                                                   \
            }                                                                                    \
            bbuf_put_##SFX(bbuf, bstack);                                                        \
        }                                                                                        \
        myelin_region_exit(nt);                                                                  \
    }                                                                                            \
                                                                                                 \
    static void gemm_batched_##SFX(T *C, int64_t ldc, int64_t stride_c, const T *A,              \
                                   const int64_t *offa, int64_t rsa, int64_t csa, const T *B,    \
                                   const int64_t *offb, int64_t rsb, int64_t csb, int64_t batch, \
                                   int64_t M, int64_t N, int64_t K, const KT *kt)                \
    {                                                                                            \
        if (batch <= 0 || M <= 0 || N <= 0) return;                                              \
        struct gemm_problem g = {C, ldc, A, rsa, csa, B, rsb, csb, M, N, K,                      \
                                 0.0, NULL, MYELIN_ACT_NONE, 0.0};                               \
        const double flops = 2.0 * (double)M * (double)N * (double)(K > 0 ? K : 1) *             \
                             GEMM_FLOP_COST(T);                                                   \
        const int nt_max = myelin_get_num_threads();                                             \
        const int nt_one = myelin_threads_for(flops, GEMM_GRAIN);                                \
        if (K <= 0 || (nt_one >= nt_max && batch < 4 * (int64_t)nt_max)) {                       \
            /* few large products: one after the other, each parallel inside */                  \
            for (int64_t p = 0; p < batch; p++) {                                                \
                g.C = C + p * stride_c;                                                          \
                g.A = A + offa[p];                                                               \
                g.B = B + offb[p];                                                               \
                gemm_run_##SFX(&g, kt);                                                          \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        /* many products: parallel over the batch, each product on one thread */                 \
        int nt = myelin_threads_for(flops * (double)batch, GEMM_GRAIN);                          \
        if (nt > batch) nt = (int)batch;                                                         \
        struct gemm_plan pl;                                                                     \
        gemm_make_plan(&pl, M, N, K, kt->mr, kt->nr, sizeof(T), 1, kt->uka[1] != NULL, rsa, csa, \
                       rsb, csb);                                                                \
        GEMM_OMP(omp parallel num_threads(nt))                                                   \
        {                                                                                        \
            myelin_region_enter();                                                               \
            _Alignas(64) T bstack[GEMM_BSTACK_BYTES / sizeof(T)]; /* one per thread */           \
            T *bbuf = bbuf_get_##SFX(&pl, bstack);                                               \
            const int ok = bbuf != NULL || pl.b_elems == 0;                                      \
            struct gemm_problem gp = g;                                                          \
            GEMM_OMP(omp for schedule(dynamic, 8) nowait)                                        \
            for (int64_t p = 0; p < batch; p++) {                                                \
                gp.C = C + p * stride_c;                                                         \
                gp.A = A + offa[p];                                                              \
                gp.B = B + offb[p];                                                              \
                run_serial_##SFX(&gp, kt, &pl, ok, bbuf);                                        \
            }                                                                                    \
            bbuf_put_##SFX(bbuf, bstack);                                                        \
        }                                                                                        \
        myelin_region_exit(nt);                                                                  \
    }

DEFINE_GEMM(float, f32, struct myelin_sgemm_kernels, myelin_sgemm_ukr, myelin_sgemm_uka,
            myelin_sgemm_tpack)
DEFINE_GEMM(double, f64, struct myelin_dgemm_kernels, myelin_dgemm_ukr, myelin_dgemm_uka,
            myelin_dgemm_tpack)

/* ---------------------------------------------------------------- kernel tables by ISA */

static const struct myelin_sgemm_kernels *sgemm_kernels(void)
{
    switch (myelin_current_isa()) {
#ifdef MYELIN_X86
    case MYELIN_ISA_AVX512:
        return &myelin_sgemm_avx512;
    case MYELIN_ISA_AVX2:
        return &myelin_sgemm_avx2;
#endif
    default:
        return &myelin_sgemm_baseline;
    }
}

static const struct myelin_dgemm_kernels *dgemm_kernels(void)
{
    switch (myelin_current_isa()) {
#ifdef MYELIN_X86
    case MYELIN_ISA_AVX512:
        return &myelin_dgemm_avx512;
    case MYELIN_ISA_AVX2:
        return &myelin_dgemm_avx2;
#endif
    default:
        return &myelin_dgemm_baseline;
    }
}

/* ---------------------------------------------------------------- public entries */

int myelin_gemm_threads(int64_t M, int64_t N, int64_t K, int f64)
{
    // the thread count gemm_run would choose for a contiguous (M, K) @ (K, N)
    if (M <= 0 || N <= 0 || K <= 0) return 1;
    const size_t esz = f64 ? sizeof(double) : sizeof(float);
    const double flops = 2.0 * (double)M * (double)N * (double)K * (double)esz / sizeof(float);
    int nt = myelin_threads_for(flops, GEMM_GRAIN);
    int mr, nr, has_uka;
    if (f64) {
        const struct myelin_dgemm_kernels *kt = dgemm_kernels();
        mr = kt->mr, nr = kt->nr, has_uka = kt->uka[1] != NULL;
    } else {
        const struct myelin_sgemm_kernels *kt = sgemm_kernels();
        mr = kt->mr, nr = kt->nr, has_uka = kt->uka[1] != NULL;
    }
    struct gemm_plan pl;
    gemm_make_plan(&pl, M, N, K, mr, nr, esz, nt, has_uka, K, 1, N, 1);
    if (pl.mt * pl.ntn < nt) nt = (int)(pl.mt * pl.ntn);
    return nt < 1 ? 1 : nt;
}

int myelin_chain_threads(double flops)
{
    return flops < GEMM_CHAIN_GRAINS * GEMM_GRAIN ? 1 : 0;
}

void myelin_gemm_f32(float *C, int64_t ldc, const float *A, int64_t rsa, int64_t csa,
                     const float *B, int64_t rsb, int64_t csb, int64_t M, int64_t N, int64_t K,
                     double beta, const float *bias, int act, double slope)
{
    // A is (M, K), B is (K, N), C is (M, N)
    const struct gemm_problem g = {C, ldc, A, rsa, csa, B, rsb, csb, M, N, K,
                                   beta, bias, act, slope};
    gemm_run_f32(&g, sgemm_kernels());
}

void myelin_gemm_f64(double *C, int64_t ldc, const double *A, int64_t rsa, int64_t csa,
                     const double *B, int64_t rsb, int64_t csb, int64_t M, int64_t N, int64_t K,
                     double beta, const double *bias, int act, double slope)
{
    // A is (M, K), B is (K, N), C is (M, N)
    const struct gemm_problem g = {C, ldc, A, rsa, csa, B, rsb, csb, M, N, K,
                                   beta, bias, act, slope};
    gemm_run_f64(&g, dgemm_kernels());
}

void myelin_gemm_batched_f32(float *C, int64_t ldc, int64_t stride_c,
                             const float *A, const int64_t *offa, int64_t rsa, int64_t csa,
                             const float *B, const int64_t *offb, int64_t rsb, int64_t csb,
                             int64_t batch, int64_t M, int64_t N, int64_t K)
{
    // batch x (A (M, K) @ B (K, N) -> C (M, N))
    gemm_batched_f32(C, ldc, stride_c, A, offa, rsa, csa, B, offb, rsb, csb, batch, M, N, K,
                     sgemm_kernels());
}

void myelin_gemm_batched_f64(double *C, int64_t ldc, int64_t stride_c,
                             const double *A, const int64_t *offa, int64_t rsa, int64_t csa,
                             const double *B, const int64_t *offb, int64_t rsb, int64_t csb,
                             int64_t batch, int64_t M, int64_t N, int64_t K)
{
    // batch x (A (M, K) @ B (K, N) -> C (M, N))
    gemm_batched_f64(C, ldc, stride_c, A, offa, rsa, csa, B, offb, rsb, csb, batch, M, N, K,
                     dgemm_kernels());
}
