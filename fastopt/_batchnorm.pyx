# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: batchnorm
"""Cython layer of the batch-normalization family: one GIL-free call into csrc/batchnorm.c per pass.

A plan (``ForwardPlan``, ``BackwardPlan``) is one kernel call checked once: ``plan_forward`` / ``plan_backward``
check every argument in C (the array contract of fastopt/_contract.pxd, the layout rule ``_plain_layout``, the
scalars) and return None, writing nothing, for anything the kernels do not take as it is; the Python layer
(fastopt/functional/batchnorm.py) then copies or raises, and builds the plan from what it made. ``run`` calls C
with the GIL released and no re-check. The functional API builds one plan per call (``try_forward`` /
``try_backward``); fastopt.nn.BatchNorm keeps its plans from call to call.
"""
cimport numpy as cnp
from libc.math cimport INFINITY, isnan
from libc.stdint cimport int64_t
import numpy as np

from fastopt._contract cimport any_overlap, data_or_null, kernel_data, plain, plain_vector, relu_flag
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
    if C < 1:
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


cdef inline bint _unit_real(object v, bint upper):
    """v is a Python float (or subclass) in [0, 1] (upper) or [0, inf) (not upper)."""
    cdef double d
    if not isinstance(v, float):
        return False
    d = <double>v
    return not isnan(d) and d >= 0.0 and (d <= 1.0 if upper else d < INFINITY)


cdef object _fresh_like(object x):
    """A new array with x's shape, dtype and memory order (dense in one of the two layouts, as x)."""
    return np.empty_like(x)


cdef object _fresh_stats(int64_t c):
    cdef cnp.npy_intp nc = c
    return cnp.PyArray_EMPTY(1, &nc, cnp.NPY_FLOAT64, 0)


cdef class ForwardPlan:
    """One checked batch_norm_forward call (everything but y and the saved statistics, made per run unless kept):
    x, its layout, gamma, beta, running statistics, the output buffer, training, eps, relu. ``run()`` calls the
    kernel with the GIL released and no check; ``momentum`` may be changed between runs (a float in [0, 1]).

    Built by :func:`plan_forward`, which checks every argument in C and declines (None) for any the kernels do not
    take as they are. ``keep_stats``: the plan owns one save_mean / save_invstd pair, rewritten by every run
    (a layer's); otherwise every run returns fresh ones (the functional API's).
    """
    cdef fo_bn_shape sh
    cdef int dtype
    cdef int relu
    cdef readonly bint training
    cdef double _momentum
    cdef double eps
    cdef readonly object x, gamma, beta, running_mean, running_var, out, save_mean, save_invstd

    @property
    def momentum(self):
        return self._momentum

    @momentum.setter
    def momentum(self, value):
        if not _unit_real(value, True):
            raise ValueError(f"Invalid momentum: {value}")
        self._momentum = value

    def matches(self, x, out, gamma, beta, running_mean, running_var, bint training):
        """True if a run of this plan is the call with these arguments: the same x memory (data, shape, strides,
        dtype) and the same other arrays."""
        return _same_memory(x, self.x) and out is self.out and gamma is self.gamma and beta is self.beta \
            and running_mean is self.running_mean and running_var is self.running_var and training == self.training

    def run(self):
        """(y, save_mean, save_invstd) of one forward pass."""
        cdef int rc
        y = _fresh_like(self.x) if self.out is None else self.out
        sm = _fresh_stats(self.sh.c) if self.save_mean is None else self.save_mean
        si = _fresh_stats(self.sh.c) if self.save_invstd is None else self.save_invstd
        cdef const void *px = data_or_null(self.x)
        cdef void *py = data_or_null(y)
        cdef const void *pg = data_or_null(self.gamma)
        cdef const void *pb = data_or_null(self.beta)
        cdef void *prm = data_or_null(self.running_mean)
        cdef void *prv = data_or_null(self.running_var)
        cdef double *psm = <double *>data_or_null(sm)
        cdef double *psi = <double *>data_or_null(si)
        with nogil:
            rc = fo_batchnorm_forward(self.dtype, px, py, &self.sh, pg, pb, prm, prv, psm, psi, self.training,
                                      self._momentum, self.eps, self.relu, 0)
        check_rc(rc, "batch_norm_forward")
        return y, sm, si


