/* fastopt reductions over many arrays: global norms (accumulated in double), and the in-place
 * scaling and clamping that gradient clipping applies after them. */
#ifndef FO_REDUCE_H
#define FO_REDUCE_H

#include "fo_common.h"

/* Global p-norm of `narrays` arrays xs[k][0..ns[k]) in one pass.
 *
 *   p finite > 0:  s_k = sum_i |x_ki|^p (in double),  per_array[k] = s_k^(1/p),  *total = (sum_k s_k)^(1/p)
 *   p = +inf:      per_array[k] = max_i |x_ki|,       *total = max_k per_array[k]
 *
 * NaN anywhere gives NaN (inf gives inf). p = 1 and p = 2 take fast paths (no pow). The pass is a blocked
 * reduction (blocked_sum.h): array k is cut into blocks of FO_BLOCK_ELEMENTS of its own elements, s_k is the sum
 * of its block sums in block order and the s_k are added in array order, so every value has the same bits at any
 * thread count (threads only share out the blocks) and, on one instruction-set path, per_array[k] depends only on
 * array k. Across paths the SIMD width orders the additions inside a block differently: values agree to a
 * relative ~1e-15 (exactly for p = inf). Returns FO_OK, FO_EINVAL for p <= 0 / NaN, FO_ENOMEM on allocation
 * failure. */
int fo_reduce_norm_f32(const float *const *xs, const int64_t *ns, int64_t narrays, double p,
                       double *per_array /* out: narrays */, double *total /* out */, int nthreads);
int fo_reduce_norm_f64(const double *const *xs, const int64_t *ns, int64_t narrays, double p,
                       double *per_array /* out: narrays */, double *total /* out */, int nthreads);

/* x <- x * (REAL)coef for every element of every array (element-wise: identical bits at any thread count). */
void fo_reduce_scale_f32(float *const *xs /* inout */, const int64_t *ns, int64_t narrays, double coef, int nthreads);
void fo_reduce_scale_f64(double *const *xs /* inout */, const int64_t *ns, int64_t narrays, double coef,
                         int nthreads);

/* x <- min(max(x, lo), hi) as torch.clamp_min_ then clamp_max_ (NaN stays NaN), every element of every array. */
void fo_reduce_clamp_f32(float *const *xs /* inout */, const int64_t *ns, int64_t narrays, double lo, double hi,
                         int nthreads);
void fo_reduce_clamp_f64(double *const *xs /* inout */, const int64_t *ns, int64_t narrays, double lo, double hi,
                         int nthreads);

/* ---- internal: per-ISA chunk kernels (reduce_kernels.inc), chosen at run time -------------------------------- */
enum { FO_NORM_L1 = 0, FO_NORM_L2 = 1, FO_NORM_LINF = 2, FO_NORM_LP = 3, FO_NORM_KINDS = 4 };

/* Sum of |x|^p (or max |x| for FO_NORM_LINF, NaN if any NaN) over x[a..b), one block of a norm pass. */
typedef double (*fo_reduce_norm_fn)(const void *x, int64_t a, int64_t b, double p);
typedef void (*fo_reduce_scale_fn)(void *x /* inout */, int64_t a, int64_t b, double coef);
typedef void (*fo_reduce_clamp_fn)(void *x /* inout */, int64_t a, int64_t b, double lo, double hi);
typedef struct fo_reduce_kernels {
    fo_reduce_norm_fn norm[FO_NORM_KINDS][2];   /* [kind][FO_F32 | FO_F64] */
    fo_reduce_scale_fn scale[2];
    fo_reduce_clamp_fn clamp[2];
} fo_reduce_kernels;

/* Each path's table: csrc/kernels_<isa>.c; the active one: FO_KERNELS(FO_FAM_REDUCE, fo_reduce_kernels) (dispatch.h). */

#endif
