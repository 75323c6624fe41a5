"""float64 NumPy references for the loss family, written from the published formulas (torch docs for the losses,
Steele et al. 2014 for splitmix64). Used only by tests and benchmarks.

Each loss returns (loss, grad) with fastopt's conventions: "mean"/"sum" give a float and d(loss)/dx, "none" gives
the per-element/per-row losses and d(sum of them)/dx; ``sample_weight`` (N,) makes "mean" a weighted average.
"""
import numpy as np


def _reduce(l, per_term_weight, reduction, denom):
    if reduction == "none":
        return l
    if reduction == "sum":
        return l.sum()
    return l.sum() / denom if denom != 0 else np.nan


def _sample_weights(x, sample_weight):
    """Per-element weights of an elementwise loss (sample axis 0) and the mean's denominator."""
    if sample_weight is None:
        return np.ones(x.shape), x.size
    sw = np.asarray(sample_weight, np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    w = np.broadcast_to(sw, x.shape)
    return w, w.sum()


def regression(kind, x, t, reduction="mean", sample_weight=None, delta=1.0):
    x = np.asarray(x, np.float64)
    t = np.asarray(t, np.float64)
    d = x - t
    if kind == "mse":
        l, dl = d * d, 2 * d
    elif kind == "mae":
        l, dl = np.abs(d), np.sign(d)
    elif kind == "huber":
        small = np.abs(d) <= delta
        l = np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
        dl = np.where(small, d, delta * np.sign(d))
    else:
        raise ValueError(kind)
    w, denom = _sample_weights(x, sample_weight)
    scale = 1.0 / denom if reduction == "mean" and denom != 0 else (0.0 if reduction == "mean" else 1.0)
    return _reduce(w * l, w, reduction, denom), dl * w * scale


def bce_with_logits(x, t, pos_weight=None, reduction="mean", sample_weight=None):
    """l = -[pw t log s(x) + (1 - t) log(1 - s(x))], with log s(x) = -logaddexp(0, -x)."""
    x = np.asarray(x, np.float64)
    t = np.asarray(t, np.float64)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    log_sig = -np.logaddexp(0.0, -x)
    log_one_minus = -np.logaddexp(0.0, x)
    l = -(pw * t * log_sig + (1 - t) * log_one_minus)
    sig = np.exp(log_sig)
    dl = (1 + (pw - 1) * t) * sig - pw * t
    w, denom = _sample_weights(x, sample_weight)
    scale = 1.0 / denom if reduction == "mean" and denom != 0 else (0.0 if reduction == "mean" else 1.0)
    return _reduce(w * l, w, reduction, denom), dl * w * scale


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_cross_entropy(x, target, class_weight=None, sample_weight=None, label_smoothing=0.0,
                          ignore_index=-100, reduction="mean"):
    """torch F.cross_entropy (2-D), plus fastopt's sample_weight (weighted average for "mean")."""
    x = np.asarray(x, np.float64)
    n, c = x.shape
    eps = label_smoothing
    lp = log_softmax(x)
    p = np.exp(lp)
    w = np.ones(c) if class_weight is None else np.asarray(class_weight, np.float64)
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    target = np.asarray(target)
    if target.dtype.kind in "iu":
        keep = target != ignore_index
        y = np.where(keep, target, 0)
        a = eps / c * w[None, :] * np.ones((n, c))
        a[np.arange(n), y] += (1 - eps) * w[y]
        a *= (sw * keep)[:, None]
        denom = (sw * w[y] * keep).sum()
    else:
        q = (1 - eps) * np.asarray(target, np.float64) + eps / c
        a = q * w[None, :] * sw[:, None]
        denom = sw.sum()
    l = -(a * lp).sum(axis=1)
    grad = p * a.sum(axis=1, keepdims=True) - a
    if reduction == "mean":
        return (l.sum() / denom if denom != 0 else np.nan), (grad / denom if denom != 0 else grad * 0)
    return (l.sum() if reduction == "sum" else l), grad


def hinge(x, y, margin=1.0, class_weight=None, sample_weight=None, reduction="mean"):
    """torch F.multi_margin_loss with p=1: l = w_y / C sum_{c != y} max(0, margin - x_y + x_c)."""
    x = np.asarray(x, np.float64)
    n, c = x.shape
    w = np.ones(c) if class_weight is None else np.asarray(class_weight, np.float64)
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    v = margin - x[np.arange(n), y][:, None] + x
    active = (v > 0)
    active[np.arange(n), y] = False
    f = (w[y] * sw / c)[:, None]
    l = (np.where(active, v, 0) * f).sum(axis=1)
    grad = active * f
    grad[np.arange(n), y] = -active.sum(axis=1) * f[:, 0]
    denom = sw.sum()
    if reduction == "mean":
        return l.sum() / denom, grad / denom
    return (l.sum() if reduction == "sum" else l), grad


def penalty(grads, params, l1, l2):
    """New grads and the penalty l1 sum|w| + l2/2 sum w^2."""
    new = [np.asarray(g, np.float64) + l1 * np.sign(p) + l2 * np.asarray(p, np.float64) for g, p in zip(grads, params)]
    value = sum(l1 * np.abs(np.asarray(p, np.float64)).sum() + 0.5 * l2 * (np.asarray(p, np.float64) ** 2).sum()
                for p in params)
    return new, value


def max_norm(w, max_norm_value, axis):
    w = np.asarray(w, np.float64)
    if axis is None:
        norm = np.sqrt((w * w).sum())
        return w * (max_norm_value / (norm + 1e-7)) if norm > max_norm_value else w.copy()
    norm = np.sqrt((w * w).sum(axis=axis, keepdims=True))
    return np.where(norm > max_norm_value, w * (max_norm_value / (norm + 1e-7)), w)


# ---------------------------------------------------------------------------------------------- dropout mask
_M64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15


def _mix64(z):
    """splitmix64's output function on uint64 arrays (wrapping arithmetic)."""
    z = z.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_keep(seed, n, p):
    """Boolean keep-mask of the first n elements for (seed, p), from the published splitmix64 definition."""
    key = _mix64(np.array([(seed + _GAMMA) & _M64], dtype=np.uint64))[0]
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = key + (i + np.uint64(1)) * np.uint64(_GAMMA)
    u = _mix64(z) >> np.uint64(32)
    threshold = int(np.ceil(p * 2.0 ** 32))
    return u >= np.uint64(threshold)
