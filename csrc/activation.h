/* fastopt activation family: a dense layer's bias and ReLU, fused, forward and backward, on row-major (rows, cols)
 * arrays (rows = batch, cols = units):
 *
 *   forward:   y[r][c] = act(x[r][c] + b[c]),          act = max(., 0) (relu) or identity
 *   backward:  dx[r][c] = dy[r][c] [y[r][c] > 0] (relu) or dy[r][c],   db[c] = sum_r dx[r][c]
 *
 * The backward takes the forward's output y (relu'(x + b) = [y > 0]), so the layer keeps no pre-activation.
 * y may be x and dx may be dy (in place, element for element); no other overlap is allowed.
 * db accumulates in double: the rows of each group of 4 are added in REAL, then into a double per column, per block
 * of FO_ACT_ROW_BLOCK rows; the blocks' sums are then added in block order. That order is fixed by the code, not by
 * the thread count or the instruction set, so results are the same bits everywhere. Threads split the rows (the
 * backward: whole blocks per thread). */
#ifndef FO_ACTIVATION_H
#define FO_ACTIVATION_H

#include "fo_common.h"

/* b NULL: no bias. Returns FO_OK, or FO_EINVAL for negative sizes. */
int fo_activation_bias_forward_f32(const float *x, const float *b, float *y /* out, may be x */, int64_t rows,
                                   int64_t cols, int relu, int nthreads);
int fo_activation_bias_forward_f64(const double *x, const double *b, double *y /* out, may be x */, int64_t rows,
                                   int64_t cols, int relu, int nthreads);

/* y read only with relu (may be NULL otherwise); db NULL: not wanted. Returns FO_OK, FO_EINVAL for bad sizes,
 * FO_ENOMEM out of memory (nothing written then). */
int fo_activation_bias_backward_f32(const float *dy, const float *y, float *dx /* out, may be dy */,
                                    float *db /* out */, int64_t rows, int64_t cols, int relu, int nthreads);
int fo_activation_bias_backward_f64(const double *dy, const double *y, double *dx /* out, may be dy */,
                                    double *db /* out */, int64_t rows, int64_t cols, int relu, int nthreads);

/* ---- internal: per-ISA kernels (activation_kernels.inc), chosen at run time --------------------------------- */
/* Rows [r0, r1) of y = act(x + b), b NULL allowed. */
typedef void (*fo_act_fwd_fn)(const void *x, const void *b, void *y, int64_t cols, int64_t r0, int64_t r1, int relu);
/* Rows [r0, r1): dx = dy [y > 0] (or dy), and sum[c] += column sums of dx (sum NULL: none). */
typedef void (*fo_act_bwd_fn)(const void *dy, const void *y, void *dx, int64_t cols, int64_t r0, int64_t r1,
                              int relu, double *sum /* inout */);
#define FO_ACT_ROW_BLOCK 256
typedef struct fo_act_kernels {
    fo_act_fwd_fn forward[2];   /* [FO_F32 | FO_F64] */
    fo_act_bwd_fn backward[2];
} fo_act_kernels;

/* Each path's table: csrc/kernels_<isa>.c; the active one: FO_KERNELS(FO_FAM_ACTIVATION, fo_act_kernels) (dispatch.h). */

#endif
