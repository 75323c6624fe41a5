"""Dropout whose mask needs no storage: a counter-based random number generator regenerates it from the seed.

Element i (flat C-order index) of an array is kept when u_i >= ceil(p * 2^32), where u_i is the upper 32 bits of
the i-th output of the splitmix64 sequence (Steele, Lea & Flood 2014) keyed by the seed:

    key = mix(seed + G),   u_i = mix(key + (i + 1) G) >> 32,   G = 0x9E3779B97F4A7C15,
    mix(z): z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;  z = (z ^ z >> 27) * 0x94D049BB133111EB;  z ^ z >> 31

(all arithmetic modulo 2^64). Kept elements are scaled by 1 / (1 - p) (inverted dropout, as torch), so
``y = x * keep_i / (1 - p)`` and the backward pass is the same map applied to dy: ``dropout_backward`` with the
same ``p`` and ``seed`` reproduces the forward mask exactly. The mask depends only on (seed, i): it is identical
at any thread count and on every instruction-set path. Use a new seed per step (e.g. the step number) and per
layer (e.g. ``seed = step * n_layers + layer``).
"""
import numbers

import numpy as np

from fastopt import _regularize
from fastopt._validation import (as_real, check_float_array, check_inplace_array, check_same_dtype, check_same_shape,
                                 input_array)

__all__ = ["dropout", "dropout_backward"]


def _check_p(p):
    v = as_real(p, "dropout probability")
    if not (0.0 <= v < 1.0):
        raise ValueError(f"Invalid dropout probability: {p} (expected 0 <= p < 1)")
    return v


def _check_seed(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"Invalid seed: expected an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2 ** 64:
        raise ValueError(f"Invalid seed: expected 0 <= seed < 2**64, got {seed}")
    return int(seed)


def _apply(x, p, seed, out, name):
    fast = _regularize.try_dropout(x, out, seed, p)       # every argument as the kernel takes it, checked in C
    if fast is not None:
        return fast
    src = input_array(x, name)
    p = _check_p(p)
    seed = _check_seed(seed)
    if out is None:
        out = np.empty(src.shape, dtype=src.dtype)
    else:
        check_inplace_array(out, "out")
        check_same_dtype(src, out, name, "out")
        check_same_shape(src, out, name, "out")
        same = (out.__array_interface__["data"][0] == src.__array_interface__["data"][0])
        if not same and np.shares_memory(out, src):
            raise ValueError(f"out and {name} share memory; they must be separate arrays (or out may be {name} "
                             "itself)")
    _regularize.dropout(src, out, seed, p)
    return out


def dropout(x, p=0.5, seed=0, training=True, out=None):
    """Inverted dropout: ``y = x * keep / (1 - p)`` with the counter-based mask of (seed, element index).

    ``p`` in [0, 1); ``seed`` an integer in [0, 2**64). ``training=False`` returns ``x`` itself (or copies it into
    ``out``). ``out``: a writeable C-contiguous array of x's dtype and shape, possibly ``x`` itself (in place).
    A non-contiguous ``x`` is copied once. Returns the output array."""
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"Invalid training flag: expected a bool, got {training!r}")
    if not training:
        check_float_array(x, "x")
        _check_p(p)
        _check_seed(seed)
        if out is None or out is x:
            return x
        check_inplace_array(out, "out")
        check_same_dtype(x, out, "x", "out")
        check_same_shape(x, out, "x", "out")
        np.copyto(out, x)
        return out
    return _apply(x, p, seed, out, "x")


def dropout_backward(dy, p, seed, out=None):
    """Gradient of :func:`dropout` (training mode): ``dx = dy * keep / (1 - p)``, the mask regenerated from
    ``seed``. Same arguments and rules as :func:`dropout`; ``out`` may be ``dy`` itself."""
    return _apply(dy, p, seed, out, "dy")
