"""ZeRO step time split into communication and update, bytes sent and state bytes per rank.

    OMP_NUM_THREADS=1 mpiexec -n N python benchmarks/distributed_step.py [--sizes 1e6 1e7] [--rounds 7]

For each size (params: 4 float32 tensors), AdamW: the plain one-process step (``fastopt.AdamW``, the baseline;
under N > 1 ranks every rank runs it at once, so it is the contended step: compare the update with the 1-rank
run's baseline for a lone process) and
the ZeRO-1 and ZeRO-2 steps, in alternating rounds; medians of each phase (``reduce``: gradient communication,
``update``: the shard's fused step, ``gather``: the params' allgather). Bytes sent per rank are the ring
algorithms' counts (allreduce 2(N-1)/N V, reduce-scatter and allgather (N-1)/N V each, V the padded flat size).
``--sweep`` also times MPI_Allreduce at 8 B .. 64 MiB and fits the alpha-beta model t = alpha + beta * bytes.
"""
import argparse
import time

import numpy as np
from mpi4py import MPI

import fastopt
from fastopt.distributed import ZeroRedundancyOptimizer

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()


def make(n):
    shapes = [n // 2, n // 4, n // 8, n - n // 2 - n // 4 - n // 8]
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes], [rng.standard_normal(s).astype(np.float32)
                                                                          for s in shapes]


def one_size(n, rounds):
    params, grads = make(n)
    single = fastopt.AdamW([p.copy() for p in params], lr=1e-4)
    zeros = {f"zero{2 if s else 1}": ZeroRedundancyOptimizer([p.copy() for p in params], fastopt.AdamW, comm=COMM,
                                                             shard_gradients=s, lr=1e-4) for s in (False, True)}
    times = {"single": []} | {k: [] for k in zeros}
    for _ in range(rounds + 1):                      # the first round warms up (state allocation, page faults)
        COMM.Barrier()
        t = time.perf_counter()
        single.step(grads)
        times["single"].append({"update": time.perf_counter() - t})
        for name, z in zeros.items():
            COMM.Barrier()
            z.step(grads)
            times[name].append(dict(z.timings))
    rows = {}
    for name, ts in times.items():
        ts = ts[1:]
        med = {k: float(np.median([COMM.allreduce(t[k], MPI.MAX) for t in ts])) for k in ts[0]}
        rows[name] = med
    v = sum(-(-p.size // 256) * 256 for p in params) * 4
    sent = {"zero1": 2 * (SIZE - 1) / SIZE * v + (SIZE - 1) / SIZE * v, "zero2": 2 * (SIZE - 1) / SIZE * v}
    state = {name: COMM.allreduce(z.local_state_nbytes(), MPI.MAX) for name, z in zeros.items()}
    single_state = sum(a.nbytes for st in single._state.values() for a in st.values() if isinstance(a, np.ndarray))
    return rows, sent, state, single_state


def sweep():
    sizes = [8 * 4 ** k for k in range(12)]          # 8 B .. 32 MiB
    out = []
    for nbytes in sizes:
        buf = np.zeros(nbytes // 4, np.float32)
        reps = max(3, min(200, int(2e7 // max(nbytes, 1))))
        ts = []
        for _ in range(reps):
            COMM.Barrier()
            t = time.perf_counter()
            COMM.Allreduce(MPI.IN_PLACE, buf)
            ts.append(time.perf_counter() - t)
        out.append((nbytes, COMM.allreduce(float(np.median(ts)), MPI.MAX)))
    x = np.array([b for b, _ in out], float)
    y = np.array([t for _, t in out])
    beta, alpha = np.polyfit(x[x >= 2 ** 16], y[x >= 2 ** 16], 1)
    return out, float(np.median(y[x <= 512])), beta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sweep", action="store_true")
    args = ap.parse_args()
    for n in args.sizes:
        rows, sent, state, single_state = one_size(int(n), args.rounds)
        if RANK:
            continue
        base = rows["single"]["update"]
        print(f"N={SIZE} ranks, {int(n):.0e} params, {fastopt.get_num_threads()} thread(s) each; one-process AdamW "
              f"step {1e3 * base:.2f} ms, state {single_state / 2**20:.1f} MiB")
        for name in ("zero1", "zero2"):
            r = rows[name]
            total = r["reduce"] + r["update"] + r["gather"]
            print(f"  {name}: step {1e3 * total:.2f} ms = reduce {1e3 * r['reduce']:.2f} + update "
                  f"{1e3 * r['update']:.2f} + gather {1e3 * r['gather']:.2f} | update / one-process step "
                  f"{r['update'] / base:.2f} | sent/rank {sent[name] / 2**20:.1f} MiB | state/rank "
                  f"{state[name] / 2**20:.2f} MiB ({state[name] / single_state:.3f} of one process)")
    if args.sweep:
        out, alpha, beta = sweep()
        if not RANK:
            print(f"MPI_Allreduce on {SIZE} ranks: " + ", ".join(f"{b}B {1e6 * t:.1f}us" for b, t in out))
            print(f"alpha (median <= 512 B) {1e6 * alpha:.1f} us, beta (fit >= 64 KiB) {1e9 * beta:.3f} ns/B "
                  f"= {1 / beta / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
