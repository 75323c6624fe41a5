/* Batch-normalization kernels for any x86-64 (SSE2) or other CPU: the compiler's baseline target. */
#include "batchnorm.h"
#define FO_ISA_SUFFIX baseline
#include "batchnorm_isa.inc"
