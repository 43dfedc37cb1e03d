/* Naive scalar twins of the csrc/ops kernels (see ops_ref.h); ops_ref_impl.h is written once
 * and expanded for float and double. */
#include <math.h>
#include <string.h>

#include "myelin/kernels.h"
#include "ref/ops_ref.h"

#define T float
#define S f32
#include "ref/ops_ref_impl.h"
#undef T
#undef S

#define T double
#define S f64
#include "ref/ops_ref_impl.h"
#undef T
#undef S
