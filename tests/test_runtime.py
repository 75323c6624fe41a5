"""The one runtime (fastopt._runtime): a single state shared by every kernel module, the build rule that compiles
each C family once, and the argument checks of the thread and threshold setters."""
import glob
import os
import re

import numpy as np
import pytest

import fastopt
from fastopt import _config, _runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__)))


def _header(pyx, key):
    with open(pyx) as f:
        m = re.search(rf"^# {key}:(.*)$", f.read(2000), re.M)
    return m.group(1).split() if m else []


def test_runtime_exports_one_state_in_a_capsule():
    assert type(_runtime._C_API).__name__ == "PyCapsule"
    assert "fastopt._runtime._C_API" in repr(_runtime._C_API)


def test_kernel_modules_keep_no_runtime_state_of_their_own():
    mods = _config._kernel_modules()
    assert {m.__name__ for m in mods} >= {"fastopt._optim", "fastopt._reduce", "fastopt._batchnorm",
                                          "fastopt._loss", "fastopt._activation"}
    for mod in mods:
        for name in ("_isa_set", "_isa_active", "_set_parallel_min_elements", "_set_max_threads"):
            assert not hasattr(mod, name), (mod.__name__, name)


def test_threshold_is_one_value_for_every_kernel():
    """A threshold above the work makes a kernel serial: then its result equals a 1-thread run bit for bit, in
    every family, because all read the same state (a reduction shows the thread count in its last bits)."""
    before, threads = fastopt.parallel_min_elements(), fastopt.get_num_threads()
    n = 1 << 17
    g = [np.random.default_rng(1).standard_normal(n) for _ in range(3)]
    try:
        fastopt.set_num_threads(1)
        serial = fastopt.get_total_norm(g)
        fastopt.set_num_threads(2)
        _config.set_parallel_min_elements(10 * n)
        assert fastopt.parallel_min_elements() == 10 * n
        assert fastopt.get_total_norm(g) == serial
    finally:
        _config.set_parallel_min_elements(before)
        fastopt.set_num_threads(threads)
    assert fastopt.parallel_min_elements() == before


@pytest.mark.parametrize("setter", [fastopt.set_num_threads, _config.set_parallel_min_elements])
@pytest.mark.parametrize("bad, exc", [("2", TypeError), (1.5, TypeError), (True, TypeError), (None, TypeError),
                                      (0, ValueError), (-3, ValueError)])
def test_setters_reject_bad_counts(setter, bad, exc):
    threads, threshold = fastopt.get_num_threads(), fastopt.parallel_min_elements()
    with pytest.raises(exc, match=r"Invalid (number of threads|threshold)"):
        setter(bad)
    assert (fastopt.get_num_threads(), fastopt.parallel_min_elements()) == (threads, threshold)


def test_config_keys_unchanged():
    assert list(fastopt.config()) == ["fastopt", "python", "numpy", "platform", "machine", "openmp", "num_threads",
                                      "parallel_min_elements", "isa", "isas_available", "cpu_count",
                                      "kernel_modules"]


def test_build_rule_compiles_each_c_family_once():
    pyxs = sorted(glob.glob(os.path.join(ROOT, "fastopt", "_*.pyx")))
    if not pyxs:
        pytest.skip("installed package without sources")
    owners = {}
    for pyx in pyxs:
        for family in _header(pyx, "csrc-families"):
            assert family not in owners, (family, owners.get(family), pyx)
            owners[family] = pyx
    runtime_owners = [p for p in pyxs if "runtime.c" in _header(p, "csrc-sources")]
    assert [os.path.basename(p) for p in runtime_owners] == ["_runtime.pyx"]
