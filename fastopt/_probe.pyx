# cython: language_level=3, boundscheck=False, wraparound=False
# csrc-families: probe
"""Roofline probes for the benchmarks: loops with a kernel's memory traffic and trivial arithmetic."""
cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "probe.h" nogil:
    void fo_probe_stream_f32(const float *const *inp, int nin, float *const *out, int nout, int64_t n, int nthreads)
    void fo_probe_stream_f64(const double *const *inp, int nin, double *const *out, int nout, int64_t n,
                             int nthreads)
    double fo_probe_sum_f32(const float *x, int64_t n, int nthreads)
    double fo_probe_sum_f64(const double *x, int64_t n, int nthreads)
    void fo_probe_copy_f64(double *a, const double *b, int64_t n, int nthreads)
    void fo_probe_triad_f64(double *a, const double *b, const double *c, double s, int64_t n, int nthreads)


cdef int _check(list arrays, cnp.ndarray first, str what) except -1:
    """Contiguous float32/float64 arrays of one dtype and size (C-level checks: the probes time small sizes too)."""
    cdef cnp.ndarray a
    cdef int typ = cnp.PyArray_TYPE(first)
    if typ != cnp.NPY_FLOAT32 and typ != cnp.NPY_FLOAT64:
        raise TypeError(f"{what}: expected float32 or float64 arrays")
    for obj in arrays:
        if not cnp.PyArray_Check(obj):
            raise TypeError(f"{what}: expected numpy arrays")
        a = obj
        if cnp.PyArray_TYPE(a) != typ or cnp.PyArray_SIZE(a) != cnp.PyArray_SIZE(first) \
                or not cnp.PyArray_IS_C_CONTIGUOUS(a):
            raise ValueError(f"{what}: expected C-contiguous arrays of one dtype and size")
    return 0


def stream(list reads, list writes, int nthreads=0):
    """One fused pass reading every array of `reads` and writing every array of `writes` (= 0.5 * sum(reads)).

    Bytes moved: (len(reads) + len(writes)) * nbytes, the same count used for the kernel it stands in for.
    """
    cdef Py_ssize_t k, nin = len(reads), nout = len(writes)
    cdef int64_t n
    cdef cnp.ndarray a
    if not (1 <= nin <= 7 and 1 <= nout <= 5):
        raise ValueError(f"stream: 1-7 reads and 1-5 writes, got {nin} and {nout}")
    cdef cnp.ndarray first = writes[0]
    _check(reads + writes, first, "stream")
    for a in writes:
        if not cnp.PyArray_ISWRITEABLE(a):
            raise ValueError("writes: arrays must be writeable")
    n = cnp.PyArray_SIZE(first)
    cdef bint single = cnp.PyArray_TYPE(first) == cnp.NPY_FLOAT32
    cdef void **pin = <void **>malloc((nin + 1) * sizeof(void *))
    cdef void **pout = <void **>malloc((nout + 1) * sizeof(void *))
    try:
        for k in range(nin):
            a = reads[k]
            pin[k] = cnp.PyArray_DATA(a)
        for k in range(nout):
            a = writes[k]
            pout[k] = cnp.PyArray_DATA(a)
        with nogil:
            if single:
                fo_probe_stream_f32(<const float *const *>pin, <int>nin, <float *const *>pout, <int>nout, n, nthreads)
            else:
                fo_probe_stream_f64(<const double *const *>pin, <int>nin, <double *const *>pout, <int>nout, n,
                                    nthreads)
    finally:
        free(pin)
        free(pout)


def read(cnp.ndarray x, int nthreads=0):
    """A read-only pass over contiguous float32/float64 `x` (returns its sum): itemsize bytes per element."""
    _check([x], x, "read")
    cdef int64_t n = cnp.PyArray_SIZE(x)
    cdef double out
    cdef bint single = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32
    cdef void *ptr = cnp.PyArray_DATA(x)
    with nogil:
        out = fo_probe_sum_f32(<const float *>ptr, n, nthreads) if single else \
              fo_probe_sum_f64(<const double *>ptr, n, nthreads)
    return out


def copy(double[::1] a, const double[::1] b, int nthreads=0):
    """STREAM copy a = b (float64): 16 bytes per element as STREAM counts them."""
    with nogil:
        fo_probe_copy_f64(&a[0], &b[0], a.shape[0], nthreads)


def triad(double[::1] a, const double[::1] b, const double[::1] c, double s, int nthreads=0):
    """STREAM triad a = b + s c (float64): 24 bytes per element as STREAM counts them (no write-allocate)."""
    with nogil:
        fo_probe_triad_f64(&a[0], &b[0], &c[0], s, a.shape[0], nthreads)
