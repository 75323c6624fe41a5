"""Losses (forward + backward): fastopt vs NumPy, torch autograd and the roofline probe.

    pytest benchmarks/bench_loss.py --benchmark-only [--quick] [--bench-threads 2]

Cases and byte counts: fastopt/bench/loss.py (also ``python -m fastopt bench --family loss``, which prints medians,
ratios to every peer and the fraction of the roofline probe).
"""
from _harness import case_params, run_benchmark
from fastopt.bench import loss


def pytest_generate_tests(metafunc):
    if "loss_case" in metafunc.fixturenames:
        pairs = case_params(metafunc.config, loss.cases)
        metafunc.parametrize("loss_case,impl", pairs, ids=[f"{c.key}/{i.name}" for c, i in pairs])


def test_loss(benchmark, checked, loss_case, impl, request):
    checked(loss_case)
    run_benchmark(benchmark, loss_case, impl, request.config.getoption("--quick"))
