"""Per-call overhead of the functional API (the core-redesign issue's two targets), alternating rounds, medians:

1. ``functional.adam_`` at float32 n = 1000 against the bare compiled call of the same step (``StepPlan.bind``
   + ``run`` on a prebuilt plan: the grad's pointer recorded, one GIL-free kernel call). Target: at most 2 us above it.
2. Batch norm forward + backward of a float32 (256, 1024) batch, training, through
   ``functional.batch_norm_forward`` / ``batch_norm_backward`` against the layer ``nn.BatchNorm`` (which keeps its
   plans). Target: at most 1.1x the layer's time.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_functional_overhead.py [--rounds 41]
"""
import argparse
import statistics
import time

import numpy as np

import fastopt
from fastopt import _optim
from fastopt._contract import IntervalSet
from fastopt.functional import adam_, batch_norm_backward, batch_norm_forward


def _per_call_us(f, reps):
    t0 = time.perf_counter_ns()
    for _ in range(reps):
        f()
    return (time.perf_counter_ns() - t0) / reps / 1e3


def _alternate(fns, rounds, reps):
    """{name: median us per call} over `rounds` rounds, each running every fn once in turn."""
    times = {name: [] for name in fns}
    for f in fns.values():
        _per_call_us(f, max(1, reps // 10))          # warm-up
    for _ in range(rounds):
        for name, f in fns.items():
            times[name].append(_per_call_us(f, reps))
    return {name: statistics.median(t) for name, t in times.items()}


def adam_case(n=1000):
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    step = np.zeros((), np.int64)
    plan = _optim.StepPlan(_optim.ALGOS["adam"], [p], [0], [0], 1, [(m, v, None)], [step], [None], [False])
    written = IntervalSet([p, m, v], ["p", "m", "v"])
    hp = fastopt.Adam.spec.layout().pack((1e-3, (0.9, 0.999), 1e-8, 0.0, False, False, False))

    def kernel():
        plan.bind([g], written)
        plan.run(hp)

    def functional():
        adam_(p, g, m, v, step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)

    return {"kernel": kernel, "functional.adam_": functional}


def batchnorm_case(shape=(256, 1024)):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    C = shape[1]
    layer = fastopt.nn.BatchNorm(C, axis=1)
    gamma, beta = np.ones(C, np.float32), np.zeros(C, np.float32)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)

    def with_layer():
        layer.forward(x, training=True)
        layer.backward(dy)

    def functional():
        _, sm, si = batch_norm_forward(x, gamma, beta, rm, rv, training=True)
        batch_norm_backward(dy, x, gamma, sm, si)

    return {"nn.BatchNorm": with_layer, "functional": functional}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=41)
    args = ap.parse_args()
    t = _alternate(adam_case(), args.rounds, 2000)
    print(f"adam_ n=1000 float32: kernel {t['kernel']:.2f} us, functional.adam_ {t['functional.adam_']:.2f} us, "
          f"overhead {t['functional.adam_'] - t['kernel']:.2f} us (target <= 2 us)")
    t = _alternate(batchnorm_case(), args.rounds, 50)
    print(f"batch norm (256, 1024) float32 fwd+bwd: layer {t['nn.BatchNorm']:.1f} us, functional "
          f"{t['functional']:.1f} us, ratio {t['functional'] / t['nn.BatchNorm']:.3f} (target <= 1.1)")


if __name__ == "__main__":
    main()
