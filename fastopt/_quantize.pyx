# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# csrc-sources: quantize.c runtime_client.c
"""Cython layer of csrc/quantize.h: blockwise quantize / dequantize of a whole array, one GIL-free pass, the blocks
shared out over OpenMP threads (each block is independent: identical results at any thread count).

Arguments are validated by fastopt/quantize.py; this layer re-checks only what memory safety needs (dtype, layout,
sizes of every array it hands to C) and raises RuntimeError if the caller broke that contract. The functions
``qmap``, ``qcode``, ``qcode_reference``, ``qthreshold`` and ``qtable_fast`` expose the C tables to the tests.
"""
cimport numpy as cnp
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t

from fastopt._runtime cimport *

import numpy as np

cnp.import_array()

include "_runtime_api.pxi"

cdef extern from "quantize.h" nogil:
    int FO_QBLOCK_INT8, FO_QBLOCK_INT4
    const float *fo_qmap(int bits, int is_signed)
    void fo_quantize_block(const float *x, int64_t n, int bits, int is_signed, uint8_t *codes, float *absmax)
    void fo_dequantize_block(const uint8_t *codes, int64_t n, int bits, int is_signed, float absmax, float *x)
    int fo_qcode_reference(int bits, int is_signed, float v)
    int fo_qcode(int bits, int is_signed, float v)
    float fo_qthreshold(int bits, int is_signed, int k)
    int fo_qtable_fast(int bits, int is_signed)

BLOCK_INT8 = FO_QBLOCK_INT8
BLOCK_INT4 = FO_QBLOCK_INT4


cdef int _contract(cnp.ndarray a, int typenum, int64_t size, bint write) except -1:
    if cnp.PyArray_TYPE(a) != typenum or cnp.PyArray_SIZE(a) != size or not cnp.PyArray_IS_C_CONTIGUOUS(a) \
            or not cnp.PyArray_ISALIGNED(a) or (write and not cnp.PyArray_ISWRITEABLE(a)):
        raise RuntimeError("internal error: fastopt._quantize called against its contract; nothing was written")
    return 0


cdef inline int64_t _code_bytes(int64_t n, int bits) nogil:
    return n if bits == 8 else (n + 1) // 2


def quantize_into(cnp.ndarray x, int bits, bint is_signed, int64_t block, cnp.ndarray codes, cnp.ndarray absmax):
    """codes, absmax <- the blocks of x (float32, C-contiguous), `block` elements each (even for bits 4)."""
    cdef int64_t n = cnp.PyArray_SIZE(x)
    if (bits != 8 and bits != 4) or block <= 0 or (bits == 4 and block % 2):
        raise RuntimeError("internal error: fastopt._quantize called against its contract; nothing was written")
    cdef int64_t nb = (n + block - 1) // block, b
    _contract(x, cnp.NPY_FLOAT32, n, False)
    _contract(codes, cnp.NPY_UINT8, _code_bytes(n, bits), True)
    _contract(absmax, cnp.NPY_FLOAT32, nb, True)
    cdef const float *px = <const float *>cnp.PyArray_DATA(x)
    cdef uint8_t *pc = <uint8_t *>cnp.PyArray_DATA(codes)
    cdef float *pa = <float *>cnp.PyArray_DATA(absmax)
    cdef int64_t step = block if bits == 8 else block // 2
    cdef int nth
    with nogil:
        nth = fo_threads_for(n, 0)
        for b in prange(nb, num_threads=nth, schedule="static"):
            fo_quantize_block(px + b * block, min(block, n - b * block), bits, is_signed, pc + b * step, pa + b)


def dequantize_into(cnp.ndarray codes, cnp.ndarray absmax, int64_t n, int bits, bint is_signed, int64_t block,
                    cnp.ndarray out):
    """out (float32, n elements) <- map[code] * absmax of its block."""
    if (bits != 8 and bits != 4) or block <= 0 or (bits == 4 and block % 2) or n < 0:
        raise RuntimeError("internal error: fastopt._quantize called against its contract; nothing was written")
    cdef int64_t nb = (n + block - 1) // block, b
    _contract(codes, cnp.NPY_UINT8, _code_bytes(n, bits), False)
    _contract(absmax, cnp.NPY_FLOAT32, nb, False)
    _contract(out, cnp.NPY_FLOAT32, n, True)
    cdef const uint8_t *pc = <const uint8_t *>cnp.PyArray_DATA(codes)
    cdef const float *pa = <const float *>cnp.PyArray_DATA(absmax)
    cdef float *px = <float *>cnp.PyArray_DATA(out)
    cdef int64_t step = block if bits == 8 else block // 2
    cdef int nth
    with nogil:
        nth = fo_threads_for(n, 0)
        for b in prange(nb, num_threads=nth, schedule="static"):
            fo_dequantize_block(pc + b * step, min(block, n - b * block), bits, is_signed, pa[b], px + b * block)


def qmap(int bits, bint is_signed):
    """A copy of the C map (float32, 2^bits values ascending)."""
    cdef const float *m = fo_qmap(bits, is_signed)
    if m == NULL:
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    return np.array([m[i] for i in range(1 << bits)], dtype=np.float32)


def qcode(int bits, bint is_signed, float v):
    """The code the fast path gives for v in [-1, 1] (-1 outside)."""
    return fo_qcode(bits, is_signed, v)


def qcode_reference(int bits, bint is_signed, float v):
    """The rule of csrc/quantize.h evaluated directly (binary search and float32 distances)."""
    return fo_qcode_reference(bits, is_signed, v)


def qthreshold(int bits, bint is_signed, int k):
    """T_k, the least float32 v with code(v) >= k (1 <= k < 2^bits)."""
    return fo_qthreshold(bits, is_signed, k)


def qtable_fast(int bits, bint is_signed):
    """1 if the map uses the bucket-table fast path."""
    return fo_qtable_fast(bits, is_signed)
