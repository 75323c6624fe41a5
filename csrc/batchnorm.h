/* fastopt batch-normalization family: fused forward and backward passes (torch F.batch_norm semantics).
 *
 * x is seen in one of two layouts, each C-contiguous:
 *   FO_BN_NCS  x[n][c][s], n < N, c < C, s < S   (NCHW and NC*spatial: channels on axis 1)
 *   FO_BN_RC   x[r][c],    r < N, c < C          ((N, C) and channels-last (N, *spatial, C): N = rows)
 * Every channel has M = N * S elements (S = 1 for FO_BN_RC).
 *
 * Forward (training):  mean_c = (1/M) sum x,  var_c = (1/M) sum (x - mean_c)^2 (biased),
 *                      invstd_c = 1 / sqrt(var_c + eps),
 *                      y = (x - mean_c) * (gamma_c * invstd_c) + beta_c          [then max(y, 0) with relu]
 *                      running_mean <- (1 - momentum) running_mean + momentum mean_c
 *                      running_var  <- (1 - momentum) running_var  + momentum var_c * M / (M - 1)
 * Forward (eval):      mean_c = running_mean_c, var_c = running_var_c, same y; nothing else updated.
 * Statistics are sums of d = x - K_c and d^2, shifted so that d is of the order of the standard deviation (stable
 * for |mean| >> std). NCS: K_c is one element of the channel and d, d^2 are summed in double over fixed 16-lane
 * accumulators (the same bits on every instruction-set path). RC: K_c is a pilot mean of up to 16 rows spread over
 * the batch; d and the sums of groups of 8 (statistics) or 4 (backward) rows are formed in REAL, then accumulated
 * in double per channel.
 *
 * Backward, with g = dy (times [pre-activation > 0] with relu, recomputed from x bit for bit as in the forward):
 *   dbeta_c = sum g,  dgamma_c = invstd_c sum g (x - mean_c)
 *   training: dx = gamma_c invstd_c (g - dbeta_c / M - (x - mean_c) invstd_c dgamma_c / M)
 *   eval:     dx = gamma_c invstd_c g          (mean/invstd are the running statistics the forward used)
 *
 * Reductions (mean, var; backward's sums of g and g (x - mean)) follow the one blocked rule of blocked_sum.h: the
 * reduced axis of each channel is cut into fixed blocks, FO_BLOCK_ELEMENTS of its M elements (NCS) or
 * fo_bn_rc_block_rows(shape) rows (RC); each block is summed by the same kernel code, into its own double partials,
 * and the partials are added in block order. Block boundaries depend only on the shape, so every output (y, saved and
 * running statistics, dx, dgamma, dbeta) has the same bits at any thread count and under every schedule below.
 *
 * Threads and cache (speed only): FO_BN_NCS runs whole channels per thread (each channel's two passes back to back,
 * so the second pass finds the channel in cache) when C divides evenly or is large, else shares every channel's
 * blocks, then its element pass, across threads. FO_BN_RC shares the row blocks across threads, unless a thread's
 * rows would hold more than 512 KiB of an array and blocks of R rows x cb channels fit in 256 KiB: then it runs
 * column blocks of channels per thread (all row blocks of those channels), each block's two passes back to back. */
#ifndef FO_BATCHNORM_H
#define FO_BATCHNORM_H

#include "fo_common.h"

#define FO_BN_NCS 0
#define FO_BN_RC 1

typedef struct fo_bn_shape {
    int layout;    /* FO_BN_NCS or FO_BN_RC */
    int64_t n;     /* batch (NCS) or rows (RC) */
    int64_t c;     /* channels, >= 1 */
    int64_t s;     /* spatial size (NCS), 1 for RC */
} fo_bn_shape;

/* RC: rows per reduction block, from the shape only: N / 32 rounded up to a multiple of 8 (the kernels' row groups),
 * at least 64 rows, so that a team has blocks to share while a block's 2 C double partials stay small next to its
 * rows (at (256, 1024) the scratch stays under malloc's 128 KiB mmap threshold). */
FO_INLINE int64_t fo_bn_rc_block_rows(const fo_bn_shape *sh)
{
    const int64_t rows = ((sh->n + 31) / 32 + 7) & ~(int64_t)7;
    return rows > 64 ? rows : 64;
}

/* Forward pass. x, y: n*c*s elements of `dtype`; gamma, beta, running_mean, running_var: c elements or NULL
 * (gamma NULL: 1; beta NULL: 0; running stats NULL: not tracked, training only). save_mean and save_invstd
 * (c doubles) receive the statistics used (batch ones in training, running ones in eval), for the backward.
 * Returns FO_OK; FO_EINVAL for bad arguments (unknown dtype/layout, training with M < 2, eval without running
 * stats); FO_ENOMEM if scratch memory could not be allocated. Nothing is written on error. */
int fo_batchnorm_forward(int dtype, const void *x, void *y /* out */, const fo_bn_shape *sh,
                         const void *gamma, const void *beta,
                         void *running_mean /* inout */, void *running_var /* inout */,
                         double *save_mean /* out */, double *save_invstd /* out */,
                         int training, double momentum, double eps, int relu, int nthreads);

