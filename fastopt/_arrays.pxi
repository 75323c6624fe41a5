# Array predicates of the kernel modules' C-checked paths (included after `cimport numpy as cnp`). Every array the
# kernels take is dense, so its bytes are one interval [data, data + nbytes).

cdef int _CONTIG = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED


cdef bint _plain(object a, int typenum, bint write):
    """a is an ndarray of typenum, C-contiguous, aligned, native (and writeable if write)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_ISBYTESWAPPED(arr):
        return False
    if (cnp.PyArray_FLAGS(arr) & _CONTIG) != _CONTIG:
        return False
    return not write or cnp.PyArray_ISWRITEABLE(arr)


cdef bint _overlap(object a, object b):
    """Two dense arrays (None: no) whose byte intervals intersect (an empty array overlaps nothing)."""
    cdef cnp.ndarray p, q
    if a is None or b is None:
        return False
    p = <cnp.ndarray>a
    q = <cnp.ndarray>b
    if cnp.PyArray_NBYTES(p) == 0 or cnp.PyArray_NBYTES(q) == 0:
        return False
    return <char *>cnp.PyArray_DATA(p) < <char *>cnp.PyArray_DATA(q) + cnp.PyArray_NBYTES(q) and \
        <char *>cnp.PyArray_DATA(q) < <char *>cnp.PyArray_DATA(p) + cnp.PyArray_NBYTES(p)


cdef int _relu_flag(object activation):
    """1 for "relu", 0 for None, -1 for anything else (the Python checks then raise)."""
    if activation is None:
        return 0
    if type(activation) is str and activation == "relu":
        return 1
    return -1
