/* fastopt loss family: losses that return the loss and its gradient from one fused pass, elastic-net penalty
 * gradients, the max-norm constraint, and dropout with a counter-based (storage-free) mask.
 *
 * Every reduction is accumulated in double over fixed blocks whose partial sums are added in block order, so a
 * loss or penalty value is bit-identical at any thread count (it may differ in the last bits between instruction
 * set paths, whose SIMD widths order the additions inside a block differently). Every output array is
 * bit-identical at any thread count; those with neither a reduction nor exp/log (MSE, MAE, Huber and penalty
 * gradients, max-norm, dropout) also on every path, while softmax and BCE outputs agree across paths to rounding
 * (the AVX2 / AVX-512 exp and log use fused multiply-adds). */
#ifndef FO_LOSS_H
#define FO_LOSS_H

#include "fo_common.h"

/* Elementwise loss kinds. */
enum fo_loss_kind {
    FO_LOSS_MSE = 0,     /* l = d^2,                               d = x - t */
    FO_LOSS_MAE = 1,     /* l = |d| */
    FO_LOSS_HUBER = 2,   /* l = d^2 / 2 if |d| <= delta else delta (|d| - delta / 2) */
    FO_LOSS_BCE = 3,     /* l = (1 - t) x + (1 + (pw - 1) t) softplus(-x)   (binary cross-entropy with logits) */
    FO_LOSS_KIND_COUNT = 4
};

/* Elementwise loss over `input` viewed as rows x cols (C order). The weight of element (r, c) is
 * w = row_weight[r / row_rep] * col_weight[c] (a NULL array counts as 1). The kernel writes
 * grad = scale * w * dl/dx and, if loss_out is not NULL, loss_out = w * l; it returns sum(w * l) (double). */
typedef struct fo_ew_args {
    int kind;
    const void *input, *target;        /* rows * cols elements */
    int64_t rows, cols;
    const void *row_weight;            /* NULL or ceil(rows / row_rep) elements */
    int64_t row_rep;                   /* >= 1 */
    const void *col_weight;            /* NULL or cols elements */
    const void *pos_weight;            /* BCE: NULL (then pos_weight_scalar) or cols elements */
    double pos_weight_scalar;
    double delta;                      /* Huber */
    double scale;                      /* 1 / denominator for reduction "mean", else 1 */
    void *loss_out;                    /* out: NULL or rows * cols */
    void *grad;                        /* out: rows * cols */
} fo_ew_args;

/* Row-wise losses over logits of rows x classes: softmax cross-entropy and multi-class hinge.
 *
 * Softmax cross-entropy, with z = x - max(x), s = sum_c exp(z_c), p = exp(z) / s, sw = sample_weight[r] (or 1),
 * w_c = class_weight[c] (or 1); row loss L = A log(s) - sum_c a_c z_c and gradient g_c = p_c A - a_c, A = sum a_c:
 *   labels (class indices y): a_c = sw (alpha w_y [c == y] + beta w_c); rows with y == ignore_index give 0;
 *   probs (target distributions t): a_c = sw alpha w_c (smooth_keep t_c + smooth_unif).
 * Multi-class hinge (labels): L = sw w_y / C * sum_{c != y} max(0, margin - x_y + x_c) * alpha.
 * The kernel writes grad, loss_out[r] = L if loss_out is not NULL, and returns sum_r L (double). */
typedef struct fo_rows_args {
    const void *logits;                /* rows * classes */
    int64_t rows, classes;
    const int64_t *labels;             /* rows class indices (in range or ignore_index), or NULL */
    const void *probs;                 /* rows * classes, or NULL */
    const void *class_weight;          /* NULL or classes */
    const void *sample_weight;         /* NULL or rows */
    int64_t ignore_index;
    double alpha, beta;
    double smooth_keep, smooth_unif;
    double class_weight_sum;           /* sum_c w_c (classes when class_weight is NULL) */
    double margin;                     /* hinge */
    void *loss_out;                    /* out: NULL or rows */
    void *grad;                        /* out: rows * classes */
} fo_rows_args;

/* One (grad, param) pair of an elastic-net penalty call. */
typedef struct fo_penalty_pair {
    void *grad;                        /* inout */
    const void *param;
    int64_t numel;
} fo_penalty_pair;

/* Return codes. */
#define FO_LOSS_OK 0
#define FO_LOSS_EINVAL -1              /* unknown kind or dtype: nothing written */

/* Elementwise losses (fo_ew_args). *total receives sum(w * l). */
int fo_loss_elementwise_f32(const fo_ew_args *a, double *total, int nthreads);
int fo_loss_elementwise_f64(const fo_ew_args *a, double *total, int nthreads);

