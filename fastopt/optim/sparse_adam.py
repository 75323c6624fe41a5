r"""``SparseAdam``: torch.optim.SparseAdam's lazy Adam (torch 2.13) for row-sparse gradients over NumPy arrays."""
import math

import numpy as np

from fastopt._validation import check_betas, check_flag, check_range, input_array
from fastopt.optim._numpy_optimizer import NumpyOptimizer


class SparseAdam(NumpyOptimizer):
    r"""Lazy Adam for row-sparse gradients, as ``torch.optim.SparseAdam`` (e.g. for an embedding table): only the rows
    present in a gradient are updated, in the param and in both moments.

    ``SparseAdam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False)``; params are 2-D (n_rows, n_cols).
    A gradient is a pair ``(indices, rows)``: integer ``indices`` of shape (k,) in [0, n_rows) and ``rows`` of shape
    (k, n_cols), the param's dtype (torch's sparse COO gradient ``sparse_coo_tensor(indices[None], rows)``); ``None``
    skips the param. Repeated indices are summed first (torch's ``coalesce``). With :math:`t` the param's step count
    (advanced at every step with a gradient, an empty one too), :math:`g` the coalesced rows (negated if
    ``maximize``) at unique indices :math:`I`, :math:`\gamma` = lr:

    .. math::
        m_I &\leftarrow m_I + (1 - \beta_1)(g - m_I), \qquad v_I \leftarrow v_I + (1 - \beta_2)(g^2 - v_I) \\
        \theta_I &\leftarrow \theta_I - \frac{\gamma \sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\,
            \frac{m_I}{\sqrt{v_I} + \epsilon}

    and every row not in :math:`I` is left as it is, bit for bit; k = 0 updates nothing (the step still counts).
    State per param: ``step``, ``exp_avg``, ``exp_avg_sq`` (the param's shape).

    Cost of a step on k gradient rows of n_cols: summing repeated indices is a stable sort of the indices,
    O(k log k), and when there are repeats one gather of the rows and ``np.add.reduceat``; the update gathers the
    touched rows of param, exp_avg and exp_avg_sq (fancy indexing), updates them with NumPy ufuncs and scatters
    them back: about 4 temporaries of (unique k, n_cols) per step, none of the param's size. NumPy, not a native
    kernel. A ``KeyboardInterrupt`` during a step may leave that step half done (checks all run first).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, maximize=maximize))

    # ------------------------------------------------------------------ checks
    def _check_param(self, p, where):
        if p.ndim != 2:
            raise ValueError(f"{where}: SparseAdam steps 2-D params (rows indexed by the gradient), got shape "
                             f"{p.shape}")

    def _checked_hypers(self, group, where):
        """A group's hyperparameters (torch's checks; ValueError/TypeError naming the bad one, with its value)."""
        self._known_keys(group, where)
        return checked_hypers(group, where)

    def _checked_grad(self, i, p, grad, hp):
        """``(indices as intp, rows)`` of ``grads[i]``, checked against ``params[i]``; rows itself or one contiguous
        copy."""
        name = f"grads[{i}]"
        if not isinstance(grad, tuple) or len(grad) != 2:
            raise TypeError(f"{name}: expected a tuple (indices, rows) (a row-sparse gradient), got "
                            f"{type(grad).__name__}")
        return checked_sparse_grad(p, grad[0], grad[1], name, f"params[{i}]")

    def _grad_arrays(self, grad):
        return grad

    def _state_shapes(self, p):
        return {"exp_avg": p.shape, "exp_avg_sq": p.shape}

    # ------------------------------------------------------------------ step
    def _update(self, i, p, grad, st, hp):
        update_(p, grad[0], grad[1], st["exp_avg"], st["exp_avg_sq"], int(st["step"]), hp)


def checked_hypers(group, where):
    """{lr, beta1, beta2, eps, maximize} of ``group`` (a dict with SparseAdam's hyperparameter names), checked as
    torch does: ValueError/TypeError naming the bad one and ``where``. The one check of the class and of
    ``fastopt.functional.sparse_adam_``."""
    try:
        beta1, beta2 = check_betas(group["betas"])
        return {"lr": check_range(group["lr"], "learning rate", 0.0, math.inf, low_open=True, high_open=True),
                "beta1": beta1, "beta2": beta2,
                "eps": check_range(group["eps"], "epsilon value", 0.0, math.inf, low_open=True, high_open=True),
                "maximize": check_flag(group["maximize"], "maximize")}
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def checked_sparse_grad(p, indices, rows, name, pname):
    """``(indices as intp, rows)``: a row-sparse gradient of the 2-D param ``p`` (named ``pname``), checked
    (TypeError/ValueError naming ``name``); rows itself or one contiguous copy."""
    if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
        what = f"dtype {indices.dtype}" if isinstance(indices, np.ndarray) else type(indices).__name__
        raise TypeError(f"{name} indices: expected an integer ndarray, got {what}")
    if indices.ndim != 1:
        raise ValueError(f"{name} indices: expected shape (k,), got {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= p.shape[0]):
        bad = indices[(indices < 0) | (indices >= p.shape[0])][0]
        raise ValueError(f"{name} indices: index {bad} is out of range for {pname} with {p.shape[0]} rows")
    if not isinstance(rows, np.ndarray):
        raise TypeError(f"{name} rows: expected a numpy.ndarray, got {type(rows).__name__}")
    if rows.dtype != p.dtype:
        raise TypeError(f"{name} rows: expected dtype {p.dtype} (the param's), got {rows.dtype}")
    if rows.shape != (indices.size, p.shape[1]):
        raise ValueError(f"{name} rows: shape {rows.shape} does not match (k, n_cols) = "
                         f"{(indices.size, p.shape[1])}")
    return indices.astype(np.intp, copy=False), input_array(rows, f"{name} rows")


def update_(p, indices, rows, exp_avg, exp_avg_sq, step, hp):
    """The lazy Adam update of the rows ``indices`` of one param (the class docstring's rule), in place on ``p``,
    ``exp_avg`` and ``exp_avg_sq``: ``step`` the param's 1-based step count, ``hp`` from ``checked_hypers``,
    ``(indices, rows)`` from ``checked_sparse_grad``. Checks nothing: the class and ``sparse_adam_`` check
    first. The one update of ``SparseAdam.step`` and ``fastopt.functional.sparse_adam_``."""
    if indices.size == 0:
        return
    indices, rows, owned = _coalesced(indices, rows)
    if hp["maximize"]:
        rows = np.negative(rows, out=rows if owned else None)
    beta1, beta2 = hp["beta1"], hp["beta2"]
    m, v = exp_avg[indices], exp_avg_sq[indices]
    t = np.subtract(rows, m)                       # torch: (g - m) * (1 - beta1), then m + that
    np.multiply(t, 1 - beta1, out=t)
    np.add(m, t, out=m)
    exp_avg[indices] = m
    np.multiply(rows, rows, out=t)                 # (g^2 - v) * (1 - beta2), then v + that
    np.subtract(t, v, out=t)
    np.multiply(t, 1 - beta2, out=t)
    np.add(v, t, out=v)
    exp_avg_sq[indices] = v
    np.sqrt(v, out=t)
    np.add(t, hp["eps"], out=t)
    np.divide(m, t, out=t)
    step_size = hp["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    np.multiply(t, -step_size, out=t)
    p[indices] += t                                # unique indices: a gather, an add and a scatter


def _coalesced(indices, rows):
    """(unique indices, rows with repeats summed in index order, whether rows is a new array): torch's coalesce.
    Without repeats, the inputs themselves (the update is per row, so their order does not matter)."""
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    if starts.size == indices.size:
        return indices, rows, False
    return ordered[starts], np.add.reduceat(rows[order], starts, axis=0), True
