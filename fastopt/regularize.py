"""Fused regularization, the regularize kernel family: the elastic-net penalty gradient and the max-norm constraint
(dropout, also of this family, is :func:`fastopt.functional.dropout`).

Arrays follow the array contract (fastopt/_contract.pxd): gradients and constrained params are updated in place
(writeable, C-contiguous, aligned, native byte order: never copied), params only read are copied once if the
kernels cannot read them as they are; one dtype per call; no two arrays may share memory. Every check runs before
anything is written. Results are bit-identical at any thread count (the penalty value: fixed-block sums in double).
"""
import numpy as np

from fastopt import _regularize
from fastopt._validation import (check_inplace_array, check_no_overlap, check_range, check_same_dtype,
                                 check_same_shape, input_array)

__all__ = ["add_penalty_grad_", "max_norm_"]


def _array_list(arrays, name):
    if isinstance(arrays, np.ndarray):
        return [arrays], True
    if not isinstance(arrays, (list, tuple)):
        raise TypeError(f"{name}: expected an ndarray or a list of ndarrays, got {type(arrays).__name__}")
    return list(arrays), False


def add_penalty_grad_(grads, params, l1=0.0, l2=0.0):
    """Elastic-net regularization in one fused pass over each parameter: for every (grad, param) pair

        grad += l1 * sign(param) + l2 * param          (sign(0) = 0: the subgradient 0 at w = 0)

    and returns the penalty value  l1 * sum|w| + l2 / 2 * sum w^2  over all params (Python float, accumulated in
    double) -- the convention whose gradient is exactly the update above (so ``l2`` equals torch's SGD
    ``weight_decay``). ``grads`` are updated in place (writeable, C-contiguous); ``params`` are read only.
    ``grads``/``params``: one array or matching lists; one dtype per call. One C call covers every pair."""
    l1 = check_range(l1, "l1", 0.0, np.inf, high_open=True)
    l2 = check_range(l2, "l2", 0.0, np.inf, high_open=True)
    fast = _regularize.try_penalty(grads, params, l1, l2)      # lists of arrays taken as they are, checked in C
    if fast is not None:
        return fast
    gl, _ = _array_list(grads, "grads")
    pl, _ = _array_list(params, "params")
    if len(gl) != len(pl):
        raise ValueError(f"grads and params: expected lists of one length, got {len(gl)} and {len(pl)}")
    if not gl:
        return 0.0
    dtype = None
    cparams = []
    for i, (g, p) in enumerate(zip(gl, pl)):
        check_inplace_array(g, f"grads[{i}]")
        p = input_array(p, f"params[{i}]")
        if dtype is None:
            dtype = g.dtype
        if g.dtype != dtype:
            raise TypeError(f"grads[{i}]: expected dtype {dtype} (the dtype of grads[0]), got {g.dtype}")
        check_same_dtype(g, p, f"grads[{i}]", f"params[{i}]")
        check_same_shape(g, p, f"grads[{i}]", f"params[{i}]")
        cparams.append(p)
    n = len(gl)
    check_no_overlap(gl + cparams, lambda i: f"grads[{i}]" if i < n else f"params[{i - n}]")
    return _regularize.penalty(gl, cparams, l1, l2)


def max_norm_(params, max_norm, axis=0):
    """Max-norm constraint, in place: every slice of a param along ``axis`` (the vector of its elements that
    differ only in that index; ``axis=None``: the whole array) whose 2-norm exceeds ``max_norm`` is rescaled,

        v <- v * max_norm / (||v|| + 1e-7)     if ||v|| > max_norm     (torch.renorm's rule)

    ``axis`` is the reduced axis, as in Keras ``MaxNorm(axis=0)``: for a dense weight of shape (in, out),
    ``axis=0`` bounds each output unit's incoming weight vector. Norms are accumulated in double.
    Returns ``params``."""
    max_norm = check_range(max_norm, "max_norm", 0.0, np.inf, low_open=True, high_open=True)
    pl, _ = _array_list(params, "params")
    shapes = []
    for i, p in enumerate(pl):
        check_inplace_array(p, f"params[{i}]")
        if axis is None:
            shapes.append(None)
            continue
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Invalid axis: expected an integer or None, got {axis!r}")
        if not -p.ndim <= axis < p.ndim:
            raise ValueError(f"Invalid axis {axis} for params[{i}] of shape {p.shape}")
        a = int(axis) % p.ndim
        shapes.append((int(np.prod(p.shape[:a], dtype=np.int64)), p.shape[a],
                       int(np.prod(p.shape[a + 1:], dtype=np.int64))))
    check_no_overlap(pl, lambda i: f"params[{i}]")
    for p, shp in zip(pl, shapes):
        if p.size == 0:
            continue
        if shp is None:
            flat = p.reshape(-1)
            norm = float(np.sqrt(np.dot(flat.astype(np.float64, copy=False), flat.astype(np.float64, copy=False))))
            if norm > max_norm:
                np.multiply(p, p.dtype.type(max_norm / (norm + 1e-7)), out=p)
        else:
            _regularize.max_norm(p, shp[0], shp[1], shp[2], max_norm)
    return params
