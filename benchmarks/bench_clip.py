"""clip_grad_norm_: fastopt (fused multi-array norm + scale) vs NumPy and torch.nn.utils.clip_grad_norm_ (foreach).

    pytest benchmarks/bench_clip.py --benchmark-only            # pytest-benchmark table
    python benchmarks/bench_clip.py [--threads N]               # alternating rounds, medians and ratios

Each call computes the global L2 norm of all gradients and scales them (max_norm is set just below the norm, so
the scale pass runs every call and values stay stable). Traffic per call: read once (norm) + read/write (scale).
"""
import argparse
import statistics
import time

import numpy as np
import pytest

import fastopt

CASES = {"200x5000_f32": (200, 5000), "1x1e7_f32": (1, 10_000_000), "2000x500_f32": (2000, 500)}


def make_grads(count, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(np.float32) for _ in range(count)]


def impl_fastopt(grads):
    max_norm = 0.5 * fastopt.get_total_norm(grads)
    return lambda: fastopt.clip_grad_norm_(grads, max_norm)


def impl_numpy(grads):
    max_norm = 0.5 * fastopt.get_total_norm(grads)

    def run():
        total = float(np.sqrt(sum(float(np.dot(g, g)) for g in grads)))
        coef = min(1.0, max_norm / (total + 1e-6))
        for g in grads:
            g *= np.float32(coef)
        return total
    return run


def impl_torch(grads):
    import torch
    params = []
    for g in grads:
        p = torch.empty(g.shape)
        p.grad = torch.from_numpy(g)
        params.append(p)
    max_norm = 0.5 * fastopt.get_total_norm(grads)
    return lambda: torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


IMPLS = {"fastopt": impl_fastopt, "numpy": impl_numpy, "torch_foreach": impl_torch}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", list(CASES))
def test_clip_grad_norm(benchmark, case, impl):
    if impl == "torch_foreach":
        pytest.importorskip("torch")
    count, n = CASES[case]
    run = IMPLS[impl](make_grads(count, n))
    run()
    benchmark.group = case
    benchmark.extra_info.update(numel=count * n, bytes=3 * 4 * count * n)
    benchmark(run)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.threads:
        fastopt.set_num_threads(args.threads)
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    for case, (count, n) in CASES.items():
        runs = {}
        for name, make in IMPLS.items():
            try:
                runs[name] = make(make_grads(count, n))
            except ImportError:
                continue
        times = {name: [] for name in runs}
        reps = max(1, int(2e7 // (count * n)))
        for _ in range(args.rounds):                     # alternating short rounds: drift hits all alike
            for name, run in runs.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    run()
                times[name].append((time.perf_counter() - t0) / reps)
        med = {k: statistics.median(v) for k, v in times.items()}
        gbps = {k: 12 * count * n / v / 1e9 for k, v in med.items()}
        line = ", ".join(f"{k} {v * 1e3:.3f} ms ({gbps[k]:.1f} GB/s, x{v / med['fastopt']:.2f})" for k, v in med.items())
        print(f"{case:>14} threads={fastopt.get_num_threads()}: {line}")


if __name__ == "__main__":
    main()
