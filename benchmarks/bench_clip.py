"""clip_grad_norm_: fastopt (one fused multi-array norm pass + one scale pass) vs NumPy, torch (foreach) and the
roofline probe.

    pytest benchmarks/bench_clip.py --benchmark-only [--quick]

Cases and byte counts: fastopt/bench/clip.py (also ``python -m fastopt bench --family clip``).
"""
from _harness import case_params, run_benchmark
from fastopt.bench import clip


def pytest_generate_tests(metafunc):
    if "clip_case" in metafunc.fixturenames:
        pairs = case_params(metafunc.config, clip.cases)
        metafunc.parametrize("clip_case,impl", pairs, ids=[f"{c.key}/{i.name}" for c, i in pairs])


def test_clip(benchmark, checked, clip_case, impl, request):
    checked(clip_case)
    run_benchmark(benchmark, clip_case, impl, request.config.getoption("--quick"))
