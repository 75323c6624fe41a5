"""Bias + ReLU forward and backward: fastopt's fused kernels vs textbook NumPy (as scikit-learn's MLP), torch
autograd and the roofline probe.

    pytest benchmarks/bench_activation.py --benchmark-only [--quick]

Cases and byte counts: fastopt/bench/activation.py (also ``python -m fastopt bench --family activation``).
"""
from _harness import case_params, run_benchmark
from fastopt.bench import activation


def pytest_generate_tests(metafunc):
    if "activation_case" in metafunc.fixturenames:
        pairs = case_params(metafunc.config, activation.cases)
        metafunc.parametrize("activation_case,impl", pairs, ids=[f"{c.key}/{i.name}" for c, i in pairs])


def test_activation(benchmark, checked, activation_case, impl, request):
    checked(activation_case)
    run_benchmark(benchmark, activation_case, impl, request.config.getoption("--quick"))
