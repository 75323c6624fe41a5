"""Batch normalization kernels for users with their own layer code (torch ``F.batch_norm`` semantics).

Layouts: ``x`` of shape (N, C) or (N, C, *spatial) with ``axis=1``, or channels-last (N, *spatial, C) with
``axis=-1``. Every channel c has M = x.size / C elements. With batch statistics (training):

    mean_c = (1/M) sum x,   var_c = (1/M) sum (x - mean_c)^2,   invstd_c = 1 / sqrt(var_c + eps)
    y = (x - mean_c) * invstd_c * gamma_c + beta_c                 (then max(y, 0) with activation="relu")
    running_mean <- (1 - momentum) running_mean + momentum mean_c
    running_var  <- (1 - momentum) running_var  + momentum var_c * M / (M - 1)      (unbiased, as torch)

and with ``training=False`` the same y from ``running_mean``/``running_var``. The backward pass, with g = dy (times
[y > 0] with relu) and xhat = (x - mean_c) invstd_c:

    dbeta_c = sum g,   dgamma_c = sum g xhat
    dx = gamma_c invstd_c (g - dbeta_c / M - xhat dgamma_c / M)      (batch statistics)
    dx = gamma_c invstd_c g                                           (running statistics, training=False)

Implementation: csrc/batchnorm.c. The forward reads x twice (statistics in double, shifted by one element of the
channel, so float32 data with |mean| >> std stays accurate; then y from per-channel coefficients) and writes y once;
the backward reads dy and x twice and writes dx once. No temporary of x's size is allocated besides y / dx, which
``out=`` / ``dx_out=`` let you reuse.

Memory layout: x may be C-contiguous in its own shape, or be a transposed view of a C-contiguous array in the
other layout (e.g. ``torch.Tensor.numpy()`` of a channels_last tensor: shape NCHW, memory NHWC, ``axis=1``); the
kernels run on that memory directly and y / dx come back with x's strides. Any other layout (or a byte-swapped /
unaligned x or dy) is copied once into a C-contiguous array first. ``out`` / ``dx_out`` must be writeable, aligned,
native arrays of x's dtype and shape laid out like the array the kernels run on (C-contiguous for a C-contiguous x);
they are never silently copied.

Threads (``fastopt.set_num_threads``): NCHW runs whole channels per thread when the thread count divides C or C is
at least 8 per thread, so results do not depend on the thread count; with fewer channels (e.g. 3 on 2 threads)
every channel is split across the threads. Those, and (N, C) and channels-last inputs, whose rows are split across
threads, add per-thread partial sums (double), so their statistics, and through them y, dx, dgamma, dbeta, may
differ across thread counts in the last bits (tests: 4 float32 ulp, 1e-12 relative in float64). (N, C) inputs run
blocks of channels per thread instead when a thread's share of rows would not fit its cache. Every
instruction-set path gives the same bits.

Every argument is checked before anything is written; an error leaves every array unchanged. Calls whose
arguments are all already what the kernels take (the usual case in a training loop) are checked in C
(``_batchnorm.try_forward`` / ``try_backward``); anything else takes the Python checks below, which raise or copy.
"""
import math
import numbers

import numpy as np

from fastopt import _batchnorm
from fastopt._validation import (check_flag, check_float_array, check_nonnegative, check_range, kernel_input,
                                 kernel_ready)

__all__ = ["batch_norm_forward", "batch_norm_backward"]

_ACTIVATIONS = (None, "relu")


class _Layout:
    """How x's memory is seen by the kernels: kind (NCS or RC), n, c, s, and the transposition to kernel order."""
    __slots__ = ("kind", "n", "c", "s", "move", "shape")

    def __init__(self, kind, n, c, s, move, shape):
        self.kind, self.n, self.c, self.s, self.move, self.shape = kind, n, c, s, move, shape

    def to_kernel(self, a):
        return a if self.move is None else np.moveaxis(a, *self.move)

    def from_kernel(self, a):
        return a if self.move is None else np.moveaxis(a, self.move[1], self.move[0])


def _check_axis(x, axis):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis: expected an integer, got {type(axis).__name__} {axis!r}")
    if x.ndim < 2:
        raise ValueError(f"x: expected 2 or more dimensions ((N, C), (N, C, *spatial) or (N, *spatial, C)), "
                         f"got shape {x.shape}")
    ax = int(axis) + x.ndim if axis < 0 else int(axis)
    if ax not in (1, x.ndim - 1):
        raise ValueError(f"axis: expected 1 (channels first) or -1 (channels last) for a {x.ndim}-d x, got {axis}")
    if x.shape[ax] == 0:
        raise ValueError(f"x: expected at least one channel on axis {axis}, got shape {x.shape}")
    return ax


