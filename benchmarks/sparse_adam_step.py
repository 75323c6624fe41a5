"""Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/sparse_adam_step.py [rounds]

fastopt.SparseAdam.step on an embedding table (200,000 x 64 float32, 51 MB: out of cache) against
torch.optim.SparseAdam fed the same sparse COO gradient, against the NumPy ufunc update fastopt had before its
native kernel (gather, ufuncs into temporaries, scatter; kept here as a baseline), and against a probe with the
step's memory traffic: per touched row, read param, exp_avg, exp_avg_sq and the gradient row and write the first
three (7 rows), streamed over contiguous arrays of the touched rows' size (the random rows' own traffic can only
be slower). Two gradients: 8,192 distinct rows; 16,384 Zipf-distributed token ids (repeats summed first, as
torch's coalesce does; the sum is part of every implementation's time). Medians over alternating rounds in one
run, at fastopt's and torch's default thread counts.
"""
import math
import sys
import time

import numpy as np

import fastopt
from fastopt import _probe

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
N_ROWS, N_COLS = 200_000, 64
HP = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)


def numpy_update(p, idx, rows, m, v, step):
    """The pre-native update (NumPy ufuncs on gathered rows, scattered back), on coalesced distinct indices."""
    (b1, b2), eps = HP["betas"], HP["eps"]
    mi, vi = m[idx], v[idx]
    t = np.subtract(rows, mi)
    np.multiply(t, 1 - b1, out=t)
    np.add(mi, t, out=mi)
    m[idx] = mi
    np.multiply(rows, rows, out=t)
    np.subtract(t, vi, out=t)
    np.multiply(t, 1 - b2, out=t)
    np.add(vi, t, out=vi)
    v[idx] = vi
    np.sqrt(vi, out=t)
    np.add(t, eps, out=t)
    np.divide(mi, t, out=t)
    np.multiply(t, -HP["lr"] * math.sqrt(1 - b2 ** step) / (1 - b1 ** step), out=t)
    p[idx] += t


def coalesced(idx, rows):
    order = np.argsort(idx, kind="stable")
    ordered = idx[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    if starts.size == idx.size:
        return idx, rows
    return ordered[starts], np.add.reduceat(rows[order], starts, axis=0)


def implementations(idx, rows, rng):
    import torch
    table = rng.standard_normal((N_ROWS, N_COLS)).astype(np.float32)
    fo_p = table.copy()
    fo = fastopt.SparseAdam([fo_p], **HP)
    np_p, np_m, np_v = table.copy(), np.zeros_like(table), np.zeros_like(table)
    np_step = [0]
    t_p = torch.tensor(table, requires_grad=True)
    t_opt = torch.optim.SparseAdam([t_p], **HP)
    t_grad = torch.sparse_coo_tensor(torch.from_numpy(idx)[None], torch.from_numpy(rows), t_p.shape)
    unique = np.unique(idx).size
    reads = [rng.standard_normal(unique * N_COLS).astype(np.float32) for _ in range(4)]
    writes = [np.zeros(unique * N_COLS, np.float32) for _ in range(3)]

    def numpy_step():
        np_step[0] += 1
        numpy_update(np_p, *coalesced(idx, rows), np_m, np_v, np_step[0])

    def torch_step():
        t_p.grad = t_grad
        t_opt.step()

    return {"fastopt": lambda: fo.step([(idx, rows)]), "numpy ufuncs": numpy_step, "torch": torch_step,
            "probe": lambda: _probe.stream(reads, writes)}


def measure(name, idx, rows, rng):
    impls = implementations(idx, rows, rng)
    times = {k: [] for k in impls}
    for fn in impls.values():
        fn()
    for _ in range(ROUNDS):
        for k, fn in impls.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{name}: {np.unique(idx).size} distinct rows of {idx.size}; medians over {ROUNDS} alternating rounds: "
          + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()))
    print(f"  fastopt: {med['probe'] / med['fastopt']:.0%} of the probe, {med['torch'] / med['fastopt']:.2f}x "
          f"torch, {med['numpy ufuncs'] / med['fastopt']:.2f}x the NumPy ufuncs")


def main():
    import torch
    rng = np.random.default_rng(0)
    print(f"fastopt {fastopt.get_num_threads()} threads, torch {torch.get_num_threads()} threads, "
          f"ISA {fastopt.get_isa()}, table {N_ROWS} x {N_COLS} float32")
    distinct = rng.choice(N_ROWS, size=8192, replace=False).astype(np.int64)
    measure("distinct", distinct, rng.standard_normal((distinct.size, N_COLS)).astype(np.float32), rng)
    tokens = (rng.zipf(1.2, size=16384) % N_ROWS).astype(np.int64)
    measure("zipf tokens", tokens, rng.standard_normal((tokens.size, N_COLS)).astype(np.float32), rng)


if __name__ == "__main__":
    main()
