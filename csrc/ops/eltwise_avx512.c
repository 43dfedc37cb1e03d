/* csrc/ops inner loops compiled for the avx512 path (flags from CMakeLists.txt by file name). */
#define MYELIN_OPS_ISA avx512
#include "ops/eltwise_impl.h"
