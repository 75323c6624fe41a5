"""Optimizer steps: fastopt vs textbook NumPy, torch.optim single-tensor/foreach/fused, and the roofline probe.

    pytest benchmarks/bench_optim.py --benchmark-only [--quick] [--benchmark-json out.json]

Cases and byte counts: fastopt/bench/optim.py. The same cases drive ``python -m fastopt bench --family optim``.
"""
from _harness import case_params, run_benchmark
from fastopt.bench import optim


def pytest_generate_tests(metafunc):
    if "optim_case" in metafunc.fixturenames:
        pairs = case_params(metafunc.config, optim.cases)
        metafunc.parametrize("optim_case,impl", pairs, ids=[f"{c.key}/{i.name}" for c, i in pairs])


def test_optim(benchmark, checked, optim_case, impl, request):
    checked(optim_case)
    run_benchmark(benchmark, optim_case, impl, request.config.getoption("--quick"))
