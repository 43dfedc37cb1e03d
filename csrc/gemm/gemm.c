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
 *       square 512-2048 unchanged within noise. nc = 512 when B is read in place (below).
 *   mc: A micro-panels are packed just before use, so the A block needs no cache of its own;
 *       mc only sets how often a B block is repacked (once per tile): up to 960 rows (about 1%
 *       of the multiply-adds), then cut so the tiles share out evenly between the threads.
 * K blocks depend on K alone (equal blocks of at most kc), and each element of C is one FMA chain
 * per block in the same order whatever the tiling: results are bitwise the same for any
 * number of threads.
 *
 * Small problems (M <= 128) skip packing where the layout allows it: B in place when its rows are
 * contiguous (only a last, partial micro-panel is packed, into a stack buffer), and A in place
 * when its rows are contiguous, through the direct-A micro-kernels (a 64^3 product then does no
 * copying and no malloc). Reading A in place reorders no arithmetic: the result is bitwise that
 * of the packed path. Batches of small products run in parallel over the batch.
 * Parallel regions: one per call, tiles handed out dynamically, a single barrier at the end.
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
#define GEMM_DIRECT_B_MAX_M 128      /* read B unpacked when M is at most this */
#endif
#ifndef GEMM_DIRECT_A_MAX_M
#define GEMM_DIRECT_A_MAX_M 128      /* read A rows in place when M is at most this */
#endif
#ifndef GEMM_BSTACK_BYTES
#define GEMM_BSTACK_BYTES 32768      /* B packing buffers up to this size live on the stack */
#endif
#ifndef GEMM_DIRECT_A_ALIAS
#define GEMM_DIRECT_A_ALIAS 4096     /* ... unless the A row stride is a multiple of this (bytes) */
#endif
#ifndef GEMM_GRAIN
#define GEMM_GRAIN (1 << 18)         /* flops worth a thread (~2 us on one Zen 4 core) */
#endif

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
 * transpose of contiguous rows (SSE2 4x4), or a gather through two non-unit strides. */
static double pack_cost(int64_t sr, int64_t sq)
{
    return sq == 1 ? 6.0 : sr == 1 ? 2.0 : 24.0;
}

/* Tiles for nt threads: among a few splits of M (even) and N (multiples of nr), the one
 * with the least estimated time for the busiest thread (its tiles' multiply-adds and packing). */
