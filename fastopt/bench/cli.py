"""``python -m fastopt bench``: every kernel against its peers and the roofline, as a table, JSON and a plot."""
import argparse
import importlib
import os
import platform
import sys

from fastopt.bench import FAMILIES
from fastopt.bench.core import check_case, measure_case
from fastopt.bench.report import kept_tail, markdown, plot, table, write_json

FAMILY_MODULES = {family: f"fastopt.bench.{family}" for family in FAMILIES}


def add_arguments(parser):
    parser.add_argument("--family", default="optim", choices=list(FAMILY_MODULES) + ["all"],
                        help="kernel family to benchmark (default: optim)")
    parser.add_argument("--sizes", nargs="+", default=None, help="size labels, e.g. 1e5 1e6 200x5000")
    parser.add_argument("--threads", nargs="+", type=int, default=None, help="thread counts (default: 1 and 2)")
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--kernels", nargs="+", default=None, help="only these kernels, e.g. Adam SGD")
    parser.add_argument("--rounds", type=int, default=None, help="alternating timing rounds (median taken)")
    parser.add_argument("--json", metavar="PATH", help="write all records and the configuration as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a GB/s-vs-size plot (needs matplotlib)")
    parser.add_argument("--markdown", metavar="PATH", help="write a Markdown report (e.g. benchmarks/README.md)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few rounds (a smoke run for CI)")
    parser.add_argument("--no-peers", action="store_true", help="fastopt and the roofline probe only")


def machine_info():
    import numpy
    import fastopt
    info = dict(fastopt.config())
    info["cpu"] = _cpu_model()
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    info["openblas_env"] = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    info["numpy"] = numpy.__version__
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_cases(args):
    families = list(FAMILY_MODULES) if args.family == "all" else [args.family]
    threads = tuple(args.threads or (1, 2))
    out = []
    for family in families:
        try:
            mod = importlib.import_module(FAMILY_MODULES[family])
        except ImportError as exc:
            print(f"[{family}] not available in this build: {exc}", file=sys.stderr)
            continue
        kwargs = dict(sizes=args.sizes, threads=threads, dtypes=tuple(args.dtype), quick=args.quick,
                      peers=not args.no_peers)
        if args.kernels:
            kwargs["kernels"] = args.kernels
        out.extend(mod.cases(**kwargs))
    return out


def main(args):
    from tqdm import tqdm

    info = machine_info()
    print(f"fastopt {info['fastopt']} | numpy {info['numpy']} | torch {info['torch']} | python {info['python']}")
    print(f"{info['cpu']} | {info['cpu_count']} cpus | OpenMP {info['openmp']} | threads {info['num_threads']} | "
          f"ISA {info['isa']} (available: {', '.join(info['isas_available'])})")
    if info["openblas_env"]:
        print(f"warning: {info['openblas_env']} set: they slow NumPy's BLAS; unset them for benchmarks")
    cases = collect_cases(args)
    if not cases:
        print("no cases selected", file=sys.stderr)
        return 2
    rounds = args.rounds or (3 if args.quick else 7)
    min_time = 0.0005 if args.quick else 0.005
    records = []
    for case in tqdm(cases, desc="benchmarking", unit="case", file=sys.stderr):
        check_case(case)
        records.extend(measure_case(case, rounds=rounds, min_time=min_time))
    print()
    print(table(records))
    if args.json:
        write_json(args.json, records, info)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(args.plot, records)
        print(f"wrote {args.plot}")
    if args.markdown:
        command = "fastopt bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:])
        tail = kept_tail(args.markdown)           # hand-written sections after the report's marker survive
        with open(args.markdown, "w") as f:
            f.write(markdown(records, info, command.strip()) + tail)
        print(f"wrote {args.markdown}")
    return 0


def run(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastopt bench", description=__doc__)
    add_arguments(parser)
    return main(parser.parse_args(argv))
