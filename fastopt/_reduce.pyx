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
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free, malloc, qsort

import numpy as np

from fastopt._validation import kernel_input

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

cdef int _INPLACE_FLAGS = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED | cnp.NPY_ARRAY_WRITEABLE
cdef int _READ_FLAGS = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED

ctypedef struct _interval:
    uintptr_t start
    uintptr_t end
    Py_ssize_t index


cdef int _cmp_interval(const void *a, const void *b) noexcept nogil:
    cdef uintptr_t x = (<const _interval *>a).start, y = (<const _interval *>b).start
    return -1 if x < y else (1 if x > y else 0)


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
        cdef Py_ssize_t i, n, k, d
        cdef cnp.ndarray a
        cdef object obj
        cdef int t, flags
        cdef _interval *iv = NULL
        self.ptrs[0] = self.ptrs[1] = NULL
        self.sizes[0] = self.sizes[1] = NULL
        self.count[0] = self.count[1] = 0
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)):
            raise TypeError(f"{name} must be a list of arrays, got {type(arrays).__name__}")
        n = len(arrays)
        self.length = n
        self.index32, self.index64 = [], []
        self.keep = []
        for i in range(n):
            obj = arrays[i]
            if obj is None:
                continue
            if not cnp.PyArray_Check(obj):
                raise TypeError(f"{name}[{i}]: expected a numpy.ndarray of float32 or float64, "
                                f"got {type(obj).__name__}")
            a = obj
            t = cnp.PyArray_TYPE(a)
            if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
                raise TypeError(f"{name}[{i}]: expected dtype float32 or float64, got {a.dtype}")
            flags = cnp.PyArray_FLAGS(a)
            if inplace:
                if (flags & _INPLACE_FLAGS) != _INPLACE_FLAGS or cnp.PyArray_ISBYTESWAPPED(a):
                    problems = []
                    if not flags & cnp.NPY_ARRAY_C_CONTIGUOUS:
                        problems.append("not C-contiguous")
                    if not flags & cnp.NPY_ARRAY_ALIGNED:
                        problems.append("not aligned")
                    if cnp.PyArray_ISBYTESWAPPED(a):
                        problems.append("not in native byte order")
                    if not flags & cnp.NPY_ARRAY_WRITEABLE:
                        problems.append("read-only")
                    raise ValueError(f"{name}[{i}] is updated in place and must be a writeable, C-contiguous, "
                                     f"aligned, native byte-order array; it is {', '.join(problems)}")
            elif (flags & _READ_FLAGS) != _READ_FLAGS or cnp.PyArray_ISBYTESWAPPED(a):
                a = kernel_input(a)
            self.keep.append(a)
            (self.index32 if t == cnp.NPY_FLOAT32 else self.index64).append(i)
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
        if inplace and len(self.keep) > 1:
            m = len(self.keep)
            iv = <_interval *>malloc(m * sizeof(_interval))
            if iv == NULL:
                raise MemoryError()
            try:
                k = 0
                for i in range(n):
                    if arrays[i] is None:
                        continue
                    a = arrays[i]
                    if cnp.PyArray_NBYTES(a) == 0:
                        continue
                    iv[k].start = <uintptr_t>cnp.PyArray_DATA(a)
                    iv[k].end = iv[k].start + <uintptr_t>cnp.PyArray_NBYTES(a)
                    iv[k].index = i
                    k += 1
                qsort(iv, k, sizeof(_interval), _cmp_interval)
                for i in range(1, k):
                    if iv[i].start < iv[i - 1].end:
                        lo, hi = sorted((iv[i - 1].index, iv[i].index))
                        raise ValueError(f"{name}[{lo}] and {name}[{hi}] share memory: each array is updated "
                                         "in place once, so they must be separate arrays")
            finally:
                free(iv)

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
