/* Shared plumbing of the family drivers: the active instruction-set table of a family, the thread team, the
 * even split of whole items, and the deterministic blocked reduction (blocked_sum.h). (The element split and the
 * segment overlap rule are in runtime.h.) */
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

#include "blocked_sum.h"

#endif
