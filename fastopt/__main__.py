"""Command line: ``python -m fastopt demo|bench|config`` (``fastopt`` when installed as a script)."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastopt", description="fastopt command line")
    sub = parser.add_subparsers(dest="command", required=True)
    from fastopt.bench import cli as bench_cli
    bench_cli.add_arguments(sub.add_parser("bench", help="benchmark kernels against their peers and the roofline"))
    sub.add_parser("config", help="print the build and run-time configuration")
    from fastopt import demo
    demo.add_arguments(sub.add_parser("demo", help="train an MLP with batch norm on scikit-learn's digits"))
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.main(args)
    if args.command == "bench":
        return bench_cli.main(args)
    if args.command == "config":
        import fastopt
        fastopt.show_config()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
