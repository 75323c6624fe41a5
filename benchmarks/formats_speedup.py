"""Speed-up of each optimizer-state / param format over float32 Adam, timed in alternating rounds (issue 12).

``fastopt bench`` alternates the implementations of one case (fastopt, its probe, the peers), so its "% of probe"
is robust to a drifting machine; but it runs one kernel after another, so a ratio between two of its kernels
(int8 Adam against float32 Adam) drifts with the machine. Here every format's step and every format's probe are
one round's members, in a rotating order, over rounds; each figure is a ratio of medians from the same rounds:

    speed-up = median time of float32 Adam / median time of the format's step
    % probe  = median time of a probe moving the format's bytes / median time of the format's step

The compute-bound steps' times also vary from one allocation of their arrays to the next (seen here: 0.82x to
1.21x for bfloat16 state in three runs of the same build), so the whole measurement is repeated on fresh arrays
(--repeats) and the median of the repeats' ratios is printed, with their range.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/formats_speedup.py \\
        [--sizes 1e7 5e7] [--threads 2] [--rounds 15] [--repeats 5] [--kernels Adam "Adam[int8]" ...]
"""
import argparse
import statistics
import time

from fastopt.bench import core, optim

DEFAULT = ["Adam", "Adam[bfloat16]", "Adam[int8]", "Adam[int4]", "Adam[bf16-kahan]", "Adam[bf16-sr+bf16g+int8]"]


def _members(kernels, size, threads):
    """[(kernel, impl name, object with run())] of each kernel's fastopt step and probe at one size."""
    out = []
    for case in optim.cases(sizes=[size], threads=(threads,), kernels=kernels, peers=False):
        for impl in case.impls:
            if impl.name == "fastopt" or impl.is_probe:
                obj = impl.make()
                obj.run()                                   # warm-up: page faults, lazy state
                out.append((case.kernel, "probe" if impl.is_probe else "step", obj))
    return out


def alternating_medians(members, rounds, min_time=0.02):
    """Median seconds per call of each member, over `rounds` rounds each calling every member in a rotating order."""
    numbers = [max(1, int(min_time / max(_once(obj), 1e-7))) for _, _, obj in members]
    samples = [[] for _ in members]
    for r in range(rounds):
        order = list(range(len(members)))
        for k in order[r % len(order):] + order[:r % len(order)]:
            run, number = members[k][2].run, numbers[k]
            t0 = time.perf_counter()
            for _ in range(number):
                run()
            samples[k].append((time.perf_counter() - t0) / number)
    return [statistics.median(s) for s in samples]


def _once(obj):
    t0 = time.perf_counter()
    obj.run()
    return time.perf_counter() - t0


def _ratios(kernels, size, threads, rounds):
    """{kernel: (speed-up, fraction of probe)} from one allocation of every member."""
    members = _members(kernels, size, threads)
    medians = dict(zip(((k, role) for k, role, _ in members), alternating_medians(members, rounds)))
    del members
    base = medians[("Adam", "step")]
    return {k: (base / medians[(k, "step")], medians[(k, "probe")] / medians[(k, "step")]) for k in kernels}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1e7", "5e7"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels", nargs="+", default=DEFAULT)
    args = parser.parse_args(argv)
    kernels = ["Adam"] + [k for k in args.kernels if k != "Adam"]
    core.set_threads(args.threads)
    print(f"{args.threads} threads, {args.rounds} alternating rounds, {args.repeats} allocations; "
          "speed-up = float32 Adam / the format's step (median of the allocations, [min, max])")
    print(f"{'kernel':28s} {'size':>5s} {'speed-up':>9s} {'range':>14s} {'% probe':>8s} {'range':>11s}")
    for size in args.sizes:
        runs = [_ratios(kernels, size, args.threads, args.rounds) for _ in range(args.repeats)]
        for k in kernels:
            up, frac = [r[k][0] for r in runs], [100 * r[k][1] for r in runs]
            print(f"{k:28s} {size:>5s} {statistics.median(up):8.2f}x  [{min(up):4.2f}, {max(up):4.2f}]"
                  f" {statistics.median(frac):7.0f}%  [{min(frac):3.0f}, {max(frac):3.0f}]")


if __name__ == "__main__":
    main()
