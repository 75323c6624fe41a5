"""Data-parallel fitting of the MLP estimators over MPI (``comm=``): every rank steps the same global batches, each
on its rows of them, so that all ranks keep the same model.

Global batch :math:`B` (rows ``order[start:start + batch_size]``, the same on every rank: same shuffle), rank r
takes rows ``B[r::N]`` (:math:`m_r` of the :math:`m`). The loss gradient of the local mean is scaled by
:math:`m_r / m` and the gradients summed across ranks, which gives the gradient of the global batch's mean:

.. math:: \\sum_r \\frac{m_r}{m} \\nabla \\Big(\\frac{1}{m_r}\\sum_{i \\in B_r} \\ell_i\\Big)
          = \\nabla \\frac{1}{m} \\sum_{i \\in B} \\ell_i

Penalties, clipping and the step then run on identical gradients and params on every rank. Batch norm normalizes
with each rank's local batch statistics (as torch's DDP without SyncBatchNorm); the running statistics are
averaged across ranks at the end of each epoch, before validation, so that every rank scores the same model and
takes the same early-stopping decision.
"""
import numpy as np

from fastopt.distributed import _comm
from fastopt.distributed.allreduce import allreduce_grads_


class DataParallel:
    """The estimator side of ``comm``: the rank's rows of a batch, gradient and loss sums, running statistics."""

    def __init__(self, comm):
        self.comm = _comm.check_comm(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def seed(self, rng):
        """A random seed drawn on rank 0 and shared (initial weights, shuffles, splits: the same on every rank)."""
        return self.comm.bcast(int(rng.randint(2 ** 31 - 1)), root=0)

    def rows(self, idx):
        return idx[self.rank::self.size]

    def reduce_grads(self, grads):
        allreduce_grads_(grads, self.comm, average=False)

    def total(self, value):
        return self.comm.allreduce(float(value))

    def sync_running_stats(self, net):
        stats = [a for bn in net.bns if bn is not None for a in (bn.running_mean, bn.running_var)]
        if stats:
            allreduce_grads_(stats, self.comm, average=True)
