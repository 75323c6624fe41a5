# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: loss
"""Cython layer of the loss C family (csrc/loss.h): one GIL-free call into C per loss.

Arguments are validated by fastopt/losses.py (dtype, shape, layout, values);
this layer re-checks only what memory safety needs (fastopt/_contract.pxd ``kernel_data``: dtype, size, layout
of every array it hands to C) and raises RuntimeError if the caller broke that contract.

``try_softmax_ce`` is the plan of softmax_cross_entropy's common call:
every argument checked here in C, the kernel run with the GIL released, or None (nothing written) for anything
else, which the Python layer then copies or raises about.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t


import numpy as np

from fastopt._contract cimport float_typenum, kernel_data, overlap, plain, plain_matrix, plain_vector
from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "loss.h" nogil:
    int FO_LOSS_MSE, FO_LOSS_MAE, FO_LOSS_HUBER, FO_LOSS_BCE
    ctypedef struct fo_ew_args:
        int kind
        const void *input
        const void *target
        int64_t rows, cols
        const void *row_weight
        int64_t row_rep
        const void *col_weight
        const void *pos_weight
        double pos_weight_scalar, delta, scale
        void *loss_out
        void *grad
    ctypedef struct fo_rows_args:
        const void *logits
        int64_t rows, classes
        const int64_t *labels
        const void *probs
        const void *class_weight
        const void *sample_weight
        int64_t ignore_index
        double alpha, beta, smooth_keep, smooth_unif, class_weight_sum, margin
        void *loss_out
        void *grad
    int fo_loss_elementwise_f32(const fo_ew_args *a, double *total, int nthreads)
    int fo_loss_elementwise_f64(const fo_ew_args *a, double *total, int nthreads)
    int fo_loss_softmax_ce_f32(const fo_rows_args *a, double *total, int nthreads)
    int fo_loss_softmax_ce_f64(const fo_rows_args *a, double *total, int nthreads)
    int fo_loss_hinge_f32(const fo_rows_args *a, double *total, int nthreads)
    int fo_loss_hinge_f64(const fo_rows_args *a, double *total, int nthreads)
    int64_t fo_loss_check_labels(const int64_t *labels, int64_t rows, int64_t classes, int64_t ignore_index,
                                 int dtype, const void *class_weight, const void *sample_weight,
                                 double *weight_sum, int64_t *counted)
    int fo_loss_math_f32(const float *x, float *y, int64_t n, int which)
    int fo_loss_math_f64(const double *x, double *y, int64_t n, int which)

MSE, MAE, HUBER, BCE = FO_LOSS_MSE, FO_LOSS_MAE, FO_LOSS_HUBER, FO_LOSS_BCE
NO_IGNORE = -(2 ** 63)      # an ignore_index no label can equal

def elementwise(int kind, cnp.ndarray x, t, int64_t rows, int64_t cols, row_weight, int64_t row_rep, col_weight,
                pos_weight, double pos_weight_scalar, double delta, double scale, loss_out, grad, int nthreads=0):
    """sum(w * l) of an elementwise loss; writes grad (and loss_out). See fo_ew_args in csrc/loss.h."""
    cdef fo_ew_args a
    cdef double total = 0.0
    cdef int rc, tn = float_typenum(x)
    cdef int64_t n = rows * cols
    a.kind = kind
    a.input = kernel_data(x, tn, n, False, "input")
    a.target = kernel_data(t, tn, n, False, "target")
    a.rows = rows
    a.cols = cols
    a.row_rep = row_rep
    a.row_weight = kernel_data(row_weight, tn, (rows + row_rep - 1) // row_rep, False, "row_weight")
    a.col_weight = kernel_data(col_weight, tn, cols, False, "col_weight")
    a.pos_weight = kernel_data(pos_weight, tn, cols, False, "pos_weight")
    a.pos_weight_scalar = pos_weight_scalar
    a.delta = delta
    a.scale = scale
    a.loss_out = <void *>kernel_data(loss_out, tn, n, True, "loss_out")
    a.grad = <void *>kernel_data(grad, tn, n, True, "grad")
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            rc = fo_loss_elementwise_f32(&a, &total, nthreads)
        else:
            rc = fo_loss_elementwise_f64(&a, &total, nthreads)
    check_rc(rc, "elementwise kernel")
    return total


def check_labels(cnp.ndarray labels, int64_t classes, int64_t ignore_index, class_weight, sample_weight, int tn):
    """(index of the first bad label or -1, sum of the weights of counted rows, number of counted rows)."""
    cdef int64_t rows = cnp.PyArray_SIZE(labels), bad, counted = 0
    cdef double wsum = 0.0
    cdef const int64_t *lp = <const int64_t *>kernel_data(labels, cnp.NPY_INT64, rows, False, "labels")
    cdef const void *cw = kernel_data(class_weight, tn, classes, False, "class_weight")
    cdef const void *sw = kernel_data(sample_weight, tn, rows, False, "sample_weight")
    with nogil:
        bad = fo_loss_check_labels(lp, rows, classes, ignore_index, 0 if tn == cnp.NPY_FLOAT32 else 1, cw, sw,
                                   &wsum, &counted)
    return bad, wsum, counted


def rows_loss(bint hinge, cnp.ndarray x, int64_t rows, int64_t classes, labels, probs, class_weight,
              sample_weight, int64_t ignore_index, double alpha, double beta, double smooth_keep,
              double smooth_unif, double class_weight_sum, double margin, loss_out, grad, int nthreads=0):
    """Sum of row losses of softmax cross-entropy (hinge=False) or multi-class hinge; see fo_rows_args."""
    cdef fo_rows_args a
    cdef double total = 0.0
    cdef int rc, tn = float_typenum(x)
    a.logits = kernel_data(x, tn, rows * classes, False, "logits")
    a.rows = rows
    a.classes = classes
    a.labels = <const int64_t *>kernel_data(labels, cnp.NPY_INT64, rows, False, "labels")
    a.probs = kernel_data(probs, tn, rows * classes, False, "probs")
    if (a.labels == NULL) == (a.probs == NULL):
        raise RuntimeError("internal error: exactly one of labels and probs")
    if hinge and a.labels == NULL:
        raise RuntimeError("internal error: hinge needs labels")
    a.class_weight = kernel_data(class_weight, tn, classes, False, "class_weight")
    a.sample_weight = kernel_data(sample_weight, tn, rows, False, "sample_weight")
    a.ignore_index = ignore_index
    a.alpha = alpha
    a.beta = beta
    a.smooth_keep = smooth_keep
    a.smooth_unif = smooth_unif
    a.class_weight_sum = class_weight_sum
    a.margin = margin
    a.loss_out = <void *>kernel_data(loss_out, tn, rows, True, "loss_out")
    a.grad = <void *>kernel_data(grad, tn, rows * classes, True, "grad")
    with nogil:
        if hinge:
            rc = fo_loss_hinge_f32(&a, &total, nthreads) if tn == cnp.NPY_FLOAT32 else \
                fo_loss_hinge_f64(&a, &total, nthreads)
        else:
            rc = fo_loss_softmax_ce_f32(&a, &total, nthreads) if tn == cnp.NPY_FLOAT32 else \
                fo_loss_softmax_ce_f64(&a, &total, nthreads)
    check_rc(rc, "rows_loss kernel")
    return total


def math(cnp.ndarray x, cnp.ndarray y, int which):
    """Test hook: y = exp(x) (0), log(x) (1), log1p(x) (2) as computed inside the kernels."""
    cdef int tn = float_typenum(x)
    cdef int64_t n = cnp.PyArray_SIZE(x)
    cdef const void *xp = kernel_data(x, tn, n, False, "x")
    cdef void *yp = <void *>kernel_data(y, tn, n, True, "y")
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            fo_loss_math_f32(<const float *>xp, <float *>yp, n, which)
        else:
            fo_loss_math_f64(<const double *>xp, <double *>yp, n, which)


# ---------------------------------------------------------------------------------------------- plans
cdef bint _same_shape(object a, object b) noexcept:
    cdef int d, nd = cnp.PyArray_NDIM(<cnp.ndarray>a)
    if cnp.PyArray_NDIM(<cnp.ndarray>b) != nd:
        return False
    for d in range(nd):
        if cnp.PyArray_DIM(<cnp.ndarray>a, d) != cnp.PyArray_DIM(<cnp.ndarray>b, d):
            return False
    return True


def try_elementwise(int kind, input, target, reduction, grad_out, double delta):
    """An elementwise loss (mse, mae, huber, bce) without weights, reduction "mean" or "sum": (loss, grad), or None
    (nothing written) unless input and target are plain float arrays of one dtype and shape with at least one
    element, and grad_out None or a plain writeable array of that dtype and shape sharing no byte with either."""
    if not cnp.PyArray_Check(input) or (reduction != "mean" and reduction != "sum") or type(reduction) is not str:
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>input)
    cdef int64_t n = cnp.PyArray_SIZE(<cnp.ndarray>input)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or n == 0 or not plain(input, t, False) \
            or not plain(target, t, False) or not _same_shape(input, target):
        return None
    if grad_out is None:
        grad_out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>input), cnp.PyArray_DIMS(<cnp.ndarray>input), t, 0)
    elif not plain(grad_out, t, True) or not _same_shape(grad_out, input) or overlap(grad_out, input) \
            or overlap(grad_out, target):
        return None
    cdef bint mean = reduction == "mean"
    total = elementwise(kind, input, target, 1, n, None, 1, None, None, 1.0, delta, 1.0 / n if mean else 1.0,
                        None, grad_out)
    return (float(total) / n if mean else float(total)), grad_out

cdef int _float_matrix(object a) noexcept:
    """The typenum of a plain 2-d float32/float64 array, 0 for anything else."""
    if not cnp.PyArray_Check(a) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 2:
        return 0
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or not plain(a, t, False):
        return 0
    return t


cdef object _rows_fast(object logits, object target, object grad_out, int64_t ignore_index, fo_rows_args *a,
                       double *wsum):
    """The checks both rows losses' fast paths share: logits a plain float (N, C) array (C > 0), target N valid
    int64 labels, grad_out None or a plain (N, C) array of logits' dtype sharing no byte with them. Fills a's
    arrays and sizes (no weights, no probabilities, no loss_out) and *wsum (the counted rows); returns grad_out
    (a fresh one for None), or None (nothing written) for anything else."""
    cdef int t = _float_matrix(logits)
    if t == 0:
        return None
    cdef int64_t rows = cnp.PyArray_DIM(<cnp.ndarray>logits, 0), classes = cnp.PyArray_DIM(<cnp.ndarray>logits, 1)
    cdef int64_t bad, counted = 0
    if classes == 0 or not plain_vector(target, cnp.NPY_INT64, rows, False):
        return None
    if grad_out is not None and (not plain_matrix(grad_out, t, rows, classes, True) or overlap(grad_out, logits)
                                 or overlap(grad_out, target)):
        return None
    a.labels = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>target)
    a.ignore_index = ignore_index
    wsum[0] = 0.0
    with nogil:
        bad = fo_loss_check_labels(a.labels, rows, classes, ignore_index, 0 if t == cnp.NPY_FLOAT32 else 1, NULL,
                                   NULL, wsum, &counted)
    if bad >= 0:
        return None
    if grad_out is None:
        grad_out = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(<cnp.ndarray>logits), t, 0)
    a.logits = cnp.PyArray_DATA(<cnp.ndarray>logits)
    a.rows, a.classes = rows, classes
    a.probs = a.class_weight = a.sample_weight = NULL
    a.loss_out = NULL
    a.grad = cnp.PyArray_DATA(<cnp.ndarray>grad_out)
    return grad_out


def try_softmax_ce(logits, target, grad_out, ignore_index):
    """softmax_cross_entropy(logits, target, grad_out=grad_out, ignore_index=ignore_index) with no weights, no
    smoothing and reduction="mean": (loss, grad), or None (nothing written) unless the arguments pass
    ``_rows_fast``."""
    cdef fo_rows_args a
    cdef double wsum, total = 0.0, scale
    cdef int rc
    if type(ignore_index) is not int or not -2 ** 63 <= ignore_index < 2 ** 63:
        return None
    grad_out = _rows_fast(logits, target, grad_out, ignore_index, &a, &wsum)
    if grad_out is None:
        return None
    scale = 1.0 / wsum if wsum != 0 else 0.0
    a.alpha, a.beta, a.smooth_keep, a.smooth_unif = 1.0 * scale, 0.0 * scale, 0.0, 0.0
    a.class_weight_sum, a.margin = <double>a.classes, 0.0
    with nogil:
        if cnp.PyArray_TYPE(<cnp.ndarray>logits) == cnp.NPY_FLOAT32:
            rc = fo_loss_softmax_ce_f32(&a, &total, 0)
        else:
            rc = fo_loss_softmax_ce_f64(&a, &total, 0)
    check_rc(rc, "softmax_ce kernel")
    return (float(total) if wsum != 0 else float("nan")), grad_out


def try_hinge(logits, target, grad_out, margin, reduction):
    """hinge(logits, target, margin=margin, reduction=reduction, grad_out=grad_out) with no weights, reduction
    "mean" or "sum" and a finite float margin: (loss, grad), or None (nothing written) unless the arguments pass
    ``_rows_fast``."""
    cdef fo_rows_args a
    cdef double wsum, total = 0.0
    cdef int rc
    if type(margin) is not float or not -1e308 <= <double>margin <= 1e308 or type(reduction) is not str \
            or (reduction != "mean" and reduction != "sum"):
        return None
    grad_out = _rows_fast(logits, target, grad_out, NO_IGNORE, &a, &wsum)
    if grad_out is None:
        return None
    a.alpha = 1.0 / a.rows if reduction == "mean" and a.rows != 0 else (1.0 if reduction == "sum" else 0.0)
    a.beta, a.smooth_keep, a.smooth_unif, a.class_weight_sum, a.margin = 0.0, 0.0, 0.0, 0.0, <double>margin
    with nogil:
        if cnp.PyArray_TYPE(<cnp.ndarray>logits) == cnp.NPY_FLOAT32:
            rc = fo_loss_hinge_f32(&a, &total, 0)
        else:
            rc = fo_loss_hinge_f64(&a, &total, 0)
    check_rc(rc, "hinge kernel")
    if reduction == "mean" and a.rows == 0:
        return float("nan"), grad_out
    return float(total), grad_out