cdef bint _same_memory(object a, object b):
    """a and b are ndarrays on the same memory with the same dtype, shape and strides."""
    if not cnp.PyArray_Check(a):
        return False
    return cnp.PyArray_DATA(<cnp.ndarray>a) == cnp.PyArray_DATA(<cnp.ndarray>b) \
        and _same_geometry(a, <cnp.ndarray>b, cnp.PyArray_TYPE(<cnp.ndarray>b), False)


def plan_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, axis, out, activation,
                 bint keep_stats=False):
    """A :class:`ForwardPlan` of batch_norm_forward's arguments, or None (nothing written) unless every argument
    is already what the kernels take (then fastopt.functional.batchnorm's checks copy or raise)."""
    cdef ForwardPlan plan = ForwardPlan.__new__(ForwardPlan)
    cdef int t = _plain_layout(x, axis, &plan.sh)
    cdef int relu = relu_flag(activation)
    if t == 0 or relu < 0 or type(training) is not bool or not _unit_real(momentum, True) \
            or not _unit_real(eps, False):
        return None
    cdef bint train = training
    cdef int64_t C = plan.sh.c
    if train and plan.sh.n * plan.sh.s < 2:
        return None
    if (running_mean is None) != (running_var is None) or (running_mean is None and not train):
        return None
    if not (plain_vector(gamma, t, C, False) and plain_vector(beta, t, C, False)
            and plain_vector(running_mean, t, C, train) and plain_vector(running_var, t, C, train)):
        return None
    if out is not None and not _same_geometry(out, <cnp.ndarray>x, t, True):
        return None
    if train:
        if any_overlap((out, running_mean, running_var), (x, gamma, beta)):
            return None
    elif any_overlap((out,), (x, gamma, beta, running_mean, running_var)):
        return None
    plan.dtype = 0 if t == cnp.NPY_FLOAT32 else 1
    plan.relu = relu
    plan.training = train
    plan._momentum = momentum
    plan.eps = eps
    plan.x, plan.gamma, plan.beta, plan.out = x, gamma, beta, out
    plan.running_mean, plan.running_var = running_mean, running_var
    if keep_stats:
        plan.save_mean, plan.save_invstd = _fresh_stats(C), _fresh_stats(C)
    return plan


def try_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, axis, out, activation):
    """batch_norm_forward's fast path: (y, save_mean, save_invstd), or None (nothing written)."""
    plan = plan_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, axis, out, activation)
    return None if plan is None else (<ForwardPlan>plan).run()


cdef class BackwardPlan:
    """One checked batch_norm_backward call but dy: x, its layout, gamma, beta (read for relu), the forward's
    saved statistics, the dx / dgamma / dbeta buffers (None: fresh per run), training, relu. ``run(dy)`` checks
    only dy (x's geometry, no overlap with an output) and calls the kernel with the GIL released."""
    cdef fo_bn_shape sh
    cdef int dtype, typenum
    cdef int relu
    cdef readonly bint training
    cdef readonly object x, gamma, beta, save_mean, save_invstd, dx_out, dgamma_out, dbeta_out

    def matches(self, x, gamma, beta, save_mean, save_invstd, dx_out, dgamma_out, dbeta_out):
        """True if this plan was built from exactly these arrays."""
        return x is self.x and gamma is self.gamma and beta is self.beta and save_mean is self.save_mean \
            and save_invstd is self.save_invstd and dx_out is self.dx_out and dgamma_out is self.dgamma_out \
            and dbeta_out is self.dbeta_out

    def run(self, dy):
        """(dx, dgamma, dbeta) for dy, or None (nothing written) if dy is not laid out as x or overlaps an
        output."""
        cdef int rc
        if not _same_geometry(dy, <cnp.ndarray>self.x, self.typenum, False) \
                or any_overlap((self.dx_out, self.dgamma_out, self.dbeta_out), (dy,)):
            return None
        dx = _fresh_like(self.x) if self.dx_out is None else self.dx_out
        dgamma, dbeta = self.dgamma_out, self.dbeta_out
        if self.gamma is not None:
            if dgamma is None:
                dgamma = _fresh_channels(self.sh.c, self.typenum)
            if dbeta is None:
                dbeta = _fresh_channels(self.sh.c, self.typenum)
        cdef const void *pdy = data_or_null(dy)
        cdef const void *px = data_or_null(self.x)
        cdef void *pdx = data_or_null(dx)
        cdef const void *pg = data_or_null(self.gamma)
        cdef const void *pb = data_or_null(self.beta) if self.relu else NULL
        cdef const double *psm = <double *>data_or_null(self.save_mean)
        cdef const double *psi = <double *>data_or_null(self.save_invstd)
        cdef void *pdg = data_or_null(dgamma)
        cdef void *pdb = data_or_null(dbeta)
        with nogil:
            rc = fo_batchnorm_backward(self.dtype, pdy, px, pdx, &self.sh, pg, pb, psm, psi, pdg, pdb,
                                       self.training, self.relu, 0)
        check_rc(rc, "batch_norm_backward")
        return dx, dgamma, dbeta


