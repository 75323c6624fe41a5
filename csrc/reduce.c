/* Reduce family drivers: norms as one blocked reduction (blocked_sum.h) over blocks that never straddle two
 * arrays; scale and clamp as element-wise segment sweeps (dispatch.h) of the concatenated element range. */
#include <math.h>
#include <stdlib.h>

#include "reduce.h"
#include "dispatch.h"

static const fo_reduce_kernels *fo_reduce_table(void)
{
    return FO_KERNELS(FO_FAM_REDUCE, fo_reduce_kernels);
}

static int64_t fo_total(const int64_t *ns, int64_t narrays)
{
    int64_t k, total = 0;
    for (k = 0; k < narrays; ++k)
        total += ns[k];
    return total;
}

/* Combines two per-array values of a norm kind: sum, or NaN-propagating max for LINF. */
static double fo_norm_combine(int kind, double acc, double v)
{
    if (kind != FO_NORM_LINF)
        return acc + v;
    return (v > acc || v != v) ? v : acc;
}

static double fo_norm_root(int kind, double s, double p)
{
    switch (kind) {
    case FO_NORM_L1:
    case FO_NORM_LINF: return s;
    case FO_NORM_L2: return sqrt(s);
    default: return pow(s, 1.0 / p);
    }
}

/* The blocks of a norm pass: array k is cut into fo_block_count(ns[k]) blocks of FO_BLOCK_ELEMENTS of its own
 * elements, blocks numbered in array order, first[k] being array k's first block (first[narrays] = nblocks). No
 * block straddles two arrays and an array's blocks depend only on its size, never on the thread count. */
typedef struct {
    fo_reduce_norm_fn fn;
    const void *const *xs;
    const int64_t *ns;
    const int64_t *first;      /* narrays + 1 */
    const int64_t *owner;      /* nblocks: the array holding block b */
    int64_t narrays;
    double p;
} fo_norm_ctx;

/* part[0] = the kernel's value (sum of |x|^p, or max |x|) over block b. */
static void fo_norm_block(const void *vctx, int64_t b, double *part)
{
    const fo_norm_ctx *ctx = (const fo_norm_ctx *)vctx;
    const int64_t k = ctx->owner[b], lo = (b - ctx->first[k]) * FO_BLOCK_ELEMENTS;
    const int64_t hi = lo + FO_BLOCK_ELEMENTS < ctx->ns[k] ? lo + FO_BLOCK_ELEMENTS : ctx->ns[k];
    part[0] = ctx->fn(ctx->xs[k], lo, hi, ctx->p);
}

/* first[0..narrays] and owner[0..nblocks) (see fo_norm_ctx) and, if work is not NULL, work[b] = the elements
 * before block b in the concatenation (nblocks + 1 values: threads take runs of about equal work). */
static void fo_norm_layout(const int64_t *ns, int64_t narrays, int64_t *first, int64_t *owner, int64_t *work)
{
    int64_t k, j, off = 0;
    first[0] = 0;
    for (k = 0; k < narrays; ++k) {
        const int64_t n = ns[k] > 0 ? ns[k] : 0, nb = fo_block_count(n);
        first[k + 1] = first[k] + nb;
        for (j = 0; j < nb; ++j)
            owner[first[k] + j] = k;
        if (work != NULL)
            for (j = 0; j < nb; ++j)
                work[first[k] + j] = off + j * FO_BLOCK_ELEMENTS;
        off += n;
    }
    if (work != NULL)
        work[first[narrays]] = off;
}

/* The norm pass, one blocked reduction (blocked_sum.h) over the blocks of fo_norm_ctx: acc[k] = array k's block
 * values combined in block order (fo_norm_combine), the same bits at any thread count. */
static int fo_reduce_norm_blocks(fo_norm_ctx *ctx, int kind, int nth, double *acc)
{
    const int64_t narrays = ctx->narrays;
    int64_t nblocks = 0, k, b;
    int64_t *first, *work = NULL;
    double *part = NULL;
    if (nth <= 1) {                  /* the same block values combined in the same order, with no tables */
        for (k = 0; k < narrays; ++k) {
            double v = 0.0;
            int64_t lo;
            for (lo = 0; lo < ctx->ns[k]; lo += FO_BLOCK_ELEMENTS)
                v = fo_norm_combine(kind, v, ctx->fn(ctx->xs[k], lo, lo + FO_BLOCK_ELEMENTS < ctx->ns[k]
                                                     ? lo + FO_BLOCK_ELEMENTS : ctx->ns[k], ctx->p));
            acc[k] = v;
        }
        return FO_OK;
    }
    for (k = 0; k < narrays; ++k)
        nblocks += fo_block_count(ctx->ns[k] > 0 ? ctx->ns[k] : 0);
    /* one index buffer: first (narrays + 1), owner (nblocks), work (nblocks + 1, threaded runs only) */
    first = (int64_t *)malloc(sizeof(int64_t) * (size_t)(narrays + 1 + nblocks + (nth > 1 ? nblocks + 1 : 0)));
    if (nblocks > 0)
        part = (double *)malloc(sizeof(double) * (size_t)nblocks);
    if (first == NULL || (nblocks > 0 && part == NULL)) {
        free(first);
        free(part);
        return FO_ENOMEM;
    }
    if (nth > 1)
        work = first + narrays + 1 + nblocks;
    fo_norm_layout(ctx->ns, narrays, first, first + narrays + 1, work);
    ctx->first = first;
    ctx->owner = first + narrays + 1;
    fo_blocked_partials(ctx, fo_norm_block, nblocks, 1, nth, work, part);
    for (k = 0; k < narrays; ++k) {
        double v = 0.0;
        for (b = first[k]; b < first[k + 1]; ++b)
            v = fo_norm_combine(kind, v, part[b]);
        acc[k] = v;
    }
    free(first);
    free(part);
    return FO_OK;
}

