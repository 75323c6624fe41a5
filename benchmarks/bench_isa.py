"""Each instruction-set path on Adam fp32, n = 100,000 (1.6 MB of param + grad + state: in L2/L3 cache).

pytest-benchmark, one benchmark per path (fastopt.set_isa) and thread count:

    python -m pytest benchmarks/bench_isa.py --benchmark-only [--quick] [--bench-threads 1 2]

The ratio of the AVX-512 path to the baseline (SSE2) path, measured in alternating short rounds because this
machine's speed drifts by tens of percent within seconds (medians of the rounds, and their ratios):

    python benchmarks/bench_isa.py [--n 100000] [--rounds 40] [--threads 1 2]

Bytes moved per step: 28 per element (read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq).
"""
import argparse
import time

import numpy as np
import pytest

import fastopt
from fastopt import _probe

N = 100_000
BYTES_PER_ELEMENT = 28


def _adam(n, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    opt = fastopt.Adam([p], lr=1e-4)
    opt.step([g])                    # state created outside the timing
    return opt, g


@pytest.fixture
def isa_and_threads():
    before = fastopt.get_isa(), fastopt.get_num_threads()
    yield
    fastopt.set_isa(before[0])
    fastopt.set_num_threads(before[1])


def pytest_generate_tests(metafunc):
    if "threads" in metafunc.fixturenames:
        metafunc.parametrize("threads", metafunc.config.getoption("--bench-threads"))


def _check_against_baseline(isa, steps=3):
    """No benchmark of wrong code: `steps` steps on this path give the baseline path's bits."""
    out = {}
    for path in ("baseline", isa):
        fastopt.set_isa(path)
        opt, g = _adam(4099)
        for _ in range(steps):
            opt.step([g])
        out[path] = opt.param_groups[0]["params"][0].copy()
    assert np.array_equal(out[isa].view(np.uint32), out["baseline"].view(np.uint32)), isa


@pytest.mark.parametrize("isa", fastopt.available_isas())
def test_adam_f32_isa(benchmark, isa, threads, isa_and_threads, request):
    fastopt.set_num_threads(threads)
    _check_against_baseline(isa)
    fastopt.set_isa(isa)
    quick = request.config.getoption("--quick")
    n = 4096 if quick else N
    opt, g = _adam(n)
    grads = [g]
    benchmark.group = f"adam/f32/{n}/t{threads}"
    benchmark.name = isa
    benchmark.extra_info.update(isa=isa, threads=threads, numel=n, bytes=n * BYTES_PER_ELEMENT)
    if quick:
        benchmark.pedantic(opt.step, args=(grads,), rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark(opt.step, grads)


def _time(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def measure(n=N, rounds=40, threads=(1, 2), reps=None):
    """{threads: {label: median seconds per step}} with labels = ISA paths, "stream" (fastopt._probe.stream: a plain
    C loop with Adam's memory traffic, 4 reads + 3 writes, built for the baseline target; in cache it is not a
    bound) and "overhead" (an Adam step on 16 elements: the Python/Cython cost per call)."""
    reps = reps or max(5, int(2e6 // max(n, 1)))
    before = fastopt.get_isa(), fastopt.get_num_threads()
    opt, g = _adam(n)
    small, g_small = _adam(16)
    rng = np.random.default_rng(1)
    reads = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
    writes = [np.zeros(n, np.float32) for _ in range(3)]
    out = {}
    try:
        for th in threads:
            fastopt.set_num_threads(th)
            samples = {isa: [] for isa in fastopt.available_isas()}
            samples["stream"], samples["overhead"] = [], []
            for _ in range(rounds):
                for label in samples:
                    if label == "stream":
                        fn = lambda: _probe.stream(reads, writes, th)   # noqa: E731
                    elif label == "overhead":
                        fn = lambda: small.step([g_small])             # noqa: E731
                    else:
                        fastopt.set_isa(label)
                        fn = lambda: opt.step([g])                     # noqa: E731
                    fn()
                    samples[label].append(_time(fn, reps))
            out[th] = {label: float(np.median(s)) for label, s in samples.items()}
    finally:
        fastopt.set_isa(before[0])
        fastopt.set_num_threads(before[1])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    cfg = fastopt.config()
    print(f"fastopt {cfg['fastopt']}, openmp={cfg['openmp']}, paths: {', '.join(cfg['isas_available'])}; "
          f"Adam fp32, n={args.n}, {args.rounds} alternating rounds, medians")
    res = measure(args.n, args.rounds, tuple(args.threads))
    for th, med in res.items():
        print(f"\nthreads={th}")
        print(f"  {'path':<10} {'us/step':>9} {'GB/s':>7} {'vs baseline':>12}")
        for label, sec in med.items():
            if label == "overhead":
                continue
            gbs = args.n * BYTES_PER_ELEMENT / sec / 1e9
            print(f"  {label:<10} {sec * 1e6:9.2f} {gbs:7.1f} {med['baseline'] / sec:11.2f}x")
        print(f"  per-call overhead (Adam step, n=16): {med['overhead'] * 1e6:.2f} us")
        if "avx512" in med:
            ratio = med["baseline"] / med["avx512"]
            kernel = (med["baseline"] - med["overhead"]) / (med["avx512"] - med["overhead"])
            verdict = "met" if ratio >= 1.5 else "NOT met"
            print(f"  AVX-512 / baseline: {ratio:.2f}x per step ({kernel:.2f}x kernel only, overhead "
                  f"subtracted); target >= 1.5x {verdict}")


if __name__ == "__main__":
    main()
