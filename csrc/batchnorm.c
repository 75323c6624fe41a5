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

/* Even split of `total` items: thread tid of team gets [fo_bn_split(tid), fo_bn_split(tid + 1)). */
static int64_t fo_bn_split(int64_t total, int tid, int team)
{
    return tid >= team ? total : (int64_t)((double)total * tid / team);
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
        return -1;
    if (sh->layout != FO_BN_NCS && sh->layout != FO_BN_RC)
        return -1;
    if (sh->layout == FO_BN_RC && sh->s != 1)
        return -1;
    if (training && sh->n * sh->s < 2)
        return -1;
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
 * Column blocks need no per-thread partial sums: results do not depend on the thread count. */
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

/* Per-thread partial sums for RC: 2 rows of C doubles per thread, padded to a 64-byte multiple. */
static int64_t fo_bn_pad(int64_t C)
{
    return (C + 7) & ~(int64_t)7;
}

/* Channel c's two sums from the per-thread partial rows (thread t's at rows 2t and 2t + 1, ld apart), added in
 * thread order. */
static void fo_bn_part_sums(const double *part, int64_t ld, int team, int64_t c, double *first, double *second)
{
    double a = 0.0, b = 0.0;
    int t;
    for (t = 0; t < team; ++t) {
        a += part[2 * t * ld + c];
        b += part[(2 * t + 1) * ld + c];
    }
    *first = a;
    *second = b;
}

int fo_batchnorm_forward(int dtype, const void *x, void *y, const fo_bn_shape *sh, const void *gamma,
                         const void *beta, void *running_mean, void *running_var, double *save_mean,
                         double *save_invstd, int training, double momentum, double eps, int relu, int nthreads)
{
    const fo_bn_kernels *tab;
    fo_bn_call k;
    int64_t C, M, c, total;
    size_t esize;
    double *scratch = NULL;
    size_t nscratch = 0;
    int64_t cb;
    int nth;

    if (fo_bn_check(dtype, sh, training) != 0)
        return -1;
    if ((running_mean == NULL) != (running_var == NULL) || (!training && running_mean == NULL))
        return -1;
    tab = fo_bn_table();
    C = sh->c;
    M = sh->n * sh->s;
    total = M * C;
    esize = dtype == FO_F32 ? sizeof(float) : sizeof(double);
    nth = fo_threads_for(total, nthreads);
    cb = fo_bn_col_block(sh, esize, nth, 1);

    k.dtype = dtype; k.training = training; k.sh = sh; k.M = M;
    k.gamma = gamma; k.beta = beta; k.running_mean = running_mean; k.running_var = running_var;
    k.save_mean = save_mean; k.save_invstd = save_invstd; k.momentum = momentum; k.eps = eps;
    k.dgamma = k.dbeta = NULL;
    k.coef = malloc((size_t)(FO_BN_NCOEF * C) * esize);
    if (sh->layout == FO_BN_RC && training)
        nscratch = (size_t)(C + 2 * nth * fo_bn_pad(C));
    else if (sh->layout == FO_BN_NCS && !fo_bn_by_channel(sh, nth))
        nscratch = (size_t)(2 * nth);
    if (nscratch > 0)
        scratch = (double *)calloc(nscratch, sizeof(double));
    if (k.coef == NULL || (nscratch > 0 && scratch == NULL)) {
        free(k.coef);
        free(scratch);
        return -2;
    }

    if (!training)
        for (c = 0; c < C; ++c)
            fo_bn_fwd_finish(&k, c, 0.0, 0.0, 0.0);

    if (sh->layout == FO_BN_NCS && fo_bn_by_channel(sh, nth)) {
#pragma omp parallel num_threads(nth) if(nth > 1)
        {
            int tid, team;
            int64_t cc;
            FO_TEAM(tid, team);
            for (cc = fo_bn_split(C, tid, team); cc < fo_bn_split(C, tid + 1, team); ++cc) {
                if (training) {
                    const double K = fo_bn_get(x, dtype, cc * sh->s);
                    double S = 0.0, Q = 0.0;
                    tab->stats_ncs[dtype](x, sh, cc, 0, M, K, &S, &Q);
                    fo_bn_fwd_finish(&k, cc, K, S, Q);
                }
                tab->norm_ncs[dtype](x, y, sh, cc, 0, M, k.coef, relu);
            }
        }
    } else if (sh->layout == FO_BN_NCS) {
        /* few channels: every channel's elements split across the team */
        for (c = 0; c < C; ++c) {
            const double K = fo_bn_get(x, dtype, c * sh->s);
            if (training) {
                double S = 0.0, Q = 0.0;
                int t;
#pragma omp parallel num_threads(nth)
                {
                    int tid, team;
                    FO_TEAM(tid, team);
                    scratch[2 * tid] = scratch[2 * tid + 1] = 0.0;
                    tab->stats_ncs[dtype](x, sh, c, fo_split(M, tid, team), fo_split(M, tid + 1, team), K,
                                          &scratch[2 * tid], &scratch[2 * tid + 1]);
                }
                for (t = 0; t < nth; ++t) {
                    S += scratch[2 * t];
                    Q += scratch[2 * t + 1];
                }
                fo_bn_fwd_finish(&k, c, K, S, Q);
            }
#pragma omp parallel num_threads(nth)
            {
                int tid, team;
                FO_TEAM(tid, team);
                tab->norm_ncs[dtype](x, y, sh, c, fo_split(M, tid, team), fo_split(M, tid + 1, team), k.coef, relu);
            }
        }
    } else if (cb > 0) {
        /* column blocks: each block's statistics and y pass back to back, the block still in cache */
        double *K = scratch, *S = scratch + C, *Q = scratch + C + fo_bn_pad(C);
        const int64_t nblk = (C + cb - 1) / cb;
#pragma omp parallel num_threads(nth) if(nth > 1)
        {
            int tid, team;
            int64_t b, cc;
            FO_TEAM(tid, team);
            for (b = fo_bn_split(nblk, tid, team); b < fo_bn_split(nblk, tid + 1, team); ++b) {
                const int64_t c0 = b * cb, c1 = c0 + cb < C ? c0 + cb : C;
                if (training) {
                    fo_bn_pilot_mean(x, dtype, sh, K, c0, c1);
                    tab->stats_rc[dtype](x, sh, 0, sh->n, c0, c1, K, S, Q);
                    for (cc = c0; cc < c1; ++cc)
                        fo_bn_fwd_finish(&k, cc, K[cc], S[cc], Q[cc]);
                }
                tab->norm_rc[dtype](x, y, sh, 0, sh->n, c0, c1, k.coef, relu);
            }
        }
    } else {
        double *K = scratch, *part = scratch + C;
        const int64_t ld = fo_bn_pad(C);
#pragma omp parallel num_threads(nth) if(nth > 1)
        {
            int tid, team;
            int64_t lo, hi, clo, chi;
            FO_TEAM(tid, team);
            lo = fo_bn_split(sh->n, tid, team);
            hi = fo_bn_split(sh->n, tid + 1, team);
            clo = fo_bn_split(C, tid, team);        /* each thread's channels for the per-channel steps */
            chi = fo_bn_split(C, tid + 1, team);
            if (training) {
                int64_t cc;
                fo_bn_pilot_mean(x, dtype, sh, K, clo, chi);
#pragma omp barrier
                tab->stats_rc[dtype](x, sh, lo, hi, 0, C, K, part + 2 * tid * ld, part + (2 * tid + 1) * ld);
#pragma omp barrier
                for (cc = clo; cc < chi; ++cc) {
                    double S, Q;
                    fo_bn_part_sums(part, ld, team, cc, &S, &Q);
                    fo_bn_fwd_finish(&k, cc, K[cc], S, Q);
                }
#pragma omp barrier
            }
            tab->norm_rc[dtype](x, y, sh, lo, hi, 0, C, k.coef, relu);
        }
    }
    free(k.coef);
    free(scratch);
    return 0;
}

int fo_batchnorm_backward(int dtype, const void *dy, const void *x, void *dx, const fo_bn_shape *sh,
                          const void *gamma, const void *beta, const double *save_mean, const double *save_invstd,
                          void *dgamma, void *dbeta, int training, int relu, int nthreads)
{
    const fo_bn_kernels *tab;
    fo_bn_call k;
    int64_t C, M, c, total;
    size_t esize;
    double *scratch = NULL;
    int64_t cb;
    int nth, need_sums, by_channel;

    if (fo_bn_check(dtype, sh, training) != 0 || save_mean == NULL || save_invstd == NULL)
        return -1;
    tab = fo_bn_table();
    C = sh->c;
    M = sh->n * sh->s;
    total = M * C;
    esize = dtype == FO_F32 ? sizeof(float) : sizeof(double);
    nth = fo_threads_for(total, nthreads);
    need_sums = training || dgamma != NULL || dbeta != NULL;
    by_channel = sh->layout == FO_BN_NCS && fo_bn_by_channel(sh, nth);
    cb = fo_bn_col_block(sh, esize, nth, 2);

    k.dtype = dtype; k.training = training; k.sh = sh; k.M = M;
    k.gamma = gamma; k.beta = beta; k.running_mean = k.running_var = NULL;
    k.save_mean = (double *)save_mean; k.save_invstd = (double *)save_invstd;
    k.momentum = 0.0; k.eps = 0.0; k.dgamma = dgamma; k.dbeta = dbeta;
    k.coef = malloc((size_t)(FO_BN_NCOEF * C) * esize);
    if (sh->layout == FO_BN_RC)
        scratch = (double *)calloc((size_t)(2 * nth * fo_bn_pad(C)), sizeof(double));
    else if (!by_channel)
        scratch = (double *)calloc((size_t)(2 * nth), sizeof(double));
    if (k.coef == NULL || (scratch == NULL && !by_channel)) {
        free(k.coef);
        free(scratch);
        return -2;
    }
    for (c = 0; c < C; ++c)
        fo_bn_set_affine(&k, c, save_mean[c], save_invstd[c]);
    if (!need_sums)
        for (c = 0; c < C; ++c)
            fo_bn_bwd_finish(&k, c, 0.0, 0.0);

    if (by_channel) {
#pragma omp parallel num_threads(nth) if(nth > 1)
        {
            int tid, team;
            int64_t cc;
            FO_TEAM(tid, team);
            for (cc = fo_bn_split(C, tid, team); cc < fo_bn_split(C, tid + 1, team); ++cc) {
                if (need_sums) {
                    double SG = 0.0, SGX = 0.0;
                    tab->bsums_ncs[dtype](dy, x, sh, cc, 0, M, k.coef, relu, &SG, &SGX);
                    fo_bn_bwd_finish(&k, cc, SG, SGX);
                }
                tab->dx_ncs[dtype](dy, x, dx, sh, cc, 0, M, k.coef, relu, training);
            }
        }
    } else if (sh->layout == FO_BN_NCS) {
        for (c = 0; c < C; ++c) {
            if (need_sums) {
                double SG = 0.0, SGX = 0.0;
                int t;
#pragma omp parallel num_threads(nth)
                {
                    int tid, team;
                    FO_TEAM(tid, team);
                    scratch[2 * tid] = scratch[2 * tid + 1] = 0.0;
                    tab->bsums_ncs[dtype](dy, x, sh, c, fo_split(M, tid, team), fo_split(M, tid + 1, team), k.coef,
                                          relu, &scratch[2 * tid], &scratch[2 * tid + 1]);
                }
                for (t = 0; t < nth; ++t) {
                    SG += scratch[2 * t];
                    SGX += scratch[2 * t + 1];
                }
                fo_bn_bwd_finish(&k, c, SG, SGX);
            }
#pragma omp parallel num_threads(nth)
            {
                int tid, team;
                FO_TEAM(tid, team);
                tab->dx_ncs[dtype](dy, x, dx, sh, c, fo_split(M, tid, team), fo_split(M, tid + 1, team), k.coef, relu,
                                   training);
            }
        }
    } else if (cb > 0) {
        double *SG = scratch, *SGX = scratch + fo_bn_pad(C);
        const int64_t nblk = (C + cb - 1) / cb;
#pragma omp parallel num_threads(nth) if(nth > 1)
        {
            int tid, team;
            int64_t b, cc;
            FO_TEAM(tid, team);
            for (b = fo_bn_split(nblk, tid, team); b < fo_bn_split(nblk, tid + 1, team); ++b) {
                const int64_t c0 = b * cb, c1 = c0 + cb < C ? c0 + cb : C;
                if (need_sums) {
                    tab->bsums_rc[dtype](dy, x, sh, 0, sh->n, c0, c1, k.coef, relu, SG, SGX);
                    for (cc = c0; cc < c1; ++cc)
                        fo_bn_bwd_finish(&k, cc, SG[cc], SGX[cc]);
                }
                tab->dx_rc[dtype](dy, x, dx, sh, 0, sh->n, c0, c1, k.coef, relu, training);
            }
        }
    } else {
        double *part = scratch;
        const int64_t ld = fo_bn_pad(C);
#pragma omp parallel num_threads(nth) if(nth > 1)
        {
            int tid, team;
            int64_t lo, hi;
            FO_TEAM(tid, team);
            lo = fo_bn_split(sh->n, tid, team);
            hi = fo_bn_split(sh->n, tid + 1, team);
            if (need_sums) {
                const int64_t clo = fo_bn_split(C, tid, team), chi = fo_bn_split(C, tid + 1, team);
                int64_t cc;
                tab->bsums_rc[dtype](dy, x, sh, lo, hi, 0, C, k.coef, relu, part + 2 * tid * ld,
                                     part + (2 * tid + 1) * ld);
#pragma omp barrier
                for (cc = clo; cc < chi; ++cc) {
                    double SG, SGX;
                    fo_bn_part_sums(part, ld, team, cc, &SG, &SGX);
                    fo_bn_bwd_finish(&k, cc, SG, SGX);
                }
#pragma omp barrier
            }
            tab->dx_rc[dtype](dy, x, dx, sh, lo, hi, 0, C, k.coef, relu, training);
        }
    }
    free(k.coef);
    free(scratch);
    return 0;
}

int fo_batchnorm_forward_f32(const float *x, float *y, const fo_bn_shape *sh, const float *gamma, const float *beta,
                             float *running_mean, float *running_var, double *save_mean, double *save_invstd,
                             int training, double momentum, double eps, int relu, int nthreads)
{
    return fo_batchnorm_forward(FO_F32, x, y, sh, gamma, beta, running_mean, running_var, save_mean, save_invstd,
                                training, momentum, eps, relu, nthreads);
}

int fo_batchnorm_forward_f64(const double *x, double *y, const fo_bn_shape *sh, const double *gamma,
                             const double *beta, double *running_mean, double *running_var, double *save_mean,
                             double *save_invstd, int training, double momentum, double eps, int relu, int nthreads)
{
    return fo_batchnorm_forward(FO_F64, x, y, sh, gamma, beta, running_mean, running_var, save_mean, save_invstd,
                                training, momentum, eps, relu, nthreads);
}

int fo_batchnorm_backward_f32(const float *dy, const float *x, float *dx, const fo_bn_shape *sh, const float *gamma,
                              const float *beta, const double *save_mean, const double *save_invstd, float *dgamma,
                              float *dbeta, int training, int relu, int nthreads)
{
    return fo_batchnorm_backward(FO_F32, dy, x, dx, sh, gamma, beta, save_mean, save_invstd, dgamma, dbeta,
                                 training, relu, nthreads);
}

int fo_batchnorm_backward_f64(const double *dy, const double *x, double *dx, const fo_bn_shape *sh,
                              const double *gamma, const double *beta, const double *save_mean,
                              const double *save_invstd, double *dgamma, double *dbeta, int training, int relu,
                              int nthreads)
{
    return fo_batchnorm_backward(FO_F64, dy, x, dx, sh, gamma, beta, save_mean, save_invstd, dgamma, dbeta,
                                 training, relu, nthreads);
}
