"""Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/adafactor_step.py [rounds]

fastopt.Adafactor.step on one float32 param against torch.optim.Adafactor (foreach and single-tensor, the faster
is the peer) and against a probe with the step's memory traffic: its three sweeps read param and gradient, then
the gradient, then both again writing the param (6 arrays of traffic), as `fastopt._probe` passes. Shapes: a
(4096, 4096) matrix (64 MiB an array: out of cache), a (1024, 1024) one and a vector of 1,000,000 (the unfactored
variance, in blocks of 8,192 elements). Medians over alternating rounds in one run, fastopt and torch at their default
thread counts.
"""
import sys
import time

import numpy as np

import fastopt
from fastopt import _probe

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 11
SHAPES = [(4096, 4096), (1024, 1024), (1_000_000,)]


def implementations(shape, rng):
    import torch
    p0 = rng.standard_normal(shape).astype(np.float32)
    g = (rng.standard_normal(shape) * 1e-2).astype(np.float32)
    fo_p = p0.copy()
    fo = fastopt.Adafactor([fo_p], lr=1e-3)
    impls = {"fastopt": lambda: fo.step([g])}
    tg = torch.from_numpy(g)
    for foreach in (True, False):
        tp = torch.tensor(p0, requires_grad=True)
        opt = torch.optim.Adafactor([tp], lr=1e-3, foreach=foreach)

        def torch_step(tp=tp, opt=opt):
            tp.grad = tg
            opt.step()
        impls[f"torch {'foreach' if foreach else 'single'}"] = torch_step
    a, b, out = p0.ravel().copy(), g.ravel().copy(), np.zeros(p0.size, np.float32)

    def probe():
        _probe.stream([a, b], [out])     # sweep 1 reads 2 arrays (the probe also writes one: see the note below)
        _probe.read(b)
        _probe.stream([a, b], [a])
    impls["probe"] = probe
    return impls


def main():
    import torch
    rng = np.random.default_rng(0)
    print(f"fastopt {fastopt.get_num_threads()} threads, torch {torch.get_num_threads()} threads, "
          f"ISA {fastopt.get_isa()}; probe traffic: 7 arrays (its first pass writes one), the step's 6")
    for shape in SHAPES:
        impls = implementations(shape, rng)
        times = {k: [] for k in impls}
        for fn in impls.values():
            fn()
        for _ in range(ROUNDS):
            for k, fn in impls.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        peer = min(med["torch foreach"], med["torch single"])
        print(f"{shape}: medians over {ROUNDS} alternating rounds: "
              + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()))
        print(f"  fastopt: {med['probe'] / med['fastopt']:.0%} of the probe, {peer / med['fastopt']:.2f}x the "
              f"faster torch step")


if __name__ == "__main__":
    main()
