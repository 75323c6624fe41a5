/* Loss-family drivers: thread teams, label checks, dispatch to the ISA kernels. Every loss sum is a blocked sum
 * (fo_blocked_sum, blocked_sum.h) over blocks of FO_BLOCK_ELEMENTS elements or of the rows holding about that
 * many: the same bits at any thread count. */
#include "loss.h"
#include "dispatch.h"

static const fo_loss_kernels *fo_loss_table(void)
{
    return FO_KERNELS(FO_FAM_LOSS, fo_loss_kernels);
}

/* ---------------------------------------------------------------- elementwise losses */
typedef struct { const fo_ew_args *a; fo_ew_range_fn fn; int64_t n; } fo_ew_ctx;

static void fo_ew_block(const void *vctx, int64_t b, double *part)
{
    const fo_ew_ctx *ctx = (const fo_ew_ctx *)vctx;
    const int64_t lo = b * FO_BLOCK_ELEMENTS;
    const int64_t hi = lo + FO_BLOCK_ELEMENTS < ctx->n ? lo + FO_BLOCK_ELEMENTS : ctx->n;
    part[0] = ctx->fn(ctx->a, lo, hi);
}

static int fo_loss_elementwise(int dtype, const fo_ew_args *a, double *total, int nthreads)
{
    fo_ew_ctx ctx;
    if (a->kind < 0 || a->kind >= FO_LOSS_KIND_COUNT || a->cols <= 0 || a->row_rep <= 0)
        return FO_EINVAL;
    ctx.a = a;
    ctx.fn = fo_loss_table()->elementwise[dtype];
    ctx.n = a->rows * a->cols;
    *total = 0.0;
    if (ctx.n <= 0)
        return FO_OK;
    return fo_blocked_sum(&ctx, fo_ew_block, fo_block_count(ctx.n), 1,
                          fo_threads_for(ctx.n, nthreads), total);
}

int fo_loss_elementwise_f32(const fo_ew_args *a, double *total, int nthreads)
{ return fo_loss_elementwise(FO_F32, a, total, nthreads); }
int fo_loss_elementwise_f64(const fo_ew_args *a, double *total, int nthreads)
{ return fo_loss_elementwise(FO_F64, a, total, nthreads); }

/* ---------------------------------------------------------------- row-wise losses */
typedef struct { const fo_rows_args *a; fo_rows_range_fn fn; int64_t rows_per_block; } fo_rows_ctx;

static void fo_rows_block(const void *vctx, int64_t b, double *part)
{
    const fo_rows_ctx *ctx = (const fo_rows_ctx *)vctx;
    const int64_t r0 = b * ctx->rows_per_block;
    const int64_t r1 = r0 + ctx->rows_per_block < ctx->a->rows ? r0 + ctx->rows_per_block : ctx->a->rows;
    part[0] = ctx->fn(ctx->a, r0, r1);
}

static int fo_loss_rows(fo_rows_range_fn fn, const fo_rows_args *a, double *total, int nthreads)
{
    fo_rows_ctx ctx;
    *total = 0.0;
    if (a->classes <= 0 || a->rows < 0)
        return FO_EINVAL;
    if (a->rows == 0)
        return FO_OK;
    ctx.a = a;
    ctx.fn = fn;
    ctx.rows_per_block = a->classes >= FO_BLOCK_ELEMENTS ? 1 : FO_BLOCK_ELEMENTS / a->classes;
    return fo_blocked_sum(&ctx, fo_rows_block, (a->rows + ctx.rows_per_block - 1) / ctx.rows_per_block, 1,
                          fo_threads_for(a->rows * a->classes, nthreads), total);
}

int fo_loss_softmax_ce_f32(const fo_rows_args *a, double *total, int nthreads)
{ return fo_loss_rows(fo_loss_table()->softmax_ce[FO_F32], a, total, nthreads); }
int fo_loss_softmax_ce_f64(const fo_rows_args *a, double *total, int nthreads)
{ return fo_loss_rows(fo_loss_table()->softmax_ce[FO_F64], a, total, nthreads); }
int fo_loss_hinge_f32(const fo_rows_args *a, double *total, int nthreads)
{ return fo_loss_rows(fo_loss_table()->hinge[FO_F32], a, total, nthreads); }
int fo_loss_hinge_f64(const fo_rows_args *a, double *total, int nthreads)
{ return fo_loss_rows(fo_loss_table()->hinge[FO_F64], a, total, nthreads); }

int64_t fo_loss_check_labels(const int64_t *labels, int64_t rows, int64_t classes, int64_t ignore_index,
                             int dtype, const void *class_weight, const void *sample_weight,
                             double *weight_sum, int64_t *counted)
{
    double s = 0.0;
    int64_t r, n = 0;
    for (r = 0; r < rows; ++r) {
        const int64_t y = labels[r];
        double w = 1.0;
        if (y == ignore_index)
            continue;
        if (y < 0 || y >= classes)
            return r;
        if (class_weight != NULL)
            w = dtype == FO_F32 ? (double)((const float *)class_weight)[y] : ((const double *)class_weight)[y];
        if (sample_weight != NULL)
            w *= dtype == FO_F32 ? (double)((const float *)sample_weight)[r] : ((const double *)sample_weight)[r];
        s += w;
        ++n;
    }
    *weight_sum = s;
    *counted = n;
    return -1;
}

/* ---------------------------------------------------------------- test hook */
int fo_loss_math_f32(const float *x, float *y, int64_t n, int which)
{
    fo_loss_table()->math[FO_F32](x, y, n, which);
    return FO_OK;
}
int fo_loss_math_f64(const double *x, double *y, int64_t n, int which)
{
    fo_loss_table()->math[FO_F64](x, y, n, which);
    return FO_OK;
}
