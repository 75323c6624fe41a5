#include "runtime.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int fo_active = -1;
static int64_t fo_min_parallel = FO_PARALLEL_MIN_ELEMENTS;

int64_t fo_parallel_min(void)
{
    return fo_min_parallel;
}

void fo_set_parallel_min(int64_t n)
{
    fo_min_parallel = n > 1 ? n : 1;
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

int fo_isa_active(void)
{
    if (fo_active < 0)
        fo_active = fo_isa_best();
    return fo_active;
}

int fo_isa_set(int isa)
{
    if (!fo_isa_supported(isa))
        return -1;
    fo_active = isa;
    return 0;
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

int fo_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fo_set_max_threads(int n)
{
#ifdef _OPENMP
    if (n > 0)
        omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int fo_threads_for(int64_t work, int requested)
{
    int64_t cap;
    int n = requested > 0 ? requested : fo_max_threads();
    if (work < fo_min_parallel || n <= 1)
        return 1;
    cap = 2 * work / fo_min_parallel;
    return (int64_t)n > cap ? (int)cap : n;
}

int64_t fo_split(int64_t total, int tid, int nth)
{
    int64_t b;
    if (tid >= nth)
        return total;
    b = (total / nth) * tid + (total % nth) * tid / nth;
    b &= ~(int64_t)15;
    return b;
}
