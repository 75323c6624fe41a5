/* fastopt loss family: losses that return the loss and its gradient from one fused pass (MSE, MAE, Huber, binary
 * cross-entropy with logits, softmax cross-entropy, multi-class hinge). The penalty, max-norm and dropout are the
 * regularize family's (regularize.h).
 *
 * Every loss value is a blocked sum (blocked_sum.h) accumulated in double, so it is bit-identical at any thread
 * count (it may differ in the last bits between instruction-set paths, whose SIMD widths order the additions inside
 * a block differently). Every output array is bit-identical at any thread count; those without exp/log (MSE, MAE,
 * Huber gradients) also on every path, while softmax and BCE outputs agree across paths to rounding (the AVX2 /
 * AVX-512 exp and log use fused multiply-adds). Entry points return FO_OK or FO_EINVAL (fo_common.h: unknown kind,
 * bad size; nothing written) or FO_ENOMEM. */
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

/* Test hook: y = exp(x) (which 0), log(x) (1) or log1p(x) (2) with the vectorized functions the kernels use. */
int fo_loss_math_f32(const float *x, float *y /* out */, int64_t n, int which);
int fo_loss_math_f64(const double *x, double *y /* out */, int64_t n, int which);

/* ---- Per-instruction-set kernels (loss_kernels.inc), chosen at run time by loss.c. */
typedef double (*fo_ew_range_fn)(const fo_ew_args *a, int64_t lo, int64_t hi);
typedef double (*fo_rows_range_fn)(const fo_rows_args *a, int64_t r0, int64_t r1);
typedef void (*fo_math_fn)(const void *x, void *y /* out */, int64_t n, int which);
typedef struct fo_loss_kernels {
    fo_ew_range_fn elementwise[2];     /* [dtype]: elements [lo, hi), returns sum(w * l) */
    fo_rows_range_fn softmax_ce[2];    /* rows [r0, r1), returns the sum of row losses in row order */
    fo_rows_range_fn hinge[2];
    fo_math_fn math[2];                /* test hook: the kernels' exp (which 0), log (1), log1p (2) */
} fo_loss_kernels;

/* Each path's table: csrc/kernels_<isa>.c; the active one: FO_KERNELS(FO_FAM_LOSS, fo_loss_kernels) (dispatch.h). */

#endif
