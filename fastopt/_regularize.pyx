# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: regularize
"""Cython layer of the regularize C family (csrc/regularize.h): one GIL-free call into C per penalty, max-norm
constraint or dropout pass.

Arguments are validated by fastopt/regularize.py and fastopt/functional/dropout.py (dtype, shape, layout, values);
this layer re-checks only what memory safety needs (fastopt/_contract.pxd ``kernel_data``: dtype, size, layout
of every array it hands to C) and raises RuntimeError if the caller broke that contract.

``try_penalty`` and ``try_dropout`` are the plans of the public functions' common calls: every argument checked
here in C, the kernel run with the GIL released, or None (nothing written) for anything else, which the Python
layer then copies or raises about.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, free

from fastopt._contract cimport IntervalSet, float_typenum, kernel_data, overlap, plain, same_memory
from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "regularize.h" nogil:
    ctypedef struct fo_penalty_pair:
        void *grad
        const void *param
        int64_t numel
    int fo_penalty_f32(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty, int nthreads)
    int fo_penalty_f64(fo_penalty_pair *pairs, int64_t npairs, double l1, double l2, double *penalty, int nthreads)
    int fo_max_norm_f32(float *w, int64_t outer, int64_t axis_len, int64_t inner, double max_norm, int nthreads)
    int fo_max_norm_f64(double *w, int64_t outer, int64_t axis_len, int64_t inner, double max_norm, int nthreads)
    uint64_t fo_dropout_key(uint64_t seed)
    uint64_t fo_dropout_threshold(double p)
    int fo_dropout_f32(const float *x, float *y, int64_t n, uint64_t seed, double p, int nthreads)
    int fo_dropout_f64(const double *x, double *y, int64_t n, uint64_t seed, double p, int nthreads)


def penalty(list grads, list params, double l1, double l2, int nthreads=0):
    """Elastic-net penalty of every param; adds its gradient to the matching grad (one pass, one C call)."""
    cdef Py_ssize_t k, n = len(params)
    cdef int rc = 0, tn
    cdef double value = 0.0
    cdef cnp.ndarray p
    cdef fo_penalty_pair *pairs
    if n == 0:
        return 0.0
    tn = float_typenum(params[0])
    pairs = <fo_penalty_pair *>malloc(n * sizeof(fo_penalty_pair))
    if pairs == NULL:
        raise MemoryError()
    try:
        for k in range(n):
            p = params[k]
            pairs[k].numel = cnp.PyArray_SIZE(p)
            pairs[k].param = kernel_data(p, tn, pairs[k].numel, False, "a param")
            pairs[k].grad = <void *>kernel_data(grads[k], tn, pairs[k].numel, True, "a grad")
        with nogil:
            if tn == cnp.NPY_FLOAT32:
                rc = fo_penalty_f32(pairs, n, l1, l2, &value, nthreads)
            else:
                rc = fo_penalty_f64(pairs, n, l1, l2, &value, nthreads)
    finally:
        free(pairs)
    check_rc(rc, "penalty kernel")
    return value


def max_norm(cnp.ndarray w, int64_t outer, int64_t axis_len, int64_t inner, double max_norm, int nthreads=0):
    """Scales every w[o, :, i] whose 2-norm exceeds max_norm by max_norm / (norm + 1e-7), in place."""
    cdef int rc, tn = float_typenum(w)
    cdef void *p = <void *>kernel_data(w, tn, outer * axis_len * inner, True, "w")
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            rc = fo_max_norm_f32(<float *>p, outer, axis_len, inner, max_norm, nthreads)
        else:
            rc = fo_max_norm_f64(<double *>p, outer, axis_len, inner, max_norm, nthreads)
    check_rc(rc, "max_norm kernel")


def dropout(cnp.ndarray x, cnp.ndarray y, uint64_t seed, double p, int nthreads=0):
    """y = x * keep / (1 - p) with the counter-based mask of (seed, flat index); y may be x itself."""
    cdef int rc, tn = float_typenum(x)
    cdef int64_t n = cnp.PyArray_SIZE(x)
    cdef const void *xp = kernel_data(x, tn, n, False, "x")
    cdef void *yp = <void *>kernel_data(y, tn, n, True, "out")
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            rc = fo_dropout_f32(<const float *>xp, <float *>yp, n, seed, p, nthreads)
        else:
            rc = fo_dropout_f64(<const double *>xp, <double *>yp, n, seed, p, nthreads)
    check_rc(rc, "dropout kernel")


def dropout_key(uint64_t seed):
    """The splitmix64 key of a seed (csrc/regularize.h fo_dropout_key), for reproducing the mask elsewhere."""
    return fo_dropout_key(seed)


def dropout_threshold(double p):
    """ceil(p 2^32): an element is kept when its 32 random bits are >= this."""
    return fo_dropout_threshold(p)


# ---------------------------------------------------------------------------------------------- plans
def try_penalty(grads, params, double l1, double l2):
    """add_penalty_grad_(grads, params, l1, l2) for lists of plain arrays of one dtype (grads writeable, each
    param of its grad's shape, no two sharing memory): the penalty, or None (nothing written)."""
    if type(grads) is not list or type(params) is not list or len(grads) != len(params) or not grads:
        return None
    cdef Py_ssize_t k, d, n = len(grads)
    if not cnp.PyArray_Check(grads[0]):
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>grads[0])
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        return None
    for k in range(n):
        g, p = grads[k], params[k]
        if not (plain(g, t, True) and plain(p, t, False)):
            return None
        if cnp.PyArray_NDIM(<cnp.ndarray>g) != cnp.PyArray_NDIM(<cnp.ndarray>p):
            return None
        for d in range(cnp.PyArray_NDIM(<cnp.ndarray>g)):
            if cnp.PyArray_DIM(<cnp.ndarray>g, d) != cnp.PyArray_DIM(<cnp.ndarray>p, d):
                return None
    try:
        IntervalSet(grads + params, lambda i: "")
    except ValueError:
        return None
    return penalty(grads, params, l1, l2)


def try_dropout(x, out, seed, p):
    """dropout(x, p, seed, out=out) (training) for a plain float x, out None or plain of x's dtype and shape and
    either x itself or disjoint from it, seed an int in [0, 2**64), p a float in [0, 1): the output, or None."""
    cdef int t
    if not cnp.PyArray_Check(x) or type(seed) is not int or type(p) is not float:
        return None
    t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or not plain(x, t, False) or not 0 <= seed < 2 ** 64 \
            or not 0.0 <= <double>p < 1.0:
        return None
    if out is None:
        out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(<cnp.ndarray>x), cnp.PyArray_DIMS(<cnp.ndarray>x), t, 0)
    elif not plain(out, t, True) or out.shape != x.shape or (overlap(out, x) and not same_memory(out, x)):
        return None
    dropout(x, out, seed, p)
    return out
