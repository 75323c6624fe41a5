/* fastopt reductions over many arrays: finiteness checks and norms, accumulated in double. */
#ifndef FO_REDUCE_H
#define FO_REDUCE_H

#include "fo_common.h"

/* 1 if every element of x[0..n) is finite, else 0. */
int fo_reduce_all_finite_f32(const float *x, int64_t n, int nthreads);
int fo_reduce_all_finite_f64(const double *x, int64_t n, int nthreads);

#endif
