/* bfloat16 <-> float32: the upper 16 bits of a float32. Conversion to bfloat16 rounds to nearest, ties to even
 * (as ml_dtypes' astype); a NaN becomes the quiet NaN of its sign, 0x7fc0 or 0xffc0 (as ml_dtypes: never rounded
 * into an infinity). */
#ifndef FO_BF16_H
#define FO_BF16_H

#include <stdint.h>
#include <string.h>

static inline float fo_bf16_to_f32(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t fo_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* x[i] <- bfloat16 h[i] for i < n. */
static inline void fo_bf16_decode(const uint16_t *restrict h, int64_t n, float *restrict x)
{
    int64_t i;
#pragma omp simd
    for (i = 0; i < n; ++i)
        x[i] = fo_bf16_to_f32(h[i]);
}

/* h[i] <- x[i] rounded to bfloat16 for i < n. */
static inline void fo_bf16_encode(const float *restrict x, int64_t n, uint16_t *restrict h)
{
    int64_t i;
#pragma omp simd
    for (i = 0; i < n; ++i)
        h[i] = fo_f32_to_bf16(x[i]);
}

#endif
