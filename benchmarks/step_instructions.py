"""Instructions per optimizer step, counted by callgrind: repeatable on a shared, noisy machine, where timings of a
few-microsecond step are not. Compares source trees (each built in place) on the same case.

    python benchmarks/step_instructions.py --trees /path/to/old /path/to/new --optimizer SGD --n 1000

Each tree runs the case twice under ``valgrind --tool=callgrind`` (10 warm-up steps, then 0 or ``--steps`` more);
the difference of the two totals divided by ``--steps`` is the cost of one step, interpreter and kernel together.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

CASE = """
import sys, numpy as np, fastopt
name, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fastopt.set_num_threads(1)
p, g = [np.ones(n, np.float32)], [np.full(n, 0.1, np.float32)]
opt = getattr(fastopt, name)(p, lr=1e-3, **({"momentum": 0.9} if name == "SGD" else {}))
for _ in range(10 + steps):
    opt.step(g)
"""


def instructions(tree, optimizer, n, steps):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        res = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c",
                              CASE, optimizer, str(n), str(steps)], env=dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0"), cwd=tmp,
                             capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", res.stderr).group(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs="+", required=True)
    parser.add_argument("--optimizer", default="SGD")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10000)
    args = parser.parse_args(argv)
    for tree in args.trees:
        per_step = (instructions(tree, args.optimizer, args.n, args.steps)
                    - instructions(tree, args.optimizer, args.n, 0)) / args.steps
        print(f"{tree}: {args.optimizer} n={args.n}: {per_step:,.0f} instructions per step", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
