#include "reduce.h"
#include "runtime.h"

/* x * 0 is 0 for finite x and NaN for inf or NaN, so the sum is NaN exactly when some element is not finite. */
#define FO_ALL_FINITE(REAL, SUFFIX)                                                        \
    int fo_reduce_all_finite_##SUFFIX(const REAL *x, int64_t n, int nthreads)              \
    {                                                                                      \
        REAL acc = 0;                                                                      \
        int64_t i;                                                                         \
        const int nth = fo_threads_for(n, nthreads);                                       \
        (void)nth;                                                                         \
        _Pragma("omp parallel for simd schedule(static) reduction(+:acc) num_threads(nth) if(nth > 1)") \
        for (i = 0; i < n; ++i)                                                            \
            acc += x[i] * (REAL)0;                                                         \
        return acc == acc;                                                                 \
    }
FO_ALL_FINITE(float, f32)
FO_ALL_FINITE(double, f64)
