/* Regularize-family drivers (regularize.h): the elastic-net penalty as a blocked sum (blocked_sum.h), the max-norm
 * constraint over (outer slice, column chunk) items, dropout over the element split of runtime.h. */
#include <math.h>
#include <stdlib.h>

#include "regularize.h"
#include "dispatch.h"

static const fo_regularize_kernels *fo_regularize_table(void)
{
    return FO_KERNELS(FO_FAM_REGULARIZE, fo_regularize_kernels);
}

/* ---------------------------------------------------------------- elastic-net penalty */
typedef struct {
    fo_penalty_pair *pairs;
    const int64_t *off;        /* npairs + 1 prefix offsets */
    int64_t npairs, total;
    double l1, l2;
    fo_penalty_range_fn fn;
} fo_penalty_ctx;

static void fo_penalty_block(const void *vctx, int64_t b, double *part)
{
    const fo_penalty_ctx *ctx = (const fo_penalty_ctx *)vctx;
    const int64_t lo = b * FO_BLOCK_ELEMENTS;
    const int64_t hi = lo + FO_BLOCK_ELEMENTS < ctx->total ? lo + FO_BLOCK_ELEMENTS : ctx->total;
    int64_t a = 0, z = ctx->npairs, k;
    part[0] = part[1] = 0.0;
    while (a < z) {            /* first pair whose end is past lo */
        const int64_t mid = (a + z) / 2;
        if (ctx->off[mid + 1] <= lo)
            a = mid + 1;
        else
            z = mid;
    }
    for (k = a; k < ctx->npairs && ctx->off[k] < hi; ++k) {
        const int64_t s = lo > ctx->off[k] ? lo - ctx->off[k] : 0;
        const int64_t e = (hi < ctx->off[k + 1] ? hi : ctx->off[k + 1]) - ctx->off[k];
        if (e > s)
            ctx->fn(ctx->pairs[k].grad, ctx->pairs[k].param, s, e, ctx->l1, ctx->l2, &part[0], &part[1]);
    }
}

static int fo_penalty(int dtype, fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty,
                      int nthreads)
{
    fo_penalty_ctx ctx;
    int64_t *off, k;
    double sums[2];
    int rc;
    *penalty = 0.0;
    if (l1 == 0.0 && l2 == 0.0)
        return FO_OK;
    off = (int64_t *)malloc((size_t)(npairs + 1) * sizeof(int64_t));
    if (off == NULL)
        return FO_ENOMEM;
    off[0] = 0;
    for (k = 0; k < npairs; ++k)
        off[k + 1] = off[k] + pairs[k].numel;
    ctx.pairs = pairs;
    ctx.off = off;
    ctx.npairs = npairs;
    ctx.total = off[npairs];
    ctx.l1 = l1;
    ctx.l2 = l2;
    ctx.fn = fo_regularize_table()->penalty[dtype];
    rc = fo_blocked_sum(&ctx, fo_penalty_block, fo_block_count(ctx.total), 2,
                        fo_threads_for(ctx.total, nthreads), sums);
    free(off);
    if (rc == FO_OK)
        *penalty = l1 * sums[0] + 0.5 * l2 * sums[1];
    return rc;
}

int fo_penalty_f32(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty, int nthreads)
{ return fo_penalty(FO_F32, pairs, npairs, l1, l2, penalty, nthreads); }
int fo_penalty_f64(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty, int nthreads)
{ return fo_penalty(FO_F64, pairs, npairs, l1, l2, penalty, nthreads); }

/* ---------------------------------------------------------------- max-norm constraint */
static int fo_max_norm(int dtype, void *w, int64_t outer, int64_t axis_len, int64_t inner, double max_norm,
                       int nthreads)
{
    const fo_max_norm_block_fn fn = fo_regularize_table()->max_norm[dtype];
    const size_t item = dtype == FO_F32 ? sizeof(float) : sizeof(double);
    const int64_t chunks = (inner + FO_MAX_NORM_COLS - 1) / FO_MAX_NORM_COLS, items = outer * chunks;
    const int nth = fo_threads_for(outer * axis_len * inner, nthreads);
    int64_t it;
    (void)nth;
    if (outer <= 0 || axis_len <= 0 || inner <= 0)
        return FO_OK;
#pragma omp parallel for schedule(static) num_threads(nth) if(nth > 1 && items > 1)
    for (it = 0; it < items; ++it) {
        const int64_t o = it / chunks, i0 = (it - o * chunks) * FO_MAX_NORM_COLS;
        const int64_t i1 = i0 + FO_MAX_NORM_COLS < inner ? i0 + FO_MAX_NORM_COLS : inner;
        fn((char *)w + (size_t)(o * axis_len * inner) * item, axis_len, inner, i0, i1, max_norm);
    }
    return FO_OK;
}

int fo_max_norm_f32(float *w, int64_t outer, int64_t axis_len, int64_t inner, double max_norm, int nthreads)
{ return fo_max_norm(FO_F32, w, outer, axis_len, inner, max_norm, nthreads); }
int fo_max_norm_f64(double *w, int64_t outer, int64_t axis_len, int64_t inner, double max_norm, int nthreads)
{ return fo_max_norm(FO_F64, w, outer, axis_len, inner, max_norm, nthreads); }

/* ---------------------------------------------------------------- dropout */
uint64_t fo_dropout_key(uint64_t seed)
{
    return fo_mix64(seed + FO_GOLDEN_GAMMA);
}

/* 2^32: the number of values of an element's random bits (fo_dropout_bits). */
#define FO_DROPOUT_BITS_RANGE 4294967296.0

uint64_t fo_dropout_threshold(double p)
{
    const double t = ceil(p * FO_DROPOUT_BITS_RANGE);
    return t <= 0.0 ? 0 : (t >= FO_DROPOUT_BITS_RANGE ? (uint64_t)FO_DROPOUT_BITS_RANGE : (uint64_t)t);
}

static int fo_dropout(int dtype, const void *x, void *y, int64_t n, uint64_t seed, double p, int nthreads)
{
    const fo_dropout_range_fn fn = fo_regularize_table()->dropout[dtype];
    const uint64_t key = fo_dropout_key(seed), thr = fo_dropout_threshold(p);
    const double scale = 1.0 / (1.0 - p);
    const int nth = fo_threads_for(n, nthreads);
    if (!(p >= 0.0 && p < 1.0))
        return FO_EINVAL;
    if (nth <= 1) {
        fn(x, y, 0, n, key, thr, scale);
        return FO_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
    {
        int tid, team;
        FO_TEAM(tid, team);
        fn(x, y, fo_split(n, tid, team), fo_split(n, tid + 1, team), key, thr, scale);
    }
#else
    fn(x, y, 0, n, key, thr, scale);
#endif
    return FO_OK;
}

int fo_dropout_f32(const float *x, float *y, int64_t n, uint64_t seed, double p, int nthreads)
{ return fo_dropout(FO_F32, x, y, n, seed, p, nthreads); }
int fo_dropout_f64(const double *x, double *y, int64_t n, uint64_t seed, double p, int nthreads)
{ return fo_dropout(FO_F64, x, y, n, seed, p, nthreads); }
