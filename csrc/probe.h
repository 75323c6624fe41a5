/* fastopt roofline probes: loops with a kernel's memory traffic and trivial arithmetic, to measure in the same run
 * the bandwidth a kernel could reach. Not used by the library itself, only by benchmarks. */
#ifndef FO_PROBE_H
#define FO_PROBE_H

#include "fo_common.h"

/* Reads nin (1..7) arrays and writes nout (1..5) arrays of n elements once each in one fused loop:
 * out_j[i] = 0.5 * sum_k in_k[i]. An output may also be an input (read-modify-write, as an in-place optimizer
 * step). Parallel like the kernels (static split, same threshold). Other counts do nothing. */
void fo_probe_stream_f32(const float *const *in, int nin, float *const *out, int nout, int64_t n, int nthreads);
void fo_probe_stream_f64(const double *const *in, int nin, double *const *out, int nout, int64_t n, int nthreads);

/* A read-only pass: the sum of x[0..n) (stands in for a norm or a statistics pass). */
double fo_probe_sum_f32(const float *x, int64_t n, int nthreads);
double fo_probe_sum_f64(const double *x, int64_t n, int nthreads);

/* STREAM copy (b = a) and triad (a = b + s c), float64 as in McCalpin's STREAM. */
void fo_probe_copy_f64(double *a, const double *b, int64_t n, int nthreads);
void fo_probe_triad_f64(double *a, const double *b, const double *c, double s, int64_t n, int nthreads);

#endif
