/* Every family's kernels for any x86-64 (SSE2) or other CPU: the compiler's baseline target. */
#define FO_ISA_SUFFIX baseline
#include "kernels_isa.inc"
