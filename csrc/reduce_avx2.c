/* Reduce kernels for AVX2 + FMA CPUs (Haswell, Zen and later). Chosen at run time by reduce.c. */
#include <math.h>
#include "reduce.h"
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#define FO_ISA_SUFFIX avx2
#include "reduce_isa.inc"
#endif