static void gemm_make_plan(struct gemm_plan *pl, int64_t M, int64_t N, int64_t K, int mr, int nr,
                           size_t esz, int nt, int has_uka, int64_t rsa, int64_t csa,
                           int64_t rsb, int64_t csb)
{
    const int64_t kc_max = GEMM_KC;
    pl->kc = K > 0 ? ceil_div(K, ceil_div(K, kc_max)) : 1;
    pl->direct_b = csb == 1 && M <= GEMM_DIRECT_B_MAX_M;
    /* A rows in place: small problems only (a packed panel is reused by every B micro-panel of
     * a block, and at 256^3 packing measured faster), and not when the row stride is a multiple
     * of 4 KiB, which puts all MR rows in the same sets of the 8-way L1 (4 KiB per way):
     * measured 25% slower at 128x1024x1024; a 2 KiB stride (g @ w, K = 512) measured 5% faster
     * in place than packed. */
    const int64_t lda_bytes = (rsa < 0 ? -rsa : rsa) * (int64_t)esz;
    pl->direct_a = has_uka && csa == 1 && M <= GEMM_DIRECT_A_MAX_M &&
                   lda_bytes % GEMM_DIRECT_A_ALIAS != 0;
    const double cost_a = pl->direct_a ? 0.0 : pack_cost(rsa, csa);
    const double cost_b = pl->direct_b ? 0.0 : pack_cost(csb, rsb);

    /* packed B: the same bytes for both dtypes. B read in place: 512 columns of either dtype,
     * as before, since a wider tile then saves no repacking, and g @ w at 128x512x784 measured
     * 4-6% slower with 2 tiles of 64x800 than with 10 of 64x160 (whose B columns stay in L2) */
    const int64_t nc_max = pl->direct_b ? GEMM_NC / 2 : GEMM_NC * 4 / (int64_t)esz;
    const int64_t mt0 = ceil_div(M, GEMM_MC), ntn0 = ceil_div(N, nc_max);
    const int64_t mt_max = ceil_div(M, mr), ntn_max = ceil_div(N, nr);
    double best = -1;
    for (int64_t mt = mt0; mt <= min64(mt_max, mt0 + 2 * nt); mt++) {
        for (int64_t ntn = ntn0; ntn <= min64(ntn_max, ntn0 + 2 * nt); ntn++) {
            /* rows need not be a multiple of mr: the table has kernels for fewer rows */
            const int64_t mcb = round_up(ceil_div(M, mt), 2);
            const int64_t ncb = round_up(ceil_div(N, ntn), nr);
            const int64_t tiles = ceil_div(M, mcb) * ceil_div(N, ncb);
            const double work = (double)mcb * ncb + cost_a * mcb + cost_b * ncb;
            const double cost = (double)ceil_div(tiles, nt) * work;
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

/* SFX: f32 / f64; KT: the kernel table type; UKR, UKA: its micro-kernel types. */
#define DEFINE_GEMM(T, SFX, KT, UKR, UKA)                                                        \
                                                                                                 \
    /* One micro-panel, DW wide and kc deep: dst[q*DW + r] = X(r, q) = src[r*sr + q*sq] for      \
     * r < R, zero for R <= r < DW. An A panel is (rows i, depth p): sr = rsa, sq = csa; a B     \
     * panel is (columns j, depth p): sr = csb, sq = rsb. */                                     \
    static void pack_panel_##SFX(T *restrict dst, int64_t DW, const T *src, int64_t sr,          \
                                 int64_t sq, int64_t R, int64_t kc)                              \
    {                                                                                            \
        if (R < DW) memset(dst, 0, (size_t)(DW * kc) * sizeof(T)); /* padding: zero */           \
        if (sq == 1)                                                                             \
            tpack_##SFX(dst, DW, src, sr, R, kc);                                                \
        else if (sr == 1)                                                                        \
            cpack_##SFX(dst, DW, src, sq, R, kc);                                                \
        else                                                                                     \
            for (int64_t q = 0; q < kc; q++)                                                     \
                for (int64_t r = 0; r < R; r++) dst[q * DW + r] = src[r * sr + q * sq];          \
    }                                                                                            \
                                                                                                 \
    /* B block (kc x nc) -> NR-column micro-panels, b[p*NR + j], columns past nc zero. */        \
    static void pack_b_##SFX(T *restrict dst, const T *B, int64_t rsb, int64_t csb, int64_t kc,  \
                             int64_t nc, int64_t NR)                                             \
    {                                                                                            \
        for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc)                                  \
            pack_panel_##SFX(dst, NR, B + jr * csb, csb, rsb, min64(NR, nc - jr), kc);           \
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
                             NR);                                                                \
            const T *bdirect = B + p0 * rsb + j0;                                                \
            for (int64_t ir = 0; ir < mc; ir += MR) {                                            \
                const int64_t m = min64(MR, mc - ir);                                            \
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
                                     kc);                                                        \
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
    /* The B packing buffer of one thread: its stack array when the plan's buffer fits (small  \
     * problems then never call malloc), else the heap; NULL when none is needed or malloc     \
     * fails. */                                                                               \
    static T *bbuf_get_##SFX(const struct gemm_plan *pl, T *bstack)                             \
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
        const double flops = 2.0 * (double)g->M * (double)g->N * (double)g->K;                  \
        int nt = myelin_threads_for(flops, GEMM_GRAIN);                                          \
        struct gemm_plan pl;                                                                     \
        gemm_make_plan(&pl, g->M, g->N, g->K, kt->mr, kt->nr, sizeof(T), nt,                     \
                       kt->uka[1] != NULL, g->rsa, g->csa, g->rsb, g->csb);                \
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
        const double flops = 2.0 * (double)M * (double)N * (double)(K > 0 ? K : 1);             \
        const int nt_max = myelin_get_num_threads();                                             \
        const int nt_one = myelin_threads_for(flops, GEMM_GRAIN);                                \
        if (K <= 0 || (nt_one >= nt_max && batch < 4 * (int64_t)nt_max)) {                      \
            /* few large products: one after the other, each parallel inside */                 \
            for (int64_t p = 0; p < batch; p++) {                                                \
                g.C = C + p * stride_c;                                                          \
                g.A = A + offa[p];                                                               \
                g.B = B + offb[p];                                                               \
                gemm_run_##SFX(&g, kt);                                                          \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        /* many products: parallel over the batch, each product on one thread */                \
        int nt = myelin_threads_for(flops * (double)batch, GEMM_GRAIN);                          \
        if (nt > batch) nt = (int)batch;                                                         \
        struct gemm_plan pl;                                                                     \
        gemm_make_plan(&pl, M, N, K, kt->mr, kt->nr, sizeof(T), 1, kt->uka[1] != NULL, rsa, csa, \
                       rsb, csb);                                                                \
        GEMM_OMP(omp parallel num_threads(nt))                                                   \
        {                                                                                        \
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
    }

DEFINE_GEMM(float, f32, struct myelin_sgemm_kernels, myelin_sgemm_ukr, myelin_sgemm_uka)
DEFINE_GEMM(double, f64, struct myelin_dgemm_kernels, myelin_dgemm_ukr, myelin_dgemm_uka)

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