/* Global and per-array norms (reduce.h): the blocked pass, then the per-array values combined in array order and
 * their roots. */
static int fo_reduce_norm(int dtype, const void *const *xs, const int64_t *ns, int64_t narrays,
                          double p, double *acc, double *total, int nthreads)
{
    fo_norm_ctx ctx;
    int kind, rc;
    int64_t k;
    double s;

    if (!(p > 0.0))
        return FO_EINVAL;
    kind = p == 1.0 ? FO_NORM_L1 : p == 2.0 ? FO_NORM_L2 : isinf(p) ? FO_NORM_LINF : FO_NORM_LP;
    ctx.fn = fo_reduce_table()->norm[kind][dtype];
    ctx.xs = xs;
    ctx.ns = ns;
    ctx.first = ctx.owner = NULL;
    ctx.narrays = narrays;
    ctx.p = p;
    rc = fo_reduce_norm_blocks(&ctx, kind, fo_threads_for(fo_total(ns, narrays), nthreads), acc);
    if (rc != FO_OK)
        return rc;
    s = 0.0;
    for (k = 0; k < narrays; ++k) {
        s = fo_norm_combine(kind, s, acc[k]);
        acc[k] = fo_norm_root(kind, acc[k], p);
    }
    *total = fo_norm_root(kind, s, p);
    return FO_OK;
}

int fo_reduce_norm_f32(const float *const *xs, const int64_t *ns, int64_t narrays, double p,
                       double *per_array, double *total, int nthreads)
{
    return fo_reduce_norm(FO_F32, (const void *const *)xs, ns, narrays, p, per_array, total,
                          nthreads);
}

int fo_reduce_norm_f64(const double *const *xs, const int64_t *ns, int64_t narrays, double p,
                       double *per_array, double *total, int nthreads)
{
    return fo_reduce_norm(FO_F64, (const void *const *)xs, ns, narrays, p, per_array, total,
                          nthreads);
}

/* The segment sweep (dispatch.h) of an element-wise pass: scale when clamp_fn is NULL, else clamp. */
typedef struct {
    void *const *xs;
    const int64_t *ns;
    fo_reduce_scale_fn scale_fn;
    fo_reduce_clamp_fn clamp_fn;
    double c0, c1;
} fo_map_ctx;

static int64_t fo_map_size(const void *vctx, int64_t k)
{
    return ((const fo_map_ctx *)vctx)->ns[k];
}

static void fo_map_segment(const void *vctx, int64_t k, int64_t a, int64_t b)
{
    const fo_map_ctx *ctx = (const fo_map_ctx *)vctx;
    if (ctx->clamp_fn != NULL)
        ctx->clamp_fn(ctx->xs[k], a, b, ctx->c0, ctx->c1);
    else
        ctx->scale_fn(ctx->xs[k], a, b, ctx->c0);
}

/* Runs an element-wise kernel (scale when clamp_fn is NULL, else clamp) over every array. */
static void fo_reduce_map(void *const *xs, const int64_t *ns, int64_t narrays, fo_reduce_scale_fn scale_fn,
                          fo_reduce_clamp_fn clamp_fn, double c0, double c1, int nthreads)
{
    const int64_t n_all = fo_total(ns, narrays);
    fo_map_ctx ctx;
    ctx.xs = xs;
    ctx.ns = ns;
    ctx.scale_fn = scale_fn;
    ctx.clamp_fn = clamp_fn;
    ctx.c0 = c0;
    ctx.c1 = c1;
    fo_segment_sweep(&ctx, narrays, n_all, fo_threads_for(n_all, nthreads), fo_map_size, fo_map_segment);
}

void fo_reduce_scale_f32(float *const *xs, const int64_t *ns, int64_t narrays, double coef, int nthreads)
{
    fo_reduce_map((void *const *)xs, ns, narrays, fo_reduce_table()->scale[FO_F32], NULL, coef, 0.0, nthreads);
}

void fo_reduce_scale_f64(double *const *xs, const int64_t *ns, int64_t narrays, double coef, int nthreads)
{
    fo_reduce_map((void *const *)xs, ns, narrays, fo_reduce_table()->scale[FO_F64], NULL, coef, 0.0, nthreads);
}

void fo_reduce_clamp_f32(float *const *xs, const int64_t *ns, int64_t narrays, double lo, double hi, int nthreads)
{
    fo_reduce_map((void *const *)xs, ns, narrays, NULL, fo_reduce_table()->clamp[FO_F32], lo, hi, nthreads);
}

void fo_reduce_clamp_f64(double *const *xs, const int64_t *ns, int64_t narrays, double lo, double hi, int nthreads)
{
    fo_reduce_map((void *const *)xs, ns, narrays, NULL, fo_reduce_table()->clamp[FO_F64], lo, hi, nthreads);
}
