"""A dense layer's bias and activation, fused: one pass forward, one pass backward (with the bias gradient).

For x of shape (N, C) (rows = samples, columns = units) and bias of shape (C,):

    forward:   y = act(x + bias),          act(v) = max(v, 0) for "relu", v for None
    backward:  dx = dy * [y > 0] ("relu") or dy (None),   dbias = sum over rows of dx

The backward takes the forward's output y, since relu'(x + bias) = [y > 0]: a layer need not keep x + bias.
``dbias`` accumulates in double per column, in blocks of 256 rows added in block order: a fixed order, so the
same bits on every instruction-set path and at any thread count. Threads split the rows past fastopt's parallel
threshold. Implementation: csrc/activation.c.

Arrays are used in place: ``out=x`` and ``dx_out=dy`` are allowed (element for element), any other overlap between
an output and an input is an error. A non-contiguous x / y / dy is copied once; outputs are never copied.
Calls whose arguments are all already what the kernels take are checked in C (``_activation.try_forward`` /
``try_backward``, about 1 us); anything else takes the Python checks below, which copy or raise.
"""
import numpy as np

from fastopt import _activation
from fastopt._validation import (check_float_array, check_inplace_array, check_same_dtype, check_same_shape,
                                 kernel_input)

__all__ = ["bias_activation", "bias_activation_backward"]

_ACTIVATIONS = (None, "relu")


def _check_activation(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"Invalid activation: expected None or 'relu', got {activation!r}")
    return activation == "relu"


def _matrix(a, name):
    check_float_array(a, name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d (samples, units) array, got shape {a.shape}")
    return kernel_input(a)


def _vector(a, name, like, write):
    if a is None:
        return None
    (check_inplace_array if write else check_float_array)(a, name)
    check_same_dtype(like, a, "x" if not write else "dy", name)
    if a.shape != (like.shape[1],):
        raise ValueError(f"{name}: expected shape ({like.shape[1]},) (one per column), got {a.shape}")
    return a if write else kernel_input(a)


def _output(out, name, src, inputs):
    """The caller's output (checked: same dtype and shape as src, writeable, C-contiguous; the same array as the
    element-for-element input or disjoint from every input) or a fresh array."""
    if out is None:
        return np.empty(src.shape, src.dtype)
    check_inplace_array(out, name)
    check_same_dtype(src, out, "x" if name == "out" else "dy", name)
    check_same_shape(src, out, "x" if name == "out" else "dy", name)
    for arr, aname, same_ok in inputs:
        if arr is None:
            continue
        if same_ok and out.__array_interface__["data"][0] == arr.__array_interface__["data"][0] \
                and out.shape == arr.shape and out.strides == arr.strides:
            continue
        if np.shares_memory(out, arr):
            raise ValueError(f"{name} and {aname} share memory; they must be separate arrays"
                             + (f" (or {name} may be {aname} itself)" if same_ok else ""))
    return out


def bias_activation(x, bias, *, activation="relu", out=None):
    """``act(x + bias)`` for x (N, C) and bias (C,) or None; ``out`` may be x (in place). Returns the output."""
    fast = _activation.try_forward(x, bias, out, activation)
    if fast is not None:
        return fast
    relu = _check_activation(activation)
    orig = x
    x = _matrix(x, "x")
    bias = _vector(bias, "bias", x, False)
    out = _output(out, "out", x, [(orig, "x", True), (bias, "bias", False)])
    _activation.bias_forward(x, bias, out, relu)
    return out


def bias_activation_backward(dy, y=None, *, activation="relu", dx_out=None, dbias_out=None):
    """Gradients of :func:`bias_activation` from dy and its output y; returns ``(dx, dbias)``.

    y is needed with ``activation="relu"`` only. ``dx_out`` may be dy (in place); ``dbias_out`` a (C,) buffer.
    """
    fast = _activation.try_backward(dy, y, dx_out, dbias_out, activation)
    if fast is not None:
        return fast
    relu = _check_activation(activation)
    orig = dy
    dy = _matrix(dy, "dy")
    if relu:
        if y is None:
            raise ValueError("y: required with activation='relu' (the forward's output gives the mask y > 0)")
        y = _matrix(y, "y")
        check_same_dtype(dy, y, "dy", "y")
        check_same_shape(dy, y, "dy", "y")
    else:
        y = None
    dx = _output(dx_out, "dx_out", dy, [(orig, "dy", True), (y, "y", False)])
    dbias = _vector(dbias_out, "dbias_out", dy, True)
    if dbias is None:
        dbias = np.empty(dy.shape[1], dy.dtype)
    else:
        for arr, aname in ((dy, "dy"), (y, "y"), (dx, "dx_out")):
            if arr is not None and np.shares_memory(dbias, arr):
                raise ValueError(f"dbias_out and {aname} share memory; they must be separate arrays")
    _activation.bias_backward(dy, y, dx, dbias, relu)
    return dx, dbias
