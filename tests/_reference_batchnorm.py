"""Batch normalization written from the formulas (torch F.batch_norm docs; Ioffe & Szegedy 2015), NumPy only.

Used by the tests (in float64: ``work=np.float64``) and by the benchmarks (as the NumPy peer, ``work=x.dtype``).
Channel axis ``axis``; every other axis is reduced; M = x.size / C.

forward:  mean = mean(x), var = mean((x - mean)^2), invstd = 1/sqrt(var + eps)   (training)
          mean = running_mean, invstd = 1/sqrt(running_var + eps)                 (eval)
          y = (x - mean) invstd gamma + beta, then max(y, 0) with relu
          running_mean' = (1 - m) running_mean + m mean, running_var' = (1 - m) running_var + m var M / (M - 1)
backward: g = dy [y > 0 with relu], xhat = (x - mean) invstd, dbeta = sum g, dgamma = sum g xhat
          dx = gamma invstd / M (M g - dbeta - xhat dgamma)   (training);   dx = gamma invstd g   (eval)
"""
import numpy as np


def _shape(x, axis):
    ax = axis % x.ndim
    bshape = [1] * x.ndim
    bshape[ax] = x.shape[ax]
    axes = tuple(i for i in range(x.ndim) if i != ax)
    return ax, tuple(bshape), axes


def forward(x, gamma, beta, running_mean, running_var, *, training, momentum=0.1, eps=1e-5, axis=1,
            activation=None, work=np.float64):
    """Returns (y, mean, invstd, new_running_mean, new_running_var) in dtype `work` (running stats None if not
    given). Nothing is modified in place."""
    ax, bs, axes = _shape(x, axis)
    xw = np.asarray(x, dtype=work)
    C = x.shape[ax]
    M = x.size // C
    rm = None if running_mean is None else np.asarray(running_mean, dtype=work)
    rv = None if running_var is None else np.asarray(running_var, dtype=work)
    if training:
        mean = xw.mean(axis=axes)
        var = ((xw - mean.reshape(bs)) ** 2).mean(axis=axes)
        if rm is not None:
            rm = (1 - momentum) * rm + momentum * mean
            rv = (1 - momentum) * rv + momentum * var * (M / (M - 1))
    else:
        mean, var = rm, rv
    invstd = 1.0 / np.sqrt(var + eps)
    y = (xw - mean.reshape(bs)) * invstd.reshape(bs)
    if gamma is not None:
        y = y * np.asarray(gamma, dtype=work).reshape(bs)
    if beta is not None:
        y = y + np.asarray(beta, dtype=work).reshape(bs)
    if activation == "relu":
        y = np.maximum(y, 0)
    return y, mean, invstd, rm, rv


def backward(dy, x, gamma, beta, mean, invstd, *, training=True, axis=1, activation=None, work=np.float64):
    """Returns (dx, dgamma, dbeta) in dtype `work`."""
    ax, bs, axes = _shape(x, axis)
    xw = np.asarray(x, dtype=work)
    C = x.shape[ax]
    M = x.size // C
    g = np.asarray(dy, dtype=work)
    mean = np.asarray(mean, dtype=work).reshape(bs)
    invstd = np.asarray(invstd, dtype=work).reshape(bs)
    gam = np.ones(bs, work) if gamma is None else np.asarray(gamma, dtype=work).reshape(bs)
    xhat = (xw - mean) * invstd
    if activation == "relu":
        bet = 0 if beta is None else np.asarray(beta, dtype=work).reshape(bs)
        g = np.where(xhat * gam + bet > 0, g, 0)
    dbeta = g.sum(axis=axes)
    dgamma = (g * xhat).sum(axis=axes)
    if training:
        dx = gam * invstd / M * (M * g - dbeta.reshape(bs) - xhat * dgamma.reshape(bs))
    else:
        dx = gam * invstd * g
    return dx, dgamma, dbeta
