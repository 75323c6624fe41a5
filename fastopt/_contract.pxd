# The array contract of every kernel module (fastopt/_contract.pyx): one rule, one place, one message per rule.
#
#   input      a float32/float64 ndarray the kernels only read: any layout accepted; one that is not C-contiguous,
#              aligned and native-byte-order is copied once (shape kept, 0-d too)
#   in place   an array the kernels write: a writeable, C-contiguous, aligned, native-byte-order ndarray; anything
#              else is an error, never a copy (a write to a copy would be lost)
#   dtype      float32 or float64 (TypeError otherwise), one dtype per call (TypeError naming the argument)
#   overlap    no array written may share a byte with another array of the call (ValueError naming both)
#
# The inline predicates below are compiled into each module that cimports them (no call across modules on the
# fast paths); the raising checks live in _contract.pyx and are reached through Cython's capsules.
cimport numpy as cnp
from libc.stdint cimport int64_t, uintptr_t

cdef extern from *:
    """
    #define FO_KERNEL_FLAGS (NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED)
    """
    int FO_KERNEL_FLAGS


cdef inline bint plain(object a, int typenum, bint write) noexcept:
    """a is an ndarray of typenum the kernels take as is: C-contiguous, aligned, native (and writeable if write)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_ISBYTESWAPPED(arr):
        return False
    if (cnp.PyArray_FLAGS(arr) & FO_KERNEL_FLAGS) != FO_KERNEL_FLAGS:
        return False
    return not write or cnp.PyArray_ISWRITEABLE(arr)


cdef inline bint plain_vector(object a, int typenum, int64_t n, bint write) noexcept:
    """None, or a plain 1-d array of n elements."""
    if a is None:
        return True
    return plain(a, typenum, write) and cnp.PyArray_NDIM(<cnp.ndarray>a) == 1 \
        and cnp.PyArray_DIM(<cnp.ndarray>a, 0) == n


cdef inline bint plain_matrix(object a, int typenum, int64_t rows, int64_t cols, bint write) noexcept:
    """A plain (rows, cols) array."""
    return plain(a, typenum, write) and cnp.PyArray_NDIM(<cnp.ndarray>a) == 2 \
        and cnp.PyArray_DIM(<cnp.ndarray>a, 0) == rows and cnp.PyArray_DIM(<cnp.ndarray>a, 1) == cols


cdef inline int float_type(object a) noexcept:
    """NPY_FLOAT32 / NPY_FLOAT64 for an ndarray of that dtype in native order, 0 for anything else (NPY_BOOL is 0
    too: test the result before using it as a typenum)."""
    if not cnp.PyArray_Check(a):
        return 0
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if (t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or cnp.PyArray_ISBYTESWAPPED(<cnp.ndarray>a):
        return 0
    return t


cdef inline uintptr_t start_of(object a) noexcept:
    return <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline uintptr_t end_of(object a) noexcept:
    """One past the last byte of a dense array (start_of for an empty one)."""
    return <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>a) + <uintptr_t>cnp.PyArray_NBYTES(<cnp.ndarray>a)


cdef inline bint overlap(object a, object b) noexcept:
    """Two dense arrays (None: no) whose byte intervals intersect (an empty array overlaps nothing)."""
    if a is None or b is None:
        return False
    if cnp.PyArray_NBYTES(<cnp.ndarray>a) == 0 or cnp.PyArray_NBYTES(<cnp.ndarray>b) == 0:
        return False
    return start_of(a) < end_of(b) and start_of(b) < end_of(a)


cdef inline bint same_memory(object a, object b) noexcept:
    """Two dense arrays on exactly the same bytes (the element-for-element in-place case)."""
    return start_of(a) == start_of(b) and cnp.PyArray_NBYTES(<cnp.ndarray>a) == cnp.PyArray_NBYTES(<cnp.ndarray>b)


cdef inline bint any_overlap(tuple writes, tuple reads) noexcept:
    """Some array of writes overlaps another of writes or one of reads (None entries skipped)."""
    cdef Py_ssize_t i, j
    for i in range(len(writes)):
        for j in range(i + 1, len(writes)):
            if overlap(writes[i], writes[j]):
                return True
        for j in range(len(reads)):
            if overlap(writes[i], reads[j]):
                return True
    return False


cdef inline void *data_or_null(object a) noexcept:
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline int relu_flag(object activation) noexcept:
    """1 for "relu", 0 for None, -1 for anything else (check_activation then raises)."""
    if activation is None:
        return 0
    if type(activation) is str and activation == "relu":
        return 1
    return -1


cdef inline int float_typenum(cnp.ndarray x) except -1:
    """x's typenum, float32 or float64; RuntimeError (internal error: the caller's checks let it through) else."""
    cdef int t = cnp.PyArray_TYPE(x)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise RuntimeError("internal error: expected float32 or float64")
    return t


# ---- raising checks (messages: _contract.pyx)
cdef int check_float(object a, str name) except 0
cdef object check_inplace(object a, str name)
cdef object as_input(object a, str name)
cdef object as_kernel(object a, int typenum)
cdef int check_like(object a, object ref, str name, str ref_name, bint shape) except -1
cdef int check_disjoint_c(list writes, list wnames, list reads, list rnames) except -1
cdef void *kernel_data(object a, int typenum, int64_t size, bint write, str name) except? NULL


cdef class IntervalSet:
    """Sorted byte intervals of a set of dense arrays, pairwise disjoint (checked when built)."""
    cdef uintptr_t *starts
    cdef uintptr_t *ends
    cdef Py_ssize_t n
    cdef list arrays
    cdef bint overlaps(self, uintptr_t lo, uintptr_t hi) noexcept
    cdef bint overlaps_array(self, object a) noexcept
