r"""``Muon``: momentum orthogonalised by Newton–Schulz iterations, for 2-D params (``torch.optim.Muon``'s semantics).

Not a spec-driven optimizer (its step is not element-wise): on ``NumpyOptimizer`` (groups, checks before writes,
state_dict), the momentum, decay and final update are in-place NumPy ufuncs and one fused fastopt kernel, the
orthogonalisation is BLAS matmuls (NumPy ``@``) on buffers kept between steps.
"""
import math

import numpy as np

from fastopt._validation import check_flag, check_nonnegative, check_range, is_integer
from fastopt.optim._numpy_optimizer import NumpyOptimizer
from fastopt.optim.optimizer import SCHEDULE_KEYS

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)     # torch's (Keller Jordan's) quintic
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
MAX_NS_STEPS = 100                                 # torch: "must be less than 100"


def adjusted_lr(lr, adjust_lr_fn, shape):
    """torch's ``_adjust_lr``: the lr that makes the orthogonalised update's RMS consistent across shapes."""
    rows, cols = shape
    if adjust_lr_fn == "match_rms_adamw":
        return lr * (0.2 * math.sqrt(max(rows, cols)))
    return lr * math.sqrt(max(1, rows / cols))


def checked_hypers(group, where):
    """(lr, weight_decay, momentum, nesterov, (a, b, c), eps, ns_steps, adjust_lr_fn) of a group, checked;
    ValueError/TypeError with the bad value otherwise."""
    unknown = set(group) - set(_DEFAULTS) - SCHEDULE_KEYS - {"params"}
    if unknown:
        raise TypeError(f"{where}: unknown hyperparameter(s) {sorted(unknown)} for Muon; expected "
                        f"{sorted(_DEFAULTS)}")
    missing = [k for k in _DEFAULTS if k not in group]
    if missing:
        raise ValueError(f"{where} has no {missing[0]!r} (a hyperparameter of Muon)")
    coefficients = group["ns_coefficients"]
    if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
        raise ValueError(f"Invalid ns_coefficients: expected a tuple of 3 floats, got {coefficients!r}")
    steps = group["ns_steps"]
    if not is_integer(steps):
        raise TypeError(f"Invalid ns_steps: expected an integer, got {type(steps).__name__} {steps!r}")
    if not 0 <= steps < MAX_NS_STEPS:
        raise ValueError(f"Invalid ns_steps: {steps} (expected 0 <= ns_steps < {MAX_NS_STEPS})")
    adjust = group["adjust_lr_fn"]
    if not (adjust is None or isinstance(adjust, str)) or adjust not in ADJUST_LR_FNS:
        raise ValueError(f"Invalid adjust_lr_fn: {adjust!r} (expected None, 'original' or 'match_rms_adamw')")
    return (check_nonnegative(group["lr"], "learning rate"),
            check_nonnegative(group["weight_decay"], "weight_decay value"),
            check_nonnegative(group["momentum"], "momentum value"),
            check_flag(group["nesterov"], "nesterov"),
            tuple(check_range(v, f"ns_coefficients (element {i})", -math.inf, math.inf, True, True)
                  for i, v in enumerate(coefficients)),
            check_nonnegative(group["eps"], "epsilon value"), int(steps), adjust)


_DEFAULTS = dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=NS_COEFFICIENTS,
                 eps=1e-7, ns_steps=5, adjust_lr_fn=None)


def lerp_(start, end, weight, out, scratch):
    """``out = torch.lerp(start, end, weight)`` with torch's two formulas (the one exact at its end);
    ``out`` is ``start`` or ``scratch``, ``scratch`` is distinct from ``start`` and ``end``."""
    np.subtract(end, start, out=scratch)
    if weight < 0.5:
        np.multiply(scratch, start.dtype.type(weight), out=scratch)
        np.add(start, scratch, out=out)
    else:
        np.multiply(scratch, 1 - start.dtype.type(weight), out=scratch)
        np.subtract(end, scratch, out=out)
    return out


class _Workspace:
    """The buffers of one step of a (rows, cols) param: ``update`` (the param's shape), the iterate ``x`` and
    its successor ``y`` (short side first, as torch transposes tall matrices), ``gram`` and ``poly`` (short x
    short). Kept between steps: fresh buffers cost a page fault per 4 KiB."""

    def __init__(self, shape, dtype):
        short, long = sorted(shape)
        self.update = np.empty(shape, dtype)
        self.x, self.y = np.empty((short, long), dtype), np.empty((short, long), dtype)
        self.gram, self.poly = np.empty((short, short), dtype), np.empty((short, short), dtype)


