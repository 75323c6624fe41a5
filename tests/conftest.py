"""Shared fixtures: thread counts and random generators."""
import numpy as np
import pytest

import fastopt


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
