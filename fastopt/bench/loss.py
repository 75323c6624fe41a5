"""Loss-family cases: forward + backward of softmax cross-entropy and MSE, fastopt against NumPy, torch autograd and a roofline probe with the same memory traffic.

Every implementation computes the loss value and the gradient. fastopt writes the gradient into a reused
``grad_out`` buffer (the intended use); NumPy uses preallocated ``out=`` buffers as well (its best case); torch
runs ``loss.backward()`` the usual way (its gradient is allocated by autograd at every call).

Bytes per call (each array access counted once, no write-allocate traffic -- the same count for the probe):
* softmax_ce (N, C): read logits, write grad: 2 x itemsize x N C, plus 8 N for the int64 labels;
  probe: ``stream([x], [g])`` (labels not read by the probe: it is a slight overestimate of the limit's time).
* mse n: read x, t, write grad: 3 x itemsize x n; probe ``stream([x, t], [g])``.

The L2 penalty and dropout are the regularize family's (fastopt/bench/regularize.py).
"""
import numpy as np

from fastopt import losses
from fastopt.bench.core import StreamKernel, stream_cases

SIZES = {"softmax_ce": ["4096x1000", "65536x10"], "mse": ["1e7"]}
QUICK_SIZES = {"softmax_ce": ["256x100", "2048x10"], "mse": ["1e5"]}


# ------------------------------------------------------------------------------------------ softmax cross-entropy
class CEData:
    def __init__(self, shape, dtype):
        rng = np.random.default_rng(0)
        self.x = (rng.standard_normal(shape) * 2).astype(dtype)
        self.y = rng.integers(0, shape[1], shape[0])
        self.g = np.empty_like(self.x)
        self.loss = None

    def result(self):
        return [self.g, np.array([self.loss])]


class FastoptCE(CEData):
    def run(self):
        self.loss, _ = losses.softmax_cross_entropy(self.x, self.y, grad_out=self.g)


class NumpyCE(CEData):
    def __init__(self, shape, dtype):
        super().__init__(shape, dtype)
        self.m = np.empty((shape[0], 1), dtype)
        self.s = np.empty((shape[0], 1), dtype)
        self.rows = np.arange(shape[0])

    def run(self):
        x, g, n = self.x, self.g, self.x.shape[0]
        np.max(x, axis=1, keepdims=True, out=self.m)
        np.subtract(x, self.m, out=g)
        zy = g[self.rows, self.y]
        np.exp(g, out=g)
        np.sum(g, axis=1, keepdims=True, out=self.s)
        self.loss = float(np.mean(np.log(self.s[:, 0], dtype=np.float64) - zy))
        g /= self.s
        g[self.rows, self.y] -= 1
        g *= g.dtype.type(1.0 / n)


class TorchLoss:
    """torch.nn.functional.<loss_name>(x, target) and its backward, on tensors sharing the case's NumPy arrays."""
    loss_name = None

    def _share(self, torch, target):
        self.torch = torch
        self.xt = torch.from_numpy(self.x).requires_grad_()
        self.target_t = torch.from_numpy(target)

    def run(self):
        self.xt.grad = None
        loss = getattr(self.torch.nn.functional, self.loss_name)(self.xt, self.target_t)
        loss.backward()
        self.loss = loss.item()

    def result(self):
        return [self.xt.grad.numpy(), np.array([self.loss])]


class TorchCE(TorchLoss, CEData):
    loss_name = "cross_entropy"

    def __init__(self, torch, shape, dtype):
        CEData.__init__(self, shape, dtype)
        self._share(torch, self.y)


# ------------------------------------------------------------------------------------------ MSE
class MSEData:
    def __init__(self, n, dtype):
        rng = np.random.default_rng(1)
        self.x = rng.standard_normal(n).astype(dtype)
        self.t = rng.standard_normal(n).astype(dtype)
        self.g = np.empty_like(self.x)
        self.loss = None

    def result(self):
        return [self.g, np.array([self.loss])]


class FastoptMSE(MSEData):
    def run(self):
        self.loss, _ = losses.mse(self.x, self.t, grad_out=self.g)


class NumpyMSE(MSEData):
    def run(self):
        g = self.g
        np.subtract(self.x, self.t, out=g)
        self.loss = float(np.dot(g, g)) / g.size
        g *= g.dtype.type(2.0 / g.size)


class TorchMSE(TorchLoss, MSEData):
    loss_name = "mse_loss"

    def __init__(self, torch, n, dtype):
        MSEData.__init__(self, n, dtype)
        self._share(torch, self.t)


KERNELS = {
    "softmax_ce": StreamKernel(FastoptCE, NumpyCE, TorchCE, "torch-autograd", 1, False,
                               lambda shape, item: 2 * item * shape[0] * shape[1] + 8 * shape[0]),
    "mse": StreamKernel(FastoptMSE, NumpyMSE, TorchMSE, "torch-autograd", 2, False,
                        lambda shape, item: 3 * item * shape[0]),
}


def cases(sizes=None, threads=(1, 2), dtypes=("float32",), quick=False, peers=True, kernels=None):
    return stream_cases("loss", KERNELS, QUICK_SIZES if quick else SIZES, sizes, threads, dtypes, peers, kernels)
