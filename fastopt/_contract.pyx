# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-families:
"""The array contract of every fastopt entry point (rules: fastopt/_contract.pxd), with one message per rule.

The cdef functions are cimported by the kernel modules (_batchnorm, _activation, _loss, _reduce); the Python
functions at the end are the same checks for the Python layer (fastopt/_validation.py re-exports them).
``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong value, shape, layout or an overlap,
``RuntimeError`` for an internal error (a caller of a kernel broke the contract: a fastopt bug, never a user's).
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free, malloc, qsort

import numpy as np

cnp.import_array()


cdef int check_float(object a, str name) except 0:
    """The typenum of a float32/float64 ndarray (either byte order: the native one's); TypeError otherwise."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name}: expected a numpy.ndarray of float32 or float64, got {type(a).__name__}")
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if t == cnp.NPY_FLOAT32 or t == cnp.NPY_FLOAT64:
        return t
    raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")


cdef object check_inplace(object a, str name):
    """a is written in place: a writeable, C-contiguous, aligned, native-byte-order float ndarray (never copied)."""
    return check_writable_layout(a, check_float(a, name), name)


cdef object check_writable_layout(object a, int t, str name):
    """a, an ndarray of typenum t, is writeable, C-contiguous, aligned and in native byte order (ValueError)."""
    if plain(a, t, True):
        return a
    cdef int flags = cnp.PyArray_FLAGS(<cnp.ndarray>a)
    problems = [p for p, bad in (("not C-contiguous", not flags & cnp.NPY_ARRAY_C_CONTIGUOUS),
                                 ("not aligned", not flags & cnp.NPY_ARRAY_ALIGNED),
                                 ("not in native byte order", cnp.PyArray_ISBYTESWAPPED(<cnp.ndarray>a)),
                                 ("read-only", not flags & cnp.NPY_ARRAY_WRITEABLE)) if bad]
    raise ValueError(f"{name} is written in place and must be a writeable, C-contiguous, aligned, native "
                     f"byte-order array; it is {', '.join(problems)}")


cdef object as_kernel(object a, int typenum):
    """a itself if the kernels can read it as is (plain), else one C-contiguous, aligned, native copy of it in
    typenum's dtype, of the same shape (0-d included)."""
    if plain(a, typenum, False):
        return a
    return np.array(a, dtype=<object>cnp.PyArray_DescrFromType(typenum), order="C", copy=True)


cdef object as_input(object a, str name):
    """A float array the kernels only read: a itself, or one copy (see as_kernel) if it is not plain."""
    return as_kernel(a, check_float(a, name))


cdef int check_like(object a, object ref, str name, str ref_name, bint shape) except -1:
    """a has ref's dtype (either byte order; TypeError) and, if shape, ref's shape (ValueError)."""
    if cnp.PyArray_TYPE(<cnp.ndarray>a) != cnp.PyArray_TYPE(<cnp.ndarray>ref):
        raise TypeError(f"{name}: expected dtype {ref.dtype} (the dtype of {ref_name}), got {a.dtype}")
    if shape and a.shape != ref.shape:
        raise ValueError(f"{name}: shape {a.shape} does not match {ref_name} shape {ref.shape}")
    return 0


cdef str _shared(str a, str b):
    return f"{a} and {b} share memory; they must be separate arrays"


cdef bint _shares(object a, object b):
    """a and b (ndarrays, None: no) share a byte: an interval test for dense arrays, NumPy's exact one else."""
    if a is None or b is None:
        return False
    if cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a) and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>b):
        return overlap(a, b)
    return np.shares_memory(a, b)


cdef int check_disjoint_c(list writes, list wnames, list reads, list rnames) except -1:
    """ValueError naming the first array of writes sharing memory with another of writes or one of reads."""
    cdef Py_ssize_t i, j, nw = len(writes)
    for i in range(nw):
        for j in range(i + 1, nw):
            if _shares(writes[i], writes[j]):
                raise ValueError(_shared(wnames[i], wnames[j]))
        for j in range(len(reads)):
            if _shares(writes[i], reads[j]):
                raise ValueError(_shared(wnames[i], rnames[j]))
    return 0


cdef void *kernel_data(object a, int typenum, int64_t size, bint write, str name) except? NULL:
    """The data pointer of a plain array of `size` elements (None -> NULL): the memory-safety check in front of
    every kernel call; RuntimeError (internal error) if a caller let anything else through."""
    if a is None:
        return NULL
    if not plain(a, typenum, write) or cnp.PyArray_SIZE(<cnp.ndarray>a) != size:
        raise RuntimeError(f"internal error: {name} is not a C-contiguous, aligned, native"
                           f"{', writeable' if write else ''} array of {size} elements of the expected dtype")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


ctypedef struct _Span:
    uintptr_t start
    uintptr_t end
    Py_ssize_t index


