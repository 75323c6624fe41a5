#include "probe.h"
#include "dispatch.h"

/* The probes use the widest vectors the CPU has, like the kernels they stand in for (gcc picks the clone at load
 * time through an ifunc; the probes are benchmark-only code, so the kernels' explicit dispatch is not needed). */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define FO_PROBE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FO_PROBE_CLONES
#endif

/* One fused loop over up to 7 input and 5 output streams (Adan: p, g and 4 state arrays in, p and the 4 out; LAMB's
 * two sweeps: 7 in, 3 out), like
 * a real kernel (a blocked loop over one stream at a time defeats the hardware prefetcher and under-reports the
 * limit). nin/nout are compile-time constants. */
#define FO_STREAM(REAL, SUFFIX)                                                                           \
    FO_INLINE void fo_stream_fixed_##SUFFIX(const REAL *const *in, REAL *const *out, int64_t lo, int64_t hi, \
                                            const int nin, const int nout)                                \
    {                                                                                                     \
        const REAL *i0 = in[0], *i1 = nin > 1 ? in[1] : 0, *i2 = nin > 2 ? in[2] : 0;                     \
        const REAL *i3 = nin > 3 ? in[3] : 0, *i4 = nin > 4 ? in[4] : 0, *i5 = nin > 5 ? in[5] : 0;       \
        const REAL *i6 = nin > 6 ? in[6] : 0;                                                             \
        REAL *o0 = out[0], *o1 = nout > 1 ? out[1] : 0, *o2 = nout > 2 ? out[2] : 0;                      \
        REAL *o3 = nout > 3 ? out[3] : 0, *o4 = nout > 4 ? out[4] : 0;                                    \
        int64_t i;                                                                                        \
        _Pragma("omp simd")                                                                               \
        for (i = lo; i < hi; ++i) {                                                                       \
            REAL s = i0[i];                                                                               \
            if (nin > 1) s += i1[i];                                                                      \
            if (nin > 2) s += i2[i];                                                                      \
            if (nin > 3) s += i3[i];                                                                      \
            if (nin > 4) s += i4[i];                                                                      \
            if (nin > 5) s += i5[i];                                                                      \
            if (nin > 6) s += i6[i];                                                                      \
            s *= (REAL)0.5;                                                                               \
            o0[i] = s;                                                                                    \
            if (nout > 1) o1[i] = s;                                                                      \
            if (nout > 2) o2[i] = s;                                                                      \
            if (nout > 3) o3[i] = s;                                                                      \
            if (nout > 4) o4[i] = s;                                                                      \
        }                                                                                                 \
    }                                                                                                     \
    FO_PROBE_CLONES static void fo_stream_range_##SUFFIX(const REAL *const *in, int nin, REAL *const *out, int nout,      \
                                         int64_t lo, int64_t hi)                                          \
    {                                                                                                     \
        switch (nin * 8 + nout) {                                                                         \
        FO_CASES(SUFFIX, 1) FO_CASES(SUFFIX, 2) FO_CASES(SUFFIX, 3)                                       \
        FO_CASES(SUFFIX, 4) FO_CASES(SUFFIX, 5) FO_CASES(SUFFIX, 6) FO_CASES(SUFFIX, 7)                   \
        default: break;                                                                                   \
        }                                                                                                 \
    }                                                                                                     \
    void fo_probe_stream_##SUFFIX(const REAL *const *in, int nin, REAL *const *out, int nout, int64_t n,  \
                                  int nthreads)                                                           \
    {                                                                                                     \
        const int nth = fo_threads_for(n, nthreads);                                                      \
        if (nth <= 1) {                                                                                   \
            fo_stream_range_##SUFFIX(in, nin, out, nout, 0, n);                                           \
            return;                                                                                       \
        }                                                                                                 \
        _Pragma("omp parallel num_threads(nth)")                                                          \
        {                                                                                                 \
            int tid = 0, team = 1;                                                                        \
            FO_TEAM(tid, team);                                                                           \
            fo_stream_range_##SUFFIX(in, nin, out, nout, fo_split(n, tid, team), fo_split(n, tid + 1, team)); \
        }                                                                                                 \
    }

#define FO_CASE(SUFFIX, NIN, NOUT) \
    case NIN * 8 + NOUT: fo_stream_fixed_##SUFFIX(in, out, lo, hi, NIN, NOUT); break;
#define FO_CASES(SUFFIX, NIN) \
    FO_CASE(SUFFIX, NIN, 1) FO_CASE(SUFFIX, NIN, 2) FO_CASE(SUFFIX, NIN, 3) FO_CASE(SUFFIX, NIN, 4) \
    FO_CASE(SUFFIX, NIN, 5)

FO_STREAM(float, f32)
FO_STREAM(double, f64)

/* 16 independent partial sums: one accumulator would make the pass latency-bound, not bandwidth-bound. */
#define FO_SUM(REAL, SUFFIX)                                                                              \
    FO_PROBE_CLONES static double fo_sum_range_##SUFFIX(const REAL *x, int64_t lo, int64_t hi)            \
    {                                                                                                     \
        REAL acc[16] = {0};                                                                               \
        double total = 0;                                                                                 \
        int64_t i;                                                                                        \
        int k;                                                                                            \
        for (i = lo; i + 16 <= hi; i += 16)                                                               \
            for (k = 0; k < 16; ++k)                                                                      \
                acc[k] += x[i + k];                                                                       \
        for (; i < hi; ++i)                                                                               \
            acc[0] += x[i];                                                                               \
        for (k = 0; k < 16; ++k)                                                                          \
            total += acc[k];                                                                              \
        return total;                                                                                     \
    }                                                                                                     \
    double fo_probe_sum_##SUFFIX(const REAL *x, int64_t n, int nthreads)                                  \
    {                                                                                                     \
        const int nth = fo_threads_for(n, nthreads);                                                      \
        double total = 0;                                                                                 \
        if (nth <= 1)                                                                                     \
            return fo_sum_range_##SUFFIX(x, 0, n);                                                        \
        _Pragma("omp parallel num_threads(nth) reduction(+:total)")                                       \
        {                                                                                                 \
            int tid = 0, team = 1;                                                                        \
            FO_TEAM(tid, team);                                                                           \
            total += fo_sum_range_##SUFFIX(x, fo_split(n, tid, team), fo_split(n, tid + 1, team));        \
        }                                                                                                 \
        return total;                                                                                     \
    }
FO_SUM(float, f32)
FO_SUM(double, f64)

void fo_probe_copy_f64(double *a, const double *b, int64_t n, int nthreads)
{
    const int nth = fo_threads_for(n, nthreads);
    int64_t i;
    (void)nth;
#pragma omp parallel for simd schedule(static) num_threads(nth) if(nth > 1)
    for (i = 0; i < n; ++i)
        a[i] = b[i];
}

void fo_probe_triad_f64(double *a, const double *b, const double *c, double s, int64_t n, int nthreads)
{
    const int nth = fo_threads_for(n, nthreads);
    int64_t i;
    (void)nth;
#pragma omp parallel for simd schedule(static) num_threads(nth) if(nth > 1)
    for (i = 0; i < n; ++i)
        a[i] = b[i] + s * c[i];
}
