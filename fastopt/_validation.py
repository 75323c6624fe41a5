"""Checks shared by every fastopt entry point: the array contract (fastopt/_contract.pyx, re-exported here) and
hyperparameters.

Errors name the argument and say what was expected: ``TypeError`` for a wrong type or dtype, ``ValueError`` for a
wrong value, shape or memory layout. Every check runs before anything is written.
"""
import math
import numbers

import numpy as np

from fastopt._contract import (check_disjoint, check_float_array, check_inplace_array, check_no_overlap,  # noqa: F401
                               check_same_dtype, check_same_shape, input_array, kernel_array)

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
FLOAT_DTYPES = (_F32, _F64)


def kernel_ready(a):
    """True if the kernels can read the ndarray ``a`` in place: C-contiguous, aligned, native byte order."""
    flags = a.flags
    return flags.c_contiguous and flags.aligned and a.dtype.isnative


def kernel_input(a, dtype=None):
    """The ndarray ``a`` as the kernels read it: C-contiguous, aligned, native byte order, of ``dtype`` (default:
    a's, in native order), same shape (0-d too). ``a`` itself when it already is; otherwise one fresh copy."""
    return kernel_array(a, a.dtype if dtype is None else dtype)


def check_no_shared_memory(arrays, names):
    """ValueError naming the first pair of ``arrays`` (any layout; None skipped) that overlap in memory."""
    arrays = list(arrays)
    check_disjoint(arrays, list(names), [], [])


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


def check_pair(pair, what):
    """A pair of finite floats (``what``: e.g. "eta values"); TypeError for anything but a tuple or list of two."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"Invalid {what}: expected a tuple of 2 floats, got {pair!r}")
    return tuple(check_range(v, f"{what} (element {i})", -1e300, 1e300) for i, v in enumerate(pair))


def is_integer(value):
    """True for a Python or NumPy integer (bools excluded)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_flag(value, what):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Invalid {what}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)