def _layout(x, axis):
    """Resolves the layout and returns (layout, x in kernel order: a view of x or a C-contiguous copy)."""
    ax = _check_axis(x, axis)
    nd, C, size = x.ndim, x.shape[ax], x.size
    last = ax == nd - 1
    if nd > 2 and not kernel_ready(x):
        move = (nd - 1, 1) if last else (1, nd - 1)
        view = np.moveaxis(x, *move)
        if kernel_ready(view):   # memory in the other layout: the kernels run on it in place
            if last:
                return _Layout(_batchnorm.NCS, x.shape[0], C, math.prod(x.shape[1:-1]), move, x.shape), view
            return _Layout(_batchnorm.RC, size // C, C, 1, move, x.shape), view
    x = kernel_input(x)
    s = 1 if last else math.prod(x.shape[2:])
    if s == 1:
        return _Layout(_batchnorm.RC, size // C, C, 1, None, x.shape), x
    return _Layout(_batchnorm.NCS, x.shape[0], C, s, None, x.shape), x


def _check_channel_shape(a, name, x, C):
    """a is a float array of x's dtype and shape (C,)."""
    check_float_array(a, name)
    if a.dtype.newbyteorder("=") != x.dtype.newbyteorder("="):
        raise TypeError(f"{name}: expected dtype {x.dtype} (the dtype of x), got {a.dtype}")
    if a.shape != (C,):
        raise ValueError(f"{name}: expected shape ({C},) (the {C} channels of x), got {a.shape}")


def _check_channels(a, name, x, C, required=False):
    """A per-channel input: None (allowed unless required) or a 1-d array of C elements of x's dtype; returns a
    contiguous native array (a copy if needed: C elements)."""
    if a is None:
        if required:
            raise ValueError(f"{name}: required, got None")
        return None
    _check_channel_shape(a, name, x, C)
    return kernel_input(a)


def _check_inplace_channels(a, name, x, C):
    """A per-channel array written in place: shape (C,), x's dtype, writeable, contiguous, aligned, native."""
    if a is None:
        return None
    _check_channel_shape(a, name, x, C)
    _check_writeable(a, name)
    return a


def _check_writeable(a, name):
    problems = [p for p, bad in (("not C-contiguous", not a.flags.c_contiguous), ("not aligned", not a.flags.aligned),
                                 ("not in native byte order", not a.dtype.isnative),
                                 ("read-only", not a.flags.writeable)) if bad]
    if problems:
        raise ValueError(f"{name} is written in place and must be a writeable, C-contiguous, aligned, native "
                         f"byte-order array; it is {', '.join(problems)}")


def _output(out, name, x, lay, xk):
    """The kernel-order view of a caller's output buffer (checked) or a fresh array laid out like xk."""
    if out is None:
        return np.empty_like(xk)
    check_float_array(out, name)
    if out.dtype.newbyteorder("=") != x.dtype.newbyteorder("="):
        raise TypeError(f"{name}: expected dtype {x.dtype} (the dtype of x), got {out.dtype}")
    if out.shape != x.shape:
        raise ValueError(f"{name}: shape {out.shape} does not match x shape {x.shape}")
    ok = lay.to_kernel(out)
    if not (ok.flags.c_contiguous and ok.flags.aligned and out.dtype.isnative and out.flags.writeable):
        layout = "C-contiguous" if lay.move is None else "with the strides of x (the other layout's C order)"
        raise ValueError(f"{name} is written in place and must be a writeable, aligned, native byte-order array "
                         f"{layout}; never copied")
    return ok


def _check_not_aliasing(out, name, originals):
    """Outputs must not share memory with the caller's inputs, even when the kernels read a copy of them."""
    if out is None:
        return
    for arr, aname in originals:
        if np.shares_memory(out, arr):
            raise ValueError(f"{aname} and {name} share memory; they must be separate arrays")


def _check_activation(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"Invalid activation: expected None or 'relu', got {activation!r}")
    return activation == "relu"


def batch_norm_forward(x, gamma, beta, running_mean, running_var, *, training, momentum=0.1, eps=1e-5, axis=1,
                       out=None, activation=None):
    """Batch normalization of ``x`` over every axis but ``axis``; returns ``(y, save_mean, save_invstd)``.

    gamma, beta: (C,) arrays of x's dtype, or None (affine=False: 1 and 0). running_mean, running_var: (C,) arrays
    updated in place when ``training`` (batch statistics), read when not; both None: not tracked (then
    ``training`` must be True, as torch uses batch statistics whenever there are no running ones).
    momentum: weight of the new statistics in [0, 1] (torch's momentum=None cumulative average is
    momentum = 1 / number of batches seen; :class:`fastopt.nn.BatchNorm` does that). eps: added to the variance
    inside the square root. out: optional buffer for y (see the module docstring). activation: None or "relu"
    (y = max(bn(x), 0), fused).

    save_mean, save_invstd: float64 (C,) arrays, the mean and 1/sqrt(var + eps) used (running ones when not
    training); pass them unchanged to :func:`batch_norm_backward`.
    """
    fast = _batchnorm.try_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, axis, out,
                                  activation)
    if fast is not None:
        return fast
    check_float_array(x, "x")
    training = check_flag(training, "training")
    momentum = check_range(momentum, "momentum", 0.0, 1.0)
    eps = check_nonnegative(eps, "eps")
    relu = _check_activation(activation)
    lay, xk = _layout(x, axis)
    C = lay.c
    gamma = _check_channels(gamma, "weight", x, C)
    beta = _check_channels(beta, "bias", x, C)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var: pass both or neither (None: statistics not tracked)")
    if running_mean is None and not training:
        raise ValueError("training=False needs running_mean and running_var (the statistics to normalize with)")
    if training:
        running_mean = _check_inplace_channels(running_mean, "running_mean", x, C)
        running_var = _check_inplace_channels(running_var, "running_var", x, C)
    else:
        running_mean = _check_channels(running_mean, "running_mean", x, C)
        running_var = _check_channels(running_var, "running_var", x, C)
    if training and x.size // C < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
    yk = _output(out, "out", x, lay, xk)
    if xk.base is not x and xk is not x:
        _check_not_aliasing(out, "out", [(x, "x")])
    save_mean = np.empty(C)
    save_invstd = np.empty(C)
    _batchnorm.check_disjoint([yk, running_mean if training else None, running_var if training else None],
                              ["out", "running_mean", "running_var"],
                              [xk, gamma, beta, running_mean if not training else None,
                               running_var if not training else None],
                              ["x", "weight", "bias", "running_mean", "running_var"])
    _batchnorm.forward(xk, yk, lay.kind, lay.n, lay.c, lay.s, gamma, beta, running_mean, running_var,
                       save_mean, save_invstd, training, momentum, eps, relu)
    return (out if out is not None else lay.from_kernel(yk)), save_mean, save_invstd


def _check_saved(a, name, C):
    check_float_array(a, name)
    if a.shape != (C,):
        raise ValueError(f"{name}: expected shape ({C},) (the {C} channels of x), got {a.shape}")
    return kernel_input(a, np.float64)


def batch_norm_backward(dy, x, gamma, save_mean, save_invstd, *, axis=1, training=True, activation=None, beta=None,
                        dx_out=None, dgamma_out=None, dbeta_out=None):
    """Gradients of :func:`batch_norm_forward`; returns ``(dx, dgamma, dbeta)``.

    dy: gradient of the loss with respect to y, x's shape and dtype (any layout: copied into x's if it differs).
    x, gamma, save_mean, save_invstd: what the forward pass was given and returned (x unchanged since).
    training: True if the forward used batch statistics (then dx includes the terms through mean and variance),
    False if it used running statistics. activation="relu" applies the mask [y > 0], recomputed from x and
    needing ``beta`` (the forward's, None if it had none).
    dx_out, dgamma_out, dbeta_out: optional buffers (dgamma/dbeta: (C,) of x's dtype). With gamma None
    (affine=False) dgamma and dbeta are None unless their buffers are given.
    """
    fast = _batchnorm.try_backward(dy, x, gamma, save_mean, save_invstd, axis, training, activation, beta, dx_out,
                                   dgamma_out, dbeta_out)
    if fast is not None:
        return fast
    check_float_array(x, "x")
    check_float_array(dy, "dy")
    training = check_flag(training, "training")
    relu = _check_activation(activation)
    lay, xk = _layout(x, axis)
    C = lay.c
    if dy.dtype.newbyteorder("=") != x.dtype.newbyteorder("="):
        raise TypeError(f"dy: expected dtype {x.dtype} (the dtype of x), got {dy.dtype}")
    if dy.shape != x.shape:
        raise ValueError(f"dy: shape {dy.shape} does not match x shape {x.shape}")
    gamma = _check_channels(gamma, "weight", x, C)
    beta = _check_channels(beta, "bias", x, C)
    save_mean = _check_saved(save_mean, "save_mean", C)
    save_invstd = _check_saved(save_invstd, "save_invstd", C)
    if training and x.size // C < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
    dyk = lay.to_kernel(dy)
    if not kernel_ready(dyk) or dyk.dtype != xk.dtype:
        dyk = np.empty_like(xk)
        dyk[...] = lay.to_kernel(dy)
    dxk = _output(dx_out, "dx_out", x, lay, xk)
    if dyk.base is not dy and dyk is not dy or xk.base is not x and xk is not x:
        _check_not_aliasing(dx_out, "dx_out", [(x, "x"), (dy, "dy")])
    want = gamma is not None
    dgamma = _check_inplace_channels(dgamma_out, "dgamma_out", x, C)
    dbeta = _check_inplace_channels(dbeta_out, "dbeta_out", x, C)
    if dgamma is None and want:
        dgamma = np.empty(C, dtype=xk.dtype)
    if dbeta is None and want:
        dbeta = np.empty(C, dtype=xk.dtype)
    _batchnorm.check_disjoint([dxk, dgamma, dbeta], ["dx_out", "dgamma_out", "dbeta_out"],
                              [dyk, xk, gamma, beta, save_mean, save_invstd],
                              ["dy", "x", "weight", "bias", "save_mean", "save_invstd"])
    _batchnorm.backward(dyk, xk, dxk, lay.kind, lay.n, lay.c, lay.s, gamma, beta if relu else None, save_mean,
                        save_invstd, dgamma, dbeta, training, relu)
    dx = dx_out if dx_out is not None else lay.from_kernel(dxk)
    return dx, dgamma, dbeta
