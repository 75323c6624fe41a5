"""Bias + ReLU cases: one forward and backward of a dense layer's bias and activation (y = relu(x + b), then
dx = dy [y > 0] and db = column sums of dx), fastopt's fused kernels against the textbook NumPy that
scikit-learn's MLP runs, torch autograd (``F.relu(x + b)``) and a roofline probe.

Bytes per call (B = x.nbytes): the forward reads x and writes y (2 B; b is negligible); the backward reads dy and y
and writes dx (3 B): 5 B. The probe runs that traffic as ``stream([x], [y])`` + ``stream([dy, y], [dx])``.
"""
import functools

import numpy as np

from fastopt import _probe
from fastopt.bench.core import Case, Probe, chosen_sizes, impls_of, optional_import
from fastopt.functional import bias_activation, bias_activation_backward

SIZES = {"64x256": (64, 256), "4096x1024": (4096, 1024)}
QUICK_SIZES = {"16x64": (16, 64)}


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape[1]).astype(dtype),
            rng.standard_normal(shape).astype(dtype))


class FastoptBiasRelu:
    def __init__(self, shape, dtype):
        self.x, self.b, self.dy = _data(shape, dtype)
        self.y, self.dx, self.db = np.empty_like(self.x), np.empty_like(self.x), np.empty_like(self.b)

    def run(self):
        bias_activation(self.x, self.b, out=self.y)
        bias_activation_backward(self.dy, self.y, dx_out=self.dx, dbias_out=self.db)

    def result(self):
        return [self.y, self.dx, self.db]


class NumpyBiasRelu(FastoptBiasRelu):
    """As sklearn's MLP: add the bias, ReLU in place, mask the gradient with y > 0, sum the columns."""

    def run(self):
        np.add(self.x, self.b, out=self.y)
        np.maximum(self.y, 0, out=self.y)
        np.multiply(self.dy, self.y > 0, out=self.dx)
        np.sum(self.dx, axis=0, out=self.db)


class TorchBiasRelu:
    def __init__(self, torch, shape, dtype):
        self.torch = torch
        x, b, dy = _data(shape, dtype)
        self.x = torch.from_numpy(x).requires_grad_(True)
        self.b = torch.from_numpy(b).requires_grad_(True)
        self.dy = torch.from_numpy(dy)

    def run(self):
        self.x.grad = self.b.grad = None
        self.y = self.torch.nn.functional.relu(self.x + self.b)
        self.y.backward(self.dy)

    def result(self):
        return [self.y.detach().numpy(), self.x.grad.numpy(), self.b.grad.numpy()]


class ProbeBiasRelu(Probe):
    def __init__(self, shape, dtype):
        n = int(np.prod(shape))
        self.x, self.y, self.dy, self.dx = (np.ones(n, dtype) for _ in range(4))

    def run(self):
        _probe.stream([self.x], [self.y])
        _probe.stream([self.dy, self.y], [self.dx])


def cases(sizes=None, threads=(1, 2), dtypes=("float32",), quick=False, peers=True, kernels=None):
    torch = optional_import("torch") if peers else None
    out = []
    for size, shape in chosen_sizes(sizes, quick, SIZES, QUICK_SIZES):
        for dtype in dtypes:
            impls = impls_of((shape, dtype), [("fastopt", FastoptBiasRelu), ("numpy", peers and NumpyBiasRelu),
                                              ("torch", torch and functools.partial(TorchBiasRelu, torch))],
                             ProbeBiasRelu)
            numel = int(np.prod(shape))
            for t in threads:
                # db: fastopt sums in double, NumPy and torch in float32 (pairwise / blocked): 4096 rows differ
                # by ~1e-6 relative
                out.append(Case("activation", "bias-relu", size, numel, dtype, t,
                                5 * np.dtype(dtype).itemsize * numel, impls,
                                rtol=1e-4 if dtype == "float32" else 1e-12,
                                atol=1e-4 if dtype == "float32" else 1e-12, check_steps=1))
    return out
