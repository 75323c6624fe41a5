r"""``Adafactor``: torch.optim.Adafactor's update (torch 2.13) over NumPy arrays, with a factored second moment."""
import math

import numpy as np

from fastopt._validation import check_flag, check_nonnegative, check_range
from fastopt.optim._numpy_optimizer import NumpyOptimizer


class Adafactor(NumpyOptimizer):
    r"""Adafactor (Shazeer & Stern, 2018) as ``torch.optim.Adafactor``: a second moment factored into row and column
    means for params of 2+ dims (over the last two), relative step sizes, update clipping, decoupled weight decay.

    ``Adafactor(params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, *, maximize=False)``.
    With :math:`t` the param's step count, :math:`g_t` the gradient (negated if ``maximize``), :math:`\gamma` = lr,
    :math:`\tau` = beta2_decay, :math:`(\epsilon_1, \epsilon_2)` = eps (:math:`\epsilon_1` = None: the machine
    epsilon of the dtype of the group's first param with a gradient, as torch), :math:`\lambda` = weight_decay,
    :math:`\mathrm{RMS}(x) = \lVert x \rVert_2 / \sqrt{\mathrm{numel}(x)}`:

    .. math::
        w_t &\leftarrow t^{\tau} \qquad (= 1 - \hat\beta_{2,t}) \\
        \rho_t &\leftarrow \min(\gamma, 1/\sqrt{t}), \qquad
            \alpha_t \leftarrow \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\,\rho_t \\
        \theta &\leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
        \text{2+ dims:}\quad R_t &\leftarrow \mathrm{lerp}(R_{t-1}, \mathrm{mean}_{-1}(g_t^2), w_t), \quad
            C_t \leftarrow \mathrm{lerp}(C_{t-1}, \mathrm{mean}_{-2}(g_t^2), w_t), \quad
            \hat V_t \leftarrow \frac{R_t C_t}{\max(\mathrm{mean}_{-2}(R_t), \epsilon_1)} \\
        \text{0, 1 dims:}\quad \hat V_t &\leftarrow \mathrm{lerp}(\hat V_{t-1}, g_t^2, w_t) \\
        U_t &\leftarrow g_t / \sqrt{\max(\hat V_t, \epsilon_1^2)}, \qquad
            \theta_t \leftarrow \theta - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t)/d)}\, U_t

    where :math:`\mathrm{lerp}(a, b, w) = a + w(b - a)` (torch's ``lerp_``; at :math:`t = 1`, :math:`w = 1`) and
    :math:`R_t C_t` is the outer product over the last two dims. State per param: ``step``, and ``row_var`` (shape
    ``(..., rows, 1)``) and ``col_var`` (``(..., 1, cols)``) for 2+ dims, else ``variance`` (the param's shape): for
    a (4096, 4096) float32 param 32 KiB against Adam's 128 MiB. An empty param only counts its steps (torch divides
    by zero there).

    The step runs NumPy ufuncs and reductions with ``out=`` on one work buffer per dtype, the size of the largest
    param, made at the first step and kept (torch's step also materializes the full :math:`\hat V_t`); the sums
    of squares are BLAS dot products and ``einsum`` reductions in the param's dtype. Results agree with torch to
    rounding (float64 to ~1e-13, float32 to ~1e-6), not bit for bit: torch fuses ``lerp`` with FMA and sums in
    another order. A ``KeyboardInterrupt`` during a step may leave that step half done (checks all run first).
    """

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                                      maximize=maximize))

    # ------------------------------------------------------------------ checks
    def _checked_hypers(self, group, where):
        """A group's hyperparameters (torch's checks; ValueError/TypeError naming the bad one, with its value)."""
        self._known_keys(group, where)
        return checked_hypers(group, where)

    def _checked_grad(self, i, p, grad, hp):
        g = self.dense_grad(i, p, grad)
        if hp["eps1"] is None:        # torch: eps1 from the dtype of the first param of the group with a gradient
            hp["eps1"] = float(np.finfo(p.dtype).eps)
        return g

    def _state_shapes(self, p):
        return state_shapes(p)

    # ------------------------------------------------------------------ step
    def _work(self, p):
        """The work buffer (param's shape and dtype), a view of one flat buffer per dtype sized to the largest
        param of that dtype, made once."""
        flat = self._scratch.get(p.dtype)
        if flat is None or flat.size < p.size:
            size = max(q.size for q in self._params if q.dtype == p.dtype)
            flat = self._scratch[p.dtype] = np.empty(size, dtype=p.dtype)
        return flat[:p.size].reshape(p.shape)

    def _update(self, i, p, g, st, hp):
        small = None
        if p.ndim >= 2:
            small = self._scratch.get(("small", i))
            if small is None:
                small = self._scratch[("small", i)] = small_buffers(p)
        update_(p, g, st, int(st["step"]), hp, self._work(p), small)


def checked_hypers(group, where):
    """{lr, beta2_decay, eps1 (None or a float), eps2, d, weight_decay, maximize} of ``group`` (a dict with
    Adafactor's hyperparameter names), checked as torch does: ValueError/TypeError naming the bad one and
    ``where``. The one check of the class and of ``fastopt.functional.adafactor_``."""
    eps = group["eps"]
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise TypeError(f"{where}: Invalid eps: expected a tuple (epsilon1 or None, epsilon2), got {eps!r}")
    try:
        return {"lr": check_nonnegative(group["lr"], "learning rate"),
                "beta2_decay": check_range(group["beta2_decay"], "beta2_decay (must be <= 0)", -math.inf, 0.0,
                                           low_open=True),
                "eps1": None if eps[0] is None else check_nonnegative(eps[0], "epsilon1 (eps[0])"),
                "eps2": check_nonnegative(eps[1], "epsilon2 (eps[1])"),
                "d": check_range(group["d"], "clipping threshold d (must be >= 1)", 1.0, math.inf,
                                 high_open=True),
                "weight_decay": check_nonnegative(group["weight_decay"], "weight_decay value"),
                "maximize": check_flag(group["maximize"], "maximize")}
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def state_shapes(p):
    """{state name: shape} of a param: ``row_var`` (..., rows, 1) and ``col_var`` (..., 1, cols) for 2+ dims,
    else ``variance`` (the param's shape)."""
    if p.ndim < 2:
        return {"variance": p.shape}
    return {"row_var": p.shape[:-1] + (1,), "col_var": p.shape[:-2] + (1, p.shape[-1])}


