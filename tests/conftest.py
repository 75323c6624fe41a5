"""Shared fixtures: thread counts, instruction-set paths and random generators."""
import signal
import sys

import numpy as np
import pytest

import fastopt


@pytest.fixture(scope="session", autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler, which the Ctrl-C tests need: a shell starts background jobs with SIGINT
    ignored, and then neither _thread.interrupt_main() nor a raised SIGINT reaches Python."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session", autouse=True)
def torch_on_one_thread():
    """Torch is a reference here: one thread, so that its OpenMP pool does not spin against fastopt's team on the
    same cores (on 2 cores, a 30-step peer trajectory took 2.6-5.5 s with torch on 2 threads, 0.03-0.08 s on 1).
    Collection has imported torch by now wherever a test module uses it; nothing imports it for this."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    yield


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

