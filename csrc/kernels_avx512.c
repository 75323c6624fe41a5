/* Every family's kernels for AVX-512 (F, VL, BW, DQ) CPUs, 512-bit vectors. Chosen at run time by runtime.c. */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")
#define FO_ISA_SUFFIX avx512
#define FO_LOSS_HAVE_FMA 1
#include "kernels_isa.inc"
#endif
