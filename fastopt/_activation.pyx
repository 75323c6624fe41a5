# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: activation
"""Cython layer of the activation family: one GIL-free call into csrc/activation.c per pass.

fastopt/functional/activation.py validates every argument (dtype, shape, layout, aliasing) with errors that name
it; this layer re-checks what memory safety depends on (dtype, shape, C-contiguity, writeability of every array
it hands to C) and raises RuntimeError if a caller broke that contract, so C never reads or writes out of bounds.
The estimators call it directly on their own buffers.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"
include "_arrays.pxi"

cdef extern from "activation.h" nogil:
    int fo_activation_bias_forward_f32(const float *x, const float *b, float *y, int64_t rows, int64_t cols,
                                       int relu, int nthreads)
    int fo_activation_bias_forward_f64(const double *x, const double *b, double *y, int64_t rows, int64_t cols,
                                       int relu, int nthreads)
    int fo_activation_bias_backward_f32(const float *dy, const float *y, float *dx, float *db, int64_t rows,
                                        int64_t cols, int relu, int nthreads)
    int fo_activation_bias_backward_f64(const double *dy, const double *y, double *dx, double *db, int64_t rows,
                                        int64_t cols, int relu, int nthreads)

cdef bint _plain_shaped(object a, int typenum, int64_t rows, int64_t cols, bint write):
    """a is a plain (see _plain) (rows, cols) array, or (cols,) with rows < 0."""
    if not _plain(a, typenum, write):
        return False
    if rows < 0:
        return cnp.PyArray_NDIM(<cnp.ndarray>a) == 1 and cnp.PyArray_DIM(<cnp.ndarray>a, 0) == cols
    return cnp.PyArray_NDIM(<cnp.ndarray>a) == 2 and cnp.PyArray_DIM(<cnp.ndarray>a, 0) == rows \
        and cnp.PyArray_DIM(<cnp.ndarray>a, 1) == cols


cdef void *_ptr(object a, int typenum, int64_t rows, int64_t cols, bint write, str name) except? NULL:
    """Data pointer of `a` (None -> NULL): a (rows, cols) array, or (cols,) when rows < 0, after the checks."""
    if a is None:
        return NULL
    if not _plain_shaped(a, typenum, rows, cols, write):
        shape = f"({cols},)" if rows < 0 else f"({rows}, {cols})"
        raise RuntimeError(f"internal error: {name} is not a C-contiguous, aligned, native"
                           f"{', writeable' if write else ''} {shape} array of the expected dtype")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int _typenum(cnp.ndarray x) except -1:
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32 or cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT64:
        return cnp.PyArray_TYPE(x)
    raise RuntimeError("internal error: expected float32 or float64 arrays")


def bias_forward(cnp.ndarray x, bias, cnp.ndarray y, bint relu, int nthreads=0):
    """y <- act(x + bias) for a 2-d x (y may be x); bias (cols,) or None."""
    cdef int t = _typenum(x), rc
    if cnp.PyArray_NDIM(x) != 2:
        raise RuntimeError("internal error: x must be 2-d")
    cdef int64_t rows = cnp.PyArray_DIM(x, 0), cols = cnp.PyArray_DIM(x, 1)
    cdef const void *px = _ptr(x, t, rows, cols, False, "x")
    cdef void *py = _ptr(y, t, rows, cols, True, "out")
    cdef const void *pb = _ptr(bias, t, -1, cols, False, "bias")
    with nogil:
        if t == cnp.NPY_FLOAT32:
            rc = fo_activation_bias_forward_f32(<const float *>px, <const float *>pb, <float *>py, rows, cols,
                                                relu, nthreads)
        else:
            rc = fo_activation_bias_forward_f64(<const double *>px, <const double *>pb, <double *>py, rows, cols,
                                                relu, nthreads)
    check_rc(rc, "bias_forward")


def bias_backward(cnp.ndarray dy, y, cnp.ndarray dx, dbias, bint relu, int nthreads=0):
    """dx <- dy [y > 0] (relu) or dy (dx may be dy); dbias (cols,) <- column sums of dx, unless None."""
    cdef int t = _typenum(dy), rc
    if cnp.PyArray_NDIM(dy) != 2:
        raise RuntimeError("internal error: dy must be 2-d")
    cdef int64_t rows = cnp.PyArray_DIM(dy, 0), cols = cnp.PyArray_DIM(dy, 1)
    cdef const void *pdy = _ptr(dy, t, rows, cols, False, "dy")
    cdef const void *py = _ptr(y, t, rows, cols, False, "y")
    cdef void *pdx = _ptr(dx, t, rows, cols, True, "dx_out")
    cdef void *pdb = _ptr(dbias, t, -1, cols, True, "dbias_out")
    if relu and py == NULL:
        raise RuntimeError("internal error: relu needs y")
    with nogil:
        if t == cnp.NPY_FLOAT32:
            rc = fo_activation_bias_backward_f32(<const float *>pdy, <const float *>py, <float *>pdx,
                                                 <float *>pdb, rows, cols, relu, nthreads)
        else:
            rc = fo_activation_bias_backward_f64(<const double *>pdy, <const double *>py, <double *>pdx,
                                                 <double *>pdb, rows, cols, relu, nthreads)
    check_rc(rc, "bias_backward")


# ---------------------------------------------------------------------------------------------------------------
# Fast path of fastopt.functional.activation: the whole call checked here when every argument is already what the
# kernels take (2-d C-contiguous aligned native arrays of one dtype, writeable outputs, nothing overlapping but an
# output that is exactly its element-for-element input); None otherwise, with nothing written, and the Python
# checks then copy or raise.

cdef bint _disjoint_or_same(object out, object a, bint same_ok):
    """out's bytes are disjoint from a's (None: yes), or (same_ok) out is exactly a's memory."""
    if not _overlap(out, a):
        return True
    return same_ok and cnp.PyArray_DATA(<cnp.ndarray>out) == cnp.PyArray_DATA(<cnp.ndarray>a) \
        and cnp.PyArray_NBYTES(<cnp.ndarray>out) == cnp.PyArray_NBYTES(<cnp.ndarray>a)


