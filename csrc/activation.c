/* Activation family drivers (see activation.h): rows split across threads for the forward, columns (in blocks of
 * whole cache lines) for the backward, so each column's sum is one thread's, in row order. */
#include <stdlib.h>

#include "activation.h"
#include "runtime.h"

#ifdef _OPENMP
#include <omp.h>
#define FO_TEAM(tid, team) ((tid) = omp_get_thread_num(), (team) = omp_get_num_threads())
#else
#define FO_TEAM(tid, team) ((tid) = 0, (team) = 1)
#endif

static const fo_act_kernels *fo_act_table(void)
{
    switch (fo_isa_active()) {
#if defined(__x86_64__) || defined(__i386__)
    case FO_ISA_AVX512: return &fo_act_kernels_avx512;
    case FO_ISA_AVX2: return &fo_act_kernels_avx2;
#endif
    default: return &fo_act_kernels_baseline;
    }
}

/* Even split of `total` items: thread tid of team gets [fo_act_split(tid), fo_act_split(tid + 1)). */
static int64_t fo_act_split(int64_t total, int tid, int team)
{
    return tid >= team ? total : (int64_t)((double)total * tid / team);
}

static int fo_act_forward(int dtype, const void *x, const void *b, void *y, int64_t rows, int64_t cols, int relu,
                          int nthreads)
{
    const fo_act_fwd_fn fn = fo_act_table()->forward[dtype];
    int nth;
    if (rows < 0 || cols < 0)
        return -1;
    if (rows == 0 || cols == 0)
        return 0;
    nth = fo_threads_for(rows * cols, nthreads);
    if (nth > rows)
        nth = (int)rows;
    if (nth <= 1) {
        fn(x, b, y, cols, 0, rows, relu);
        return 0;
    }
#pragma omp parallel num_threads(nth)
    {
        int tid, team;
        FO_TEAM(tid, team);
        fn(x, b, y, cols, fo_act_split(rows, tid, team), fo_act_split(rows, tid + 1, team), relu);
    }
    return 0;
}

static int fo_act_backward(int dtype, const void *dy, const void *y, void *dx, void *db, int64_t rows, int64_t cols,
                           int relu, int nthreads)
{
    const fo_act_bwd_fn fn = fo_act_table()->backward[dtype];
    const int64_t per_line = dtype == FO_F32 ? 16 : 8;        /* elements per 64-byte line */
    const int64_t nblocks = (cols + per_line - 1) / per_line;
    double *sum = NULL;
    int64_t c;
    int nth;
    if (rows < 0 || cols < 0)
        return -1;
    if (cols == 0)
        return 0;
    if (db != NULL) {
        sum = (double *)calloc((size_t)cols, sizeof(double));
        if (sum == NULL)
            return -2;
    }
    nth = fo_threads_for(rows * cols, nthreads);
    if (nth > nblocks)
        nth = (int)nblocks;
    if (nth <= 1) {
        fn(dy, y, dx, rows, cols, 0, cols, relu, sum);
    } else {
#pragma omp parallel num_threads(nth)
        {
            int tid, team;
            int64_t c0, c1;
            FO_TEAM(tid, team);
            c0 = fo_act_split(nblocks, tid, team) * per_line;
            c1 = fo_act_split(nblocks, tid + 1, team) * per_line;
            if (c1 > cols)
                c1 = cols;
            if (c0 < c1)
                fn(dy, y, dx, rows, cols, c0, c1, relu, sum);
        }
    }
    if (sum != NULL) {
        for (c = 0; c < cols; ++c) {
            if (dtype == FO_F32)
                ((float *)db)[c] = (float)sum[c];
            else
                ((double *)db)[c] = sum[c];
        }
        free(sum);
    }
    return 0;
}

int fo_activation_bias_forward_f32(const float *x, const float *b, float *y, int64_t rows, int64_t cols,
                                   int relu, int nthreads)
{
    return fo_act_forward(FO_F32, x, b, y, rows, cols, relu, nthreads);
}

int fo_activation_bias_forward_f64(const double *x, const double *b, double *y, int64_t rows, int64_t cols,
                                   int relu, int nthreads)
{
    return fo_act_forward(FO_F64, x, b, y, rows, cols, relu, nthreads);
}

int fo_activation_bias_backward_f32(const float *dy, const float *y, float *dx, float *db, int64_t rows,
                                    int64_t cols, int relu, int nthreads)
{
    return fo_act_backward(FO_F32, dy, relu ? y : dy, dx, db, rows, cols, relu, nthreads);
}

int fo_activation_bias_backward_f64(const double *dy, const double *y, double *dx, double *db, int64_t rows,
                                    int64_t cols, int relu, int nthreads)
{
    return fo_act_backward(FO_F64, dy, relu ? y : dy, dx, db, rows, cols, relu, nthreads);
}
