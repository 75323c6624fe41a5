r"""``SparseAdam``: torch.optim.SparseAdam's lazy Adam (torch 2.13) for row-sparse gradients over NumPy arrays."""
import math

import numpy as np

from fastopt import _optim
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

    Cost of a step on k gradient rows of n_cols: one NumPy sort of the k indices (O(k log k) on int64 keys,
    stable), then one fused native call (``csrc/optim.c`` ``fo_sparse_adam_step``, GIL released) that walks the
    touched rows in address order, sums each one's repeated gradient rows on the stack in the order they came,
    and reads param, exp_avg and exp_avg_sq once and writes them once; the rows' elements split among the OpenMP
    threads. No temporary of the rows' size, none of the param's. One call per param: a ``KeyboardInterrupt``
    between two params' calls may leave a step applied to only some params (every
    check runs before the first).
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
    unique, starts, order = _sorted_rows(indices, p.shape[0])
    _optim.sparse_adam_rows(p, exp_avg, exp_avg_sq, unique, starts, order, rows, step, hp["lr"], hp["beta1"],
                            hp["beta2"], hp["eps"], hp["maximize"])


def _sorted_rows(indices, n_rows):
    """(unique, starts, order), int64: the gradient's rows sorted by index, stably (torch's coalesce, whose sums
    the kernel adds in this order): gradient rows order[starts[j]:starts[j + 1]] hold index unique[j], ascending.
    One sort of keys index << b | position (distinct keys: any sort is stable), b the bits of a position; a stable
    argsort where index and position do not fit in 63 bits."""
    k = indices.size
    shift = (k - 1).bit_length()
    if (n_rows - 1).bit_length() + shift <= 62:
        keys = np.sort((indices.astype(np.int64) << shift) | np.arange(k, dtype=np.int64))
        ordered, order = keys >> shift, keys & ((1 << shift) - 1)
    else:
        order = np.argsort(indices, kind="stable").astype(np.int64)
        ordered = indices[order].astype(np.int64)
    first = np.empty(k, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return ordered[starts], np.append(starts, k).astype(np.int64), order
