"""Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/lamb_vs_adamw.py

LAMB's and LARS's time against AdamW's on 200 float32 tensors of (50, 100) (issue 13's target: one native call,
<= 1.3x AdamW), in alternating rounds of 5 steps each, 41 rounds, medians (fastopt bench times one kernel after
another, so its ratios between kernels drift with the machine).
"""
import time

import numpy as np

import fastopt

fastopt.set_num_threads(1)
rng = np.random.default_rng(0)
def make(cls, **kw):
    ps = [rng.standard_normal((50, 100)).astype(np.float32) for _ in range(200)]
    gs = [rng.standard_normal((50, 100)).astype(np.float32) for _ in range(200)]
    o = cls(ps, **kw); o.step(gs); return o, gs
def t(o, gs, n=5):
    t0 = time.perf_counter()
    for _ in range(n): o.step(gs)
    return (time.perf_counter() - t0) / n
lamb, lg = make(fastopt.LAMB, lr=1e-3); adamw, ag = make(fastopt.AdamW, lr=1e-3); lars, sg = make(fastopt.LARS, lr=1e-2)
L, A, S = [], [], []
for _ in range(41):
    L.append(t(lamb, lg)); A.append(t(adamw, ag)); S.append(t(lars, sg))
ml, ma, ms = np.median(L), np.median(A), np.median(S)
print(f"LAMB {ml*1e3:.3f} ms  AdamW {ma*1e3:.3f} ms  LARS {ms*1e3:.3f} ms  LAMB/AdamW {ml/ma:.2f}  LARS/AdamW {ms/ma:.2f}")
