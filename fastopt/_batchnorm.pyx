# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: batchnorm
"""Cython layer of the batch-normalization family: one GIL-free call into csrc/batchnorm.c per pass.

The Python layer (fastopt/functional/batchnorm.py) validates every argument and resolves the layout; this module
re-checks what memory safety depends on (sizes, dtypes, contiguity, writeability) and raises RuntimeError if the
Python layer let something through, so a bug there can never make C read or write out of bounds.

``try_forward`` / ``try_backward`` are the fast path the Python layer tries first: they run the kernels only when
every argument is already exactly what the kernels take (arrays used in place, no copies, nothing aliased, valid
scalars) and return None otherwise, without writing anything; the Python checks then raise the error, or make the
copies, as usual. At (256, 1024) they save about 14 us per forward + backward.
"""
cimport numpy as cnp
from libc.math cimport INFINITY, isnan
from libc.stdint cimport int64_t
import numpy as np

from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"
include "_arrays.pxi"

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

cdef void *_ptr(object a, int typenum, int64_t size, bint write, str name) except? NULL:
    """Data pointer of `a` (None -> NULL) after the memory-safety checks."""
    if a is None:
        return NULL
    if not _plain(a, typenum, write) or cnp.PyArray_SIZE(<cnp.ndarray>a) != size:
        raise RuntimeError(f"internal error: {name} is not a C-contiguous, aligned, native"
                           f"{', writeable' if write else ''} array of {size} elements of the expected dtype")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline int _typenum(cnp.ndarray x) except -1:
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        return cnp.NPY_FLOAT32
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT64:
        return cnp.NPY_FLOAT64
    raise RuntimeError("internal error: x must be float32 or float64")




cdef inline fo_bn_shape _shape(int layout, int64_t n, int64_t c, int64_t s):
    cdef fo_bn_shape sh
    sh.layout = layout
    sh.n = n
    sh.c = c
    sh.s = s
    return sh


def forward(cnp.ndarray x, cnp.ndarray y, int layout, int64_t n, int64_t c, int64_t s, gamma, beta,
            running_mean, running_var, cnp.ndarray save_mean, cnp.ndarray save_invstd, bint training,
            double momentum, double eps, bint relu, int nthreads=0):
    """y <- batch_norm(x) (see csrc/batchnorm.h); x, y: the layout's C-contiguous arrays of n*c*s elements."""
    cdef fo_bn_shape sh = _shape(layout, n, c, s)
    cdef int t = _typenum(x), rc
    cdef int64_t total = n * c * s
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
    check_rc(rc, "batch_norm_forward")


def backward(cnp.ndarray dy, cnp.ndarray x, cnp.ndarray dx, int layout, int64_t n, int64_t c, int64_t s, gamma,
             beta, cnp.ndarray save_mean, cnp.ndarray save_invstd, dgamma, dbeta, bint training, bint relu,
             int nthreads=0):
    """dx (and dgamma, dbeta unless None) of batch_norm; arrays as in ``forward``."""
    cdef fo_bn_shape sh = _shape(layout, n, c, s)
    cdef int t = _typenum(x), rc
    cdef int64_t total = n * c * s
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
    check_rc(rc, "batch_norm_backward")


cdef bint _plain_channels(object a, int typenum, int64_t c, bint write):
    """None, or a plain (see _plain) 1-d array of c elements."""
    if a is None:
        return True
    return _plain(a, typenum, write) and cnp.PyArray_NDIM(<cnp.ndarray>a) == 1 \
        and cnp.PyArray_DIM(<cnp.ndarray>a, 0) == c


cdef bint _same_geometry(object a, cnp.ndarray x, int typenum, bint write):
    """a is an aligned, native ndarray of typenum with x's shape and strides (so the kernels read it as x)."""
    cdef int d
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_ISBYTESWAPPED(arr) or not cnp.PyArray_ISALIGNED(arr):
        return False
    if write and not cnp.PyArray_ISWRITEABLE(arr):
        return False
    if cnp.PyArray_NDIM(arr) != cnp.PyArray_NDIM(x):
        return False
    for d in range(cnp.PyArray_NDIM(x)):
        if cnp.PyArray_DIM(arr, d) != cnp.PyArray_DIM(x, d) or cnp.PyArray_STRIDE(arr, d) != cnp.PyArray_STRIDE(x, d):
            return False
    return True


