"""Optimizer-step cases: fastopt against textbook NumPy, torch.optim (single-tensor, foreach, fused) and a
roofline probe with the same memory traffic.

Bytes per step (counted once per array access, no write-allocate since every write is in place):
Adam / AdamW: read p, g, m, v and write p, m, v: 7 x itemsize per element; SGD with momentum: read p, g, b and
write p, b: 5 x itemsize; RMSprop: read p, g, s and write p, s: 5 x itemsize. The probe
(``fastopt._probe.stream``) makes exactly those accesses in one fused loop with trivial arithmetic.
"""
import numpy as np

import fastopt
from fastopt import _probe
from fastopt.bench.core import Case, Impl, chosen_sizes, optional_import

KERNELS = {
    # name: (fastopt class, kwargs, (arrays read, arrays written))
    "Adam": (fastopt.Adam, dict(lr=1e-3), (4, 3)),
    "AdamW": (fastopt.AdamW, dict(lr=1e-3, weight_decay=1e-2), (4, 3)),
    "SGD": (fastopt.SGD, dict(lr=1e-2, momentum=0.9), (3, 2)),
    "RMSprop": (fastopt.RMSprop, dict(lr=1e-2), (3, 2)),
}
SIZES = {"1e3": [1000], "1e5": [100_000], "1e6": [1_000_000], "1e7": [10_000_000], "200x5000": [5000] * 200}
QUICK_SIZES = {"1e3": [1000], "1e5": [100_000], "20x500": [500] * 20}


def _data(shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(dtype) for n in shapes]
    grads = [rng.standard_normal(n).astype(dtype) for n in shapes]
    return params, grads


class FastoptStep:
    def __init__(self, kernel, shapes, dtype):
        cls, kwargs, _ = KERNELS[kernel]
        self.params, self.grads = _data(shapes, dtype)
        self.opt = cls(self.params, **kwargs)

    def run(self):
        self.opt.step(self.grads)

    def result(self):
        return self.params


class NumpyStep:
    """The update rules written as NumPy expressions with temporaries (what a NumPy user writes by hand)."""

    def __init__(self, kernel, shapes, dtype):
        self.kernel = kernel
        _, self.kw, _ = KERNELS[kernel]
        self.params, self.grads = _data(shapes, dtype)
        self.s1 = [np.zeros_like(p) for p in self.params]
        self.s2 = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def run(self):
        self.t += 1
        lr, t = self.kw["lr"], self.t
        for p, g, a, b in zip(self.params, self.grads, self.s1, self.s2):
            if self.kernel in ("Adam", "AdamW"):
                b1, b2, eps = 0.9, 0.999, 1e-8
                if self.kernel == "AdamW":
                    p *= 1 - lr * self.kw["weight_decay"]
                a[...] = b1 * a + (1 - b1) * g
                b[...] = b2 * b + (1 - b2) * g * g
                p -= lr * (a / (1 - b1 ** t)) / (np.sqrt(b / (1 - b2 ** t)) + eps)
            elif self.kernel == "SGD":
                a[...] = g if t == 1 else self.kw["momentum"] * a + g
                p -= lr * a
            else:
                a[...] = 0.99 * a + 0.01 * g * g
                p -= lr * g / (np.sqrt(a) + 1e-8)

    def result(self):
        return self.params


class TorchStep:
    def __init__(self, torch, kernel, shapes, dtype, mode):
        _, kwargs, _ = KERNELS[kernel]
        params, grads = _data(shapes, dtype)
        self.params = [torch.from_numpy(p) for p in params]
        for p, g in zip(self.params, grads):
            p.requires_grad_(True)
            p.grad = torch.from_numpy(g)
        flags = {"single": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[mode]
        self.opt = getattr(torch.optim, kernel)(self.params, **kwargs, **flags)

    def run(self):
        self.opt.step()

    def result(self):
        return [p.detach().numpy() for p in self.params]


class ProbeStep:
    def __init__(self, kernel, shapes, dtype):
        n_read, n_write = KERNELS[kernel][2]
        n = int(sum(shapes))
        self.arrays = [np.ones(n, dtype=dtype) for _ in range(n_read)]
        self.writes = [self.arrays[0]] + self.arrays[2:2 + n_write - 1]   # p and the state arrays, in place

    def run(self):
        _probe.stream(self.arrays, self.writes)

    def result(self):
        return None


def _torch_supports(torch, kernel, mode, dtype):
    p = torch.zeros(2, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    flags = {"single": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[mode]
    try:
        getattr(torch.optim, kernel)([p], **KERNELS[kernel][1], **flags)
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def cases(sizes=None, threads=(1, 2), dtypes=("float32",), kernels=None, quick=False, peers=True):
    torch = optional_import("torch") if peers else None
    chosen = chosen_sizes(sizes, quick, SIZES, QUICK_SIZES)
    out = []
    for kernel in kernels or list(KERNELS):
        n_read, n_write = KERNELS[kernel][2]
        for size, shapes in chosen:
            for dtype in dtypes:
                numel = int(sum(shapes))
                itemsize = np.dtype(dtype).itemsize
                impls = [Impl("fastopt", lambda k=kernel, s=shapes, d=dtype: FastoptStep(k, s, d))]
                if peers:
                    impls.append(Impl("numpy", lambda k=kernel, s=shapes, d=dtype: NumpyStep(k, s, d)))
                if torch is not None:
                    for mode in ("single", "foreach", "fused"):
                        if _torch_supports(torch, kernel, mode, dtype):
                            impls.append(Impl(f"torch-{mode}", lambda k=kernel, s=shapes, d=dtype, m=mode:
                                              TorchStep(torch, k, s, d, m)))
                impls.append(Impl("roofline", lambda k=kernel, s=shapes, d=dtype: ProbeStep(k, s, d), is_probe=True))
                for t in threads:
                    out.append(Case("optim", kernel, size, numel, dtype, t, (n_read + n_write) * itemsize * numel,
                                    impls, rtol=2e-4 if dtype == "float32" else 1e-9,
                                    atol=2e-5 if dtype == "float32" else 1e-12))
    return out
