r"""``Adafactor``: torch.optim.Adafactor's update (torch 2.13) over NumPy arrays, with a factored second moment."""
import math

import numpy as np

from fastopt import _optim
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

    Each param steps in one native call (``csrc/optim_adafactor.c``, GIL released) of three sweeps: sums of
    squares of the param and of the gradient's rows and columns; the factors' update and the sum of
    :math:`U_t^2`; the update, :math:`U_t` recomputed. 6 arrays of traffic, no :math:`\hat V_t` or :math:`U_t`
    materialized (torch's step makes both). Sums are in float64 over fixed blocks of rows, added in block order:
    the same bits at any thread count and on every instruction-set path. The only memory is the blocks' column
    partials (float64, one row of them per block of at least 64 rows and 8,192 elements; a param of 0 or 1 dims
    runs in blocks of 8,192 elements and needs none). Results agree with torch to rounding (float64 to ~1e-13, float32 to ~1e-6), not bit
    for bit: torch fuses ``lerp`` with FMA and sums in another order. One call per param: a ``KeyboardInterrupt``
    between two params' calls may leave a step applied to only some params (every check runs first).
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
    def _update(self, i, p, g, st, hp):
        update_(p, g, st, int(st["step"]), hp)


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


def update_(p, g, state, step, hp):
    """The Adafactor update of one param (the class docstring's rule), in place on ``p`` and ``state`` (its
    ``row_var``/``col_var`` or ``variance``): ``step`` is the param's 1-based step count, ``hp`` from
    ``checked_hypers`` with ``eps1`` a float. One native call (``csrc/optim_adafactor.c``); checks nothing: the
    class and ``adafactor_`` check first. The one update of ``Adafactor.step`` and
    ``fastopt.functional.adafactor_``."""
    if p.size == 0:
        return
    step = float(step)
    lr = hp["lr"]
    _optim.adafactor_step(p, g, state, step ** hp["beta2_decay"], min(lr, 1 / step ** 0.5), hp["eps1"],
                          hp["eps2"], hp["d"], 1 - lr * hp["weight_decay"], hp["maximize"])
