"""Losses that return ``(loss, grad)`` from one fused pass (the penalties live in :mod:`fastopt.regularize`).

Every loss takes float32 or float64 arrays (all arrays of one call one dtype), computes the loss and the gradient
with respect to its first argument in one kernel call (one read of the inputs, one write of the gradient), and
returns ``(loss, grad)``:

* ``reduction="mean"`` (default) or ``"sum"``: ``loss`` is a Python float (accumulated in double);
  ``"none"``: ``loss`` is an array of per-element (regression, BCE) or per-row (cross-entropy, hinge) losses.
* ``grad`` is d(loss)/d(input) for ``"mean"`` and ``"sum"``, and d(loss.sum())/d(input) for ``"none"``
  (the gradient for an upstream gradient of ones, as torch's backward of ``loss.sum()``).
* ``grad_out=`` writes the gradient into a preallocated writeable C-contiguous array (no allocation, no page
  faults; reuse it across steps). It must not share memory with any input.
* Inputs that are not C-contiguous, aligned and in native byte order are copied once (shape kept, 0-d too).

Weights. ``sample_weight`` (shape ``(N,)``, one weight per sample along the first axis) multiplies every loss
term of its sample, and ``"mean"`` becomes the weighted average ``sum(w l) / sum(w)`` over the terms (each of the
``n / N`` elements of a sample counts with its sample's weight) -- torch's rule for class weights in
``F.cross_entropy`` and scikit-learn's ``np.average(loss, weights=sample_weight)``. Without weights every loss
matches torch. When the weights that a mean divides by sum to 0 (every target ignored, all weights 0, or an empty
batch) the loss is NaN, as in torch, and the gradient is 0.

Weights are checked: NaN, infinite or negative weights raise ``ValueError``; so do labels out of range, targets of
the wrong shape, a wrong ``reduction``; a dtype mix raises ``TypeError``. Every check runs before anything is
written.

Threads: kernels use ``fastopt.get_num_threads()`` threads above ``fastopt.parallel_min_elements()`` elements.
Gradients are bit-identical at any thread count; loss values too (fixed-block reductions in double).
"""
import numpy as np

from fastopt import _loss
from fastopt._validation import (as_real, check_disjoint, check_inplace_array, check_range,
                                 check_same_dtype, check_same_shape, input_array, kernel_array)

__all__ = ["mse", "mae", "huber", "softmax_cross_entropy", "binary_cross_entropy_with_logits", "hinge",
           "add_penalty_grad_", "max_norm_"]

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------------------------- validation helpers
def _reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Invalid reduction: {reduction!r} (expected one of {list(_REDUCTIONS)})")
    return reduction


def _input(a, name):
    """A float32/float64 array the kernels read: itself, or one C-contiguous, aligned, native copy (same shape)."""
    return input_array(a, name)


def _like(a, ref, name_ref, name):
    """``a`` as an input of ``ref``'s dtype and shape."""
    a = _input(a, name)
    check_same_dtype(ref, a, name_ref, name)
    check_same_shape(ref, a, name_ref, name)
    return a


def _weights(w, dtype, length, name):
    """None, or a 1-D array of ``length`` finite non-negative weights of ``dtype``."""
    if w is None:
        return None
    if not isinstance(w, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of dtype {dtype}, got {type(w).__name__}")
    w = _input(w, name)
    if w.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the dtype of the input), got {w.dtype}")
    if w.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},), got {w.shape}")
    if w.size and not (np.isfinite(w).all() and (w >= 0).all()):
        bad = w[~(np.isfinite(w) & (w >= 0))][0]
        raise ValueError(f"{name}: weights must be finite and >= 0, got {bad}")
    return w


def _grad_out(grad_out, x, name_x, inputs, names):
    """A fresh gradient array, or ``grad_out`` checked: writeable, C-contiguous, dtype and shape of x, no overlap."""
    if grad_out is None:
        return np.empty(x.shape, dtype=x.dtype)
    check_inplace_array(grad_out, "grad_out")
    check_same_dtype(x, grad_out, name_x, "grad_out")
    check_same_shape(x, grad_out, name_x, "grad_out")
    check_disjoint([grad_out], ["grad_out"], list(inputs), list(names))
    return grad_out


