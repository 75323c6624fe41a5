# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: batchnorm
"""Cython layer of the batch-normalization family: one GIL-free call into csrc/batchnorm.c per pass.

The Python layer (fastopt/functional/batchnorm.py) validates every argument and resolves the layout; this module
re-checks what memory safety depends on (sizes, dtypes, contiguity, writeability) and raises RuntimeError if the
Python layer let something through, so a bug there can never make C read or write out of bounds.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "batchnorm.h" nogil:
    int FO_BN_NCS, FO_BN_RC
    ctypedef struct fo_bn_shape:
        int layout
        int64_t n
        int64_t c
        int64_t s
    int fo_batchnorm_forward(int dtype, const void *x, void *y, const fo_bn_shape *sh, const void *gamma,
                             const void *beta, void *running_mean, void *running_var, double *save_mean,
                             double *save_invstd, int training, double momentum, double eps, int relu,
                             int nthreads)
    int fo_batchnorm_backward(int dtype, const void *dy, const void *x, void *dx, const fo_bn_shape *sh,
                              const void *gamma, const void *beta, const double *save_mean,
                              const double *save_invstd, void *dgamma, void *dbeta, int training, int relu,
                              int nthreads)

NCS = FO_BN_NCS
RC = FO_BN_RC

cdef int _CONTIG = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED


cdef void *_ptr(object a, int typenum, int64_t size, bint write, str name) except? NULL:
    """Data pointer of `a` (None -> NULL) after the memory-safety checks."""
    cdef cnp.ndarray arr
    if a is None:
        return NULL
    if not cnp.PyArray_Check(a):
        raise RuntimeError(f"internal error: {name} is not an ndarray")
    arr = a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_SIZE(arr) != size \
            or cnp.PyArray_ISBYTESWAPPED(arr) or (write and not cnp.PyArray_ISWRITEABLE(arr)):
        raise RuntimeError(f"internal error: {name} has the wrong dtype, size or flags")
    if (cnp.PyArray_FLAGS(arr) & _CONTIG) != _CONTIG:
        raise RuntimeError(f"internal error: {name} is not C-contiguous and aligned")
    return cnp.PyArray_DATA(arr)


cdef inline int _typenum(cnp.ndarray x) except -1:
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        return cnp.NPY_FLOAT32
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT64:
        return cnp.NPY_FLOAT64
    raise RuntimeError("internal error: x must be float32 or float64")


cdef int _raise(int rc, str what) except -1:
    if rc == -2:
        raise MemoryError(f"{what}: could not allocate per-channel scratch memory")
    if rc != 0:
        raise RuntimeError(f"internal error: {what} rejected its arguments (code {rc})")
    return 0


def forward(cnp.ndarray x, cnp.ndarray y, int layout, int64_t n, int64_t c, int64_t s, gamma, beta,
            running_mean, running_var, cnp.ndarray save_mean, cnp.ndarray save_invstd, bint training,
            double momentum, double eps, bint relu, int nthreads=0):
    """y <- batch_norm(x) (see csrc/batchnorm.h); x, y: the layout's C-contiguous arrays of n*c*s elements."""
    cdef fo_bn_shape sh
    cdef int t = _typenum(x), rc
    cdef int64_t total = n * c * s
    sh.layout = layout
    sh.n = n
    sh.c = c
    sh.s = s
    cdef const void *px = _ptr(x, t, total, False, "x")
    cdef void *py = _ptr(y, t, total, True, "out")
    cdef const void *pg = _ptr(gamma, t, c, False, "weight")
    cdef const void *pb = _ptr(beta, t, c, False, "bias")
    cdef void *prm = _ptr(running_mean, t, c, training, "running_mean")
    cdef void *prv = _ptr(running_var, t, c, training, "running_var")
    cdef double *psm = <double *>_ptr(save_mean, cnp.NPY_FLOAT64, c, True, "save_mean")
    cdef double *psi = <double *>_ptr(save_invstd, cnp.NPY_FLOAT64, c, True, "save_invstd")
    cdef int dtype = 0 if t == cnp.NPY_FLOAT32 else 1
    if total > 0 and (px == NULL or py == NULL):
        raise RuntimeError("internal error: x or out missing")
    with nogil:
        rc = fo_batchnorm_forward(dtype, px, py, &sh, pg, pb, prm, prv, psm, psi, training, momentum, eps, relu,
                                  nthreads)
    _raise(rc, "batch_norm_forward")


def backward(cnp.ndarray dy, cnp.ndarray x, cnp.ndarray dx, int layout, int64_t n, int64_t c, int64_t s, gamma,
             beta, cnp.ndarray save_mean, cnp.ndarray save_invstd, dgamma, dbeta, bint training, bint relu,
             int nthreads=0):
    """dx (and dgamma, dbeta unless None) of batch_norm; arrays as in ``forward``."""
    cdef fo_bn_shape sh
    cdef int t = _typenum(x), rc
    cdef int64_t total = n * c * s
    sh.layout = layout
    sh.n = n
    sh.c = c
    sh.s = s
    cdef const void *pdy = _ptr(dy, t, total, False, "dy")
    cdef const void *px = _ptr(x, t, total, False, "x")
    cdef void *pdx = _ptr(dx, t, total, True, "dx_out")
    cdef const void *pg = _ptr(gamma, t, c, False, "weight")
    cdef const void *pb = _ptr(beta, t, c, False, "bias")
    cdef const double *psm = <double *>_ptr(save_mean, cnp.NPY_FLOAT64, c, False, "save_mean")
    cdef const double *psi = <double *>_ptr(save_invstd, cnp.NPY_FLOAT64, c, False, "save_invstd")
    cdef void *pdg = _ptr(dgamma, t, c, True, "dgamma_out")
    cdef void *pdb = _ptr(dbeta, t, c, True, "dbeta_out")
    cdef int dtype = 0 if t == cnp.NPY_FLOAT32 else 1
    with nogil:
        rc = fo_batchnorm_backward(dtype, pdy, px, pdx, &sh, pg, pb, psm, psi, pdg, pdb, training, relu, nthreads)
    _raise(rc, "batch_norm_backward")


def check_disjoint(list writes, list wnames, list reads, list rnames):
    """ValueError naming the first array of `writes` that shares memory with another array of `writes` or `reads`.

    Every array is C-contiguous (or None, skipped), so its bytes are one interval [data, data + nbytes).
    """
    cdef Py_ssize_t i, j, nw = len(writes)
    cdef cnp.ndarray a, b
    allv = writes + reads
    names = wnames + rnames
    for i in range(nw):
        if allv[i] is None or cnp.PyArray_NBYTES(<cnp.ndarray>allv[i]) == 0:
            continue
        a = allv[i]
        for j in range(len(allv)):
            if j == i or allv[j] is None or (j < nw and j < i):
                continue
            b = allv[j]
            if cnp.PyArray_NBYTES(b) == 0:
                continue
            if <char *>cnp.PyArray_DATA(a) < <char *>cnp.PyArray_DATA(b) + cnp.PyArray_NBYTES(b) and \
                    <char *>cnp.PyArray_DATA(b) < <char *>cnp.PyArray_DATA(a) + cnp.PyArray_NBYTES(a):
                raise ValueError(f"{names[i]} and {names[j]} share memory; they must be separate arrays")