cdef int _float_matrix(object a, int64_t *rows, int64_t *cols):
    """The typenum of `a` if it is a 2-d float32/float64 ndarray (its shape into rows, cols), else -1."""
    cdef int t
    if not cnp.PyArray_Check(a) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 2:
        return -1
    t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        return -1
    rows[0] = cnp.PyArray_DIM(<cnp.ndarray>a, 0)
    cols[0] = cnp.PyArray_DIM(<cnp.ndarray>a, 1)
    return t


def try_forward(x, bias, out, activation):
    """bias_activation's fast path: the output array, or None (nothing written)."""
    cdef int relu = _relu_flag(activation)
    cdef int t
    cdef int64_t rows, cols
    t = _float_matrix(x, &rows, &cols) if relu >= 0 else -1
    if t < 0:
        return None
    if not _plain_shaped(x, t, rows, cols, False) \
            or (bias is not None and not _plain_shaped(bias, t, -1, cols, False)):
        return None
    if out is None:
        out = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(<cnp.ndarray>x), t, 0)
    elif not (_plain_shaped(out, t, rows, cols, True) and _disjoint_or_same(out, x, True)
              and _disjoint_or_same(out, bias, False)):
        return None
    bias_forward(x, bias, out, relu)
    return out


def try_backward(dy, y, dx_out, dbias_out, activation):
    """bias_activation_backward's fast path: (dx, dbias), or None (nothing written)."""
    cdef int relu = _relu_flag(activation)
    cdef int t
    cdef int64_t rows, cols
    cdef cnp.npy_intp nc
    t = _float_matrix(dy, &rows, &cols) if relu >= 0 else -1
    if t < 0:
        return None
    if not _plain_shaped(dy, t, rows, cols, False):
        return None
    if relu:
        if y is None or not _plain_shaped(y, t, rows, cols, False):
            return None
    else:
        y = None
    if dx_out is None:
        dx = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(<cnp.ndarray>dy), t, 0)
    elif _plain_shaped(dx_out, t, rows, cols, True) and _disjoint_or_same(dx_out, dy, True) \
            and _disjoint_or_same(dx_out, y, False):
        dx = dx_out
    else:
        return None
    if dbias_out is None:
        nc = cols
        dbias = cnp.PyArray_EMPTY(1, &nc, t, 0)
    elif _plain_shaped(dbias_out, t, -1, cols, True) and _disjoint_or_same(dbias_out, dy, False) \
            and _disjoint_or_same(dbias_out, y, False) and _disjoint_or_same(dbias_out, dx, False):
        dbias = dbias_out
    else:
        return None
    bias_backward(dy, y, dx, dbias, relu)
    return dx, dbias
