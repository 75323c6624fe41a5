"""Command line: ``python -m fastopt bench|config`` (``fastopt`` when installed as a script)."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastopt", description="fastopt command line")
    sub = parser.add_subparsers(dest="command", required=True)
    from fastopt.bench import cli as bench_cli
    bench_cli.add_arguments(sub.add_parser("bench", help="benchmark kernels against their peers and the roofline"))
    sub.add_parser("config", help="print the build and run-time configuration")
    args = parser.parse_args(argv)
    if args.command == "bench":
        return bench_cli.main(args)
    if args.command == "config":
        import fastopt
        fastopt.show_config()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
