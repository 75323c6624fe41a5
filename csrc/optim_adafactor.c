/* Adafactor's driver (optim.h fo_adafactor_step): fixed blocks of rows, three sweeps, the O(rows + cols) factor
 * updates in between. */
#include <math.h>
#include <stdlib.h>

#include "optim.h"
#include "dispatch.h"

typedef struct {
    fo_adafactor *a;
    const fo_optim_kernels *k;
    int dtype;
    int64_t block_rows, blocks_per_matrix, ncols_part;   /* ncols_part: doubles per block's partials */
    double *row_sq, scale;
} fo_af_ctx;

/* Block blk's matrix b and its rows [r0, r1) (unfactored: elements [r0, r1) of the vector). */
static void fo_af_block_rows(const fo_af_ctx *c, int64_t blk, int64_t *b, int64_t *r0, int64_t *r1)
{
    const int64_t in = blk % c->blocks_per_matrix, extent = c->a->factored ? c->a->rows : c->a->cols;
    *b = blk / c->blocks_per_matrix;
    *r0 = in * c->block_rows;
    *r1 = *r0 + c->block_rows < extent ? *r0 + c->block_rows : extent;
}

static void fo_af_sums_block(const void *vctx, int64_t blk, double *part)
{
    const fo_af_ctx *c = (const fo_af_ctx *)vctx;
    int64_t b, r0, r1;
    fo_af_block_rows(c, blk, &b, &r0, &r1);
    c->k->adafactor_sums[c->dtype](c->a, b, r0, r1, part, c->row_sq + b * c->a->rows, part + 1);
}

static void fo_af_usq_block(const void *vctx, int64_t blk, double *part)
{
    const fo_af_ctx *c = (const fo_af_ctx *)vctx;
    int64_t b, r0, r1;
    fo_af_block_rows(c, blk, &b, &r0, &r1);
    *part = c->k->adafactor_usq[c->dtype](c->a, b, r0, r1);
}

static void fo_af_apply_block(const void *vctx, int64_t blk, double *part)
{
    const fo_af_ctx *c = (const fo_af_ctx *)vctx;
    int64_t b, r0, r1;
    fo_af_block_rows(c, blk, &b, &r0, &r1);
    c->k->adafactor_apply[c->dtype](c->a, b, r0, r1, c->scale);
    *part = 0.0;
}

/* x[i] <- torch.lerp(x[i], mean, w) with mean = (sqrt(sum[i])^2) / n in REAL (torch's norm(g, dim)^2 / n), i < m;
 * and each matrix's max(mean_r row_var, eps1). */
#define FO_AF_LERP(REAL, SQRT)                                                                        \
    static void fo_af_lerp_##REAL(REAL *x, const double *sum, int64_t m, int64_t n, double w)          \
    {                                                                                                 \
        const REAL wr = (REAL)w, wc = (REAL)1 - wr;                                                   \
        int64_t i;                                                                                    \
        for (i = 0; i < m; ++i) {                                                                     \
            REAL mean = (REAL)SQRT((REAL)sum[i]);                                                    \
            mean = mean * mean / (REAL)n;                                                             \
            x[i] = wr < (REAL)0.5 ? x[i] + wr * (mean - x[i]) : mean - (mean - x[i]) * wc;            \
        }                                                                                             \
    }                                                                                                 \
    static void fo_af_row_mean_##REAL(const fo_adafactor *a)                                          \
    {                                                                                                 \
        const REAL *r = (const REAL *)a->row_var;                                                     \
        int64_t b, i;                                                                                 \
        for (b = 0; b < a->batch; ++b) {                                                              \
            double s = 0.0;                                                                           \
            REAL mean;                                                                                \
            for (i = 0; i < a->rows; ++i)                                                             \
                s += (double)r[b * a->rows + i];                                                      \
            mean = (REAL)(s / (double)a->rows);                                                       \
            ((REAL *)a->row_mean)[b] = mean > (REAL)a->eps1 || mean != mean ? mean : (REAL)a->eps1;   \
        }                                                                                             \
    }
FO_AF_LERP(float, sqrtf)
FO_AF_LERP(double, sqrt)
#undef FO_AF_LERP

/* The factors' updates between sweeps 1 and 2, from the row sums and the blocks' column partials (added per
 * matrix in block order). */
