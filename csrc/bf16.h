/* bfloat16 <-> float32: the upper 16 bits of a float32. Conversion to bfloat16 rounds to nearest, ties to even
 * (as ml_dtypes' astype); a NaN becomes the quiet NaN of its sign, 0x7fc0 or 0xffc0 (as ml_dtypes: never rounded
 * into an infinity). The stores of a bfloat16 param (fo_bf16_store: none, Kahan or stochastic rounding; see
 * optim.h FO_COMP_*) are integer arithmetic and float32 additions only: the same bits on every path. */
#ifndef FO_BF16_H
#define FO_BF16_H

#include <stdint.h>
#include <string.h>

#include "regularize.h"   /* fo_dropout_bits, fo_mix64: the bits of stochastic rounding */

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

/* f rounded to bfloat16 stochastically with the 16 random bits r: up (away from 0) with probability equal to the
 * dropped fraction of a bfloat16 ulp, so the rounding is unbiased; a NaN as fo_f32_to_bf16, a finite value beyond
 * the largest bfloat16 may round to the infinity of its sign. */
static inline uint16_t fo_f32_to_bf16_stochastic(float f, uint32_t r)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u);
    return (uint16_t)((u + (r & 0xffffu)) >> 16);
}

/* Kahan-compensated store (optimi's scheme, in float32 registers): with the step's update x - old and the carried
 * error c, s = (x - old) + c, p = rn(old + s), c = rn(s - (p - old)). */
static inline void fo_bf16_store_kahan(const float *restrict x, const float *restrict old, int64_t n,
                                       uint16_t *restrict p, uint16_t *restrict comp)
{
    int64_t i;
#pragma omp simd
    for (i = 0; i < n; ++i) {
        const float s = (x[i] - old[i]) + fo_bf16_to_f32(comp[i]);
        const uint16_t h = fo_f32_to_bf16(old[i] + s);
        p[i] = h;
        comp[i] = fo_f32_to_bf16(s - (fo_bf16_to_f32(h) - old[i]));
    }
}

/* The key of a stochastic store at step `step` of a tensor seeded `seed`: fo_dropout_key(seed ^ fo_mix64(step)). */
static inline uint64_t fo_bf16_round_key(uint64_t seed, uint64_t step)
{
    return fo_mix64((seed ^ fo_mix64(step)) + FO_GOLDEN_GAMMA);
}

/* Stochastic store: p[i] = x[i] rounded with the 16 bits of element first + i of `key`: element e takes bits
 * 16 (e mod 4) .. 16 (e mod 4) + 15 of fo_mix64(key + (e / 4 + 1) GAMMA), the (e / 4)-th output of the splitmix64
 * sequence that fo_dropout_bits draws from (one hash per 4 elements); `first` is a multiple of 4. */
enum { FO_BF16_SR_CHUNK = 256 };
static inline void fo_bf16_store_stochastic(const float *restrict x, int64_t n, uint64_t key, uint64_t first,
                                            uint16_t *restrict p)
{
    union { uint64_t h[FO_BF16_SR_CHUNK / 4]; uint16_t w[FO_BF16_SR_CHUNK]; } bits;
    int64_t lo, i, j;
    for (lo = 0; lo < n; lo += FO_BF16_SR_CHUNK) {
        const int64_t m = n - lo < FO_BF16_SR_CHUNK ? n - lo : FO_BF16_SR_CHUNK;
        const uint64_t j0 = (first + (uint64_t)lo) / 4 + 1;
#pragma omp simd
        for (j = 0; j < (m + 3) / 4; ++j)
            bits.h[j] = fo_mix64(key + (j0 + (uint64_t)j) * FO_GOLDEN_GAMMA);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        for (j = 0; j < (m + 3) / 4; ++j) {    /* word 4j + q must hold bits 16q.. of output j: reverse the words */
            const uint64_t v = bits.h[j];
            bits.h[j] = (v << 48) | ((v & 0xffff0000ULL) << 16) | ((v >> 16) & 0xffff0000ULL) | (v >> 48);
        }
#endif
#pragma omp simd
        for (i = 0; i < m; ++i)
            p[lo + i] = fo_f32_to_bf16_stochastic(x[lo + i], bits.w[i]);
    }
}

/* The store of a bfloat16 param's new values x[0..n) by compensation `mode` (optim.h FO_COMP_*: 0 none, 1 Kahan,
 * 2 stochastic). */
static inline void fo_bf16_store(const float *x, const float *old, int64_t n, int mode, uint64_t key,
                                 uint64_t first, uint16_t *p, uint16_t *comp)
{
    if (mode == 1)
        fo_bf16_store_kahan(x, old, n, p, comp);
    else if (mode == 2)
        fo_bf16_store_stochastic(x, n, key, first, p);
    else
        fo_bf16_encode(x, n, p);
}

#endif
