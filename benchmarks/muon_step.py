"""Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/muon_step.py

fastopt.Muon.step on one (1024, 1024) float32 param against what it cannot avoid: its five Newton-Schulz
iterations as plain NumPy matmuls (X X^T, A A, B X per iteration, into preallocated outputs: BLAS time only, no
elementwise work). Medians over alternating rounds in one run (the machine's speed drifts); the ratio is the cost
of everything else in the step (momentum, nesterov, normalisation, the polynomial's elementwise terms, decay,
the final update, checks). Target: <= 1.2x.
"""
import sys
import time

import numpy as np

import fastopt

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
N = 1024
A, B, C = fastopt.optim.muon.NS_COEFFICIENTS

rng = np.random.default_rng(0)
param = rng.standard_normal((N, N)).astype(np.float32)
grad = rng.standard_normal((N, N)).astype(np.float32)
opt = fastopt.Muon([param], lr=1e-3)
x = grad / np.linalg.norm(grad)
y, gram, poly = np.empty_like(grad), np.empty_like(grad), np.empty_like(grad)


def ns_matmuls():
    """The 15 matmuls, each iteration from the same normalised X (the values stay bounded; BLAS time does not
    depend on them)."""
    for _ in range(5):
        np.matmul(x, x.T, out=gram)
        np.matmul(gram, gram, out=poly)
        np.matmul(poly, x, out=y)


def step():
    opt.step([grad])


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


step(), ns_matmuls()                        # workspace and BLAS warm-up
times = {"step": [], "ns_matmuls": []}
for _ in range(ROUNDS):
    times["step"].append(timed(step))
    times["ns_matmuls"].append(timed(ns_matmuls))
med = {k: float(np.median(v)) for k, v in times.items()}
print(f"Muon (1024, 1024) float32, {ROUNDS} alternating rounds, medians: step {med['step'] * 1e3:.1f} ms, "
      f"5 NS iterations as 15 matmuls {med['ns_matmuls'] * 1e3:.1f} ms, ratio {med['step'] / med['ns_matmuls']:.3f}")