cdef bint _dense_in_order(cnp.ndarray x, int first, int last_dim):
    """x's memory is C-contiguous in the order (0, first, the other axes in order) with `first` moved to the
    front after axis 0 when last_dim is False, or to the end when last_dim is True: the two layouts' transposes."""
    cdef int nd = cnp.PyArray_NDIM(x), k, d
    cdef int order[32]
    cdef Py_ssize_t expect = cnp.PyArray_ITEMSIZE(x)
    if nd > 32:
        return False
    order[0] = 0
    k = 1
    if not last_dim:
        order[k] = first
        k += 1
    for d in range(1, nd):
        if d != first:
            order[k] = d
            k += 1
    if last_dim:
        order[k] = first
    for k in range(nd - 1, -1, -1):
        d = order[k]
        if cnp.PyArray_DIM(x, d) != 1 and cnp.PyArray_STRIDE(x, d) != expect:
            return False
        expect *= cnp.PyArray_DIM(x, d)
    return True


cdef int _plain_layout(object xo, object axis, fo_bn_shape *sh) except -2:
    """Resolves the kernel layout of an x the kernels read in place (as fastopt.functional.batchnorm._layout does);
    returns its typenum, or 0 if x is anything else (a copy, a bad axis, no channels: the Python path decides)."""
    cdef cnp.ndarray x
    cdef int nd, ax, t, d
    cdef int64_t C, size, s
    if not cnp.PyArray_Check(xo) or type(axis) is not int:
        return 0
    x = <cnp.ndarray>xo
    t = cnp.PyArray_TYPE(x)
    nd = cnp.PyArray_NDIM(x)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or cnp.PyArray_ISBYTESWAPPED(x) \
            or not cnp.PyArray_ISALIGNED(x) or nd < 2 or not -nd <= axis < nd:
        return 0
    ax = <int>axis + nd if axis < 0 else <int>axis
    if ax != 1 and ax != nd - 1:
        return 0
    C = cnp.PyArray_DIM(x, ax)
    size = cnp.PyArray_SIZE(x)
    if C < 1 or size == 0:
        return 0
    if cnp.PyArray_IS_C_CONTIGUOUS(x):
        s = 1
        if ax != nd - 1:
            for d in range(2, nd):
                s *= cnp.PyArray_DIM(x, d)
        sh.layout = FO_BN_RC if s == 1 else FO_BN_NCS
        sh.n = size // C if s == 1 else cnp.PyArray_DIM(x, 0)
        sh.c = C
        sh.s = s
        return t
    if nd < 3 or not _dense_in_order(x, ax, ax == 1):
        return 0
    if ax == nd - 1:          # shape (N, *spatial, C), memory (N, C, *spatial)
        sh.layout = FO_BN_NCS
        sh.n = cnp.PyArray_DIM(x, 0)
        sh.s = size // (sh.n * C)
    else:                     # shape (N, C, *spatial), memory (N, *spatial, C)
        sh.layout = FO_BN_RC
        sh.n = size // C
        sh.s = 1
    sh.c = C
    return t


cdef bint _any_overlap(tuple writes, tuple reads):
    cdef Py_ssize_t i, j
    for i in range(len(writes)):
        for j in range(i + 1, len(writes)):
            if _overlap(writes[i], writes[j]):
                return True
        for j in range(len(reads)):
            if _overlap(writes[i], reads[j]):
                return True
    return False


