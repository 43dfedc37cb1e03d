/* csrc/ops inner loops compiled for the baseline path (flags from CMakeLists.txt by file name). */
#define MYELIN_OPS_ISA baseline
#include "ops/eltwise_impl.h"
