/* Activation family drivers (see activation.h): rows split across threads, for the backward in whole blocks of
 * FO_ACT_ROW_BLOCK rows whose column sums are added in block order, whatever the thread count. */
#include <stdlib.h>

#include "activation.h"
#include "dispatch.h"

static const fo_act_kernels *fo_act_table(void)
{
    return FO_KERNELS(FO_FAM_ACTIVATION, fo_act_kernels);
}

static int fo_act_forward(int dtype, const void *x, const void *b, void *y, int64_t rows, int64_t cols, int relu,
                          int nthreads)
{
    const fo_act_fwd_fn fn = fo_act_table()->forward[dtype];
    int nth;
    if (rows < 0 || cols < 0)
        return FO_EINVAL;
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
        fn(x, b, y, cols, fo_split_even(rows, tid, team), fo_split_even(rows, tid + 1, team), relu);
    }
    return 0;
}

static int fo_act_backward(int dtype, const void *dy, const void *y, void *dx, void *db, int64_t rows, int64_t cols,
                           int relu, int nthreads)
{
    const fo_act_bwd_fn fn = fo_act_table()->backward[dtype];
    const int64_t nblk = (rows + FO_ACT_ROW_BLOCK - 1) / FO_ACT_ROW_BLOCK;
    double *part = NULL;            /* nblk rows of cols doubles: each block's column sums */
    int64_t b, c;
    int nth;
    if (rows < 0 || cols < 0)
        return FO_EINVAL;
    if (cols == 0 || rows == 0) {
        for (c = 0; c < cols && db != NULL; ++c) {
            if (dtype == FO_F32)
                ((float *)db)[c] = 0.0f;
            else
                ((double *)db)[c] = 0.0;
        }
        return 0;
    }
    if (db != NULL) {
        part = (double *)calloc((size_t)(nblk * cols), sizeof(double));
        if (part == NULL)
            return FO_ENOMEM;
    }
    nth = fo_threads_for(rows * cols, nthreads);
    if (nth > nblk)
        nth = (int)nblk;
#pragma omp parallel num_threads(nth) if(nth > 1)
    {
        int tid, team;
        int64_t k;
        FO_TEAM(tid, team);
        for (k = fo_split_even(nblk, tid, team); k < fo_split_even(nblk, tid + 1, team); ++k) {
            const int64_t r0 = k * FO_ACT_ROW_BLOCK, r1 = r0 + FO_ACT_ROW_BLOCK < rows ? r0 + FO_ACT_ROW_BLOCK : rows;
            fn(dy, y, dx, cols, r0, r1, relu, part != NULL ? part + k * cols : NULL);
        }
    }
    if (part != NULL) {
        for (b = 1; b < nblk; ++b)
            for (c = 0; c < cols; ++c)
                part[c] += part[b * cols + c];
        for (c = 0; c < cols; ++c) {
            if (dtype == FO_F32)
                ((float *)db)[c] = (float)part[c];
            else
                ((double *)db)[c] = part[c];
        }
        free(part);
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
