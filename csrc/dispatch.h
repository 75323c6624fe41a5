/* Shared plumbing of the family drivers: the active instruction-set table of a family, the thread team, the
 * even split of whole items, the segment sweep of multi-array passes, and the deterministic blocked reduction
 * (blocked_sum.h). (The element split and the segment overlap rule are in runtime.h.) */
#ifndef FO_DISPATCH_H
#define FO_DISPATCH_H

#include "runtime.h"

/* The active instruction-set path's kernel table of `family` (an fo_family), as a `type` pointer: one pointer read
 * of the one runtime state; set_isa switches every family at once. */
#define FO_KERNELS(family, type) ((const type *)fo_rt->kernels[family])

/* This thread's number and the team size, inside a parallel region (0 and 1 without OpenMP). */
#ifdef _OPENMP
#define FO_TEAM(tid, team) ((tid) = omp_get_thread_num(), (team) = omp_get_num_threads())
#else
#define FO_TEAM(tid, team) ((tid) = 0, (team) = 1)
#endif

/* Even split of `total` whole items (channels, rows, blocks): thread tid of team gets
 * [fo_split_even(total, tid, team), fo_split_even(total, tid + 1, team)). */
FO_INLINE int64_t fo_split_even(int64_t total, int tid, int team)
{
    return tid >= team ? total : (int64_t)((double)total * tid / team);
}

/* The size of array k of a multi-array pass (0 for an array that takes no part in it). */
typedef int64_t (*fo_segment_size_fn)(const void *ctx, int64_t k);
/* Runs the pass over array k's own elements [a, b). */
typedef void (*fo_segment_fn)(const void *ctx, int64_t k, int64_t a, int64_t b);

/* The segment sweep of a multi-array pass over the concatenation of narrays arrays (total elements in all): with
 * nth <= 1, visit(ctx, k, 0, n_k) for every non-empty array in order; else a team of nth threads, thread tid taking
 * the elements [fo_split(total, tid, team), fo_split(total, tid + 1, team)) and visiting, in array order, every
 * array that meets them over its own indices (fo_range_overlap). An element-wise visit gives the same bits at any
 * thread count. */
static void fo_segment_sweep(const void *ctx, int64_t narrays, int64_t total, int nth, fo_segment_size_fn size_of,
                             fo_segment_fn visit)
{
    int64_t k;
    if (nth <= 1) {
        for (k = 0; k < narrays; ++k) {
            const int64_t n = size_of(ctx, k);
            if (n > 0)
                visit(ctx, k, 0, n);
        }
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
    {
        int tid, team;
        int64_t j, a, b, lo, hi, off = 0;
        FO_TEAM(tid, team);
        lo = fo_split(total, tid, team);
        hi = fo_split(total, tid + 1, team);
        for (j = 0; j < narrays && off < hi; ++j) {
            const int64_t n = size_of(ctx, j);
            if (fo_range_overlap(off, n, lo, hi, &a, &b))
                visit(ctx, j, a, b);
            off += n;
        }
    }
#endif
}

#include "blocked_sum.h"

#endif