cdef inline void *_data(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline bint _unit_real(object v, bint upper):
    """v is a Python float (or subclass) in [0, 1] (upper) or [0, inf) (not upper)."""
    cdef double d
    if not isinstance(v, float):
        return False
    d = <double>v
    return not isnan(d) and d >= 0.0 and (d <= 1.0 if upper else d < INFINITY)


cdef object _kernel_output(object out, cnp.ndarray x):
    """The array the kernels write: out if it has x's shape and strides and is writeable, else None; a fresh one
    like x (dense in one of the two layouts) if out is None."""
    if out is None:
        out = np.empty_like(x)
    return out if _same_geometry(out, x, cnp.PyArray_TYPE(x), True) else None


def try_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, axis, out, activation):
    """batch_norm_forward's fast path: (y, save_mean, save_invstd), or None (nothing written) unless every
    argument is already what the kernels take."""
    cdef fo_bn_shape sh
    cdef int t, rc
    cdef bint train
    cdef int relu = _relu_flag(activation)
    cdef int64_t C
    t = _plain_layout(x, axis, &sh)
    if t == 0 or relu < 0 or type(training) is not bool or not _unit_real(momentum, True) \
            or not _unit_real(eps, False):
        return None
    train = training
    C = sh.c
    if train and sh.n * sh.s < 2:
        return None
    if (running_mean is None) != (running_var is None) or (running_mean is None and not train):
        return None
    if not (_plain_channels(gamma, t, C, False) and _plain_channels(beta, t, C, False)
            and _plain_channels(running_mean, t, C, train) and _plain_channels(running_var, t, C, train)):
        return None
    y = _kernel_output(out, <cnp.ndarray>x)
    if y is None:
        return None
    if train:
        if _any_overlap((y, running_mean, running_var), (x, gamma, beta)):
            return None
    elif _any_overlap((y,), (x, gamma, beta, running_mean, running_var)):
        return None
    cdef cnp.npy_intp nc = C
    save_mean = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_FLOAT64, 0)
    save_invstd = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_FLOAT64, 0)
    cdef const void *px = _data(x)
    cdef void *py = _data(y)
    cdef const void *pg = _data(gamma)
    cdef const void *pb = _data(beta)
    cdef void *prm = _data(running_mean)
    cdef void *prv = _data(running_var)
    cdef double *psm = <double *>_data(save_mean)
    cdef double *psi = <double *>_data(save_invstd)
    cdef int dtype = 0 if t == cnp.NPY_FLOAT32 else 1
    cdef double m = momentum, e = eps
    with nogil:
        rc = fo_batchnorm_forward(dtype, px, py, &sh, pg, pb, prm, prv, psm, psi, train, m, e, relu, 0)
    check_rc(rc, "batch_norm_forward")
    return y, save_mean, save_invstd


def try_backward(dy, x, gamma, save_mean, save_invstd, axis, training, activation, beta, dx_out, dgamma_out,
                 dbeta_out):
    """batch_norm_backward's fast path: (dx, dgamma, dbeta), or None (nothing written) unless every argument is
    already what the kernels take."""
    cdef fo_bn_shape sh
    cdef int t, rc
    cdef bint train
    cdef int relu = _relu_flag(activation)
    cdef int64_t C
    t = _plain_layout(x, axis, &sh)
    if t == 0 or relu < 0 or type(training) is not bool or not _same_geometry(dy, <cnp.ndarray>x, t, False):
        return None
    train = training
    C = sh.c
    if train and sh.n * sh.s < 2:
        return None
    if not (_plain_channels(gamma, t, C, False) and _plain_channels(beta, t, C, False)
            and save_mean is not None and _plain_channels(save_mean, cnp.NPY_FLOAT64, C, False)
            and save_invstd is not None and _plain_channels(save_invstd, cnp.NPY_FLOAT64, C, False)
            and _plain_channels(dgamma_out, t, C, True) and _plain_channels(dbeta_out, t, C, True)):
        return None
    dx = _kernel_output(dx_out, <cnp.ndarray>x)
    if dx is None:
        return None
    cdef cnp.npy_intp nc = C
    dgamma, dbeta = dgamma_out, dbeta_out
    if gamma is not None:
        if dgamma is None:
            dgamma = cnp.PyArray_EMPTY(1, &nc, t, 0)
        if dbeta is None:
            dbeta = cnp.PyArray_EMPTY(1, &nc, t, 0)
    if _any_overlap((dx, dgamma, dbeta), (dy, x, gamma, beta, save_mean, save_invstd)):
        return None
    cdef const void *pdy = _data(dy)
    cdef const void *px = _data(x)
    cdef void *pdx = _data(dx)
    cdef const void *pg = _data(gamma)
    cdef const void *pb = _data(beta) if relu else NULL
    cdef const double *psm = <double *>_data(save_mean)
    cdef const double *psi = <double *>_data(save_invstd)
    cdef void *pdg = _data(dgamma)
    cdef void *pdb = _data(dbeta)
    cdef int dtype = 0 if t == cnp.NPY_FLOAT32 else 1
    with nogil:
        rc = fo_batchnorm_backward(dtype, pdy, px, pdx, &sh, pg, pb, psm, psi, pdg, pdb, train, relu, 0)
    check_rc(rc, "batch_norm_backward")
    return dx, dgamma, dbeta


def check_disjoint(list writes, list wnames, list reads, list rnames):
    """ValueError naming the first array of `writes` that shares memory with another array of `writes` or `reads`.

    Every array is C-contiguous (or None, skipped), so its bytes are one interval [data, data + nbytes).
    """
    cdef Py_ssize_t i, j, nw = len(writes)
    allv = writes + reads
    names = wnames + rnames
    for i in range(nw):
        for j in range(len(allv)):
            if j != i and not (j < nw and j < i) and _overlap(allv[i], allv[j]):
                raise ValueError(f"{names[i]} and {names[j]} share memory; they must be separate arrays")