static void fo_af_factors(fo_af_ctx *c, const double *part)
{
    fo_adafactor *a = c->a;
    int64_t b, blk, j;
    double *colsum = (double *)part;     /* reused in place: block b * blocks_per_matrix's partial gets the total */
    for (b = 0; b < a->batch; ++b) {
        double *total = colsum + b * c->blocks_per_matrix * c->ncols_part + 1;
        for (blk = 1; blk < c->blocks_per_matrix; ++blk) {
            const double *next = total + blk * c->ncols_part;
            for (j = 0; j < a->cols; ++j)
                total[j] += next[j];
        }
        if (c->dtype == FO_F32) {
            fo_af_lerp_float((float *)a->col_var + b * a->cols, total, a->cols, a->rows, a->w);
            fo_af_lerp_float((float *)a->row_var + b * a->rows, c->row_sq + b * a->rows, a->rows, a->cols, a->w);
        } else {
            fo_af_lerp_double((double *)a->col_var + b * a->cols, total, a->cols, a->rows, a->w);
            fo_af_lerp_double((double *)a->row_var + b * a->rows, c->row_sq + b * a->rows, a->rows, a->cols,
                              a->w);
        }
    }
    if (c->dtype == FO_F32)
        fo_af_row_mean_float(a);
    else
        fo_af_row_mean_double(a);
}

/* The fixed blocks of a's rows: at least FO_ADAFACTOR_ROWS rows and FO_BLOCK_ELEMENTS elements, within one matrix;
 * unfactored, FO_BLOCK_ELEMENTS elements of the vector. */
static void fo_af_blocks(fo_af_ctx *c)
{
    const fo_adafactor *a = c->a;
    int64_t rows = (FO_BLOCK_ELEMENTS + a->cols - 1) / a->cols;     /* cols > 0: the driver returns on numel 0 */
    if (!a->factored) {
        c->block_rows = FO_BLOCK_ELEMENTS;
        c->blocks_per_matrix = fo_block_count(a->cols);
        c->ncols_part = 1;
        return;
    }
    if (rows < FO_ADAFACTOR_ROWS)
        rows = FO_ADAFACTOR_ROWS;
    c->block_rows = rows < a->rows ? rows : a->rows;
    c->blocks_per_matrix = (a->rows + c->block_rows - 1) / c->block_rows;
    c->ncols_part = 1 + a->cols;
}

int fo_adafactor_step(int dtype, fo_adafactor *a, int nthreads)
{
    fo_af_ctx c;
    int64_t nblocks, blk;
    double *part, psq = 0.0, usq = 0.0, numel, alpha, denom;
    int nth;
    if ((dtype != FO_F32 && dtype != FO_F64) || a->batch < 0 || a->rows < 0 || a->cols < 0
        || (!a->factored && (a->batch != 1 || a->rows != 1)))
        return FO_EINVAL;
    numel = (double)a->batch * (double)a->rows * (double)a->cols;
    if (numel == 0.0)
        return FO_OK;
    c.a = a;
    c.k = FO_KERNELS(FO_FAM_OPTIM, fo_optim_kernels);
    c.dtype = dtype;
    fo_af_blocks(&c);
    nblocks = a->batch * c.blocks_per_matrix;
    part = (double *)malloc((size_t)(nblocks * c.ncols_part) * sizeof(double));
    c.row_sq = (double *)malloc((size_t)(a->factored ? a->batch * a->rows : 1) * sizeof(double));
    if (part == NULL || c.row_sq == NULL) {
        free(part);
        free(c.row_sq);
        return FO_ENOMEM;
    }
    nth = fo_threads_for((int64_t)numel, nthreads);
    fo_blocked_partials(&c, fo_af_sums_block, nblocks, (int)c.ncols_part, nth, NULL, part);
    for (blk = 0; blk < nblocks; ++blk)
        psq += part[blk * c.ncols_part];
    if (a->factored)
        fo_af_factors(&c, part);
    fo_blocked_partials(&c, fo_af_usq_block, nblocks, 1, nth, NULL, part);
    for (blk = 0; blk < nblocks; ++blk)
        usq += part[blk];
    alpha = fmax(a->eps2, sqrt(psq) / sqrt(numel)) * a->rho;
    denom = fmax(1.0, sqrt(usq) / (sqrt(numel) * a->d));
    c.scale = (a->maximize ? alpha : -alpha) / denom;
    fo_blocked_partials(&c, fo_af_apply_block, nblocks, 1, nth, NULL, part);
    free(part);
    free(c.row_sq);
    return FO_OK;
}