def orthogonalize(update, coefficients, steps, eps, work):
    """torch's ``_zeropower_via_newtonschulz`` in ``update``'s own dtype (torch casts to bfloat16): ``steps``
    iterations of X <- aX + (bA + cA^2)X, A = XX^T, from X = U / max(||U||_F, eps), U transposed if tall.
    Returns a view of ``work.x`` or ``work.y`` with ``update``'s shape."""
    a, b, c = coefficients
    tall = update.shape[0] > update.shape[1]
    source = update.T if tall else update
    x, y, gram, poly = work.x, work.y, work.gram, work.poly
    np.divide(source, max(np.linalg.norm(source), eps), out=x)
    for _ in range(steps):
        np.matmul(x, x.T, out=gram)
        np.matmul(gram, gram, out=poly)
        np.multiply(poly, c, out=poly)
        np.multiply(gram, b, out=gram)
        np.add(poly, gram, out=poly)                     # torch.addmm(gram, gram, gram, beta=b, alpha=c)
        np.matmul(poly, x, out=y)
        np.multiply(x, a, out=x)
        np.add(y, x, out=y)                              # torch.addmm(x, poly, x, beta=a)
        x, y = y, x
    return x.T if tall else x


def update_(p, g, buf, hypers, work):
    """The Muon update of one 2-D param (the class docstring's rule), in place on ``p`` and its momentum buffer
    ``buf``: ``hypers`` from ``checked_hypers``, ``work`` a ``_Workspace`` of p's shape and dtype. Checks
    nothing: the class and ``fastopt.functional.muon_`` check first. The one update of both."""
    lr, weight_decay, momentum, nesterov, coefficients, eps, steps, adjust = hypers
    lerp_(buf, g, 1 - momentum, out=buf, scratch=work.update)
    update = lerp_(g, buf, momentum, out=work.update, scratch=work.update) if nesterov else buf
    ortho = orthogonalize(update, coefficients, steps, eps, work)
    if lr * weight_decay != 0:
        np.multiply(p, 1 - lr * weight_decay, out=p)
    from fastopt.functional import sgd_       # here: fastopt.functional imports fastopt.optim
    sgd_(p, ortho, lr=adjusted_lr(lr, adjust, p.shape))


class Muon(NumpyOptimizer):
    r"""Muon (Jordan et al. 2024; ``torch.optim.Muon``'s names, defaults, checks and update order) for 2-D params.

    With :math:`\gamma` = lr, :math:`\lambda` = weight_decay, :math:`\mu` = momentum, :math:`(a, b, c)` =
    ns_coefficients, :math:`K` = ns_steps, :math:`\epsilon` = eps, a param :math:`\theta` of shape (A, B):

    .. math::
        B_t &\leftarrow B_{t-1} + (1 - \mu)(g_t - B_{t-1}) \qquad (B_0 = 0) \\
        U_t &\leftarrow g_t + \mu (B_t - g_t) \text{ (nesterov), else } B_t \\
        X_0 &\leftarrow U_t / \max(\lVert U_t \rVert_F, \epsilon) \quad (U_t^T \text{ if } A > B) \\
        X_{k+1} &\leftarrow a X_k + (b M_k + c M_k^2) X_k, \quad M_k = X_k X_k^T, \quad k < K \\
        O_t &\leftarrow X_K \quad (X_K^T \text{ if } A > B) \\
        \theta_t &\leftarrow \theta_{t-1} (1 - \gamma\lambda) - \gamma' O_t, \quad
            \gamma' = \gamma \sqrt{\max(1, A / B)} \text{ (adjust\_lr\_fn None, "original")}
            \text{ or } 0.2 \gamma \sqrt{\max(A, B)} \text{ ("match\_rms\_adamw")}

    The Newton–Schulz iterations run in the param's dtype (float32 or float64) through BLAS; torch runs them
    in bfloat16 (on the CPU too), whose rounding moves its update by up to ~3% of an element. Params must be
    2-D: put biases, norms and other params in a second optimizer, e.g. ``fastopt.AdamW``.

    State per param: ``momentum_buffer``.
    """

    counts_steps = False             # torch's Muon keeps no step count

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=NS_COEFFICIENTS, eps=1e-7, ns_steps=5, adjust_lr_fn=None):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        checked_hypers(defaults, "Muon")
        super().__init__(params, defaults)

    def _check_param(self, p, where):
        if p.ndim != 2:
            raise ValueError(f"{where} has shape {p.shape}: Muon steps 2-D params only; put the others (biases, "
                             "norms, ...) in a second optimizer, e.g. fastopt.AdamW")

    def _checked_hypers(self, group, where):
        return checked_hypers(group, where)

    def _checked_grad(self, i, p, grad, hypers):
        return self.dense_grad(i, p, grad)

    def _state_shapes(self, p):
        return {"momentum_buffer": p.shape}

    def _workspace(self, p):
        key = (p.shape, p.dtype)
        if key not in self._scratch:
            self._scratch[key] = _Workspace(p.shape, p.dtype)
        return self._scratch[key]

    def _update(self, i, p, g, state, hypers):
        update_(p, g, state["momentum_buffer"], hypers, self._workspace(p))
