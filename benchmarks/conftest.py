"""pytest-benchmark suite options: ``--quick`` for tiny sizes (CI), ``--bench-threads`` to choose thread counts.

Every test checks, once per case and before timing, that all implementations of the case give the same numbers
(``fastopt.bench.check_case``): no benchmark of wrong code.
"""
import pytest

from fastopt.bench import check_case

_checked = set()


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="tiny sizes, for a CI smoke run of the suite")
    parser.addoption("--bench-threads", nargs="+", type=int, default=[1, 2], help="thread counts (default 1 2)")


def pytest_configure(config):
    config.addinivalue_line("markers", "kernel_family(name): benchmark of one kernel family")


@pytest.fixture
def checked():
    """Returns a function that checks a case once per session (implementations agree) and sets its threads."""
    from fastopt.bench.core import set_threads

    def run(case):
        if case.key not in _checked:
            check_case(case)
            _checked.add(case.key)
        set_threads(case.threads)
    return run
