"""Where the serial threshold (FO_PARALLEL_MIN_ELEMENTS, csrc/runtime.h) should be: an fp32 Adam step with one
and two threads around it, the threshold lowered to 1 so that two threads are really used.

    pytest benchmarks/bench_threshold.py --benchmark-only --benchmark-group-by=param:n
"""
import numpy as np
import pytest

import fastopt
from fastopt._config import set_parallel_min_elements

SIZES = [2048, 4096, 8192, 16384, 32768, 65536, 131072]


@pytest.fixture
def no_threshold():
    before = fastopt.parallel_min_elements()
    set_parallel_min_elements(1)
    yield
    set_parallel_min_elements(before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", SIZES)
def test_adam_threads(benchmark, no_threshold, n, threads, request):
    if request.config.getoption("--quick") and n > 8192:
        pytest.skip("--quick")
    before = fastopt.get_num_threads()
    fastopt.set_num_threads(threads)
    try:
        p, g = np.ones(n, np.float32), np.ones(n, np.float32)
        opt = fastopt.Adam([p])
        opt.step([g])
        benchmark.name = f"threads={threads}"
        benchmark(opt.step, [g])
    finally:
        fastopt.set_num_threads(before)