/* Backward pass. dy, x, dx: n*c*s elements; gamma: c elements or NULL (1); beta: c elements or NULL (0), used only
 * with relu (to recompute the mask); save_mean/save_invstd: what the forward returned. dgamma, dbeta: c elements
 * or NULL (not wanted). Returns FO_OK, FO_EINVAL for bad arguments, FO_ENOMEM out of memory; nothing is written on error. */
int fo_batchnorm_backward(int dtype, const void *dy, const void *x, void *dx /* out */, const fo_bn_shape *sh,
                          const void *gamma, const void *beta, const double *save_mean, const double *save_invstd,
                          void *dgamma /* out */, void *dbeta /* out */, int training, int relu, int nthreads);

/* Per-channel coefficient table handed to the element kernels: REAL coef[FO_BN_NCOEF][C], row k = one of: */
enum { FO_BN_MHI = 0, FO_BN_SCALE = 1, FO_BN_SHIFT = 2, FO_BN_K1 = 3, FO_BN_K2 = 4, FO_BN_K3 = 5, FO_BN_NCOEF = 6 };
/* With MHI = (REAL)mean and lo = mean - MHI (0 for double; the bits float32 cannot hold), x - mean = (x - MHI) - lo
 * exactly enough even for |mean| >> std, and the kernels compute only xm = x - MHI:
 *   y  = xm SCALE + SHIFT,              SCALE = gamma invstd,  SHIFT = beta - lo SCALE
 *   dx = K1 g + K2 xm + K3,             K3 = (the K3 of x - mean) - K2 lo
 *   sum g (x - mean) = sum g xm - lo sum g   (corrected by the driver in double). */

/* Range kernels of one instruction-set path. NCS kernels work on channel c, elements [lo, hi) of its M = N S
 * (index n S + s), their sums added to *sum (double). RC element kernels work on rows [lo, hi) of channels
 * [c0, c1); RC sum kernels on the row blocks [b0, b1) (block b: rows [b rows, min((b + 1) rows, N))) of channels
 * [c0, c1), storing block b's two sums of channel c (double) at part[2 b ld + c] and part[(2 b + 1) ld + c].
 * The backward sums are of g and g (x - MHI). */
typedef void (*fo_bn_stats_ncs_fn)(const void *x, const fo_bn_shape *sh, int64_t c, int64_t lo, int64_t hi,
                                   double shift, double *sum /* inout */, double *sumsq /* inout */);
typedef void (*fo_bn_stats_rc_fn)(const void *x, const fo_bn_shape *sh, int64_t b0, int64_t b1, int64_t rows,
                                  int64_t c0, int64_t c1, const double *shift, double *part /* out */, int64_t ld);
typedef void (*fo_bn_norm_ncs_fn)(const void *x, void *y /* out */, const fo_bn_shape *sh, int64_t c, int64_t lo,
                                  int64_t hi, const void *coef, int relu);
typedef void (*fo_bn_norm_rc_fn)(const void *x, void *y /* out */, const fo_bn_shape *sh, int64_t lo, int64_t hi,
                                 int64_t c0, int64_t c1, const void *coef, int relu);
typedef void (*fo_bn_bsums_ncs_fn)(const void *dy, const void *x, const fo_bn_shape *sh, int64_t c, int64_t lo,
                                   int64_t hi, const void *coef, int relu, double *sum_g /* inout */,
                                   double *sum_gx /* inout */);
typedef void (*fo_bn_bsums_rc_fn)(const void *dy, const void *x, const fo_bn_shape *sh, int64_t b0, int64_t b1,
                                  int64_t rows, int64_t c0, int64_t c1, const void *coef, int relu,
                                  double *part /* out */, int64_t ld);
typedef void (*fo_bn_dx_ncs_fn)(const void *dy, const void *x, void *dx /* out */, const fo_bn_shape *sh, int64_t c,
                                int64_t lo, int64_t hi, const void *coef, int relu, int training);
typedef void (*fo_bn_dx_rc_fn)(const void *dy, const void *x, void *dx /* out */, const fo_bn_shape *sh, int64_t lo,
                               int64_t hi, int64_t c0, int64_t c1, const void *coef, int relu, int training);

typedef struct fo_bn_kernels {
    fo_bn_stats_ncs_fn stats_ncs[2];   /* [dtype] */
    fo_bn_stats_rc_fn stats_rc[2];
    fo_bn_norm_ncs_fn norm_ncs[2];
    fo_bn_norm_rc_fn norm_rc[2];
    fo_bn_bsums_ncs_fn bsums_ncs[2];
    fo_bn_bsums_rc_fn bsums_rc[2];
    fo_bn_dx_ncs_fn dx_ncs[2];
    fo_bn_dx_rc_fn dx_rc[2];
} fo_bn_kernels;

/* Each path's table: csrc/kernels_<isa>.c; the active one: FO_KERNELS(FO_FAM_BATCHNORM, fo_bn_kernels) (dispatch.h). */

#endif
