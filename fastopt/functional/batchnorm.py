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

Threads (``fastopt.set_num_threads``): NCHW runs whole channels per thread, or, with few channels (e.g. 3 on 2
threads), splits every channel across the threads; (N, C) and channels-last inputs split their rows, or run
blocks of channels per thread when a thread's share of rows would not fit its cache. Whatever the schedule, every
sum (the statistics; backward's sums of dy and dy x-hat) is the one blocked reduction of csrc/blocked_sum.h: fixed
blocks of the reduced axis, set by the shape alone, each summed in double and added in block order, so y, dx,
dgamma, dbeta and the statistics have the same bits at any thread count. Every
instruction-set path gives the same bits.

Every argument is checked before anything is written; an error leaves every array unchanged. A call is one plan
(``fastopt._batchnorm.ForwardPlan`` / ``BackwardPlan``): checked in C when every argument is already what the
kernels take (the usual case in a training loop), else built after the checks below, which copy or raise.
"""
import numbers

import numpy as np

from fastopt import _batchnorm
from fastopt._contract import check_activation
from fastopt._validation import (check_disjoint, check_flag, check_float_array, check_inplace_array,
                                 check_nonnegative, check_range, check_same_dtype, check_same_shape, input_array,
                                 kernel_array)

__all__ = ["batch_norm_forward", "batch_norm_backward"]


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


def _channels(a, name, x, C, inplace=False):
    """None, or a per-channel (C,) array of x's dtype: written in place (checked, never copied) or read (copied
    once if the kernels cannot read it as it is)."""
    if a is None:
        return None
    (check_inplace_array if inplace else check_float_array)(a, name)
    check_same_dtype(x, a, "x", name)
    if a.shape != (C,):
        raise ValueError(f"{name}: expected shape ({C},) (the {C} channels of x), got {a.shape}")
    return a if inplace else input_array(a, name)


def _saved(a, name, C):
    check_float_array(a, name)
    if a.shape != (C,):
        raise ValueError(f"{name}: expected shape ({C},) (the {C} channels of x), got {a.shape}")
    return kernel_array(a, np.float64)


def _checked_x_and_affine(x, axis, gamma, beta):
    """(axis index, channels C, x as the kernels read it, gamma, beta as inputs), after their checks."""
    ax = _check_axis(x, axis)
    C = x.shape[ax]
    return ax, C, _batchnorm.kernel_input(x, ax), _channels(gamma, "weight", x, C), _channels(beta, "bias", x, C)


def _check_output(out, name, x, xk):
    """A caller's buffer for y / dx: x's dtype and shape, written in place, laid out as xk (the array the kernels
    read: x itself or its C-contiguous copy)."""
    check_float_array(out, name)
    check_same_dtype(x, out, "x", name)
    check_same_shape(x, out, "x", name)
    if xk.flags.c_contiguous:
        check_inplace_array(out, name)
    elif not (out.strides == xk.strides and out.flags.aligned and out.dtype.isnative and out.flags.writeable):
        raise ValueError(f"{name} is written in place and must be a writeable, aligned, native byte-order array "
                         f"with the strides of x {xk.strides} (the other layout's C order); never copied")


def _internal(what):
    return RuntimeError(f"internal error: {what}'s checks passed arguments its kernels do not take")


def forward_plan(x, gamma, beta, running_mean, running_var, *, training, momentum, eps, axis, out, activation,
                 keep_stats=False):
    """The checked :class:`fastopt._batchnorm.ForwardPlan` of a batch_norm_forward call (see there)."""
    plan = _batchnorm.plan_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, axis, out,
                                   activation, keep_stats)
    if plan is not None:
        return plan
    check_float_array(x, "x")
    training = check_flag(training, "training")
    momentum = check_range(momentum, "momentum", 0.0, 1.0)
    eps = check_nonnegative(eps, "eps")
    activation = "relu" if check_activation(activation) else None
    ax, C, xk, g, b = _checked_x_and_affine(x, axis, gamma, beta)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var: pass both or neither (None: statistics not tracked)")
    if running_mean is None and not training:
        raise ValueError("training=False needs running_mean and running_var (the statistics to normalize with)")
    rm = _channels(running_mean, "running_mean", x, C, inplace=training)
    rv = _channels(running_var, "running_var", x, C, inplace=training)
    if training and x.size // C < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
    if out is not None:
        _check_output(out, "out", x, xk)
    stats = [running_mean, running_var]
    check_disjoint([out] + (stats if training else [None, None]), ["out", "running_mean", "running_var"],
                   [x, gamma, beta] + ([None, None] if training else stats),
                   ["x", "weight", "bias", "running_mean", "running_var"])
    plan = _batchnorm.plan_forward(xk, g, b, rm, rv, training, momentum, eps, ax, out, activation, keep_stats)
    if plan is None:
        raise _internal("batch_norm_forward")
    return plan


def backward_plan(x, gamma, save_mean, save_invstd, *, axis, training, activation, beta, dx_out, dgamma_out,
                  dbeta_out):
    """The checked :class:`fastopt._batchnorm.BackwardPlan` of a batch_norm_backward call (dy aside)."""
    plan = _batchnorm.plan_backward(x, gamma, save_mean, save_invstd, axis, training, activation, beta, dx_out,
                                    dgamma_out, dbeta_out)
    if plan is not None:
        return plan
    check_float_array(x, "x")
    training = check_flag(training, "training")
    activation = "relu" if check_activation(activation) else None
    ax, C, xk, g, b = _checked_x_and_affine(x, axis, gamma, beta)
    sm = _saved(save_mean, "save_mean", C)
    si = _saved(save_invstd, "save_invstd", C)
    if training and x.size // C < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
    if dx_out is not None:
        _check_output(dx_out, "dx_out", x, xk)
    dg = _channels(dgamma_out, "dgamma_out", x, C, inplace=True)
    db = _channels(dbeta_out, "dbeta_out", x, C, inplace=True)
    check_disjoint([dx_out, dg, db], ["dx_out", "dgamma_out", "dbeta_out"],
                   [x, gamma, beta, save_mean, save_invstd], ["x", "weight", "bias", "save_mean", "save_invstd"])
    plan = _batchnorm.plan_backward(xk, g, sm, si, ax, training, activation, b, dx_out, dg, db)
    if plan is None:
        raise _internal("batch_norm_backward")
    return plan


def run_backward(plan, dy):
    """(dx, dgamma, dbeta) of a backward plan for dy: checked (x's dtype and shape, no output sharing its memory)
    and, unless laid out as the plan's x, copied once into that layout."""
    result = plan.run(dy)
    if result is not None:
        return result
    check_float_array(dy, "dy")
    check_same_dtype(plan.x, dy, "x", "dy")
    check_same_shape(plan.x, dy, "x", "dy")
    check_disjoint([plan.dx_out, plan.dgamma_out, plan.dbeta_out], ["dx_out", "dgamma_out", "dbeta_out"], [dy],
                   ["dy"])
    dyk = np.empty_like(plan.x)
    dyk[...] = dy
    result = plan.run(dyk)
    if result is None:
        raise _internal("batch_norm_backward")
    return result


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
    plan = forward_plan(x, gamma, beta, running_mean, running_var, training=training, momentum=momentum, eps=eps,
                        axis=axis, out=out, activation=activation)
    return plan.run()


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
    if not isinstance(dy, np.ndarray):
        check_float_array(dy, "dy")
    plan = backward_plan(x, gamma, save_mean, save_invstd, axis=axis, training=training, activation=activation,
                         beta=beta, dx_out=dx_out, dgamma_out=dgamma_out, dbeta_out=dbeta_out)
    return run_backward(plan, dy)
