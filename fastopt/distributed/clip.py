r"""Gradient clipping when the gradient is spread over the ranks (each rank holds a disjoint part of it, as ZeRO-2's
shards): the global norm is combined across ranks.

.. math::
    \|g\|_p = \Big(\sum_r \|g^{(r)}\|_p^p\Big)^{1/p}, \qquad \|g\|_\infty = \max_r \|g^{(r)}\|_\infty

Each rank's part norm is fastopt's one-pass norm (accumulated in double); the parts are combined with one
MPI_Allreduce of a double. Tolerance against a single process's norm of the whole gradient: a relative 1e-12
(the parts are summed in another order; exact for inf). The clip coefficient is then torch's,
:math:`\min(1, \text{max\_norm} / (\|g\|_p + 10^{-6}))`, the same on every rank.

When every rank holds the whole averaged gradient (after :func:`allreduce_grads_`), use ``fastopt.clip_grad_norm_``:
no communication is needed.
"""
import math

import numpy as np

from fastopt import _reduce
from fastopt.clip import _NONFINITE, _check_norm_type
from fastopt._validation import as_real, check_flag
from fastopt.distributed import _comm

__all__ = ["get_total_norm", "clip_grad_norm_"]


def _combine(local, p, comm, timeout):
    """The global p-norm from this rank's part norm ``local``."""
    MPI = _comm.mpi()
    value = np.array([local if p == math.inf else local ** p], dtype=np.float64)
    with _comm.deadline(comm, timeout, "the global gradient norm"):
        comm.Allreduce(MPI.IN_PLACE, value, MPI.MAX if p == math.inf else MPI.SUM)
    total = float(value[0])
    return total if p == math.inf else total ** (1.0 / p)


def get_total_norm(arrays, norm_type=2.0, error_if_nonfinite=False, *, comm=None, timeout=None):
    """The ``norm_type``-norm of the gradient whose disjoint parts the ranks hold (``arrays`` here: this rank's
    part; None entries skipped), the same float on every rank. Arguments as ``fastopt.get_total_norm``, plus
    ``comm`` (None: COMM_WORLD) and ``timeout`` (seconds before aborting; None: FASTOPT_MPI_TIMEOUT or 300)."""
    comm = _comm.check_comm(comm)
    p = _check_norm_type(norm_type)
    error_if_nonfinite = check_flag(error_if_nonfinite, "error_if_nonfinite")
    timeout = _comm.check_timeout(timeout)
    total = _combine(_reduce.ArrayBatch(arrays, "arrays", False).norm(p), p, comm, timeout)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(_NONFINITE.format(p=p))
    return total


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False, *, comm=None, timeout=None):
    """Scales this rank's part ``grads`` in place so that the global norm (over all ranks' parts) is at most
    ``max_norm``; returns that global norm (the same on every rank). In-place rules as ``fastopt.clip_grad_norm_``;
    every argument is checked before anything is sent or written."""
    comm = _comm.check_comm(comm)
    max_norm_f = as_real(max_norm, "max_norm")
    if not (max_norm_f >= 0.0):
        raise ValueError(f"Invalid max_norm: {max_norm!r} (expected a real number >= 0)")
    p = _check_norm_type(norm_type)
    error_if_nonfinite = check_flag(error_if_nonfinite, "error_if_nonfinite")
    timeout = _comm.check_timeout(timeout)
    batch = _reduce.ArrayBatch(grads, "grads", True)
    total = _combine(batch.norm(p), p, comm, timeout)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(_NONFINITE.format(p=p))
    coef = max_norm_f / (total + 1e-6)
    if coef > 1.0:
        coef = 1.0
    if coef != 1.0:
        batch.scale(coef)
    return total
