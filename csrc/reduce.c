/* Reduce family drivers: multi-array passes with threads splitting the concatenated element range (as optim.c). */
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

/* The norm pass. acc[k] receives the value of array k: arrays lying whole inside one thread's range are written
 * by that thread; the (at most two) arrays a thread covers only partly go to its head/tail slots, added afterwards
 * in thread order, so a given thread count always gives the same bits. */
static int fo_reduce_norm(int dtype, const void *const *xs, const int64_t *ns, int64_t narrays,
                          double p, double *acc, double *total, int nthreads)
{
    fo_reduce_norm_fn fn;
    int kind, nth;
    int64_t k, n_all;
    double s;

    if (!(p > 0.0))
        return FO_EINVAL;
    kind = p == 1.0 ? FO_NORM_L1 : p == 2.0 ? FO_NORM_L2 : isinf(p) ? FO_NORM_LINF : FO_NORM_LP;
    fn = fo_reduce_table()->norm[kind][dtype];
    n_all = fo_total(ns, narrays);
    for (k = 0; k < narrays; ++k)
        acc[k] = 0.0;

    nth = fo_threads_for(n_all, nthreads);
    if (nth <= 1) {
        for (k = 0; k < narrays; ++k)
            if (ns[k] > 0)
                acc[k] = fn(xs[k], 0, ns[k], p);
    } else {
#ifdef _OPENMP
        /* slot 2*tid: head segment, 2*tid+1: tail segment (array index in seg_k, -1 if unused) */
        double *seg_v = (double *)malloc(sizeof(double) * 2 * (size_t)nth);
        int64_t *seg_k = (int64_t *)malloc(sizeof(int64_t) * 2 * (size_t)nth);
        int team_used = nth, t;
        if (seg_v == NULL || seg_k == NULL) {
            free(seg_v);
            free(seg_k);
            return FO_ENOMEM;
        }
        for (t = 0; t < 2 * nth; ++t)
            seg_k[t] = -1;
#pragma omp parallel num_threads(nth)
        {
            const int tid = omp_get_thread_num(), team = omp_get_num_threads();
            const int64_t lo = fo_split(n_all, tid, team), hi = fo_split(n_all, tid + 1, team);
            int64_t j, a, b, off = 0;
            int slot = 0;
            if (tid == 0)
                team_used = team;
            for (j = 0; j < narrays && off < hi; ++j) {
                const int64_t n = ns[j];
                if (fo_range_overlap(off, n, lo, hi, &a, &b)) {
                    const double v = fn(xs[j], a, b, p);
                    if (a == 0 && b == n) {
                        acc[j] = v;
                    } else {
                        seg_k[2 * tid + slot] = j;
                        seg_v[2 * tid + slot] = v;
                        slot = 1;
                    }
                }
                off += n;
                if (off > lo)
                    slot = 1;     /* later partial segments of this thread are its tail */
            }
        }
        for (t = 0; t < 2 * team_used; ++t)
            if (seg_k[t] >= 0)
                acc[seg_k[t]] = fo_norm_combine(kind, acc[seg_k[t]], seg_v[t]);
        free(seg_v);
        free(seg_k);
#endif
    }

    s = 0.0;
    for (k = 0; k < narrays; ++k) {
        s = fo_norm_combine(kind, s, acc[k]);
        acc[k] = fo_norm_root(kind, acc[k], p);
    }
    *total = fo_norm_root(kind, s, p);
    return 0;
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

/* Runs an element-wise kernel (scale when clamp_fn is NULL, else clamp) over every array. */
static void fo_reduce_map(void *const *xs, const int64_t *ns, int64_t narrays, fo_reduce_scale_fn scale_fn,
                          fo_reduce_clamp_fn clamp_fn, double c0, double c1, int nthreads)
{
    const int64_t n_all = fo_total(ns, narrays);
    const int nth = fo_threads_for(n_all, nthreads);
    int64_t k;
    if (nth <= 1) {
        for (k = 0; k < narrays; ++k) {
            if (ns[k] <= 0)
                continue;
            if (clamp_fn != NULL)
                clamp_fn(xs[k], 0, ns[k], c0, c1);
            else
                scale_fn(xs[k], 0, ns[k], c0);
        }
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
    {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        const int64_t lo = fo_split(n_all, tid, team), hi = fo_split(n_all, tid + 1, team);
        int64_t j, a, b, off = 0;
        for (j = 0; j < narrays && off < hi; ++j) {
            if (fo_range_overlap(off, ns[j], lo, hi, &a, &b)) {
                if (clamp_fn != NULL)
                    clamp_fn(xs[j], a, b, c0, c1);
                else
                    scale_fn(xs[j], a, b, c0);
            }
            off += ns[j];
        }
    }
#endif
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
