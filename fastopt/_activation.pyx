# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: activation
"""Cython layer of the activation family: one GIL-free call into csrc/activation.c per pass.

A call is a plan checked once in C (``plan_forward`` / ``plan_backward``: the array contract of
fastopt/_contract.pxd) and run with the GIL released and no re-check; a plan declines (None, nothing written)
for anything the kernels do not take as it is, and fastopt/functional/activation.py then copies or raises.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

from fastopt._contract cimport overlap, plain_matrix, plain_vector, relu_flag, same_memory
from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "activation.h" nogil:
    int fo_activation_bias_forward_f32(const float *x, const float *b, float *y, int64_t rows, int64_t cols,
                                       int relu, int nthreads)
    int fo_activation_bias_forward_f64(const double *x, const double *b, double *y, int64_t rows, int64_t cols,
                                       int relu, int nthreads)
    int fo_activation_bias_backward_f32(const float *dy, const float *y, float *dx, float *db, int64_t rows,
                                        int64_t cols, int relu, int nthreads)
    int fo_activation_bias_backward_f64(const double *dy, const double *y, double *dx, double *db, int64_t rows,
                                        int64_t cols, int relu, int nthreads)

cdef class Plan:
    """One checked bias_activation (forward) or bias_activation_backward call: (rows, cols) arrays of one
    dtype, bias (cols,) or None, relu; ``run()`` calls the kernel with the GIL released and no check."""
    cdef readonly bint backward
    cdef int relu, f32
    cdef int64_t rows, cols
    cdef readonly object src, y, out, vec     # forward: x, -, out, bias; backward: dy, y, dx, dbias

    def run(self):
        """The output (forward) or (dx, dbias) (backward)."""
        cdef int rc
        cdef const void *ps = cnp.PyArray_DATA(<cnp.ndarray>self.src)
        cdef void *po = cnp.PyArray_DATA(<cnp.ndarray>self.out)
        cdef void *pv = NULL if self.vec is None else cnp.PyArray_DATA(<cnp.ndarray>self.vec)
        cdef const void *py = NULL if self.y is None else cnp.PyArray_DATA(<cnp.ndarray>self.y)
        with nogil:
            if not self.backward and self.f32:
                rc = fo_activation_bias_forward_f32(<const float *>ps, <const float *>pv, <float *>po, self.rows,
                                                    self.cols, self.relu, 0)
            elif not self.backward:
                rc = fo_activation_bias_forward_f64(<const double *>ps, <const double *>pv, <double *>po,
                                                    self.rows, self.cols, self.relu, 0)
            elif self.f32:
                rc = fo_activation_bias_backward_f32(<const float *>ps, <const float *>py, <float *>po,
                                                     <float *>pv, self.rows, self.cols, self.relu, 0)
            else:
                rc = fo_activation_bias_backward_f64(<const double *>ps, <const double *>py, <double *>po,
                                                     <double *>pv, self.rows, self.cols, self.relu, 0)
        check_rc(rc, "bias_activation_backward" if self.backward else "bias_activation")
        return (self.out, self.vec) if self.backward else self.out


cdef bint _disjoint_or_same(object out, object a, bint same_ok):
    """out's bytes are disjoint from a's (None: yes), or (same_ok) out is exactly a's memory."""
    return not overlap(out, a) or (same_ok and same_memory(out, a))


cdef Plan _plan(object src, int relu, bint backward):
    """A plan of a plain 2-d float src (None if src is anything else), its other arrays still to be set."""
    if relu < 0 or not cnp.PyArray_Check(src) or cnp.PyArray_NDIM(<cnp.ndarray>src) != 2:
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>src)
    cdef int64_t rows = cnp.PyArray_DIM(<cnp.ndarray>src, 0), cols = cnp.PyArray_DIM(<cnp.ndarray>src, 1)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or not plain_matrix(src, t, rows, cols, False):
        return None
    cdef Plan p = Plan.__new__(Plan)
    p.backward, p.relu, p.f32, p.rows, p.cols, p.src = backward, relu, t == cnp.NPY_FLOAT32, rows, cols, src
    return p


cdef object _matrix_out(Plan p, object out, object src, object other):
    """The plan's (rows, cols) output: a fresh array if out is None, out if it is plain and writeable, exactly src's
    memory or disjoint from it, and disjoint from other (None: none); None if out is anything else."""
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>src)
    if out is None:
        return cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(<cnp.ndarray>src), t, 0)
    if plain_matrix(out, t, p.rows, p.cols, True) and _disjoint_or_same(out, src, True) \
            and _disjoint_or_same(out, other, False):
        return out
    return None


def plan_forward(x, bias, out, activation):
    """The plan of bias_activation(x, bias, out=out, activation=activation), or None (see the module)."""
    cdef Plan p = _plan(x, relu_flag(activation), False)
    if p is None:
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if not plain_vector(bias, t, p.cols, False):
        return None
    out = _matrix_out(p, out, x, bias)
    if out is None:
        return None
    p.out, p.vec = out, bias
    return p


def plan_backward(dy, y, dx_out, dbias_out, activation):
    """The plan of bias_activation_backward(dy, y, dx_out=..., dbias_out=..., activation=...), or None."""
    cdef Plan p = _plan(dy, relu_flag(activation), True)
    cdef cnp.npy_intp nc
    if p is None:
        return None
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>dy)
    if not p.relu:
        y = None
    elif y is None or not plain_matrix(y, t, p.rows, p.cols, False):
        return None
    dx_out = _matrix_out(p, dx_out, dy, y)
    if dx_out is None:
        return None
    if dbias_out is None:
        nc = p.cols
        dbias_out = cnp.PyArray_EMPTY(1, &nc, t, 0)
    elif not (plain_vector(dbias_out, t, p.cols, True) and not overlap(dbias_out, dy)
              and not overlap(dbias_out, y) and not overlap(dbias_out, dx_out)):
        return None
    p.y, p.out, p.vec = y, dx_out, dbias_out
    return p


def try_forward(x, bias, out, activation):
    """bias_activation's fast path: the output array, or None (nothing written)."""
    p = plan_forward(x, bias, out, activation)
    return None if p is None else (<Plan>p).run()


def try_backward(dy, y, dx_out, dbias_out, activation):
    """bias_activation_backward's fast path: (dx, dbias), or None (nothing written)."""
    p = plan_backward(dy, y, dx_out, dbias_out, activation)
    return None if p is None else (<Plan>p).run()
