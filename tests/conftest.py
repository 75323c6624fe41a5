"""Shared fixtures: thread counts, instruction-set paths and random generators."""
import numpy as np
import pytest

import fastopt


def pytest_configure(config):
    # also registered in pyproject.toml; here for runs without it (the installed-wheel suite of .ci/wheel.sh)
    config.addinivalue_line("markers", "slow: long tests (qemu, demo, model selection, leaks, huge arrays)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The fuzzer's long run (tests/test_fuzz.py, FASTOPT_FUZZ_EXAMPLES set): outcome counts per entry point."""
    outcomes = getattr(config, "fuzz_outcomes", None)
    if outcomes:
        terminalreporter.section("fuzz outcomes per entry point")
        for name, counts in sorted(outcomes.items()):
            terminalreporter.write_line(f"fuzz {name}: {dict(counts)} (total {sum(counts.values())})")


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def num_threads(request):
    """Runs the test with fastopt limited to 1 and to 2 threads, restoring the setting afterwards."""
    before = fastopt.get_num_threads()
    fastopt.set_num_threads(request.param)
    yield request.param
    fastopt.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def for_each_isa():
    """``for isa in for_each_isa(): ...`` runs the body on every instruction-set path of this CPU (set in turn),
    restoring the path in use afterwards."""
    before = fastopt.get_isa()

    def each():
        for isa in fastopt.available_isas():
            fastopt.set_isa(isa)
            yield isa
    yield each
    fastopt.set_isa(before)

