"""Gradient clipping cases: ``clip_grad_norm_`` (global L2 norm over all arrays, then scaling) against NumPy and
``torch.nn.utils.clip_grad_norm_(foreach=True)``, and a roofline probe.

Bytes per call: the norm pass reads every gradient once and the scale pass reads and writes it in place:
3 x itemsize per element. The probe makes the same accesses: ``fastopt._probe.read`` then ``stream([g], [g])``.
``max_norm`` is half the initial norm, so the scale pass runs at every call.
"""
import functools

import numpy as np

import fastopt
from fastopt import _probe
from fastopt.bench.core import Case, Probe, chosen_sizes, impls_of, optional_import

SIZES = {"1e5": [100_000], "1e7": [10_000_000], "200x5000": [5000] * 200, "2000x500": [500] * 2000}
QUICK_SIZES = {"1e4": [10_000], "20x500": [500] * 20}


def _grads(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for n in shapes]


class FastoptClip:
    def __init__(self, shapes, dtype):
        self.grads = _grads(shapes, dtype)
        self.max_norm = 0.5 * fastopt.get_total_norm(self.grads)

    def run(self):
        fastopt.clip_grad_norm_(self.grads, self.max_norm)

    def result(self):
        return self.grads


class NumpyClip(FastoptClip):
    def run(self):
        total = float(np.sqrt(sum(float(np.dot(g, g)) for g in self.grads)))
        coef = min(1.0, self.max_norm / (total + 1e-6))
        for g in self.grads:
            g *= g.dtype.type(coef)


class TorchClip(FastoptClip):
    def __init__(self, torch, shapes, dtype):
        super().__init__(shapes, dtype)
        self.torch = torch
        self.params = []
        for g in self.grads:
            p = torch.empty(g.shape, dtype=getattr(torch, np.dtype(dtype).name))
            p.grad = torch.from_numpy(g)
            self.params.append(p)

    def run(self):
        self.torch.nn.utils.clip_grad_norm_(self.params, self.max_norm, foreach=True)


class ProbeClip(Probe):
    def __init__(self, shapes, dtype):
        self.flat = np.ones(int(sum(shapes)), dtype=dtype)

    def run(self):
        _probe.read(self.flat)
        _probe.stream([self.flat], [self.flat])


def cases(sizes=None, threads=(1, 2), dtypes=("float32",), quick=False, peers=True, kernels=None):
    torch = optional_import("torch") if peers else None
    out = []
    for size, shapes in chosen_sizes(sizes, quick, SIZES, QUICK_SIZES):
        for dtype in dtypes:
            impls = impls_of((shapes, dtype), [("fastopt", FastoptClip), ("numpy", peers and NumpyClip),
                                               ("torch-foreach", torch and functools.partial(TorchClip, torch))],
                             ProbeClip)
            numel = int(sum(shapes))
            for t in threads:
                out.append(Case("clip", "clip_grad_norm_", size, numel, dtype, t,
                                3 * np.dtype(dtype).itemsize * numel, impls,
                                # NumPy and torch sum a float32 norm in float32, fastopt in double: at 1e7 elements
                                # NumPy's norm is 5e-5 and torch's 4e-4 (relative) from the double-accumulated one
                                rtol=1e-3 if dtype == "float32" else 1e-12, atol=1e-7))
    return out
