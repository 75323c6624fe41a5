"""The L2 penalty gradient and dropout (the regularize family): fastopt vs NumPy, torch and the roofline probe.

    pytest benchmarks/bench_regularize.py --benchmark-only [--quick] [--bench-threads 2]

Cases and byte counts: fastopt/bench/regularize.py (also ``python -m fastopt bench --family regularize``, which
prints medians, ratios to every peer and the fraction of the roofline probe).
"""
from _harness import case_params, run_benchmark
from fastopt.bench import regularize


def pytest_generate_tests(metafunc):
    if "regularize_case" in metafunc.fixturenames:
        pairs = case_params(metafunc.config, regularize.cases)
        metafunc.parametrize("regularize_case,impl", pairs, ids=[f"{c.key}/{i.name}" for c, i in pairs])


def test_regularize(benchmark, checked, regularize_case, impl, request):
    checked(regularize_case)
    run_benchmark(benchmark, regularize_case, impl, request.config.getoption("--quick"))
