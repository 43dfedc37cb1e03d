/* Internal entries of csrc/ops shared with other kernels (not part of the public C API). */
#ifndef MYELIN_OPS_INTERNAL_H
#define MYELIN_OPS_INTERNAL_H

#include <stdint.h>

/* y = act(x) on n contiguous elements on the calling thread only (no OpenMP region), on the
 * current ISA path; y may equal x. The GEMM epilogue calls these on finished tiles. Same
 * semantics as myelin_act_forward_*. */
void myelin_act_serial_f32(float *y, const float *x, int64_t n, int act, double slope);
void myelin_act_serial_f64(double *y, const double *x, int64_t n, int act, double slope);

#endif
