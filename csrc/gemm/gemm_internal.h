/* GEMM internals: the one micro-kernel contract, the per-ISA kernel tables, the naive twin.
 *
 * Micro-kernel contract (BLIS style, row-major C):
 *   C[m, n] = beta * C[m, n] + A_panel @ B_panel,   1 <= m <= MR, 1 <= n <= NR
 *   a   packed A micro-panel, MR x k: A(i, p) = a[p*MR + i] (rows >= m are padding, ignored)
 *   b   B micro-panel, k x NR: B(p, j) = b[p*ldb + j]; all NR columns must be readable (packed
 *       panels are zero-padded; the driver passes unpacked rows only for full-width panels)
 *   c   row-major with leading dimension ldc; only the m x n corner is read or written
 *   beta == 0: C is not read (it may hold NaN).
 * Each element is the FMA chain over p = 0..k-1 in order, started from zero, then combined with
 * beta*C: the same arithmetic whatever m, n, the tile or the thread that runs it.
 * Direct-A variant (uka): the same, but A is read in place from row-major rows,
 *   A(i, p) = a[i*lda + p], instead of from a packed panel; the arithmetic is identical, so the
 *   driver may choose either without changing a bit of the result. Only rows < m are read (the
 *   rows past m of a wider kernel compute on row 0 and are discarded). Tables without it: NULL.
 * A table gives, for every m in 1..MR, the kernel with the fewest rows that covers m, so edge
 * tiles do not pay for MR rows.
 */
#ifndef MYELIN_GEMM_INTERNAL_H
#define MYELIN_GEMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define MYELIN_GEMM_MAX_MR 16

typedef void (*myelin_sgemm_ukr)(int64_t k, const float *a, const float *b, int64_t ldb,
                                 float *c, int64_t ldc, int64_t m, int64_t n, float beta);
typedef void (*myelin_dgemm_ukr)(int64_t k, const double *a, const double *b, int64_t ldb,
                                 double *c, int64_t ldc, int64_t m, int64_t n, double beta);
typedef void (*myelin_sgemm_uka)(int64_t k, const float *a, int64_t lda, const float *b,
                                 int64_t ldb, float *c, int64_t ldc, int64_t m, int64_t n,
                                 float beta);
typedef void (*myelin_dgemm_uka)(int64_t k, const double *a, int64_t lda, const double *b,
                                 int64_t ldb, double *c, int64_t ldc, int64_t m, int64_t n,
                                 double beta);

/* Transposing pack of a micro-panel whose rows are contiguous (A panels of a row-major A, B panels
 * of a transposed B): dst[q*DW + r] = src[r*ld + q] for r < R <= DW, q < kc; dst rows R..DW-1
 * untouched. A copy, so any implementation gives the same bits. NULL: the portable one. */
typedef void (*myelin_sgemm_tpack)(float *restrict dst, int64_t DW, const float *src, int64_t ld,
                                   int64_t R, int64_t kc);
typedef void (*myelin_dgemm_tpack)(double *restrict dst, int64_t DW, const double *src,
                                   int64_t ld, int64_t R, int64_t kc);

struct myelin_sgemm_kernels {
    const char *name;                          /* e.g. "sgemm_avx512_14x32" */
    int mr, nr;
    myelin_sgemm_ukr ukr[MYELIN_GEMM_MAX_MR + 1]; /* ukr[m], m = 1..mr; ukr[0] unused */
    myelin_sgemm_uka uka[MYELIN_GEMM_MAX_MR + 1]; /* direct-A twins of ukr, or all NULL */
    myelin_sgemm_tpack tpack;                  /* transposing pack, or NULL */
};

struct myelin_dgemm_kernels {
    const char *name;
    int mr, nr;
    myelin_dgemm_ukr ukr[MYELIN_GEMM_MAX_MR + 1];
    myelin_dgemm_uka uka[MYELIN_GEMM_MAX_MR + 1];
    myelin_dgemm_tpack tpack;
};

/* One table per ISA and dtype (ukernel_<isa>.c). The AVX tables exist only in x86 builds. */
extern const struct myelin_sgemm_kernels myelin_sgemm_baseline;
extern const struct myelin_dgemm_kernels myelin_dgemm_baseline;
#ifdef MYELIN_X86
extern const struct myelin_sgemm_kernels myelin_sgemm_avx2;
extern const struct myelin_dgemm_kernels myelin_dgemm_avx2;
extern const struct myelin_sgemm_kernels myelin_sgemm_avx512;
extern const struct myelin_dgemm_kernels myelin_dgemm_avx512;
void myelin_tpack_f32_avx512(float *restrict dst, int64_t DW, const float *src, int64_t ld,
                             int64_t R, int64_t kc);
void myelin_tpack_f64_avx512(double *restrict dst, int64_t DW, const double *src, int64_t ld,
                             int64_t R, int64_t kc);
#endif

/* The naive scalar twin of myelin_gemm_f32/_f64 (csrc/ref/gemm_ref.c): same contract, triple loop
 * through the strides, accumulating in the array dtype. The fallback when packing buffers cannot
 * be allocated, and the readable statement of what the fast path computes. */
void myelin_gemm_ref_f32(float *C, int64_t ldc,
                         const float *A, int64_t rsa, int64_t csa,
                         const float *B, int64_t rsb, int64_t csb,
                         int64_t M, int64_t N, int64_t K,
                         double beta, const float *bias, int act, double slope);
void myelin_gemm_ref_f64(double *C, int64_t ldc,
                         const double *A, int64_t rsa, int64_t csa,
                         const double *B, int64_t rsb, int64_t csb,
                         int64_t M, int64_t N, int64_t K,
                         double beta, const double *bias, int act, double slope);

#endif /* MYELIN_GEMM_INTERNAL_H */
