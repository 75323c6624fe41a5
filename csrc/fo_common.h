/* fastopt: definitions shared by every kernel family. Plain C99, no Python API. */
#ifndef FO_COMMON_H
#define FO_COMMON_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define FO_INLINE static inline __attribute__((always_inline))
#define FO_NOINLINE __attribute__((noinline))
#else
#define FO_INLINE static inline
#define FO_NOINLINE
#endif

#define FO_F32 0
#define FO_F64 1

/* Instruction-set paths, chosen at run time (runtime.c). */
#define FO_ISA_BASELINE 0
#define FO_ISA_AVX2 1
#define FO_ISA_AVX512 2
#define FO_ISA_COUNT 3

/* Return codes of every family's entry points (nothing is written unless FO_OK). */
enum fo_status {
    FO_OK = 0,
    FO_EINVAL = -1,       /* bad argument: unknown algorithm, kind, dtype or layout, bad size */
    FO_ENOMEM = -2,       /* scratch memory could not be allocated */
    FO_ESTATE = -3        /* an optimizer tensor lacks the state its step needs */
};

#endif
