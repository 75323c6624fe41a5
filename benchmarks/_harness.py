"""Helpers shared by the benchmark files."""


def case_params(config, make_cases):
    """(case, impl) pairs of a family for parametrization, honouring --quick and --bench-threads."""
    cases = make_cases(threads=tuple(config.getoption("--bench-threads")), quick=config.getoption("--quick"))
    return [(c, i) for c in cases for i in c.impls]


def run_benchmark(benchmark, case, impl, quick):
    obj = impl.make()
    obj.run()
    benchmark.group = case.key
    benchmark.name = impl.name
    benchmark.extra_info.update(bytes=case.bytes_per_call, numel=case.numel, threads=case.threads)
    if quick:
        benchmark.pedantic(obj.run, rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark(obj.run)
    median = benchmark.stats.stats.median
    benchmark.extra_info["gbps"] = case.bytes_per_call / median / 1e9 if median > 0 else None
