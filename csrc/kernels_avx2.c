/* Every family's kernels for AVX2 + FMA CPUs (Haswell, Zen and later). Chosen at run time by runtime.c. */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#define FO_ISA_SUFFIX avx2
#define FO_LOSS_HAVE_FMA 1
#include "kernels_isa.inc"
#endif
