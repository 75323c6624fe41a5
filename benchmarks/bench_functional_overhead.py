"""functional.adam_ per-call time vs the raw StepPlan kernel call (bind + run), float32 n=1000; 60 alternating
rounds of 2000 calls, medians.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_functional_overhead.py
"""
import time, statistics
import numpy as np
import fastopt
from fastopt import _optim
from fastopt.functional import adam_

def main():
    n = 1000
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    step = np.zeros((), np.int64)
    plan = _optim.StepPlan(_optim.ALGOS["adam"], [p], [0], [0], 1, [(m, v, None)], [step], [None], [False])
    ws = _optim.WriteSet([p, m, v], ["p", "m", "v"])
    hp = fastopt.Adam.spec.layout().pack((1e-3, (0.9, 0.999), 1e-8, 0.0, False, False, False))

    def raw():
        step[...] = 0
        plan.bind([g], ws)
        plan.run(hp)

    def func():
        adam_(p, g, m, v, step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)

    def bench(f, reps=2000):
        t0 = time.perf_counter_ns()
        for _ in range(reps):
            f()
        return (time.perf_counter_ns() - t0) / reps / 1e3

    rounds = {"raw": [], "func": []}
    for _ in range(5): raw(); func()
    for r in range(60):
        rounds["raw"].append(bench(raw)); rounds["func"].append(bench(func))
    r, f = statistics.median(rounds["raw"]), statistics.median(rounds["func"])
    print(f"raw StepPlan bind+run: {r:.2f} us   functional.adam_: {f:.2f} us   overhead: {f - r:.2f} us")


if __name__ == "__main__":
    main()
