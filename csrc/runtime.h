/* fastopt runtime: instruction-set dispatch and thread-count rules shared by all kernel families. */
#ifndef FO_RUNTIME_H
#define FO_RUNTIME_H

#include "fo_common.h"

/* Work (elements) below which a kernel runs serially: waking a thread team costs more than a second core saves on
 * a small pass. Measured for an fp32 Adam step on 2 cores (benchmarks/bench_threshold.py), 2 threads vs 1:
 * back to back (threads still spinning) 0.8x at 4K elements, 1.0x at 8K, 1.2x at 16K, 1.3x at 32K, 1.6x at 64K;
 * with other NumPy work between steps, as in a training loop (threads asleep), 0.95x at 16K, 1.3x at 64K. */
#define FO_PARALLEL_MIN_ELEMENTS 32768

int fo_isa_compiled(int isa);       /* 1 if this build has kernels for `isa` */
int fo_isa_supported(int isa);      /* 1 if compiled and the CPU can run it */
int fo_isa_best(void);              /* the widest supported path */
int fo_isa_active(void);            /* the path kernels use now (fo_isa_best() until set) */
int fo_isa_set(int isa);            /* 0 on success, -1 if `isa` is not supported here */
const char *fo_isa_name(int isa);

int fo_openmp_enabled(void);
int fo_max_threads(void);           /* omp_get_max_threads(): honours OMP_NUM_THREADS and threadpoolctl */
void fo_set_max_threads(int n);     /* omp_set_num_threads(n) */

/* The serial threshold in force (FO_PARALLEL_MIN_ELEMENTS unless set, for benchmarks that measure it). */
int64_t fo_parallel_min(void);
void fo_set_parallel_min(int64_t n);

/* Threads to use for `work` elements: 1 below the serial threshold, else min(requested, 2 work / threshold);
 * requested <= 0 means fo_max_threads(). */
int fo_threads_for(int64_t work, int requested);

/* Thread `tid` of `nth` gets elements [fo_split(total, tid, nth), fo_split(total, tid + 1, nth)):
 * boundaries are multiples of 16 elements so threads never share a 64-byte line of a float32 array. */
int64_t fo_split(int64_t total, int tid, int nth);

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
