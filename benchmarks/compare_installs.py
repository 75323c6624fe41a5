"""Before/after speed of two fastopt trees (in-place builds or installs), measured in one run: ``fastopt bench``
is run from each tree in turn, alternating (A B, B A, A B, ...) so that a slow phase of a shared machine falls on
both, and every case's fastopt median is compared.

    python benchmarks/compare_installs.py --trees /path/old /path/new --alternations 3 -- --family all --threads 1 2

Prints, per case (kernel, size, dtype, threads: matched across trees whatever family holds the kernel), the
median over alternations of fastopt's time in each tree and new/old, both as time and as the fraction of the
roofline probe measured in the same bench run (which cancels the machine's phase); then the geometric mean and
the range of new/old over all cases. ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` are unset for the runs.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile


def _bench(tree, bench_args):
    """{case key: (fastopt median s, roofline median s or None)} of one ``fastopt bench`` run from ``tree``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["PYTHONPATH"] = tree
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        done = subprocess.run([sys.executable, "-m", "fastopt", "bench", *bench_args, "--json", path], cwd=tmp,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"fastopt bench failed in {tree}:\n{done.stderr}")
        with open(path) as f:
            records = json.load(f)["results"]
    out = {}
    for r in records:
        key = (r["kernel"], r["size"], r["dtype"], r["threads"])
        if r["impl"] == "fastopt":
            out.setdefault(key, [None, None])[0] = r["median_s"]
        elif r["impl"] == "roofline":
            out.setdefault(key, [None, None])[1] = r["median_s"]
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs=2, required=True, metavar=("OLD", "NEW"))
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: fastopt bench arguments")
    args = ap.parse_args()
    bench_args = [a for a in args.bench_args if a != "--"]
    runs = {0: [], 1: []}
    for k in range(args.alternations):
        for side in ((0, 1) if k % 2 == 0 else (1, 0)):
            print(f"alternation {k + 1}/{args.alternations}: {args.trees[side]}", file=sys.stderr)
            runs[side].append(_bench(args.trees[side], bench_args))
    keys = [key for key in runs[0][0] if all(key in run for side in runs.values() for run in side)]
    print(f"{'kernel':<14}{'size':>12}{'dtype':>9}{'thr':>4}{'old':>11}{'new':>11}{'new/old':>9}{'roof-norm':>10}")
    time_ratios, roof_ratios = [], []
    for key in keys:
        t = [_median(run[key][0] for run in runs[side]) for side in (0, 1)]
        # time relative to the same run's probe, per run, then the median: the machine's phase cancels
        rel = [_median(run[key][0] / run[key][1] for run in runs[side] if run[key][1]) for side in (0, 1)]
        ratio = t[1] / t[0]
        roof = rel[1] / rel[0] if rel[0] and rel[1] else None
        time_ratios.append(ratio)
        if roof is not None:
            roof_ratios.append(roof)
        print(f"{key[0]:<14}{key[1]:>12}{key[2]:>9}{key[3]:>4}{t[0] * 1e6:>9.1f}us{t[1] * 1e6:>9.1f}us"
              f"{ratio:>9.3f}{'' if roof is None else f'{roof:>10.3f}'}")
    for name, rs in (("time", time_ratios), ("probe-normalized", roof_ratios)):
        if rs:
            gmean = math.exp(sum(math.log(r) for r in rs) / len(rs))
            print(f"new/old {name}: geometric mean {gmean:.3f} over {len(rs)} cases, range {min(rs):.3f}-"
                  f"{max(rs):.3f}")


if __name__ == "__main__":
    main()
