r"""Gradient clipping over a list of arrays, in place: ``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm``.

Semantics follow ``torch.nn.utils``; ``grads`` is the list of gradient arrays passed to ``opt.step(grads)``
(``None`` entries are skipped, as torch skips params without ``.grad``). Each call checks every array first
(float32/float64 ndarray; for the in-place functions writeable, C-contiguous, aligned, native byte order, no two
sharing memory), so an error leaves every array unchanged. The norm is one multi-array pass per dtype present,
accumulated in double; scaling and clamping are one pass each.

>>> import numpy as np, fastopt
>>> grads = [np.full(3, 3.0), np.full(1, 4.0)]
>>> total = fastopt.clip_grad_norm_(grads, max_norm=1.0)     # sqrt(3 * 9 + 16)
"""
import math

from fastopt import _reduce
from fastopt._validation import as_real, check_flag

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]

_NONFINITE = ("The total norm of order {p} for gradients is non-finite, so it cannot be clipped. To disable this "
              "error and scale the gradients by the non-finite norm anyway, set error_if_nonfinite=False")


def _check_norm_type(norm_type):
    p = as_real(norm_type, "norm_type")
    if not (p > 0.0):
        raise ValueError(f"Invalid norm_type: {norm_type!r} (expected a positive number or inf)")
    return p


def get_total_norm(arrays, norm_type=2.0, error_if_nonfinite=False):
    r"""Global ``norm_type``-norm of all arrays, as a float (``torch.nn.utils.get_total_norm``).

    .. math:: \|g\|_p = \Big(\sum_k \sum_i |g_{k,i}|^p\Big)^{1/p},\qquad \|g\|_\infty = \max_{k,i} |g_{k,i}|

    which equals torch's norm of the per-array norms. Sums run in double whatever the dtype (torch sums float32
    arrays in float32, so the two agree to float32 rounding); the result has the same bits at any thread count (one
    blocked reduction, csrc/blocked_sum.h) and agrees across instruction-set paths to a relative ~1e-15 (exactly
    for inf). ``arrays`` are only read: read-only arrays are fine, non-contiguous or byte-swapped
    ones are copied once. ``None`` entries are skipped; no arrays gives 0.0. NaN anywhere gives NaN.

    ``norm_type``: any p > 0, or ``math.inf``. (torch also accepts 0, negative p and -inf; fastopt raises
    ValueError for them.) ``error_if_nonfinite=True`` raises RuntimeError (as torch) if the norm is inf or NaN.
    """
    p = _check_norm_type(norm_type)
    error_if_nonfinite = check_flag(error_if_nonfinite, "error_if_nonfinite")
    total = _reduce.ArrayBatch(arrays, "arrays", False).norm(p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(_NONFINITE.format(p=p))
    return total


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    r"""Scales ``grads`` in place so that their global norm is at most ``max_norm``; returns the norm before clipping.

    As ``torch.nn.utils.clip_grad_norm_``:

    .. math::
        N = \|g\|_p \text{ (see get_total_norm)},\qquad c = \min\Big(1, \frac{\text{max\_norm}}{N + 10^{-6}}\Big),
        \qquad g_{k} \leftarrow c\, g_{k}

    ``c`` is computed in double and rounded to each array's dtype before the multiply. torch multiplies by the
    clamped coefficient always; multiplying by exactly 1.0 changes nothing, so fastopt skips that pass. A NaN norm
    makes ``c`` NaN and every gradient NaN, as in torch; an infinite norm gives ``c = 0``.

    grads: list of float32/float64 arrays, modified in place: each must be a writeable, C-contiguous, aligned,
    native byte-order ndarray (ValueError otherwise, never a silent copy), no two sharing memory; None entries are
    skipped. Mixed dtypes are allowed (one pass per dtype).
    max_norm: a real >= 0 (inf: never clip). norm_type: p > 0 or ``math.inf``.
    error_if_nonfinite: if True and the norm is inf or NaN, raise RuntimeError (as torch) before writing anything.

    Returns the total norm as a Python float (torch returns a 0-d tensor).
    """
    max_norm_f = as_real(max_norm, "max_norm")
    if not (max_norm_f >= 0.0):
        raise ValueError(f"Invalid max_norm: {max_norm!r} (expected a real number >= 0)")
    p = _check_norm_type(norm_type)
    error_if_nonfinite = check_flag(error_if_nonfinite, "error_if_nonfinite")
    batch = _reduce.ArrayBatch(grads, "grads", True)
    total = batch.norm(p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(_NONFINITE.format(p=p))
    coef = max_norm_f / (total + 1e-6)
    if coef > 1.0:                       # clamp(max=1); a NaN coefficient stays NaN, as in torch
        coef = 1.0
    if coef != 1.0:
        batch.scale(coef)
    return total


def clip_grad_value_(grads, clip_value):
    r"""Clamps every gradient element in place to ``[-clip_value, clip_value]`` (``torch.nn.utils.clip_grad_value_``).

    .. math:: g_{k,i} \leftarrow \min(\max(g_{k,i}, -v), v)

    NaN stays NaN. ``clip_value`` must be a real >= 0 (torch accepts negative values; fastopt raises ValueError),
    rounded to each array's dtype. ``grads`` as in :func:`clip_grad_norm_`.
    """
    v = as_real(clip_value, "clip_value")
    if not (v >= 0.0):
        raise ValueError(f"Invalid clip_value: {clip_value!r} (expected a real number >= 0)")
    batch = _reduce.ArrayBatch(grads, "grads", True)
    if v != math.inf:
        batch.clamp(-v, v)
