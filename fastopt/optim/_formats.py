"""Low-precision optimizer state (``state_dtype``): the formats, their array layouts, encoding and decoding.

The one place of these rules; the kernels' side is csrc/optim_formats.h. A state slot whose spec says
``quantize="signed"`` or ``"unsigned"`` (moments, accumulators) of a float32 param of at least
``min_quantized_size`` elements is stored as

- ``"bfloat16"``: an ``ml_dtypes.bfloat16`` array of the param's shape (float32 rounded to nearest even);
- ``"int8"``: ``uint8`` codes of the param's shape, one per element, and ``<slot>_absmax``, one float32 per block of
  256 elements: element x of block b is ``absmax[b] * map[code]``, map the 256 values of the signed (first moments)
  or unsigned (second moments) dynamic map, code the nearest to ``x / absmax[b]``;
- ``"int4"``: two codes per byte (element 2j in the low nibble), ``ceil(numel / 2)`` bytes, and one absmax per block
  of 128 elements, a 16-value map.

Every other slot, a slot that holds an iterate (``quantize=None``: Schedule-Free's z, ASGD's ax) and every slot of a
smaller or float64 param keep the param's dtype ("native").

A param may also be an ``ml_dtypes.bfloat16`` array (``is_bfloat16``): it steps in float32 (its work dtype), so its
"native" state is float32; ``state_dtype=None`` (the param's dtype) gives its moment slots ``"bfloat16"`` state at
every size, and ``"float32"`` float32 state. Its new values are stored by the group's ``compensation``: ``"kahan"``
(the default; a bfloat16 buffer ``kahan_comp`` of the param's shape carries each element's rounding error into
the next step, optimi's scheme), ``"stochastic"`` (unbiased stochastic rounding, the bits a counter-based hash of
the param's index, its step and the element's: the same at any thread count) or ``"none"`` (round to nearest
even, where updates under half a bfloat16 ulp are lost). ``"stochastic"`` also rounds ``"bfloat16"`` state (of any
param) stochastically, so that a moment whose change is under half an ulp (Adam's decaying v) still moves on
average; under ``"kahan"`` and ``"none"`` bfloat16 state is rounded to nearest even.
"""
import numbers

import numpy as np

from fastopt import _optim

NATIVE, BF16, INT8, INT4 = "native", "bfloat16", "int8", "int4"
LOW_PRECISION = (BF16, INT8, INT4)
QUANTIZED = (INT8, INT4)          # the formats with an absmax array per slot (fastopt.quantize)
BITS = {INT8: 8, INT4: 4}
STATE_DTYPES = (None, "float32", "float64") + LOW_PRECISION
DEFAULT_MIN_QUANTIZED_SIZE = 4096       # as bitsandbytes: smaller tensors keep full-precision state
KAHAN, STOCHASTIC, NO_COMPENSATION = "kahan", "stochastic", "none"
COMPENSATIONS = (KAHAN, STOCHASTIC, NO_COMPENSATION)
DEFAULT_COMPENSATION = KAHAN      # as optimi for low-precision params
FORMAT_KEYS = ("state_dtype", "min_quantized_size", "compensation")   # the group options of every spec'd optimizer
ABSMAX_SUFFIX = "_absmax"
KAHAN_KEY = "kahan_comp"          # the state entry of a bfloat16 param's Kahan buffer


def bfloat16():
    """The ml_dtypes bfloat16 dtype; ImportError saying so where ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("state_dtype='bfloat16' (and bfloat16 optimizer state) needs the ml_dtypes package: "
                          "pip install ml_dtypes") from None
    return np.dtype(ml_dtypes.bfloat16)


def is_bfloat16(dtype):
    """True for ml_dtypes' bfloat16 (without importing ml_dtypes: no array has the dtype where it is missing)."""
    return dtype.kind == "V" and dtype.name == "bfloat16"


def work_dtype(p):
    """The dtype param ``p`` steps in, that of its native state: float32 for a bfloat16 param, else p's own."""
    return np.dtype(np.float32) if is_bfloat16(p.dtype) else p.dtype


def check_compensation(value, where):
    """``value`` if it is a valid compensation (COMPENSATIONS' names), else TypeError/ValueError."""
    if not isinstance(value, str):
        raise TypeError(f"{where}: compensation must be a str, got {type(value).__name__} {value!r}")
    if value not in COMPENSATIONS:
        raise ValueError(f"{where}: invalid compensation {value!r}: expected "
                         f"{', '.join(repr(v) for v in COMPENSATIONS)}")
    return value


def check_state_dtype(value, where):
    """``value`` if it is a valid state_dtype (None or one of STATE_DTYPES' names), else TypeError/ValueError."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{where}: state_dtype must be None or a str, got {type(value).__name__} {value!r}")
    if value not in STATE_DTYPES:
        raise ValueError(f"{where}: invalid state_dtype {value!r}: expected None, "
                         f"{', '.join(repr(v) for v in STATE_DTYPES[1:])}")
    if value == BF16:
        bfloat16()
    return value


def check_min_quantized_size(value, where):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: min_quantized_size must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{where}: invalid min_quantized_size {value}: expected an int >= 0")
    return int(value)


def slot_format(state_dtype, min_size, slot, p):
    """The format of state slot ``slot`` (a Slot) of param ``p`` in a group of ``state_dtype``, ``min_size``."""
    if slot.quantize is None or work_dtype(p) != np.float32:
        return NATIVE
    if state_dtype is None and is_bfloat16(p.dtype):
        return BF16
    if state_dtype in LOW_PRECISION and p.size >= min_size:
        return state_dtype
    return NATIVE


def code(fmt):
    return _optim.STATE_FORMATS[fmt]


def layout(fmt, p):
    """(dtype, shape) of the codes array and the absmax length (0: none) of a slot of param ``p`` in ``fmt``."""
    codes, blocks = _optim.format_sizes(code(fmt), p.size)
    if fmt == NATIVE:
        return work_dtype(p), p.shape, 0
    if fmt == BF16:
        return bfloat16(), p.shape, 0
    return np.dtype(np.uint8), (p.shape if fmt == INT8 else (codes,)), blocks


def encode(fmt, x, signed):
    """(codes, absmax or None) of the float32 values ``x`` in ``fmt`` (NATIVE: x itself)."""
    if fmt == NATIVE:
        return x, None
    if fmt == BF16:
        return x.astype(bfloat16()), None
    from fastopt import quantize
    codes, absmax = quantize.quantize_blockwise(np.ascontiguousarray(x, np.float32), bits=BITS[fmt], signed=signed)
    return (codes.reshape(x.shape) if fmt == INT8 else codes), absmax


def decode(fmt, codes, absmax, p, signed):
    """The float32 values, of ``p``'s shape, of a slot stored as ``codes``, ``absmax`` in ``fmt``."""
    if fmt == NATIVE:
        return codes
    if fmt == BF16:
        return codes.astype(np.float32)
    from fastopt import quantize
    x = quantize.dequantize_blockwise(codes.reshape(-1), absmax, n=p.size, bits=BITS[fmt], signed=signed)
    return x.reshape(p.shape)
