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
A call is one plan (``fastopt._activation.Plan``): checked in C when every argument is already what the kernels
take (about 1 us), else built after the checks below, which copy or raise.
"""
import numpy as np

from fastopt import _activation
from fastopt._contract import check_activation
from fastopt._validation import (check_disjoint, check_float_array, check_inplace_array, check_same_dtype,
                                 check_same_shape, input_array)

__all__ = ["bias_activation", "bias_activation_backward"]


def _matrix(a, name):
    check_float_array(a, name)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d (samples, units) array, got shape {a.shape}")
    return input_array(a, name)


def _vector(a, name, like, like_name, write):
    if a is None:
        return None
    (check_inplace_array if write else check_float_array)(a, name)
    check_same_dtype(like, a, like_name, name)
    if a.shape != (like.shape[1],):
        raise ValueError(f"{name}: expected shape ({like.shape[1]},) (one per column), got {a.shape}")
    return a if write else input_array(a, name)


def _output(out, name, src, src_name, orig, others, other_names):
    """The caller's output checked (src's dtype and shape, written in place, the very memory of the element-for-
    element input orig or disjoint from it and from others)."""
    if out is None:
        return None
    check_inplace_array(out, name)
    check_same_dtype(src, out, src_name, name)
    check_same_shape(src, out, src_name, name)
    if not (out.__array_interface__["data"][0] == orig.__array_interface__["data"][0]
            and out.shape == orig.shape and out.strides == orig.strides):
        try:
            check_disjoint([out], [name], [orig], [src_name])
        except ValueError as e:
            raise ValueError(f"{e} (or {name} may be {src_name} itself)") from None
    check_disjoint([out], [name], others, other_names)
    return out


def _run(plan, what):
    if plan is None:
        raise RuntimeError(f"internal error: {what}'s checks passed arguments its kernels do not take")
    return plan.run()


def bias_activation(x, bias, *, activation="relu", out=None):
    """``act(x + bias)`` for x (N, C) and bias (C,) or None; ``out`` may be x (in place). Returns the output."""
    fast = _activation.try_forward(x, bias, out, activation)
    if fast is not None:
        return fast
    check_activation(activation)
    orig = x
    x = _matrix(x, "x")
    b = _vector(bias, "bias", x, "x", False)
    out = _output(out, "out", x, "x", orig, [bias], ["bias"])
    return _run(_activation.plan_forward(x, b, out, activation), "bias_activation")


def bias_activation_backward(dy, y=None, *, activation="relu", dx_out=None, dbias_out=None):
    """Gradients of :func:`bias_activation` from dy and its output y; returns ``(dx, dbias)``.

    y is needed with ``activation="relu"`` only. ``dx_out`` may be dy (in place); ``dbias_out`` a (C,) buffer.
    """
    fast = _activation.try_backward(dy, y, dx_out, dbias_out, activation)
    if fast is not None:
        return fast
    relu = check_activation(activation)
    orig, orig_y = dy, y
    dy = _matrix(dy, "dy")
    if relu:
        if y is None:
            raise ValueError("y: required with activation='relu' (the forward's output gives the mask y > 0)")
        y = _matrix(y, "y")
        check_same_dtype(dy, y, "dy", "y")
        check_same_shape(dy, y, "dy", "y")
    else:
        y = orig_y = None
    dx = _output(dx_out, "dx_out", dy, "dy", orig, [orig_y], ["y"])
    dbias = _vector(dbias_out, "dbias_out", dy, "dy", True)
    check_disjoint([dbias], ["dbias_out"], [orig, orig_y, dx_out], ["dy", "y", "dx_out"])
    return _run(_activation.plan_backward(dy, y, dx, dbias, activation), "bias_activation_backward")
