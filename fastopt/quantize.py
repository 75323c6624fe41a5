"""Blockwise quantization of float32 arrays (issue 12): the int8 / int4 storage of optimizer state.

The array (any shape, C-contiguous, flattened in C order) is cut into blocks of ``block_size`` elements (the last
one may be shorter); block b keeps one float32 ``absmax[b] = max_i |x_i|`` and one code per element:

    v_i    = x_i / absmax[b]                               (float32 division; |v_i| <= 1)
    code_i = the index of the map value nearest v_i        (distances |v_i - map[c]| in float32, ties to the
                                                            lower code: bitsandbytes' CPU rule)
    x_i   ~= map[code_i] * absmax[b]                       (dequantize: one float32 multiplication)

The maps (``code_map(bits, signed)``, 2^bits float32 values ascending):

* ``bits=8`` (default block 256): bitsandbytes' ``create_dynamic_map(signed)``; signed for first moments (values in
  [-0.99297, 1], 0 included), unsigned for second moments (values in [0, 1]).
* ``bits=4`` (default block 128): torchao's 4-bit optimizer maps; signed = ``create_dynamic_map(True, 3, 4)``
  (values in [-0.8875, 1]), unsigned = ``linspace(0, 1, 17)[1:]`` (1/16 .. 1, no zero). Two codes per byte:
  element 2j in the low nibble of byte j, element 2j+1 in the high nibble.

Special blocks: all zeros give absmax 0 and the code of 0 (code 0 for the unsigned 4-bit map); a block with a NaN
gets absmax NaN, one with +-inf (no NaN) absmax +inf, and in both every code is the code of 0, so the block
dequantizes to NaN (the caller decides; nothing raises). Values are identical at any thread count and on every
instruction-set path. The C primitives are csrc/quantize.h.
"""
import operator

import numpy as np

from fastopt import _quantize

__all__ = ["quantize_blockwise", "dequantize_blockwise", "code_map", "default_block_size"]


def _bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits: expected 4 or 8, got {type(bits).__name__}")
    if bits not in (4, 8):
        raise ValueError(f"bits: expected 4 or 8, got {bits}")
    return int(bits)


def _signed(signed):
    if not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"signed: expected a bool, got {type(signed).__name__}")
    return bool(signed)


def default_block_size(bits):
    """256 for bits=8 (bitsandbytes' blockwise 8-bit state), 128 for bits=4 (torchao's 4-bit Adam)."""
    return _quantize.BLOCK_INT8 if _bits(bits) == 8 else _quantize.BLOCK_INT4


def _block_size(block_size, bits):
    if block_size is None:
        return default_block_size(bits)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise TypeError(f"block_size: expected a positive int or None, got {type(block_size).__name__}")
    if block_size <= 0:
        raise ValueError(f"block_size: expected a positive int, got {block_size}")
    if bits == 4 and block_size % 2:
        raise ValueError(f"block_size: must be even for bits=4 (two codes per byte), got {block_size}")
    return int(block_size)


def _float32_input(a, name):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{name}: expected dtype float32 (native byte order), got {a.dtype}")
    if not a.flags.c_contiguous or not a.flags.aligned:
        raise ValueError(f"{name}: expected a C-contiguous, aligned array (use np.ascontiguousarray)")
    return a


def _num_blocks(n, block_size):
    return -(-n // block_size)


def code_map(bits=8, signed=True):
    """The 2^bits float32 values of the map (ascending, a copy): code c stands for ``code_map(bits, signed)[c]``."""
    return _quantize.qmap(_bits(bits), _signed(signed))


def quantize_blockwise(x, *, bits=8, signed=True, block_size=None):
    """Quantizes the float32 array ``x`` (any shape, C-contiguous; flattened in C order) blockwise.

    Returns ``(codes, absmax)``: ``codes`` uint8 1-D, ``n`` bytes (bits=8) or ``(n + 1) // 2`` (bits=4: element 2j
    in the low nibble, 2j+1 in the high nibble); ``absmax`` float32 1-D, ``ceil(n / block_size)`` values. With n the
    size of x, block b covering x[b*block_size : (b+1)*block_size]:

        absmax[b] = max_i |x_i|
        code_i    = argmin_c |x_i / absmax[b] - map[c]|     (float32 arithmetic; ties to the lower code)

    ``bits``: 8 (bitsandbytes' dynamic map, block 256) or 4 (torchao's 4-bit maps, block 128). ``signed``: the
    signed map (first moments) or the unsigned one (second moments; negative inputs then get code 0).
    ``block_size``: None for the default of ``bits``, else a positive int (even for bits=4).
    Runs in C with the GIL released, blocks shared over threads. See the module docstring for zero and non-finite
    blocks.
    """
    bits = _bits(bits)
    signed = _signed(signed)
    block = _block_size(block_size, bits)
    _float32_input(x, "x")
    n = x.size
    codes = np.empty(n if bits == 8 else (n + 1) // 2, dtype=np.uint8)
    absmax = np.empty(_num_blocks(n, block), dtype=np.float32)
    _quantize.quantize_into(x.reshape(-1), bits, signed, block, codes, absmax)
    return codes, absmax


def dequantize_blockwise(codes, absmax, *, n, bits=8, signed=True, block_size=None, dtype=np.float32):
    """The inverse of :func:`quantize_blockwise`: ``x[i] = map[code_i] * absmax[i // block_size]`` (float32
    multiplication), a new 1-D array of ``n`` elements (reshape it to the original shape).

    ``codes``: uint8 1-D C-contiguous, ``n`` bytes (bits=8) or ``(n + 1) // 2`` (bits=4); ``absmax``: float32 1-D
    C-contiguous, ``ceil(n / block_size)`` values; ``bits``, ``signed``, ``block_size`` as given to quantize.
    ``dtype``: float32 (default) or float64 (the float32 values, converted exactly).
    """
    bits = _bits(bits)
    signed = _signed(signed)
    block = _block_size(block_size, bits)
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n: expected a non-negative int, got {type(n).__name__}") from None
    if isinstance(n, bool) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n}")
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if out_dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {out_dtype}")
    if not isinstance(codes, np.ndarray):
        raise TypeError(f"codes: expected a numpy.ndarray, got {type(codes).__name__}")
    if codes.dtype != np.uint8:
        raise TypeError(f"codes: expected dtype uint8, got {codes.dtype}")
    want = n if bits == 8 else (n + 1) // 2
    if codes.ndim != 1 or codes.size != want:
        raise ValueError(f"codes: expected a 1-D array of {want} bytes for n={n}, bits={bits}, got shape {codes.shape}")
    if not codes.flags.c_contiguous:
        raise ValueError("codes: expected a C-contiguous array (use np.ascontiguousarray)")
    _float32_input(absmax, "absmax")
    nb = _num_blocks(n, block)
    if absmax.ndim != 1 or absmax.size != nb:
        raise ValueError(f"absmax: expected a 1-D array of {nb} values (ceil(n / block_size) = ceil({n} / {block})), "
                         f"got shape {absmax.shape}")
    out = np.empty(n, dtype=np.float32)
    _quantize.dequantize_into(codes, absmax, n, bits, signed, block, out)
    return out if out_dtype == np.float32 else out.astype(out_dtype)
