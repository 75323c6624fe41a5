/* Reduce kernels for any x86-64 (SSE2) or other CPU: the compiler's baseline target. */
#include "reduce.h"
#define FO_ISA_SUFFIX baseline
#include "reduce_isa.inc"
