"""Data-parallel training over MPI (``pip install 'fastopt[mpi]'``: mpi4py + mpich), never imported by ``import
fastopt``.

- :func:`allreduce_grads_`: in-place gradient averaging through bucketed, reused buffers, blocking or not.
- :class:`ZeroRedundancyOptimizer`: ZeRO-1/2, each rank holds and steps 1/N of the optimizer state.
- :func:`clip_grad_norm_`, :func:`get_total_norm`: the global norm of gradients spread over the ranks.

Importing this package works without mpi4py; the first call that needs MPI raises ImportError with the install
hint. Run under ``mpiexec -n N python your_script.py``.
"""
from fastopt.distributed._comm import DEFAULT_TIMEOUT, abort, guarded
from fastopt.distributed._layout import BLOCK
from fastopt.distributed.allreduce import DEFAULT_BUCKET_BYTES, Handle, allreduce_grads_
from fastopt.distributed.clip import clip_grad_norm_, get_total_norm
from fastopt.distributed.zero import ZeroRedundancyOptimizer

__all__ = ["allreduce_grads_", "Handle", "ZeroRedundancyOptimizer", "clip_grad_norm_", "get_total_norm", "BLOCK",
           "DEFAULT_BUCKET_BYTES", "DEFAULT_TIMEOUT", "guarded", "abort"]
