/* Activation kernels for AVX2 + FMA CPUs (Haswell, Zen and later). Chosen at run time by activation.c. */
#include "activation.h"
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#define FO_ISA_SUFFIX avx2
#include "activation_isa.inc"
#endif
