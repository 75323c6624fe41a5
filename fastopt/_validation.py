"""Checks shared by every fastopt entry point: arrays that are written in place, and hyperparameters.

Errors name the argument and say what was expected: ``TypeError`` for a wrong type or dtype, ``ValueError`` for a
wrong value, shape or memory layout. Every check runs before anything is written.
"""
import math
import numbers

import numpy as np

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
FLOAT_DTYPES = (_F32, _F64)


def check_float_array(a, name):
    """``a`` must be an ndarray of float32 or float64 (any byte order); returns it."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of float32 or float64, got {type(a).__name__}")
    dt = a.dtype
    if dt is not _F32 and dt is not _F64 and dt.newbyteorder("=") not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    return a


def kernel_ready(a):
    """True if the kernels can read ``a`` in place: C-contiguous, aligned, native byte order."""
    flags = a.flags
    return flags.c_contiguous and flags.aligned and a.dtype.isnative


def kernel_input(a, dtype=None):
    """``a`` (an ndarray) as the kernels read it: C-contiguous, aligned, native byte order, of ``dtype`` (default:
    a's, in native order), same shape (0-d too). ``a`` itself when it already is; otherwise one fresh copy."""
    want = (a.dtype if dtype is None else np.dtype(dtype)).newbyteorder("=")
    if a.dtype == want and kernel_ready(a):
        return a
    out = np.array(a, dtype=want, order="C")    # a fresh allocation: aligned, native, a's shape
    if not out.flags.aligned:                  # never with numpy's allocator; a kernel must not see one
        raise RuntimeError("internal error: numpy returned an unaligned copy")
    return out


def check_inplace_array(a, name):
    """``a`` is updated in place: a writeable, C-contiguous, aligned, native-byte-order float32/float64 ndarray.

    A copy would silently lose the update, so any other layout is an error, never a copy.
    """
    check_float_array(a, name)
    flags = a.flags
    if flags.c_contiguous and flags.aligned and flags.writeable and a.dtype.isnative:
        return a
    problems = []
    if not a.flags.c_contiguous:
        problems.append("not C-contiguous")
    if not a.flags.aligned:
        problems.append("not aligned")
    if not a.dtype.isnative:
        problems.append("not in native byte order")
    if not a.flags.writeable:
        problems.append("read-only")
    if problems:
        raise ValueError(f"{name} is updated in place and must be a writeable, C-contiguous, aligned, native "
                         f"byte-order array; it is {', '.join(problems)}")
    return a


def check_same_dtype(a, b, name_a, name_b):
    if a.dtype.newbyteorder("=") != b.dtype.newbyteorder("="):
        raise TypeError(f"{name_b}: expected dtype {a.dtype} (the dtype of {name_a}), got {b.dtype}")


def check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_b}: shape {b.shape} does not match {name_a} shape {a.shape}")


def check_no_shared_memory(arrays, names):
    """ValueError naming the first pair of ``arrays`` that overlap in memory."""
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            if arrays[i] is not None and arrays[j] is not None and np.shares_memory(arrays[i], arrays[j]):
                raise ValueError(f"{names[i]} and {names[j]} share memory; they must be separate arrays")


def as_real(value, what):
    """A finite or infinite real number as float; TypeError for anything else (bools included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid {what}: expected a real number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"Invalid {what}: a number of {len(str(abs(int(value))))} digits, too large for "
                         "a float") from None


def check_range(value, what, low=None, high=None, low_open=False, high_open=False):
    """``value`` as float within [low, high] (open ends as asked); ValueError with the value otherwise, NaN too."""
    v = as_real(value, what)
    ok = not math.isnan(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(f"Invalid {what}: {value}")
    return v


def check_nonnegative(value, what):
    """A finite, >= 0 float."""
    return check_range(value, what, 0.0, math.inf, high_open=True)


def check_betas(betas, n=2):
    """A pair of floats, each in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != n:
        raise ValueError(f"Invalid betas: expected a tuple of {n} floats, got {betas!r}")
    return tuple(check_range(b, f"beta parameter at index {i}", 0.0, 1.0, high_open=True)
                 for i, b in enumerate(betas))


def is_integer(value):
    """True for a Python or NumPy integer (bools excluded)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_flag(value, what):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Invalid {what}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)
