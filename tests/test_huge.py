"""int64 indexing: a float32 parameter of 2**31 + 1,000 elements (SGD, lr 1) is updated to its last element.

About 16 GiB (param and grad, 8 GiB each): slow, and skipped where the machine has less memory available."""
import os

import numpy as np
import pytest

import fastopt

N = 2**31 + 1000
NEEDED = 2 * 4 * N + (1 << 30)          # param + grad + 1 GiB of headroom


def _available():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


@pytest.mark.slow
@pytest.mark.skipif(_available() < NEEDED, reason=f"needs {NEEDED / 2**30:.0f} GiB of available memory")
def test_sgd_step_past_int32_indexing():
    p = np.zeros(N, np.float32)
    g = np.empty(N, np.float32)
    g[: N - 2000] = 1.0
    tail = np.arange(2000, dtype=np.float32)          # distinct values at the elements past 2**31
    g[N - 2000:] = tail
    fastopt.SGD([p], lr=1.0).step([g])
    np.testing.assert_array_equal(p[N - 2000:], -tail)
    assert p[0] == -1.0 and p[N - 2001] == -1.0 and p[2**31] == -(2**31 - (N - 2000))
    del g
    assert np.count_nonzero(p[: N - 2000] != -1.0) == 0