def _finish(total, denom, reduction, loss_out):
    if reduction == "none":
        return loss_out
    if reduction == "sum":
        return float(total)
    return float(total) / denom if denom != 0 else float("nan")


def _scale(reduction, denom):
    """Gradient scale: 1 / denom for a mean (0 when denom is 0: the gradient of a NaN mean is reported as 0)."""
    if reduction != "mean":
        return 1.0
    return 1.0 / denom if denom != 0 else 0.0


# ---------------------------------------------------------------------------------------------- elementwise losses
def _sample_view(x, sw):
    """(rows, cols, row_weight, row_rep, col_weight) of the kernel's view of x with per-sample weights sw."""
    n = x.size
    if sw is None:
        return 1, n, None, 1, None
    if x.ndim == 1:
        return 1, n, None, 1, sw
    return x.shape[0], n // x.shape[0], sw, 1, None


def _elementwise(kind, input, target, reduction, sample_weight, grad_out, delta=1.0, pos_weight=None):
    if sample_weight is None and pos_weight is None:
        fast = _loss.try_elementwise(kind, input, target, reduction, grad_out, delta)   # checked in C
        if fast is not None:
            return fast
    reduction = _reduction(reduction)
    x = _input(input, "input")
    t = _like(target, x, "input", "target")
    if sample_weight is not None and x.ndim == 0:
        raise ValueError("sample_weight: needs an input with a first (sample) axis")
    sw = _weights(sample_weight, x.dtype, x.shape[0] if x.ndim else 0, "sample_weight")
    pw, pws = None, 1.0
    if kind == _loss.BCE and pos_weight is not None:
        if isinstance(pos_weight, np.ndarray) and pos_weight.ndim > 0 and pos_weight.size > 1:
            k = x.shape[-1] if x.ndim else 1
            pw = _weights(pos_weight, x.dtype, k, "pos_weight")
        else:
            pws = float(np.asarray(pos_weight, dtype=np.float64).reshape(-1)[0]) \
                if isinstance(pos_weight, np.ndarray) else as_real(pos_weight, "pos_weight")
            if not (np.isfinite(pws) and pws >= 0):
                raise ValueError(f"pos_weight: weights must be finite and >= 0, got {pos_weight}")
    g = _grad_out(grad_out, x, "input", [x, t, sw, pw], ["input", "target", "sample_weight", "pos_weight"])
    n = x.size
    loss_out = np.empty(x.shape, dtype=x.dtype) if reduction == "none" else None
    denom = float(n) if sw is None else float(sw.sum(dtype=np.float64)) * (n // max(sw.size, 1))
    if n == 0:
        return _finish(0.0, denom, reduction, loss_out), g
    if pw is not None:
        k = pw.size
        rows = n // k
        if sw is None:
            view = (rows, k, None, 1, None)
        elif x.ndim == 1:
            view = (1, k, None, 1, sw)
        else:
            view = (rows, k, sw, rows // x.shape[0], None)
    else:
        view = _sample_view(x, sw)
    rows, cols, row_w, row_rep, col_w = view
    total = _loss.elementwise(kind, x, t, rows, cols, row_w, row_rep, col_w, pw, pws, delta,
                              _scale(reduction, denom), loss_out, g)
    return _finish(total, denom, reduction, loss_out), g


def mse(input, target, *, reduction="mean", sample_weight=None, grad_out=None):
    """Squared error (torch ``F.mse_loss``): l = (x - t)^2, dl/dx = 2 (x - t); mean over all elements.

    Returns ``(loss, grad)`` from one pass reading x and t and writing grad (see the module docstring)."""
    return _elementwise(_loss.MSE, input, target, reduction, sample_weight, grad_out)


def mae(input, target, *, reduction="mean", sample_weight=None, grad_out=None):
    """Absolute error (torch ``F.l1_loss``): l = |x - t|, dl/dx = sign(x - t) (0 where x == t)."""
    return _elementwise(_loss.MAE, input, target, reduction, sample_weight, grad_out)


def huber(input, target, delta=1.0, *, reduction="mean", sample_weight=None, grad_out=None):
    """Huber loss (torch ``F.huber_loss``), with d = x - t:
    l = d^2 / 2 if |d| <= delta else delta (|d| - delta / 2);  dl/dx = d if |d| <= delta else delta sign(d)."""
    delta = check_range(delta, "delta", 0.0, np.inf, low_open=True, high_open=True)
    return _elementwise(_loss.HUBER, input, target, reduction, sample_weight, grad_out, delta=delta)


def binary_cross_entropy_with_logits(input, target, *, pos_weight=None, reduction="mean", sample_weight=None,
                                     grad_out=None):
    """Logistic loss on logits x with targets t in [0, 1] (torch ``F.binary_cross_entropy_with_logits``):

    l = -[pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]
      = (1 + (pw - 1) t) log1p(exp(-|x|)) + ((1 - t) x if x >= 0 else -x pw t)    (stable for any |x|)
    dl/dx = (1 + (pw - 1) t) sigmoid(x) - pw t

    ``pos_weight``: a scalar or an array of shape (C,) broadcast along the last axis (torch's rule), >= 0.
    Targets are not range-checked (as torch)."""
    return _elementwise(_loss.BCE, input, target, reduction, sample_weight, grad_out, pos_weight=pos_weight)


# ---------------------------------------------------------------------------------------------- row-wise losses
def _logits_and_target(logits, target, allow_probs=True):
    """(x 2-D, labels int64 or None, probs or None, squeeze) for logits (N, C) or (C,)."""
    x = _input(logits, "logits")
    if x.ndim not in (1, 2):
        raise ValueError(f"logits: expected shape (N, C) or (C,), got {x.shape} (move the class axis last and "
                         "reshape to 2-D for spatial inputs)")
    squeeze = x.ndim == 1
    if squeeze:
        x = x.reshape(1, -1)
    if x.shape[1] == 0:
        raise ValueError("logits: need at least one class")
    t = target if isinstance(target, np.ndarray) else np.asarray(target)
    if t.dtype.kind in "iu":
        want = () if squeeze else (x.shape[0],)
        if t.shape != want:
            raise ValueError(f"target: class labels of shape {want} expected for logits of shape "
                             f"{tuple(logits.shape)}, got {t.shape}")
        return x, kernel_array(t.reshape(-1), np.int64), None, squeeze
    if t.dtype.kind == "f" and allow_probs:
        if t.dtype.newbyteorder("=") != x.dtype:
            raise TypeError(f"target: probabilities must have the dtype of logits ({x.dtype}), got {t.dtype}")
        if t.shape != tuple(logits.shape):
            raise ValueError(f"target: probabilities must have the shape of logits {tuple(logits.shape)}, "
                             f"got {t.shape}")
        return x, None, _input(t, "target").reshape(x.shape), squeeze
    kinds = "integer class labels" + (" or float probabilities" if allow_probs else "")
    raise TypeError(f"target: expected {kinds}, got dtype {t.dtype}")


def _check_labels(labels, classes, ignore_index, cw, sw, dtype):
    bad, wsum, counted = _loss.check_labels(labels, classes, ignore_index, cw, sw,
                                             np.dtype(dtype).num)
    if bad >= 0:
        extra = "" if ignore_index == _loss.NO_IGNORE else f" or equal to ignore_index={ignore_index}"
        raise ValueError(f"target[{bad}] = {labels[bad]} is not a valid class label: expected 0 <= label < "
                         f"{classes}{extra}")
    return wsum, counted


def softmax_cross_entropy(logits, target, *, class_weight=None, sample_weight=None, label_smoothing=0.0,
                          ignore_index=-100, reduction="mean", grad_out=None):
    """Softmax cross-entropy on logits x (N, C) (torch ``F.cross_entropy``), loss and gradient in one fused pass.

    Per row, with z = x - max(x) (no overflow for any logits), s = sum_c exp(z_c), p = exp(z) / s and
    log p_c = z_c - log s, for a target distribution q (eps = label_smoothing, w = class_weight or 1):

    * integer labels y: q = (1 - eps) onehot(y) + eps / C;  l = -sum_c w_c' q_c log p_c with the target term
      weighted by w_y and the smoothing terms by w_c (torch's rule); rows with y == ignore_index give 0 and are
      left out of the mean; "mean" divides by sum over counted rows of w_y (times sample_weight);
    * probabilities t (N, C): q = (1 - eps) t + eps / C;  l = -sum_c w_c q_c log p_c;  "mean" divides by N.

    With a_c the weighted q of the row and A = sum_c a_c:  l = A log s - sum_c a_c z_c,  dl/dx_c = p_c A - a_c.
    Returns ``(loss, grad)``; grad has the shape of logits. Labels out of range raise ValueError.
    """
    if class_weight is None and sample_weight is None and type(label_smoothing) in (int, float) \
            and label_smoothing == 0 and reduction == "mean":
        fast = _loss.try_softmax_ce(logits, target, grad_out, ignore_index)     # checked in C; None: see below
        if fast is not None:
            return fast
    reduction = _reduction(reduction)
    eps = check_range(label_smoothing, "label_smoothing", 0.0, 1.0)
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"Invalid ignore_index: expected an integer, got {ignore_index!r}")
    x, labels, probs, squeeze = _logits_and_target(logits, target)
    n, c = x.shape
    cw = _weights(class_weight, x.dtype, c, "class_weight")
    sw = _weights(sample_weight, x.dtype, n, "sample_weight")
    g = _grad_out(grad_out, x.reshape(np.shape(logits)), "logits", [x, labels, probs, cw, sw],
                  ["logits", "target", "target", "class_weight", "sample_weight"])
    cw_sum = float(cw.sum(dtype=np.float64)) if cw is not None else float(c)
    if labels is not None:
        wsum, _ = _check_labels(labels, c, int(ignore_index), cw, sw, x.dtype)
        denom = wsum
        alpha, beta, keep, unif = 1.0 - eps, eps / c, 0.0, 0.0
    else:
        denom = float(sw.sum(dtype=np.float64)) if sw is not None else float(n)
        alpha, beta, keep, unif = 1.0, 0.0, 1.0 - eps, eps / c
    scale = _scale(reduction, denom)
    loss_out = np.empty(n, dtype=x.dtype) if reduction == "none" else None
    total = _loss.rows_loss(False, x, n, c, labels, probs, cw, sw, int(ignore_index), alpha * scale, beta * scale,
                            keep, unif, cw_sum, 0.0, loss_out, g.reshape(n, c))
    if reduction == "mean":
        loss = float(total) if denom != 0 else float("nan")
    else:
        loss = float(total) if reduction == "sum" else (loss_out[0] if squeeze else loss_out)
    return loss, g


def hinge(logits, target, *, margin=1.0, class_weight=None, sample_weight=None, reduction="mean", grad_out=None):
    """Multi-class hinge loss (torch ``F.multi_margin_loss`` with p=1) on logits x (N, C), labels y:

    l = w_y / C * sum_{c != y} max(0, margin - x_y + x_c);  dl/dx_c = w_y / C for each active term c,
    dl/dx_y = -(number of active terms) w_y / C.  "mean" divides by N (torch) or by sum(sample_weight)."""
    if class_weight is None and sample_weight is None:
        fast = _loss.try_hinge(logits, target, grad_out, margin, reduction)     # checked in C; None: see below
        if fast is not None:
            return fast
    reduction = _reduction(reduction)
    margin = check_range(margin, "margin", -np.inf, np.inf, low_open=True, high_open=True)
    x, labels, _, squeeze = _logits_and_target(logits, target, allow_probs=False)
    n, c = x.shape
    cw = _weights(class_weight, x.dtype, c, "class_weight")
    sw = _weights(sample_weight, x.dtype, n, "sample_weight")
    g = _grad_out(grad_out, x.reshape(np.shape(logits)), "logits", [x, labels, cw, sw],
                  ["logits", "target", "class_weight", "sample_weight"])
    _check_labels(labels, c, _loss.NO_IGNORE, None, None, x.dtype)
    denom = float(sw.sum(dtype=np.float64)) if sw is not None else float(n)
    scale = _scale(reduction, denom)
    loss_out = np.empty(n, dtype=x.dtype) if reduction == "none" else None
    total = _loss.rows_loss(True, x, n, c, labels, None, cw, sw, _loss.NO_IGNORE, scale, 0.0, 0.0, 0.0, 0.0,
                            margin, loss_out, g.reshape(n, c))
    if reduction == "mean":
        loss = float(total) if denom != 0 else float("nan")
    else:
        loss = float(total) if reduction == "sum" else (loss_out[0] if squeeze else loss_out)
    return loss, g


# The penalties moved to fastopt.regularize (their own kernel family); kept here under their old names.
from fastopt.regularize import add_penalty_grad_, max_norm_  # noqa: E402,F401