cdef object _fresh_channels(int64_t c, int typenum):
    cdef cnp.npy_intp nc = c
    return cnp.PyArray_EMPTY(1, &nc, typenum, 0)


def plan_backward(x, gamma, save_mean, save_invstd, axis, training, activation, beta, dx_out, dgamma_out,
                  dbeta_out):
    """A :class:`BackwardPlan` of batch_norm_backward's arguments but dy, or None unless every one is already
    what the kernels take."""
    cdef BackwardPlan plan = BackwardPlan.__new__(BackwardPlan)
    cdef int t = _plain_layout(x, axis, &plan.sh)
    cdef int relu = relu_flag(activation)
    if t == 0 or relu < 0 or type(training) is not bool:
        return None
    cdef bint train = training
    cdef int64_t C = plan.sh.c
    if train and plan.sh.n * plan.sh.s < 2:
        return None
    if not (plain_vector(gamma, t, C, False) and plain_vector(beta, t, C, False)
            and save_mean is not None and plain_vector(save_mean, cnp.NPY_FLOAT64, C, False)
            and save_invstd is not None and plain_vector(save_invstd, cnp.NPY_FLOAT64, C, False)
            and plain_vector(dgamma_out, t, C, True) and plain_vector(dbeta_out, t, C, True)):
        return None
    if dx_out is not None and not _same_geometry(dx_out, <cnp.ndarray>x, t, True):
        return None
    if any_overlap((dx_out, dgamma_out, dbeta_out), (x, gamma, beta, save_mean, save_invstd)):
        return None
    plan.dtype = 0 if t == cnp.NPY_FLOAT32 else 1
    plan.typenum = t
    plan.relu = relu
    plan.training = train
    plan.x, plan.gamma, plan.beta = x, gamma, beta
    plan.save_mean, plan.save_invstd = save_mean, save_invstd
    plan.dx_out, plan.dgamma_out, plan.dbeta_out = dx_out, dgamma_out, dbeta_out
    return plan


def try_backward(dy, x, gamma, save_mean, save_invstd, axis, training, activation, beta, dx_out, dgamma_out,
                 dbeta_out):
    """batch_norm_backward's fast path: (dx, dgamma, dbeta), or None (nothing written)."""
    plan = plan_backward(x, gamma, save_mean, save_invstd, axis, training, activation, beta, dx_out, dgamma_out,
                         dbeta_out)
    return None if plan is None else (<BackwardPlan>plan).run(dy)


def kernel_input(x, axis):
    """x itself if the kernels read it in place for this axis (C-contiguous, or C-contiguous in the other
    layout), else one C-contiguous, aligned, native copy (x: a float ndarray, axis already checked)."""
    cdef fo_bn_shape sh
    if _plain_layout(x, axis, &sh) != 0:
        return x
    return np.array(x, dtype=x.dtype.newbyteorder("="), order="C", copy=True)
