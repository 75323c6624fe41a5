/* The one deterministic reduction of every family (included by dispatch.h): the work is cut into fixed blocks,
 * each block's partial sums are computed by one thread into their own slots, then the partials are added in block
 * order: total = ((0 + p_0) + p_1) + ... + p_(n-1), in double (fo_blocked_combine; fo_blocked_sum_serial forms the
 * same additions one block after another without storing the partials).
 *
 * Thread-count guarantee: block boundaries and the order of the final additions depend only on the work, never on
 * the number of threads (threads only decide who computes which block), so a result has the same bits at any
 * thread count; given the same block kernels, also on the same instruction-set path (another path's SIMD width
 * orders the additions inside a block differently). */
#ifndef FO_BLOCKED_SUM_H
#define FO_BLOCKED_SUM_H

#include <stdlib.h>

#include "dispatch.h"

/* Elements per block of a blocked reduction (a block's data stays in L1/L2 while it is summed). */
#define FO_BLOCK_ELEMENTS 8192

/* Blocks of FO_BLOCK_ELEMENTS (the last one shorter) that n elements make: ceil(n / FO_BLOCK_ELEMENTS). */
FO_INLINE int64_t fo_block_count(int64_t n)
{
    return (n + FO_BLOCK_ELEMENTS - 1) / FO_BLOCK_ELEMENTS;
}

/* Partial slots held on the stack; more than this are allocated. */
#define FO_BLOCKED_SUM_STACK_PARTS 128

/* Computes block b's `nparts` partial sums into part[0..nparts). */
typedef void (*fo_block_fn)(const void *ctx, int64_t b, double *part);

/* The first block of thread tid's run: blocks are cut into team contiguous runs, of equal block counts when
 * work_prefix is NULL, else of about equal work, work_prefix[b] being the work before block b (nblocks + 1 values,
 * non-decreasing). Only the load balance depends on this, never a result. */
static int64_t fo_block_run_start(const int64_t *work_prefix, int64_t nblocks, int tid, int team)
{
    int64_t target, a = 0, z = nblocks;
    if (tid >= team)
        return nblocks;
    if (work_prefix == NULL)
        return nblocks * tid / team;
    target = fo_split(work_prefix[nblocks], tid, team);
    while (a < z) {            /* first block whose work starts at or after target */
        const int64_t mid = (a + z) / 2;
        if (work_prefix[mid] < target)
            a = mid + 1;
        else
            z = mid;
    }
    return a;
}

/* part[b * nparts + k] = partial k of block b for every block, blocks shared among nth threads in contiguous runs
 * (fo_block_run_start). The partials do not depend on nth. */
static void fo_blocked_partials(const void *ctx, fo_block_fn fn, int64_t nblocks, int nparts, int nth,
                                const int64_t *work_prefix, double *part)
{
    int64_t b;
    if (nth > nblocks)
        nth = (int)nblocks;
    if (nth <= 1) {
        for (b = 0; b < nblocks; ++b)
            fn(ctx, b, part + b * nparts);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
    {
        int tid, team;
        int64_t i, b1;
        FO_TEAM(tid, team);
        b1 = fo_block_run_start(work_prefix, nblocks, tid + 1, team);
        for (i = fo_block_run_start(work_prefix, nblocks, tid, team); i < b1; ++i)
            fn(ctx, i, part + i * nparts);
    }
#else
    (void)work_prefix;
    for (b = 0; b < nblocks; ++b)
        fn(ctx, b, part + b * nparts);
#endif
}

/* The block-order addition: out[k] = ((0 + part[k]) + part[stride + k]) + ... over the nblocks blocks, for
 * k0 <= k < k1 (block b's partial k at part[b * stride + k]). Each out[k] sees the same additions in the same
 * order whatever k0, k1 (blocks outer, partials inner: the inner loop vectorizes across k). */
static void fo_blocked_combine(const double *part, int64_t nblocks, int64_t stride, int64_t k0, int64_t k1,
                               double *out)
{
    int64_t b, k;
    for (k = k0; k < k1; ++k)
        out[k] = 0.0;
    for (b = 0; b < nblocks; ++b) {
        const double *p = part + b * stride;
        for (k = k0; k < k1; ++k)
            out[k] += p[k];
    }
}

/* fo_blocked_combine's result for the nparts (<= FO_BLOCKED_SUM_STACK_PARTS) partials of blocks [0, nblocks),
 * each block computed in turn by the calling thread and added at once (no stored partials). */
static void fo_blocked_sum_serial(const void *ctx, fo_block_fn fn, int64_t nblocks, int nparts, double *out)
{
    double part[FO_BLOCKED_SUM_STACK_PARTS];
    int64_t b;
    int k;
    for (k = 0; k < nparts; ++k)
        out[k] = 0.0;
    for (b = 0; b < nblocks; ++b) {
        fn(ctx, b, part);
        for (k = 0; k < nparts; ++k)
            out[k] += part[k];
    }
}

/* out[k] = sum over blocks b, in block order, of block b's partial k (k < nparts), blocks of equal work shared
 * among nth threads. Returns FO_OK, or FO_ENOMEM if the partials could not be allocated. */
static int fo_blocked_sum(const void *ctx, fo_block_fn fn, int64_t nblocks, int nparts, int nth, double *out)
{
    double local[FO_BLOCKED_SUM_STACK_PARTS];
    double *part = local;
    if (nblocks * nparts > FO_BLOCKED_SUM_STACK_PARTS) {
        part = (double *)malloc((size_t)(nblocks * nparts) * sizeof(double));
        if (part == NULL)
            return FO_ENOMEM;
    }
    fo_blocked_partials(ctx, fn, nblocks, nparts, nth, NULL, part);
    fo_blocked_combine(part, nblocks, nparts, 0, nparts, out);
    if (part != local)
        free(part);
    return FO_OK;
}

#endif
