/* csrc/ops inner loops compiled for the avx2 path (flags from CMakeLists.txt by file name). */
#define MYELIN_OPS_ISA avx2
#include "ops/eltwise_impl.h"
