"""Run: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/lars_peer.py (needs torch and pytorch-optimizer).

LARS 200 x (50, 100) float32, 1 thread: fastopt.LARS vs pytorch_optimizer.LARS (foreach and single), medians of
alternating rounds; the peer rewrites p.grad, so the gradients are copied back before each of its steps, outside
the timed call (the copy's own time is printed as "copy")."""
import time, numpy as np, torch, fastopt
from pytorch_optimizer import LARS
torch.set_num_threads(1); fastopt.set_num_threads(1)
rng = np.random.default_rng(0)
ps = [rng.standard_normal((50, 100)).astype(np.float32) for _ in range(200)]
gs = [rng.standard_normal((50, 100)).astype(np.float32) for _ in range(200)]
fo = fastopt.LARS([p.copy() for p in ps], lr=1e-2)
peers = {}
for mode in (True, False):
    tp = [torch.tensor(p.copy(), requires_grad=True) for p in ps]
    g0 = [torch.tensor(g) for g in gs]
    for t, g in zip(tp, g0):
        t.grad = g.clone()
    peers[mode] = (LARS(tp, lr=1e-2, foreach=mode), tp, g0)
def t_fastopt():
    t0 = time.perf_counter(); fo.step(gs); return time.perf_counter() - t0
def t_copy(tp, g0):
    t0 = time.perf_counter(); torch._foreach_copy_([t.grad for t in tp], g0); return time.perf_counter() - t0
def t_peer(opt, tp, g0):
    torch._foreach_copy_([t.grad for t in tp], g0)
    t0 = time.perf_counter(); opt.step(); return time.perf_counter() - t0
res = {"fastopt": [], "copy": [], True: [], False: []}
for _ in range(21):
    res["fastopt"].append(min(t_fastopt() for _ in range(5)))
    for mode, (opt, tp, g0) in peers.items():
        res[mode].append(min(t_peer(opt, tp, g0) for _ in range(3)))
    res["copy"].append(min(t_copy(*peers[True][1:]) for _ in range(5)))
med = {k: float(np.median(v)) for k, v in res.items()}
print({str(k): f"{v * 1e6:.0f} us" for k, v in med.items()})
print(f"peer foreach / fastopt: {med[True] / med['fastopt']:.1f}x, peer single / fastopt: {med[False] / med['fastopt']:.1f}x")