cdef int _by_start(const void *a, const void *b) noexcept nogil:
    """qsort order of spans: by start address, then by index (the order a stable sort gives)."""
    cdef const _Span *x = <const _Span *>a
    cdef const _Span *y = <const _Span *>b
    if x.start != y.start:
        return -1 if x.start < y.start else 1
    return -1 if x.index < y.index else (1 if x.index > y.index else 0)


cdef class IntervalSet:
    """The byte intervals [start, end) of dense arrays (empty ones left out), sorted, for O(log n) overlap tests.

    Built from arrays that must not overlap one another: ValueError naming the first overlapping pair otherwise
    (``names``: a list, or a function of the index, called only then).
    """

    def __cinit__(self, list arrays, object names):
        cdef Py_ssize_t i, k, m = 0, n = len(arrays)
        cdef _Span *spans = <_Span *>malloc((n + 1) * sizeof(_Span))
        self.starts = self.ends = NULL
        self.arrays = list(arrays)            # the set's memory stays alive with it
        if spans == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                if cnp.PyArray_NBYTES(<cnp.ndarray>arrays[i]) > 0:
                    spans[m].start, spans[m].end, spans[m].index = start_of(arrays[i]), end_of(arrays[i]), i
                    m += 1
            qsort(spans, m, sizeof(_Span), _by_start)
            self.n = m
            self.starts = <uintptr_t *>malloc((m + 1) * sizeof(uintptr_t))
            self.ends = <uintptr_t *>malloc((m + 1) * sizeof(uintptr_t))
            if self.starts == NULL or self.ends == NULL:
                raise MemoryError()
            for k in range(m):            # sorted by start: any overlap shows between neighbours
                self.starts[k], self.ends[k] = spans[k].start, spans[k].end
                if k > 0 and spans[k].start < spans[k - 1].end:
                    first, second = sorted((spans[k - 1].index, spans[k].index))
                    name = names if callable(names) else names.__getitem__
                    raise ValueError(_shared(name(first), name(second)))
        finally:
            free(spans)

    def __dealloc__(self):
        free(self.starts)
        free(self.ends)

    cdef bint overlaps(self, uintptr_t lo, uintptr_t hi) noexcept:
        """True if [lo, hi) intersects any interval."""
        cdef Py_ssize_t a = 0, b = self.n, mid
        if hi <= lo:
            return False
        while a < b:                  # the first interval whose end > lo
            mid = (a + b) // 2
            if self.ends[mid] <= lo:
                a = mid + 1
            else:
                b = mid
        return a < self.n and self.starts[a] < hi

    cdef bint overlaps_array(self, object a) noexcept:
        return self.overlaps(start_of(a), end_of(a))

    def shares_memory(self, a):
        """True if the dense array a shares a byte with an array of the set."""
        return self.overlaps_array(a)


# ---------------------------------------------------------------------------------------------- Python layer
def check_float_array(a, name):
    """``a`` must be an ndarray of float32 or float64 (any byte order); returns it."""
    check_float(a, name)
    return a


def check_inplace_array(a, name, bfloat16=False):
    """``a`` is written in place: a writeable, C-contiguous, aligned, native-byte-order float32/float64 ndarray
    (or, with ``bfloat16``, an ``ml_dtypes.bfloat16`` one; TypeError for another type or dtype, ValueError for
    another layout: a copy would silently lose the update); returns it."""
    if bfloat16 and cnp.PyArray_Check(a) and a.dtype.kind == "V" and a.dtype.name == "bfloat16":
        return check_writable_layout(a, cnp.PyArray_TYPE(<cnp.ndarray>a), name)
    return check_inplace(a, name)


def input_array(a, name):
    """``a`` read by a kernel: itself, or one C-contiguous, aligned, native copy of the same shape (0-d too)."""
    return as_input(a, name)


def kernel_array(a, dtype):
    """``a`` as a plain array of ``dtype`` (itself, or one copy of the same shape): for non-float inputs."""
    return as_kernel(a, np.dtype(dtype).num)


def check_same_dtype(a, b, name_a, name_b):
    """``b`` has ``a``'s dtype (either byte order), TypeError naming ``b`` otherwise."""
    check_like(b, a, name_b, name_a, False)


def check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_b}: shape {b.shape} does not match {name_a} shape {a.shape}")


def check_disjoint(list writes, list wnames, list reads, list rnames):
    """ValueError naming the first array of ``writes`` that shares memory with another of ``writes`` or one of
    ``reads`` (ndarrays or None, skipped)."""
    check_disjoint_c(writes, wnames, reads, rnames)


def check_no_overlap(list arrays, object names):
    """ValueError naming two dense arrays of ``arrays`` that share memory; ``names``: a list or a function of the
    index."""
    IntervalSet(arrays, names)


def check_activation(activation):
    """True for "relu", False for None; ValueError for anything else."""
    cdef int relu = relu_flag(activation)
    if relu < 0:
        raise ValueError(f"Invalid activation: expected None or 'relu', got {activation!r}")
    return relu == 1