/* Softmax cross-entropy and hinge (fo_rows_args); *total receives sum_r L. */
int fo_loss_softmax_ce_f32(const fo_rows_args *a, double *total, int nthreads);
int fo_loss_softmax_ce_f64(const fo_rows_args *a, double *total, int nthreads);
int fo_loss_hinge_f32(const fo_rows_args *a, double *total, int nthreads);
int fo_loss_hinge_f64(const fo_rows_args *a, double *total, int nthreads);

/* Checks class labels and sums the weights of the rows that count: returns -1 if every label is in [0, classes)
 * or equals ignore_index (then *weight_sum = sum over those rows of sample_weight[r] * class_weight[y_r], and
 * *counted = their number), else the index of the first bad label. Weights are float32 (dtype FO_F32) or
 * float64 arrays or NULL. */
int64_t fo_loss_check_labels(const int64_t *labels, int64_t rows, int64_t classes, int64_t ignore_index,
                             int dtype, const void *class_weight, const void *sample_weight,
                             double *weight_sum /* out */, int64_t *counted /* out */);

/* Elastic net over npairs (grad, param) pairs: grad += l1 sign(param) + l2 param (sign(0) = 0);
 * *penalty = l1 sum |param| + l2 / 2 sum param^2. */
int fo_loss_penalty_f32(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty,
                        int nthreads);
int fo_loss_penalty_f64(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty,
                        int nthreads);

/* Max-norm constraint on w viewed as outer x axis_len x inner: for each (o, i), the vector v = w[o, :, i] with
 * norm n = ||v||_2 > max_norm is scaled by max_norm / (n + 1e-7) (torch.renorm's rule). */
int fo_loss_max_norm_f32(float *w /* inout */, int64_t outer, int64_t axis_len, int64_t inner, double max_norm,
                         int nthreads);
int fo_loss_max_norm_f64(double *w /* inout */, int64_t outer, int64_t axis_len, int64_t inner, double max_norm,
                         int nthreads);

/* Dropout with a counter-based mask: y_i = x_i * keep_i * scale, keep_i = (u_i >= threshold) where
 * u_i = fo_dropout_bits(key, i) (32 bits), key = fo_dropout_key(seed), threshold = ceil(p 2^32) and
 * scale = 1 / (1 - p) rounded to the dtype. The mask depends only on (seed, i): no storage, any thread count,
 * and the backward pass applies the same function to dy. x and y may be the same array (not partial overlaps). */
uint64_t fo_dropout_key(uint64_t seed);
uint64_t fo_dropout_threshold(double p);
int fo_dropout_f32(const float *x, float *y /* out */, int64_t n, uint64_t seed, double p, int nthreads);
int fo_dropout_f64(const double *x, double *y /* out */, int64_t n, uint64_t seed, double p, int nthreads);

/* Test hook: y = exp(x) (which 0), log(x) (1) or log1p(x) (2) with the vectorized functions the kernels use. */
int fo_loss_math_f32(const float *x, float *y /* out */, int64_t n, int which);
int fo_loss_math_f64(const double *x, double *y /* out */, int64_t n, int which);

/* ---- Per-instruction-set kernels (loss_<isa>.c), chosen at run time by loss.c. */
typedef double (*fo_ew_range_fn)(const fo_ew_args *a, int64_t lo, int64_t hi);
typedef double (*fo_rows_range_fn)(const fo_rows_args *a, int64_t r0, int64_t r1);
typedef void (*fo_penalty_range_fn)(void *grad, const void *param, int64_t lo, int64_t hi, double l1, double l2,
                                    double *sum_abs /* inout */, double *sum_sq /* inout */);
typedef void (*fo_max_norm_block_fn)(void *w, int64_t axis_len, int64_t inner, int64_t i0, int64_t i1,
                                     double max_norm);
typedef void (*fo_dropout_range_fn)(const void *x, void *y, int64_t lo, int64_t hi, uint64_t key,
                                    uint64_t threshold, double scale);
typedef void (*fo_math_fn)(const void *x, void *y /* out */, int64_t n, int which);
typedef struct fo_loss_kernels {
    fo_ew_range_fn elementwise[2];     /* [dtype]: elements [lo, hi), returns sum(w * l) */
    fo_rows_range_fn softmax_ce[2];    /* rows [r0, r1), returns the sum of row losses in row order */
    fo_rows_range_fn hinge[2];
    fo_penalty_range_fn penalty[2];
    fo_max_norm_block_fn max_norm[2];  /* one outer slice, inner columns [i0, i1) */
    fo_dropout_range_fn dropout[2];
    fo_math_fn math[2];                /* test hook: the kernels' exp (which 0), log (1), log1p (2) */
} fo_loss_kernels;

/* Each path's table: csrc/kernels_<isa>.c; the active one: FO_KERNELS(FO_FAM_LOSS, fo_loss_kernels) (dispatch.h). */

#endif
