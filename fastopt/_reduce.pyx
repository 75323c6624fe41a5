# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families: reduce
"""Cython layer of the reduce family: a list of arrays checked once, then one GIL-free C call per pass.

An ``ArrayBatch`` is the C view of a list of float32/float64 arrays (``None`` entries skipped): pointers and sizes,
grouped by dtype. ``norm`` makes one multi-array pass per dtype present (one pass when all share a dtype),
``scale`` and ``clamp`` one in-place pass per dtype. Every check runs when the batch is built, so a failing call
writes nothing.
"""
cimport numpy as cnp
from libc.math cimport INFINITY, NAN, isinf, isnan, pow, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

import numpy as np

from fastopt._contract cimport IntervalSet, as_input, check_inplace, float_type, plain
from fastopt._runtime cimport *

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "reduce.h" nogil:
    int fo_reduce_norm_f32(const float *const *xs, const int64_t *ns, int64_t narrays, double p,
                           double *per_array, double *total, int nthreads)
    int fo_reduce_norm_f64(const double *const *xs, const int64_t *ns, int64_t narrays, double p,
                           double *per_array, double *total, int nthreads)
    void fo_reduce_scale_f32(float *const *xs, const int64_t *ns, int64_t narrays, double coef, int nthreads)
    void fo_reduce_scale_f64(double *const *xs, const int64_t *ns, int64_t narrays, double coef, int nthreads)
    void fo_reduce_clamp_f32(float *const *xs, const int64_t *ns, int64_t narrays, double lo, double hi,
                             int nthreads)
    void fo_reduce_clamp_f64(double *const *xs, const int64_t *ns, int64_t narrays, double lo, double hi,
                             int nthreads)

cdef class ArrayBatch:
    """The arrays of ``arrays`` (a list or tuple; ``None`` entries skipped) as C pointer lists, one per dtype.

    ``inplace=True``: every array is written in place, so it must be a writeable, C-contiguous, aligned,
    native-byte-order float32/float64 ndarray, and no two may share memory (ValueError, never a copy).
    ``inplace=False``: read-only, non-contiguous or byte-swapped arrays are accepted (the last two copied once).
    Errors name ``name[i]``.
    """
    cdef void **ptrs[2]
    cdef int64_t *sizes[2]
    cdef Py_ssize_t count[2]
    cdef readonly list index32, index64   # positions in `arrays` of the float32 / float64 entries
    cdef readonly Py_ssize_t length
    cdef list keep

    def __cinit__(self, arrays, str name="arrays", bint inplace=True):
        cdef Py_ssize_t i, n, d
        cdef int t
        cdef cnp.ndarray a
        cdef object obj
        self.ptrs[0] = self.ptrs[1] = NULL
        self.sizes[0] = self.sizes[1] = NULL
        self.count[0] = self.count[1] = 0
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)):
            raise TypeError(f"{name} must be a list of arrays, got {type(arrays).__name__}")
        n = len(arrays)
        self.length = n
        self.index32, self.index64 = [], []
        self.keep = []
        positions = []
        for i in range(n):
            obj = arrays[i]
            if obj is None:
                continue
            t = float_type(obj)               # 0 (not a float array) is also NPY_BOOL's typenum: test it first
            if t != 0 and plain(obj, t, inplace):
                a = obj                       # the common case: no copy, and no name formatted
            else:
                a = check_inplace(obj, f"{name}[{i}]") if inplace else as_input(obj, f"{name}[{i}]")
            self.keep.append(a)
            positions.append(i)
            (self.index32 if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32 else self.index64).append(i)
        for d in range(2):
            m = len(self.index32) if d == 0 else len(self.index64)
            self.ptrs[d] = <void **>malloc((m + 1) * sizeof(void *))
            self.sizes[d] = <int64_t *>malloc((m + 1) * sizeof(int64_t))
            if self.ptrs[d] == NULL or self.sizes[d] == NULL:
                raise MemoryError()
        for a in self.keep:
            d = 0 if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32 else 1
            self.ptrs[d][self.count[d]] = cnp.PyArray_DATA(a)
            self.sizes[d][self.count[d]] = cnp.PyArray_SIZE(a)
            self.count[d] += 1
        if inplace and len(self.keep) > 1:      # each array is written once: no two may share memory
            IntervalSet(self.keep, lambda k: f"{name}[{positions[k]}]")

    def __dealloc__(self):
        free(self.ptrs[0])
        free(self.ptrs[1])
        free(self.sizes[0])
        free(self.sizes[1])

    def norm(self, double p, bint per_array=False):
        """Global p-norm (p > 0 or inf) of all arrays as a float, accumulated in double; with ``per_array=True``
        also a float64 array of each entry's norm (0 for None entries)."""
        cdef double totals[2]
        cdef double total = 0.0
        cdef int rc = 0, d
        cdef cnp.ndarray part
        cdef double *out[2]
        if not (p > 0.0):
            raise ValueError(f"Invalid norm_type: {p} (expected a positive number or inf)")
        parts = []
        for d in range(2):
            part = np.empty(self.count[d], dtype=np.float64)
            parts.append(part)
            out[d] = <double *>cnp.PyArray_DATA(part)
            totals[d] = 0.0
        with nogil:
            if self.count[0] > 0:
                rc = fo_reduce_norm_f32(<const float *const *>self.ptrs[0], self.sizes[0], self.count[0], p,
                                        out[0], &totals[0], 0)
            if rc == 0 and self.count[1] > 0:
                rc = fo_reduce_norm_f64(<const double *const *>self.ptrs[1], self.sizes[1], self.count[1], p,
                                        out[1], &totals[1], 0)
        check_rc(rc, "norm kernel")
        if self.count[0] == 0 or self.count[1] == 0:
            total = totals[0] if self.count[1] == 0 else totals[1]
        elif isnan(totals[0]) or isnan(totals[1]):
            total = NAN
        elif isinf(p):
            total = totals[0] if totals[0] > totals[1] else totals[1]
        elif p == 2.0:
            total = sqrt(totals[0] * totals[0] + totals[1] * totals[1])
        elif p == 1.0:
            total = totals[0] + totals[1]
        else:
            total = pow(pow(totals[0], p) + pow(totals[1], p), 1.0 / p)
        if not per_array:
            return total
        each = np.zeros(self.length, dtype=np.float64)
        each[self.index32] = parts[0]
        each[self.index64] = parts[1]
        return total, each

    def scale(self, double coef):
        """Multiplies every element of every array in place by ``coef`` (rounded to the array's dtype first)."""
        with nogil:
            if self.count[0] > 0:
                fo_reduce_scale_f32(<float *const *>self.ptrs[0], self.sizes[0], self.count[0], coef, 0)
            if self.count[1] > 0:
                fo_reduce_scale_f64(<double *const *>self.ptrs[1], self.sizes[1], self.count[1], coef, 0)

    def clamp(self, double lo, double hi):
        """Clamps every element of every array in place to [lo, hi] (lo, hi rounded to the array's dtype)."""
        with nogil:
            if self.count[0] > 0:
                fo_reduce_clamp_f32(<float *const *>self.ptrs[0], self.sizes[0], self.count[0], lo, hi, 0)
            if self.count[1] > 0:
                fo_reduce_clamp_f64(<double *const *>self.ptrs[1], self.sizes[1], self.count[1], lo, hi, 0)
