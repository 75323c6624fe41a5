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

cdef extern from "activation.h" nogil:
    int fo_act_bias_forward_f32(const float *x, const float *b, float *y, int64_t rows, int64_t cols, int relu,
                                int nthreads)
    int fo_act_bias_forward_f64(const double *x, const double *b, double *y, int64_t rows, int64_t cols, int relu,
                                int nthreads)
    int fo_act_bias_backward_f32(const float *dy, const float *y, float *dx, float *db, int64_t rows, int64_t cols,
                                 int relu, int nthreads)
    int fo_act_bias_backward_f64(const double *dy, const double *y, double *dx, double *db, int64_t rows,
                                 int64_t cols, int relu, int nthreads)

cdef int _CONTIG = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED


cdef void *_ptr(object a, int typenum, int64_t rows, int64_t cols, bint write, str name) except? NULL:
    """Data pointer of `a` (None -> NULL): a (rows, cols) array, or (cols,) when rows < 0, after the checks."""
    cdef cnp.ndarray arr
    if a is None:
        return NULL
    if not cnp.PyArray_Check(a):
        raise RuntimeError(f"internal error: {name} is not an ndarray")
    arr = a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_ISBYTESWAPPED(arr) \
            or (cnp.PyArray_FLAGS(arr) & _CONTIG) != _CONTIG or (write and not cnp.PyArray_ISWRITEABLE(arr)):
        raise RuntimeError(f"internal error: {name} has the wrong dtype or flags")
    if rows < 0:
        if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != cols:
            raise RuntimeError(f"internal error: {name} is not a ({cols},) array")
    elif cnp.PyArray_NDIM(arr) != 2 or cnp.PyArray_DIM(arr, 0) != rows or cnp.PyArray_DIM(arr, 1) != cols:
        raise RuntimeError(f"internal error: {name} is not a ({rows}, {cols}) array")
    return cnp.PyArray_DATA(arr)


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
            rc = fo_act_bias_forward_f32(<const float *>px, <const float *>pb, <float *>py, rows, cols, relu,
                                         nthreads)
        else:
            rc = fo_act_bias_forward_f64(<const double *>px, <const double *>pb, <double *>py, rows, cols, relu,
                                         nthreads)
    if rc != 0:
        raise RuntimeError(f"internal error: bias_forward rejected its arguments (code {rc})")


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
            rc = fo_act_bias_backward_f32(<const float *>pdy, <const float *>py, <float *>pdx, <float *>pdb, rows,
                                          cols, relu, nthreads)
        else:
            rc = fo_act_bias_backward_f64(<const double *>pdy, <const double *>py, <double *>pdx, <double *>pdb,
                                          rows, cols, relu, nthreads)
    if rc == -2:
        raise MemoryError("bias_backward: could not allocate the column sums")
    if rc != 0:
        raise RuntimeError(f"internal error: bias_backward rejected its arguments (code {rc})")
