/* fastopt runtime: instruction-set dispatch and thread-count rules shared by all kernel families.
 *
 * One state (fo_runtime) exists per process: csrc/runtime.c owns it and is compiled only into the core extension
 * fastopt._runtime, which hands its address to the other extensions in a capsule (fastopt/_runtime_api.pxi sets
 * their fo_rt at import; csrc/runtime_client.c defines that pointer). Kernels read the state through the inline
 * readers below: one pointer read per call, no Python. */
#ifndef FO_RUNTIME_H
#define FO_RUNTIME_H

#include "fo_common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Work (elements) below which a kernel runs serially: waking a thread team costs more than a second core saves on
 * a small pass. Measured for an fp32 Adam step on 2 cores (benchmarks/bench_threshold.py), 2 threads vs 1:
 * back to back (threads still spinning) 0.8x at 4K elements, 1.0x at 8K, 1.2x at 16K, 1.3x at 32K, 1.6x at 64K;
 * with other NumPy work between steps, as in a training loop (threads asleep), 0.95x at 16K, 1.3x at 64K. */
#define FO_PARALLEL_MIN_ELEMENTS 32768

/* Version of the fo_runtime layout; an extension attached to a runtime of another version refuses to load. */
#define FO_RUNTIME_ABI 3

/* Kernel families with per-ISA kernel tables (their kernels are compiled once per path, in csrc/kernels_<isa>.c). */
enum fo_family {
    FO_FAM_OPTIM = 0,
    FO_FAM_BATCHNORM = 1,
    FO_FAM_LOSS = 2,
    FO_FAM_REDUCE = 3,
    FO_FAM_ACTIVATION = 4,
    FO_FAM_REGULARIZE = 5,
    FO_FAM_COUNT = 6
};

/* The kernel tables of one instruction-set path, indexed by fo_family (defined by csrc/kernels_<isa>.c). */
typedef const void *const fo_isa_tables[FO_FAM_COUNT];

typedef struct fo_runtime {
    int abi;                      /* FO_RUNTIME_ABI */
    int isa;                      /* the instruction-set path kernels use now */
    int64_t parallel_min;         /* the serial threshold in force */
    int teams_started;            /* 1 once a kernel asked for 2+ threads (OpenMP then holds a thread pool) */
    int fork_serial;              /* 1 in a fork()ed child of a process with a thread pool: kernels run serially
                                   * (the child's OpenMP pool is dead, a team would wait forever) until
                                   * fo_set_max_threads() is called in the child */
    unsigned fork_generation;     /* forks seen by this process's line of children */
    const void *const *kernels;   /* the active path's fo_isa_tables (see dispatch.h FO_KERNELS) */
} fo_runtime;

extern fo_runtime *fo_rt;         /* this extension's view of the one state */

/* ---- owner side (csrc/runtime.c, fastopt._runtime only) ---- */
void fo_runtime_init(void);         /* chooses fo_isa_best() and installs the fork handler (idempotent) */
int fo_isa_compiled(int isa);       /* 1 if this build has kernels for `isa` */
int fo_isa_supported(int isa);      /* 1 if compiled and the CPU can run it */
int fo_isa_best(void);              /* the widest supported path */
int fo_isa_set(int isa);            /* FO_OK, or FO_EINVAL if `isa` is not supported here */
const char *fo_isa_name(int isa);
int fo_openmp_enabled(void);
void fo_set_max_threads(int n);     /* omp_set_num_threads(n); also re-enables threads in a forked child */
void fo_set_parallel_min(int64_t n);

/* ---- readers (any extension) ---- */
FO_INLINE int fo_isa_active(void)
{
    return fo_rt->isa;
}

FO_INLINE int64_t fo_parallel_min(void)
{
    return fo_rt->parallel_min;
}

/* omp_get_max_threads(): honours OMP_NUM_THREADS and threadpoolctl (one OpenMP runtime per process). */
FO_INLINE int fo_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Threads to use for `work` elements, the one thread rule of every kernel: 1 below the serial threshold or in a
 * forked child (see fork_serial), else min(requested, 2 work / threshold); requested <= 0 means fo_max_threads(). */
FO_INLINE int fo_threads_for(int64_t work, int requested)
{
    fo_runtime *rt = fo_rt;
    int64_t cap;
    int n;
    if (work < rt->parallel_min || rt->fork_serial)
        return 1;
    n = requested > 0 ? requested : fo_max_threads();
    if (n <= 1)
        return 1;
    cap = 2 * work / rt->parallel_min;
    n = (int64_t)n > cap ? (int)cap : n;
    if (n > 1 && !rt->teams_started)
        rt->teams_started = 1;
    return n;
}

/* Thread `tid` of `nth` gets elements [fo_split(total, tid, nth), fo_split(total, tid + 1, nth)):
 * boundaries are multiples of 16 elements so threads never share a 64-byte line of a float32 array. */
FO_INLINE int64_t fo_split(int64_t total, int tid, int nth)
{
    int64_t b;
    if (tid >= nth)
        return total;
    b = (total / nth) * tid + (total % nth) * tid / nth;
    b &= ~(int64_t)15;
    return b;
}

/* Multi-array kernels split the concatenation of their arrays: the array of n elements at offset off of that
 * concatenation overlaps one thread's range [lo, hi) in its own indices [*a, *b). Returns 0 if they do not meet. */
FO_INLINE int fo_range_overlap(int64_t off, int64_t n, int64_t lo, int64_t hi, int64_t *a, int64_t *b)
{
    if (n <= 0 || off + n <= lo || off >= hi)
        return 0;
    *a = lo > off ? lo - off : 0;
    *b = hi < off + n ? hi - off : n;
    return 1;
}

#endif
