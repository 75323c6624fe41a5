"""Batch-norm cases: one training step (forward with batch statistics and running-statistics update, then
backward giving dx, dgamma, dbeta), fastopt against textbook NumPy, torch autograd ``F.batch_norm`` (contiguous and
channels_last) and a roofline probe.

Bytes per step (B = x.nbytes), the kernels' traffic model: forward reads x for the statistics (1 B), reads x and
writes y (2 B); backward reads dy and x for the two sums (2 B), reads dy and x and writes dx (3 B): 8 B in all.
The probe runs that traffic as ``stream([x], [y])`` + ``stream([x, dy], [dx])`` + ``stream([w, dy], [w])`` (the
last stands in for the sums pass: stream needs an output, so it reads w and dy and writes w back in place).
With NCHW the kernels run each channel's two passes back to back, so the second pass finds the channel in cache
and the real DRAM traffic is nearer 5 B: the percentage of the probe can pass 100% there.
"""
import functools

import numpy as np

import fastopt
from fastopt import _probe
from fastopt.bench.core import Case, Probe, chosen_sizes, impls_of, optional_import

SIZES = {"256x1024": (256, 1024), "64x64x56x56": (64, 64, 56, 56)}
QUICK_SIZES = {"64x128": (64, 128), "8x16x8x8": (8, 16, 8, 8)}
EPS, MOMENTUM = 1e-5, 0.1


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy


def _channels_last(a):
    """An NCHW-shaped view of NHWC memory (what torch's channels_last gives NumPy)."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1) if a.ndim == 4 else a


class FastoptBN:
    def __init__(self, shape, dtype, channels_last=False, reuse_buffers=True):
        self.x, self.dy = _data(shape, dtype)
        if channels_last:
            self.x, self.dy = _channels_last(self.x), _channels_last(self.dy)
        self.bn = fastopt.nn.BatchNorm(shape[1], axis=1, dtype=dtype, reuse_buffers=reuse_buffers)

    def run(self):
        self.bn.forward(self.x, training=True)
        self.dx = self.bn.backward(self.dy)

    def result(self):
        return [self.dx, self.bn.grad_gamma, self.bn.grad_beta]


class NumpyBN:
    """The textbook formulas with temporaries, in the input's dtype."""

    def __init__(self, shape, dtype):
        self.x, self.dy = _data(shape, dtype)
        C = shape[1]
        self.axes = (0,) + tuple(range(2, len(shape)))
        bshape = (1, C) + (1,) * (len(shape) - 2)
        self.gamma, self.beta = np.ones(bshape, dtype), np.zeros(bshape, dtype)
        self.rm, self.rv = np.zeros(bshape, dtype), np.ones(bshape, dtype)
        self.m = self.x.size // C

    def run(self):
        x, dy, axes, m = self.x, self.dy, self.axes, self.m
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        invstd = 1.0 / np.sqrt(var + EPS)
        xhat = (x - mean) * invstd
        y = self.gamma * xhat + self.beta          # noqa: F841  (the forward output, as a layer would return it)
        self.rm = (1 - MOMENTUM) * self.rm + MOMENTUM * mean
        self.rv = (1 - MOMENTUM) * self.rv + MOMENTUM * var * (m / (m - 1))
        self.dbeta = dy.sum(axis=axes)
        self.dgamma = (dy * xhat).sum(axis=axes)
        self.dx = (self.gamma * invstd / m) * (m * dy - self.dbeta.reshape(mean.shape)
                                                 - xhat * self.dgamma.reshape(mean.shape))

    def result(self):
        return [self.dx, self.dgamma, self.dbeta]


class TorchBN:
    def __init__(self, torch, shape, dtype, channels_last):
        self.torch = torch
        x, dy = _data(shape, dtype)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.x = torch.from_numpy(x).contiguous(memory_format=fmt).requires_grad_(True)
        self.dy = torch.from_numpy(dy).contiguous(memory_format=fmt)
        tdt = getattr(torch, np.dtype(dtype).name)
        C = shape[1]
        self.w = torch.ones(C, dtype=tdt, requires_grad=True)
        self.b = torch.zeros(C, dtype=tdt, requires_grad=True)
        self.rm, self.rv = torch.zeros(C, dtype=tdt), torch.ones(C, dtype=tdt)

    def run(self):
        self.x.grad = self.w.grad = self.b.grad = None
        y = self.torch.nn.functional.batch_norm(self.x, self.rm, self.rv, self.w, self.b, True, MOMENTUM, EPS)
        y.backward(self.dy)

    def result(self):
        return [self.x.grad.numpy(), self.w.grad.numpy(), self.b.grad.numpy()]


class ProbeBN(Probe):
    def __init__(self, shape, dtype):
        n = int(np.prod(shape))
        self.x, self.dy, self.y, self.dx, self.w = (np.ones(n, dtype) for _ in range(5))

    def run(self):
        _probe.stream([self.x], [self.y])
        _probe.stream([self.x, self.dy], [self.dx])
        _probe.stream([self.w, self.dy], [self.w])


def cases(sizes=None, threads=(1, 2), dtypes=("float32",), quick=False, peers=True, kernels=None):
    torch = optional_import("torch") if peers else None
    out = []
    for size, shape in chosen_sizes(sizes, quick, SIZES, QUICK_SIZES):
        for dtype in dtypes:
            four_d = len(shape) == 4
            torch_bn = torch and functools.partial(TorchBN, torch)
            impls = impls_of((shape, dtype), [
                ("fastopt", FastoptBN),
                ("fastopt-cl", four_d and functools.partial(FastoptBN, channels_last=True)),
                ("fastopt-fresh", functools.partial(FastoptBN, reuse_buffers=False)),
                ("numpy", peers and NumpyBN),
                ("torch", torch_bn and (lambda s, d: torch_bn(s, d, False))),
                ("torch-cl", four_d and torch_bn and (lambda s, d: torch_bn(s, d, True)))], ProbeBN)
            numel = int(np.prod(shape))
            for t in threads:
                out.append(Case("batchnorm", "bn-train", size, numel, dtype, t, 8 * np.dtype(dtype).itemsize * numel,
                                impls, rtol=2e-3 if dtype == "float32" else 1e-9,
                                atol=2e-3 if dtype == "float32" else 1e-9, check_steps=1))
    return out