def small_buffers(p):
    """The work buffers of the factored step of a 2+-dim param: row and column means of g^2, the mean of the row
    factor, and scratches of the row and column factors' shapes (never part of the state)."""
    shapes = state_shapes(p)
    return (np.empty(shapes["row_var"], p.dtype), np.empty(shapes["col_var"], p.dtype),
            np.empty(p.shape[:-2] + (1, 1), p.dtype), np.empty(shapes["row_var"], p.dtype),
            np.empty(shapes["col_var"], p.dtype))


def update_(p, g, state, step, hp, work, small):
    """The Adafactor update of one param (the class docstring's rule), in place on ``p`` and ``state`` (its
    ``row_var``/``col_var`` or ``variance``): ``step`` is the param's 1-based step count, ``hp`` from
    ``checked_hypers`` with ``eps1`` a float, ``work`` a buffer of p's shape and dtype, ``small`` from
    ``small_buffers(p)`` (2+ dims; else None). Checks nothing: the class and ``adafactor_`` check first. The one
    update of ``Adafactor.step`` and ``fastopt.functional.adafactor_``."""
    if p.size == 0:
        return
    step = float(step)
    lr, eps1 = hp["lr"], hp["eps1"]
    w = step ** hp["beta2_decay"]
    rho = min(lr, 1 / step ** 0.5)
    alpha = max(hp["eps2"], math.sqrt(_sum_squares(p)) / p.size ** 0.5) * rho
    if hp["weight_decay"] != 0:
        np.multiply(p, 1 - lr * hp["weight_decay"], out=p)
    if p.ndim >= 2:
        _factored_estimate(g, state["row_var"], state["col_var"], w, eps1, small, work)
    else:
        _full_estimate(g, state["variance"], w, work)
    np.maximum(work, eps1 * eps1, out=work)            # U = g / sqrt(max(V, eps1^2)), as torch's rsqrt * g
    np.sqrt(work, out=work)
    np.divide(1, work, out=work)
    np.multiply(work, g, out=work)
    denom = max(1.0, math.sqrt(_sum_squares(work)) / (work.size ** 0.5 * hp["d"]))
    scale = -alpha / denom
    np.multiply(work, -scale if hp["maximize"] else scale, out=work)     # maximize: U of -g is -U
    np.add(p, work, out=p)


def _sum_squares(a):
    """sum(a**2) as a float, with no temporary (a BLAS dot product in a's dtype)."""
    flat = a.reshape(-1)
    return float(np.dot(flat, flat))


def _lerp_(a, b, w, tmp):
    """a <- torch's lerp(a, b, w) in a's dtype: a + w(b - a) for |w| < 0.5, else b - (b - a)(1 - w)."""
    w = a.dtype.type(w)
    np.subtract(b, a, out=tmp)
    if abs(w) < 0.5:
        np.multiply(tmp, w, out=tmp)
        np.add(a, tmp, out=a)
    else:
        np.multiply(tmp, a.dtype.type(1) - w, out=tmp)
        np.subtract(b, tmp, out=a)


def _factored_estimate(g, row_var, col_var, w, eps1, small, out):
    """Updates row_var, col_var from g and writes V = row_var col_var / max(mean(row_var), eps1) into ``out``."""
    row_mean, col_mean, row_var_mean, row_tmp, col_tmp = small
    n_rows, n_cols = g.shape[-2], g.shape[-1]
    np.einsum("...ij,...ij->...i", g, g, out=row_mean.reshape(row_mean.shape[:-1]))
    np.einsum("...ij,...ij->...j", g, g, out=col_mean.reshape(col_mean.shape[:-2] + (n_cols,)))
    for mean, n in ((row_mean, n_cols), (col_mean, n_rows)):     # torch: norm(g, dim)^2 / n
        np.sqrt(mean, out=mean)
        np.square(mean, out=mean)
        np.divide(mean, n, out=mean)
    _lerp_(row_var, row_mean, w, row_tmp)
    _lerp_(col_var, col_mean, w, col_tmp)
    np.multiply(row_var, col_var, out=out)
    np.add.reduce(row_var, axis=-2, keepdims=True, out=row_var_mean)
    np.divide(row_var_mean, n_rows, out=row_var_mean)
    np.maximum(row_var_mean, eps1, out=row_var_mean)
    np.divide(out, row_var_mean, out=out)


def _full_estimate(g, variance, w, out):
    """variance <- lerp(variance, g^2, w), copied into ``out`` (torch clones it before the update)."""
    w = variance.dtype.type(w)
    np.multiply(g, g, out=out)
    np.subtract(out, variance, out=out)
    if abs(w) < 0.5:
        np.multiply(out, w, out=out)
        np.add(variance, out, out=variance)
    else:
        np.multiply(out, variance.dtype.type(1) - w, out=out)
        np.multiply(g, g, out=variance)
        np.subtract(variance, out, out=variance)
    np.copyto(out, variance)
