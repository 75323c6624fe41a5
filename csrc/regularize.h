/* fastopt regularize family: elastic-net penalty gradients, the max-norm constraint, and dropout with a
 * counter-based (storage-free) mask.
 *
 * The penalty value is a blocked sum (blocked_sum.h) accumulated in double: the same bits at any thread count (it
 * may differ in the last bits between instruction-set paths, whose SIMD widths order the additions inside a block
 * differently). Every output array (penalty gradients, max-norm, dropout) is bit-identical at any thread count and
 * on every path. */
#ifndef FO_REGULARIZE_H
#define FO_REGULARIZE_H

#include "fo_common.h"

/* One (grad, param) pair of an elastic-net penalty call. */
typedef struct fo_penalty_pair {
    void *grad;                        /* inout */
    const void *param;
    int64_t numel;
} fo_penalty_pair;

/* Elastic net over npairs (grad, param) pairs: grad += l1 sign(param) + l2 param (sign(0) = 0);
 * *penalty = l1 sum |param| + l2 / 2 sum param^2. Returns FO_OK or FO_ENOMEM. */
int fo_penalty_f32(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty, int nthreads);
int fo_penalty_f64(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty, int nthreads);

/* Max-norm constraint on w viewed as outer x axis_len x inner: for each (o, i), the vector v = w[o, :, i] with
 * norm n = ||v||_2 > max_norm is scaled by max_norm / (n + 1e-7) (torch.renorm's rule). Returns FO_OK. */
int fo_max_norm_f32(float *w /* inout */, int64_t outer, int64_t axis_len, int64_t inner, double max_norm,
                    int nthreads);
int fo_max_norm_f64(double *w /* inout */, int64_t outer, int64_t axis_len, int64_t inner, double max_norm,
                    int nthreads);

/* Dropout with a counter-based mask: y_i = x_i * keep_i * scale, keep_i = (u_i >= threshold) where
 * u_i = fo_dropout_bits(key, i) (32 bits), key = fo_dropout_key(seed), threshold = ceil(p 2^32) and
 * scale = 1 / (1 - p) rounded to the dtype. The mask depends only on (seed, i): no storage, any thread count,
 * and the backward pass applies the same function to dy. x and y may be the same array (not partial overlaps).
 * Returns FO_OK, or FO_EINVAL (nothing written) unless 0 <= p < 1. */
uint64_t fo_dropout_key(uint64_t seed);
uint64_t fo_dropout_threshold(double p);
int fo_dropout_f32(const float *x, float *y /* out */, int64_t n, uint64_t seed, double p, int nthreads);
int fo_dropout_f64(const double *x, double *y /* out */, int64_t n, uint64_t seed, double p, int nthreads);

/* ---- The dropout hash (used by the driver for the key and by the kernels for the bits). */

/* splitmix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer. */
FO_INLINE uint64_t fo_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

#define FO_GOLDEN_GAMMA UINT64_C(0x9E3779B97F4A7C15)

/* The 32 random bits of element i: the i-th output of the splitmix64 sequence started at `key`. */
FO_INLINE uint64_t fo_dropout_bits(uint64_t key, uint64_t i)
{
    return fo_mix64(key + (i + 1) * FO_GOLDEN_GAMMA) >> 32;
}

/* ---- Per-instruction-set kernels (regularize_kernels.inc), chosen at run time by regularize.c. */

/* Columns of one max-norm kernel call (its per-column norms live on the stack). */
#define FO_MAX_NORM_COLS 256

/* Elements [lo, hi) of one pair: grad += l1 sign(param) + l2 param; *sum_abs += sum |param| (if l1 != 0),
 * *sum_sq += sum param^2 (if l2 != 0). */
typedef void (*fo_penalty_range_fn)(void *grad, const void *param, int64_t lo, int64_t hi, double l1, double l2,
                                    double *sum_abs /* inout */, double *sum_sq /* inout */);
/* One outer slice (axis_len x inner), columns [i0, i1), i1 - i0 <= FO_MAX_NORM_COLS. */
typedef void (*fo_max_norm_block_fn)(void *w, int64_t axis_len, int64_t inner, int64_t i0, int64_t i1,
                                     double max_norm);
/* Elements [lo, hi): y = x * (fo_dropout_bits(key, i) >= threshold ? scale : 0). */
typedef void (*fo_dropout_range_fn)(const void *x, void *y, int64_t lo, int64_t hi, uint64_t key,
                                    uint64_t threshold, double scale);
typedef struct fo_regularize_kernels {
    fo_penalty_range_fn penalty[2];    /* [FO_F32 | FO_F64] */
    fo_max_norm_block_fn max_norm[2];
    fo_dropout_range_fn dropout[2];
} fo_regularize_kernels;

/* Each path's table: csrc/kernels_<isa>.c; the active one: FO_KERNELS(FO_FAM_REGULARIZE, fo_regularize_kernels)
 * (dispatch.h). */

#endif
