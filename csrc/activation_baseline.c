/* Activation kernels for any x86-64 (SSE2) or other CPU: the compiler's baseline target. */
#include "activation.h"
#define FO_ISA_SUFFIX baseline
#include "activation_isa.inc"
