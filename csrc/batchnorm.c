/* Batch-normalization driver: per-channel scalars in double, passes scheduled over threads (see batchnorm.h). */
#include <math.h>
#include <stdlib.h>

#include "batchnorm.h"
#include "dispatch.h"

static const fo_bn_kernels *fo_bn_table(void)
{
    return FO_KERNELS(FO_FAM_BATCHNORM, fo_bn_kernels);
}

static double fo_bn_get(const void *p, int dtype, int64_t i)
{
    return dtype == FO_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static void fo_bn_put(void *p, int dtype, int64_t i, double v)
{
    if (dtype == FO_F32)
        ((float *)p)[i] = (float)v;
    else
        ((double *)p)[i] = v;
}

/* Everything the per-channel finishers read or write. */
typedef struct fo_bn_call {
    int dtype, training;
    const fo_bn_shape *sh;
    int64_t M;                       /* elements per channel */
    const void *gamma, *beta;        /* NULL: 1, 0 */
    void *running_mean, *running_var;
    double *save_mean, *save_invstd;
    double momentum, eps;
    void *coef;                      /* REAL[FO_BN_NCOEF][C] */
    void *dgamma, *dbeta;            /* backward outputs or NULL */
} fo_bn_call;

/* The part of the mean a REAL cannot hold: mean - (REAL)mean (0 for double). */
static double fo_bn_mean_lo(int dtype, double mean)
{
    return dtype == FO_F32 ? mean - (double)(float)mean : 0.0;
}

/* Coefficients MHI, SCALE, SHIFT of channel c from its mean and invstd. */
static void fo_bn_set_affine(const fo_bn_call *k, int64_t c, double mean, double invstd)
{
    const int64_t C = k->sh->c;
    const double g = k->gamma ? fo_bn_get(k->gamma, k->dtype, c) : 1.0;
    const double b = k->beta ? fo_bn_get(k->beta, k->dtype, c) : 0.0;
    const double lo = fo_bn_mean_lo(k->dtype, mean), scale = g * invstd;
    fo_bn_put(k->coef, k->dtype, FO_BN_MHI * C + c, mean - lo);
    fo_bn_put(k->coef, k->dtype, FO_BN_SCALE * C + c, scale);
    fo_bn_put(k->coef, k->dtype, FO_BN_SHIFT * C + c, b - lo * scale);
}

/* Forward, channel c: statistics (from the sums of x - K in training, running ones in eval), saved statistics,
 * running-statistics update, coefficients of the y pass. */
static void fo_bn_fwd_finish(const fo_bn_call *k, int64_t c, double K, double S, double Q)
{
    double mean, var, invstd;
    if (k->training) {
        const double M = (double)k->M, d = S / M;
        mean = K + d;
        var = Q / M - d * d;
        if (var < 0.0)
            var = 0.0;
        if (k->running_mean != NULL) {
            const double m = k->momentum;
            const double rm = fo_bn_get(k->running_mean, k->dtype, c);
            const double rv = fo_bn_get(k->running_var, k->dtype, c);
            fo_bn_put(k->running_mean, k->dtype, c, (1.0 - m) * rm + m * mean);
            fo_bn_put(k->running_var, k->dtype, c, (1.0 - m) * rv + m * (var * M / (M - 1.0)));
        }
    } else {
        mean = fo_bn_get(k->running_mean, k->dtype, c);
        var = fo_bn_get(k->running_var, k->dtype, c);
    }
    invstd = 1.0 / sqrt(var + k->eps);
    k->save_mean[c] = mean;
    k->save_invstd[c] = invstd;
    fo_bn_set_affine(k, c, mean, invstd);
}

/* Backward, channel c: dgamma, dbeta and the dx coefficients from sum g (SG) and sum g (x - MHI) (SGXH). */
static void fo_bn_bwd_finish(const fo_bn_call *k, int64_t c, double SG, double SGXH)
{
    const int64_t C = k->sh->c;
    const double invstd = k->save_invstd[c];
    const double lo = fo_bn_mean_lo(k->dtype, k->save_mean[c]);
    const double SGX = SGXH - lo * SG;             /* sum g (x - mean) */
    const double g = k->gamma ? fo_bn_get(k->gamma, k->dtype, c) : 1.0;
    const double k1 = g * invstd, M = (double)k->M;
    const double k2 = k->training ? -k1 * invstd * invstd * SGX / M : 0.0;
    const double k3 = k->training ? -k1 * SG / M : 0.0;
    if (k->dgamma != NULL)
        fo_bn_put(k->dgamma, k->dtype, c, SGX * invstd);
    if (k->dbeta != NULL)
        fo_bn_put(k->dbeta, k->dtype, c, SG);
    fo_bn_put(k->coef, k->dtype, FO_BN_K1 * C + c, k1);
    fo_bn_put(k->coef, k->dtype, FO_BN_K2 * C + c, k2);
    fo_bn_put(k->coef, k->dtype, FO_BN_K3 * C + c, k3 - k2 * lo);
}

static int fo_bn_check(int dtype, const fo_bn_shape *sh, int training)
{
    if ((dtype != FO_F32 && dtype != FO_F64) || sh == NULL || sh->c < 1 || sh->n < 0 || sh->s < 1)
        return FO_EINVAL;
    if (sh->layout != FO_BN_NCS && sh->layout != FO_BN_RC)
        return FO_EINVAL;
    if (sh->layout == FO_BN_RC && sh->s != 1)
        return FO_EINVAL;
    if (training && sh->n * sh->s < 2)
        return FO_EINVAL;
    return 0;
}

/* RC: the shift K of the statistics for channels [c0, c1), a pilot mean of up to 16 rows spread over the batch
 * (double, rounded to REAL), so that x - K is of the order of the standard deviation and the kernels may form it
 * and its small group sums in REAL. */
static void fo_bn_pilot_mean(const void *x, int dtype, const fo_bn_shape *sh, double *K, int64_t c0, int64_t c1)
{
    const int64_t C = sh->c, R = sh->n, take = R < 16 ? R : 16;
    int64_t j, c;
    for (c = c0; c < c1; ++c)
        K[c] = 0.0;
    for (j = 0; j < take; ++j) {
        const int64_t r = j * R / take;
        if (dtype == FO_F32) {
            const float *row = (const float *)x + r * C;
            for (c = c0; c < c1; ++c)
                K[c] += (double)row[c];
        } else {
            const double *row = (const double *)x + r * C;
            for (c = c0; c < c1; ++c)
                K[c] += row[c];
        }
    }
    for (c = c0; c < c1; ++c)
        K[c] = dtype == FO_F32 ? (double)(float)(K[c] / (double)take) : K[c] / (double)take;
}

/* NCS: whole channels per thread (thread-count independent results) unless that balances badly. */
static int fo_bn_by_channel(const fo_bn_shape *sh, int nth)
{
    return nth <= 1 || sh->c % nth == 0 || sh->c >= 8 * (int64_t)nth;
}

/* RC: channels per column block, so that a block of `narrays` inputs (R rows x cb channels) stays in a 256 KiB
 * cache between the two passes over it; 0 (split the rows instead) if blocks of 16 channels do not fit or cannot
 * keep the team busy, or if a team's row split already leaves each thread at most 512 KiB of each array: whole
 * rows then stay in that thread's cache and stream better than column blocks, whose rows a power-of-two apart
 * crowd a few cache sets (measured at (256, 1024) float32, 2 threads: forward 27 us against 39 us).
 * Results do not depend on this choice (the row blocks are the same). */
static int64_t fo_bn_col_block(const fo_bn_shape *sh, size_t esize, int nth, int narrays)
{
    int64_t cb;
    if (sh->layout != FO_BN_RC || sh->n < 1)
        return 0;
    if (nth > 1 && (sh->n + nth - 1) / nth * sh->c * (int64_t)esize <= 512 * 1024)
        return 0;
    cb = (int64_t)(256 * 1024 / (esize * (size_t)narrays)) / sh->n;
    cb &= ~(int64_t)15;
    if (cb < 16)
        return 0;
    if (nth > 1) {
        int64_t want = (sh->c + 2 * nth - 1) / (2 * nth);
        want = (want + 15) & ~(int64_t)15;
        if (want < cb)
            cb = want;
        if ((sh->c + cb - 1) / cb < nth)
            return 0;
    }
    return cb < sh->c ? cb : sh->c;
}

/* RC partial rows: C doubles padded to a 64-byte multiple. */
static int64_t fo_bn_pad(int64_t C)
{
    return (C + 7) & ~(int64_t)7;
}

/* What a pass schedule needs besides the finishers' fo_bn_call. */
typedef struct fo_bn_run {
    const fo_bn_kernels *tab;
    const void *x, *dy;              /* dy: backward only */
    void *out;                       /* y (forward) or dx (backward) */
    int relu, nth;
    int need_sums;                   /* backward: sums of g and g x wanted (training, dgamma or dbeta) */
    int64_t nblk;                    /* reduction blocks of a channel (NCS) or of the rows (RC) */
    int64_t rows, ld;                /* RC: rows per block, partial row length (fo_bn_pad(C)) */
    double *scratch;                 /* what K, tot and part point into, or NULL */
    double *K;                       /* RC forward: shifts, C */
    double *tot;                     /* RC: the two block-order sums of every channel, 2 rows of ld */
    double *part;                    /* per-block partials: 2 per block (NCS split), 2 rows of ld per block (RC) */
} fo_bn_run;

/* The reduction blocks of a pass and the scratch they need (doubles): RC, when sums are wanted, [K (forward:
 * C)] [tot: 2 ld] [part: 2 ld per block]; NCS split across the team: 2 per block. */
static size_t fo_bn_plan(fo_bn_run *r, const fo_bn_shape *sh, int forward, int by_channel)
{
    r->scratch = r->K = r->tot = r->part = NULL;
    r->ld = fo_bn_pad(sh->c);
    if (sh->layout == FO_BN_RC) {
        r->rows = fo_bn_rc_block_rows(sh);
        r->nblk = (sh->n + r->rows - 1) / r->rows;
        if (!r->need_sums)
            return 0;
        return (size_t)((forward ? sh->c : 0) + 2 * r->ld * (1 + r->nblk));
    }
    r->rows = 0;
    r->nblk = fo_block_count(sh->n * sh->s);
    return by_channel || !r->need_sums ? 0 : (size_t)(2 * r->nblk);
}

/* Points K, tot and part into the allocated scratch (the layout of fo_bn_plan). */
static void fo_bn_place(fo_bn_run *r, const fo_bn_shape *sh, int forward)
{
    double *p = r->scratch;
    if (p == NULL)
        return;
    if (sh->layout == FO_BN_NCS) {
        r->part = p;
        return;
    }
    if (forward) {
        r->K = p;
        p += sh->c;
    }
    r->tot = p;
    r->part = p + 2 * r->ld;
}

/* The coefficient table (FO_BN_NCOEF rows of C) and, if nscratch > 0, scratch (not zeroed: every partial is
 * stored before it is read); -2 (nothing kept) if either allocation fails. */
static int fo_bn_alloc(fo_bn_call *k, size_t esize, size_t nscratch, double **scratch)
{
    *scratch = NULL;
    k->coef = malloc((size_t)(FO_BN_NCOEF * k->sh->c) * esize);
    if (nscratch > 0)
        *scratch = (double *)malloc(nscratch * sizeof(double));
    if (k->coef == NULL || (nscratch > 0 && *scratch == NULL)) {
        free(k->coef);
        free(*scratch);
        return FO_ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------- NCS schedules (forward and backward) */
/* The three steps of a pass on channel c of an NCS input: sums over its elements [lo, hi) added to *a, *b;
 * the per-channel finisher from the channel's totals; the element pass over [lo, hi). */
typedef struct fo_bn_ncs_steps {
    void (*sums)(const fo_bn_call *k, const fo_bn_run *r, int64_t c, int64_t lo, int64_t hi, double *a, double *b);
    void (*finish)(const fo_bn_call *k, const fo_bn_run *r, int64_t c, double a, double b);
    void (*apply)(const fo_bn_call *k, const fo_bn_run *r, int64_t c, int64_t lo, int64_t hi);
} fo_bn_ncs_steps;

/* Forward: statistics shifted by K = the channel's first element; y pass. */
static double fo_bn_ncs_shift(const fo_bn_call *k, const fo_bn_run *r, int64_t c)
{
    return fo_bn_get(r->x, k->dtype, c * k->sh->s);
}
static void fo_bn_fwd_sums(const fo_bn_call *k, const fo_bn_run *r, int64_t c, int64_t lo, int64_t hi, double *a,
                           double *b)
{
    r->tab->stats_ncs[k->dtype](r->x, k->sh, c, lo, hi, fo_bn_ncs_shift(k, r, c), a, b);
}
static void fo_bn_fwd_fin(const fo_bn_call *k, const fo_bn_run *r, int64_t c, double a, double b)
{
    fo_bn_fwd_finish(k, c, fo_bn_ncs_shift(k, r, c), a, b);
}
static void fo_bn_fwd_apply(const fo_bn_call *k, const fo_bn_run *r, int64_t c, int64_t lo, int64_t hi)
{
    r->tab->norm_ncs[k->dtype](r->x, r->out, k->sh, c, lo, hi, k->coef, r->relu);
}
static const fo_bn_ncs_steps fo_bn_fwd_steps = { fo_bn_fwd_sums, fo_bn_fwd_fin, fo_bn_fwd_apply };

/* Backward: sums of g and g (x - MHI); dx pass. */
static void fo_bn_bwd_sums(const fo_bn_call *k, const fo_bn_run *r, int64_t c, int64_t lo, int64_t hi, double *a,
                           double *b)
{
    r->tab->bsums_ncs[k->dtype](r->dy, r->x, k->sh, c, lo, hi, k->coef, r->relu, a, b);
}
static void fo_bn_bwd_fin(const fo_bn_call *k, const fo_bn_run *r, int64_t c, double a, double b)
{
    (void)r;
    fo_bn_bwd_finish(k, c, a, b);
}
static void fo_bn_bwd_apply(const fo_bn_call *k, const fo_bn_run *r, int64_t c, int64_t lo, int64_t hi)
{
    r->tab->dx_ncs[k->dtype](r->dy, r->x, r->out, k->sh, c, lo, hi, k->coef, r->relu, k->training);
}
static const fo_bn_ncs_steps fo_bn_bwd_steps = { fo_bn_bwd_sums, fo_bn_bwd_fin, fo_bn_bwd_apply };

/* NCS reduction block b of channel c: elements [b FO_BLOCK_ELEMENTS, ...) of its M, summed from zero into
 * part[0], part[1] (an fo_block_fn). */
typedef struct fo_bn_ncs_ctx {
    const fo_bn_call *k;
    const fo_bn_run *r;
    const fo_bn_ncs_steps *st;
    int64_t c;
} fo_bn_ncs_ctx;

static void fo_bn_ncs_block(const void *ctx, int64_t b, double *part)
{
    const fo_bn_ncs_ctx *q = (const fo_bn_ncs_ctx *)ctx;
    const int64_t M = q->k->M, lo = b * FO_BLOCK_ELEMENTS;
    const int64_t hi = M - lo > FO_BLOCK_ELEMENTS ? lo + FO_BLOCK_ELEMENTS : M;
    part[0] = part[1] = 0.0;
    q->st->sums(q->k, q->r, q->c, lo, hi, part, part + 1);
}

/* Whole channels per thread: each channel's sums (if r->need_sums: its blocks in turn, added in block order),
 * then its element pass while it is in cache. */
static void fo_bn_ncs_channels(const fo_bn_call *k, const fo_bn_run *r, const fo_bn_ncs_steps *st)
{
#pragma omp parallel num_threads(r->nth) if(r->nth > 1)
    {
        int tid, team;
        int64_t cc;
        FO_TEAM(tid, team);
        for (cc = fo_split_even(k->sh->c, tid, team); cc < fo_split_even(k->sh->c, tid + 1, team); ++cc) {
            if (r->need_sums) {
                const fo_bn_ncs_ctx q = { k, r, st, cc };
                double tot[2];
                fo_blocked_sum_serial(&q, fo_bn_ncs_block, r->nblk, 2, tot);
                st->finish(k, r, cc, tot[0], tot[1]);
            }
            st->apply(k, r, cc, 0, k->M);
        }
    }
}

/* Few channels: every channel's blocks shared by the team (partials added in block order), then its element
 * pass split across the team. */
static void fo_bn_ncs_split(const fo_bn_call *k, const fo_bn_run *r, const fo_bn_ncs_steps *st)
{
    const int64_t M = k->M;
    int64_t c;
    for (c = 0; c < k->sh->c; ++c) {
        if (r->need_sums) {
            const fo_bn_ncs_ctx q = { k, r, st, c };
            double tot[2];
            fo_blocked_partials(&q, fo_bn_ncs_block, r->nblk, 2, r->nth, NULL, r->part);
            fo_blocked_combine(r->part, r->nblk, 2, 0, 2, tot);
            st->finish(k, r, c, tot[0], tot[1]);
        }
#pragma omp parallel num_threads(r->nth)
        {
            int tid, team;
            FO_TEAM(tid, team);
            st->apply(k, r, c, fo_split(M, tid, team), fo_split(M, tid + 1, team));
        }
    }
}

/* ---------------------------------------------------------------- RC (forward and backward) */
/* The block-order sums tot of channels [c0, c1) from every row block's partials. */
static void fo_bn_rc_totals(const fo_bn_run *r, int64_t c0, int64_t c1)
{
    fo_blocked_combine(r->part, r->nblk, 2 * r->ld, c0, c1, r->tot);
    fo_blocked_combine(r->part, r->nblk, 2 * r->ld, r->ld + c0, r->ld + c1, r->tot);
}

/* Forward, channels [c0, c1) once all row blocks' partials are in: sums, finishers. */
static void fo_bn_fwd_rc_finish(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1)
{
    int64_t cc;
    fo_bn_rc_totals(r, c0, c1);
    for (cc = c0; cc < c1; ++cc)
        fo_bn_fwd_finish(k, cc, r->K[cc], r->tot[cc], r->tot[r->ld + cc]);
}

/* Backward, as the forward's. */
static void fo_bn_bwd_rc_finish(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1)
{
    int64_t cc;
    fo_bn_rc_totals(r, c0, c1);
    for (cc = c0; cc < c1; ++cc)
        fo_bn_bwd_finish(k, cc, r->tot[cc], r->tot[r->ld + cc]);
}

/* The two steps of a pass on channels [c0, c1) of an RC input, all rows: sums and per-channel finishers (run
 * when r->need_sums), then the element pass. */
typedef struct fo_bn_block_steps {
    void (*sums)(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1);
    void (*apply)(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1);
} fo_bn_block_steps;

/* Forward: shifts K (pilot means), every row block's partials, finishers. */
static void fo_bn_fwd_block_sums(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1)
{
    fo_bn_pilot_mean(r->x, k->dtype, k->sh, r->K, c0, c1);
    r->tab->stats_rc[k->dtype](r->x, k->sh, 0, r->nblk, r->rows, c0, c1, r->K, r->part, r->ld);
    fo_bn_fwd_rc_finish(k, r, c0, c1);
}
static void fo_bn_fwd_block_apply(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1)
{
    r->tab->norm_rc[k->dtype](r->x, r->out, k->sh, 0, k->sh->n, c0, c1, k->coef, r->relu);
}
static const fo_bn_block_steps fo_bn_fwd_block = { fo_bn_fwd_block_sums, fo_bn_fwd_block_apply };

/* Backward: every row block's sums of g and g (x - MHI), finishers. */
static void fo_bn_bwd_block_sums(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1)
{
    r->tab->bsums_rc[k->dtype](r->dy, r->x, k->sh, 0, r->nblk, r->rows, c0, c1, k->coef, r->relu, r->part, r->ld);
    fo_bn_bwd_rc_finish(k, r, c0, c1);
}
static void fo_bn_bwd_block_apply(const fo_bn_call *k, const fo_bn_run *r, int64_t c0, int64_t c1)
{
    r->tab->dx_rc[k->dtype](r->dy, r->x, r->out, k->sh, 0, k->sh->n, c0, c1, k->coef, r->relu, k->training);
}
static const fo_bn_block_steps fo_bn_bwd_block = { fo_bn_bwd_block_sums, fo_bn_bwd_block_apply };

/* Column blocks of cb channels per thread: each block's two passes back to back, the block still in cache. */
static void fo_bn_rc_col_blocks(const fo_bn_call *k, const fo_bn_run *r, int64_t cb, const fo_bn_block_steps *st)
{
    const int64_t C = k->sh->c, nblk = (C + cb - 1) / cb;
#pragma omp parallel num_threads(r->nth) if(r->nth > 1)
    {
        int tid, team;
        int64_t b;
        FO_TEAM(tid, team);
        for (b = fo_split_even(nblk, tid, team); b < fo_split_even(nblk, tid + 1, team); ++b) {
            const int64_t c0 = b * cb, c1 = c0 + cb < C ? c0 + cb : C;
            if (r->need_sums)
                st->sums(k, r, c0, c1);
            st->apply(k, r, c0, c1);
        }
    }
}

/* RC, rows shared by the team: each thread's run of row blocks into their partials, then the block-order sums
 * and finishers of each thread's share of the channels, then every thread's y pass over its rows. */
static void fo_bn_fwd_rows(const fo_bn_call *k, const fo_bn_run *r)
{
    const fo_bn_shape *sh = k->sh;
    const int dtype = k->dtype;
    const int64_t C = sh->c;
#pragma omp parallel num_threads(r->nth) if(r->nth > 1)
    {
        int tid, team;
        int64_t clo, chi;
        FO_TEAM(tid, team);
        clo = fo_split_even(C, tid, team);        /* each thread's channels for the per-channel steps */
        chi = fo_split_even(C, tid + 1, team);
        if (k->training) {
            fo_bn_pilot_mean(r->x, dtype, sh, r->K, clo, chi);
#pragma omp barrier
            r->tab->stats_rc[dtype](r->x, sh, fo_split_even(r->nblk, tid, team), fo_split_even(r->nblk, tid + 1, team),
                                    r->rows, 0, C, r->K, r->part, r->ld);
#pragma omp barrier
            fo_bn_fwd_rc_finish(k, r, clo, chi);
#pragma omp barrier
        }
        r->tab->norm_rc[dtype](r->x, r->out, sh, fo_split_even(sh->n, tid, team), fo_split_even(sh->n, tid + 1, team),
                               0, C, k->coef, r->relu);
    }
}

/* RC, rows shared by the team (as the forward's). */
static void fo_bn_bwd_rows(const fo_bn_call *k, const fo_bn_run *r)
{
    const fo_bn_shape *sh = k->sh;
    const int dtype = k->dtype;
    const int64_t C = sh->c;
#pragma omp parallel num_threads(r->nth) if(r->nth > 1)
    {
        int tid, team;
        int64_t lo, hi;
        FO_TEAM(tid, team);
        lo = fo_split_even(sh->n, tid, team);
        hi = fo_split_even(sh->n, tid + 1, team);
        if (r->need_sums) {
            r->tab->bsums_rc[dtype](r->dy, r->x, sh, fo_split_even(r->nblk, tid, team),
                                    fo_split_even(r->nblk, tid + 1, team), r->rows, 0, C, k->coef, r->relu, r->part,
                                    r->ld);
#pragma omp barrier
            fo_bn_bwd_rc_finish(k, r, fo_split_even(C, tid, team), fo_split_even(C, tid + 1, team));
#pragma omp barrier
        }
        r->tab->dx_rc[dtype](r->dy, r->x, r->out, sh, lo, hi, 0, C, k->coef, r->relu, k->training);
    }
}

int fo_batchnorm_forward(int dtype, const void *x, void *y, const fo_bn_shape *sh, const void *gamma,
                         const void *beta, void *running_mean, void *running_var, double *save_mean,
                         double *save_invstd, int training, double momentum, double eps, int relu, int nthreads)
{
    fo_bn_call k;
    fo_bn_run run;
    size_t esize, nscratch = 0;
    int64_t c, cb;
    int by_channel;

    if (fo_bn_check(dtype, sh, training) != 0)
        return FO_EINVAL;
    if ((running_mean == NULL) != (running_var == NULL) || (!training && running_mean == NULL))
        return FO_EINVAL;
    esize = dtype == FO_F32 ? sizeof(float) : sizeof(double);
    run.tab = fo_bn_table();
    run.x = x; run.dy = NULL; run.out = y; run.relu = relu; run.need_sums = training;
    run.nth = fo_threads_for(sh->n * sh->s * sh->c, nthreads);
    by_channel = sh->layout == FO_BN_NCS && fo_bn_by_channel(sh, run.nth);
    cb = fo_bn_col_block(sh, esize, run.nth, 1);

    k.dtype = dtype; k.training = training; k.sh = sh; k.M = sh->n * sh->s;
    k.gamma = gamma; k.beta = beta; k.running_mean = running_mean; k.running_var = running_var;
    k.save_mean = save_mean; k.save_invstd = save_invstd; k.momentum = momentum; k.eps = eps;
    k.dgamma = k.dbeta = NULL;
    nscratch = fo_bn_plan(&run, sh, 1, by_channel);
    if (fo_bn_alloc(&k, esize, nscratch, &run.scratch) != 0)
        return FO_ENOMEM;
    fo_bn_place(&run, sh, 1);

    if (!training)
        for (c = 0; c < sh->c; ++c)
            fo_bn_fwd_finish(&k, c, 0.0, 0.0, 0.0);
    if (by_channel)
        fo_bn_ncs_channels(&k, &run, &fo_bn_fwd_steps);
    else if (sh->layout == FO_BN_NCS)
        fo_bn_ncs_split(&k, &run, &fo_bn_fwd_steps);
    else if (cb > 0)
        fo_bn_rc_col_blocks(&k, &run, cb, &fo_bn_fwd_block);
    else
        fo_bn_fwd_rows(&k, &run);
    free(k.coef);
    free(run.scratch);
    return 0;
}

int fo_batchnorm_backward(int dtype, const void *dy, const void *x, void *dx, const fo_bn_shape *sh,
                          const void *gamma, const void *beta, const double *save_mean, const double *save_invstd,
                          void *dgamma, void *dbeta, int training, int relu, int nthreads)
{
    fo_bn_call k;
    fo_bn_run run;
    size_t esize, nscratch = 0;
    int64_t c, cb;
    int by_channel;

    if (fo_bn_check(dtype, sh, training) != 0 || save_mean == NULL || save_invstd == NULL)
        return FO_EINVAL;
    esize = dtype == FO_F32 ? sizeof(float) : sizeof(double);
    run.tab = fo_bn_table();
    run.x = x; run.dy = dy; run.out = dx; run.relu = relu;
    run.need_sums = training || dgamma != NULL || dbeta != NULL;
    run.nth = fo_threads_for(sh->n * sh->s * sh->c, nthreads);
    by_channel = sh->layout == FO_BN_NCS && fo_bn_by_channel(sh, run.nth);
    cb = fo_bn_col_block(sh, esize, run.nth, 2);

    k.dtype = dtype; k.training = training; k.sh = sh; k.M = sh->n * sh->s;
    k.gamma = gamma; k.beta = beta; k.running_mean = k.running_var = NULL;
    k.save_mean = (double *)save_mean; k.save_invstd = (double *)save_invstd;
    k.momentum = 0.0; k.eps = 0.0; k.dgamma = dgamma; k.dbeta = dbeta;
    nscratch = fo_bn_plan(&run, sh, 0, by_channel);
    if (fo_bn_alloc(&k, esize, nscratch, &run.scratch) != 0)
        return FO_ENOMEM;
    fo_bn_place(&run, sh, 0);

    for (c = 0; c < sh->c; ++c)
        fo_bn_set_affine(&k, c, save_mean[c], save_invstd[c]);
    if (!run.need_sums)
        for (c = 0; c < sh->c; ++c)
            fo_bn_bwd_finish(&k, c, 0.0, 0.0);
    if (by_channel)
        fo_bn_ncs_channels(&k, &run, &fo_bn_bwd_steps);
    else if (sh->layout == FO_BN_NCS)
        fo_bn_ncs_split(&k, &run, &fo_bn_bwd_steps);
    else if (cb > 0)
        fo_bn_rc_col_blocks(&k, &run, cb, &fo_bn_bwd_block);
    else
        fo_bn_bwd_rows(&k, &run);
    free(k.coef);
    free(run.scratch);
    return 0;
}
