"""Regularize-family cases: the L2 penalty gradient and dropout, fastopt against NumPy, torch and a roofline probe
with the same memory traffic.

Bytes per call (each array access counted once, no write-allocate traffic -- the same count for the probe):
* l2_penalty n (``add_penalty_grad_(g, w, l2=..)``, g += l2 w and the value l2/2 sum w^2): read w and g, write g:
  3 x itemsize x n; probe ``stream([w, g], [g])``.
* dropout n (forward, out= reused): read x, write y: 2 x itemsize x n; probe ``stream([x], [y])``.
"""
import numpy as np

from fastopt import regularize
from fastopt.bench.core import StreamKernel, stream_cases
from fastopt.functional import dropout

SIZES = {"l2_penalty": ["1e7"], "dropout": ["1e7"]}
QUICK_SIZES = {"l2_penalty": ["1e5"], "dropout": ["1e5"]}
L2 = 1e-4


# ------------------------------------------------------------------------------------------ L2 penalty
class PenaltyData:
    def __init__(self, n, dtype):
        rng = np.random.default_rng(2)
        self.w = rng.standard_normal(n).astype(dtype)
        self.g = rng.standard_normal(n).astype(dtype)
        self.value = None

    def result(self):
        return [self.g, np.array([self.value])]


class FastoptPenalty(PenaltyData):
    def run(self):
        self.value = regularize.add_penalty_grad_(self.g, self.w, l2=L2)


class NumpyPenalty(PenaltyData):
    def __init__(self, n, dtype):
        super().__init__(n, dtype)
        self.tmp = np.empty_like(self.w)

    def run(self):
        np.multiply(self.w, self.w.dtype.type(L2), out=self.tmp)
        self.g += self.tmp
        self.value = 0.5 * L2 * float(np.dot(self.w, self.w))


class TorchPenalty(PenaltyData):
    def __init__(self, torch, n, dtype):
        super().__init__(n, dtype)
        self.torch = torch
        self.wt = torch.from_numpy(self.w)
        self.gt = torch.from_numpy(self.g)

    def run(self):
        self.gt.add_(self.wt, alpha=L2)
        self.value = 0.5 * L2 * float(self.torch.dot(self.wt, self.wt))


# ------------------------------------------------------------------------------------------ dropout
class FastoptDropout:
    def __init__(self, n, dtype):
        self.x = np.random.default_rng(3).standard_normal(n).astype(dtype)
        self.y = np.empty_like(self.x)

    def run(self):
        dropout(self.x, p=0.5, seed=42, out=self.y)

    def result(self):
        """Peers draw other masks: compared through the kept fraction (to 2 decimals) and the scale."""
        y = self._y()
        kept = y != 0
        return [np.array([round(float(kept.mean()), 2)]), np.unique(y[kept] / self.x[kept]).round(4)]

    def _y(self):
        return self.y


class TorchDropout(FastoptDropout):

    def __init__(self, torch, n, dtype):
        super().__init__(n, dtype)
        self.torch = torch
        self.xt = torch.from_numpy(self.x)
        self.out = None

    def run(self):
        self.out = self.torch.nn.functional.dropout(self.xt, p=0.5, training=True)

    def _y(self):
        return self.out.numpy()


class NumpyDropout(FastoptDropout):
    def __init__(self, n, dtype):
        super().__init__(n, dtype)
        self.rng = np.random.default_rng(4)
        self.u = np.empty(n, np.float32)

    def run(self):
        self.rng.random(out=self.u, dtype=np.float32)
        np.multiply(self.x, (self.u >= 0.5) * self.x.dtype.type(2.0), out=self.y)


KERNELS = {
    "l2_penalty": StreamKernel(FastoptPenalty, NumpyPenalty, TorchPenalty, "torch", 2, True,
                               lambda shape, item: 3 * item * shape[0]),
    "dropout": StreamKernel(FastoptDropout, NumpyDropout, TorchDropout, "torch", 1, False,
                            lambda shape, item: 2 * item * shape[0]),
}


def cases(sizes=None, threads=(1, 2), dtypes=("float32",), quick=False, peers=True, kernels=None):
    return stream_cases("regularize", KERNELS, QUICK_SIZES if quick else SIZES, sizes, threads, dtypes, peers, kernels)
