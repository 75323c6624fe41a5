"""Batch norm training step (forward + backward): fastopt (NCHW, channels-last memory, fresh buffers) vs textbook
NumPy, torch autograd (contiguous, channels_last) and the roofline probe.

    pytest benchmarks/bench_batchnorm.py --benchmark-only [--quick]

Cases and byte counts: fastopt/bench/batchnorm.py (also ``python -m fastopt bench --family batchnorm``).
"""
from _harness import case_params, run_benchmark
from fastopt.bench import batchnorm


def pytest_generate_tests(metafunc):
    if "bn_case" in metafunc.fixturenames:
        pairs = case_params(metafunc.config, batchnorm.cases)
        metafunc.parametrize("bn_case,impl", pairs, ids=[f"{c.key}/{i.name}" for c, i in pairs])


def test_batchnorm(benchmark, checked, bn_case, impl, request):
    checked(bn_case)
    run_benchmark(benchmark, bn_case, impl, request.config.getoption("--quick"))
