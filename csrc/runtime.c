/* The one runtime state of the process (see runtime.h). Compiled only into fastopt._runtime. */
#include "runtime.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FO_HAVE_ATFORK 1
#endif

extern fo_isa_tables fo_kernels_baseline;
#if defined(__x86_64__) || defined(__i386__)
extern fo_isa_tables fo_kernels_avx2;
extern fo_isa_tables fo_kernels_avx512;
#endif

static fo_runtime fo_state = {FO_RUNTIME_ABI, FO_ISA_BASELINE, FO_PARALLEL_MIN_ELEMENTS, 0, 0, 0,
                              fo_kernels_baseline};
fo_runtime *fo_rt = &fo_state;

/* In the child of fork(): libgomp's thread pool did not survive (only the forking thread is copied), and the first
 * parallel region would wait forever for the missing threads. Kernels therefore run serially in the child. */
static void fo_after_fork_child(void)
{
    ++fo_state.fork_generation;
    if (fo_state.teams_started)
        fo_state.fork_serial = 1;
}

void fo_runtime_init(void)
{
    static int done = 0;
    if (done)
        return;
    done = 1;
    fo_isa_set(fo_isa_best());
#ifdef FO_HAVE_ATFORK
    pthread_atfork(0, 0, fo_after_fork_child);
#endif
}

void fo_set_parallel_min(int64_t n)
{
    fo_state.parallel_min = n > 1 ? n : 1;
}

int fo_isa_compiled(int isa)
{
#if defined(__x86_64__) || defined(__i386__)
    return isa >= 0 && isa < FO_ISA_COUNT;
#else
    return isa == FO_ISA_BASELINE;
#endif
}

int fo_isa_supported(int isa)
{
    if (!fo_isa_compiled(isa))
        return 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    switch (isa) {
    case FO_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FO_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    default:
        return 1;
    }
#else
    return 1;
#endif
}

int fo_isa_best(void)
{
    int isa;
    for (isa = FO_ISA_COUNT - 1; isa > FO_ISA_BASELINE; --isa)
        if (fo_isa_supported(isa))
            return isa;
    return FO_ISA_BASELINE;
}

/* The one place that maps an instruction-set path to its kernel tables. */
static const void *const *fo_isa_tables_of(int isa)
{
    switch (isa) {
#if defined(__x86_64__) || defined(__i386__)
    case FO_ISA_AVX512: return fo_kernels_avx512;
    case FO_ISA_AVX2: return fo_kernels_avx2;
#endif
    default: return fo_kernels_baseline;
    }
}

int fo_isa_set(int isa)
{
    if (!fo_isa_supported(isa))
        return FO_EINVAL;
    fo_state.kernels = fo_isa_tables_of(isa);
    fo_state.isa = isa;
    return FO_OK;
}

const char *fo_isa_name(int isa)
{
    switch (isa) {
    case FO_ISA_BASELINE: return "baseline";
    case FO_ISA_AVX2: return "avx2";
    case FO_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}

int fo_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void fo_set_max_threads(int n)
{
    if (n <= 0)
        return;
    fo_state.fork_serial = 0;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}
