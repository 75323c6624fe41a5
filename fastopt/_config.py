"""Threads and instruction-set paths of the compiled kernels, and ``show_config``.

Threads follow OpenMP's own setting (``omp_get_max_threads``), so ``OMP_NUM_THREADS``,
``threadpoolctl.threadpool_limits(n, user_api="openmp")`` and ``set_num_threads`` all act on the same value.
Every compiled module holds its own instruction-set choice; ``set_isa`` sets them all.
"""
import importlib
import os
import platform
import sys
import warnings

import numpy as np

from fastopt import _optim

_MODULE_NAMES = ("fastopt._optim", "fastopt._batchnorm", "fastopt._loss", "fastopt._reduce", "fastopt._activation",
                 "fastopt._probe")


def _kernel_modules():
    mods = []
    for name in _MODULE_NAMES:
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            if name == "fastopt._optim":
                raise
    return mods


def get_num_threads():
    """Threads a kernel may use (OpenMP's max threads; 1 in a build without OpenMP)."""
    return _optim._max_threads()


def set_num_threads(n):
    """Sets the threads kernels may use (``omp_set_num_threads``). Kernels on fewer than
    ``parallel_min_elements()`` elements run serially whatever this says."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"Invalid number of threads: expected an integer >= 1, got {n!r}")
    _optim._set_max_threads(int(n))


def parallel_min_elements():
    """Below this many elements a kernel call runs on one thread (thread start-up would cost more)."""
    return _optim._parallel_min_elements()


def set_parallel_min_elements(n):
    """Sets the serial threshold of every kernel module (for benchmarks that measure where it should be)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"Invalid threshold: expected an integer >= 1, got {n!r}")
    for mod in _kernel_modules():
        mod._set_parallel_min_elements(int(n))


def get_isa():
    """Name of the active instruction-set path: 'baseline', 'avx2' or 'avx512'."""
    return _optim._isa_active()


def available_isas():
    """Instruction-set paths this build and CPU can run, narrowest first."""
    return [name for name, (compiled, supported) in _optim._isa_table().items() if compiled and supported]


def set_isa(name):
    """Forces one instruction-set path for every kernel (results agree across paths bit for bit)."""
    if name not in _optim._isa_table():
        raise ValueError(f"Invalid instruction set {name!r}: expected one of {list(_optim._isa_table())}")
    if name not in available_isas():
        raise ValueError(f"instruction set {name!r} is not supported here; available: {available_isas()}")
    for mod in _kernel_modules():
        mod._isa_set(name)


def config():
    """The build and run-time configuration as a dict."""
    from fastopt import __version__
    return {
        "fastopt": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "openmp": _optim._openmp_enabled(),
        "num_threads": get_num_threads(),
        "parallel_min_elements": parallel_min_elements(),
        "isa": get_isa(),
        "isas_available": available_isas(),
        "cpu_count": os.cpu_count(),
        "kernel_modules": [m.__name__ for m in _kernel_modules()],
    }


def show_config(file=None):
    """Prints whether OpenMP is in use, the thread count and the instruction-set path in use."""
    cfg = config()
    out = file or sys.stdout
    width = max(len(k) for k in cfg)
    for key, value in cfg.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        print(f"{key:<{width}} : {value}", file=out)


def _apply_environment():
    """FASTOPT_ISA=baseline|avx2|avx512 forces an instruction-set path at import."""
    name = os.environ.get("FASTOPT_ISA", "").strip()
    if name:
        try:
            set_isa(name)
        except ValueError as exc:
            warnings.warn(f"FASTOPT_ISA ignored: {exc}", RuntimeWarning, stacklevel=3)
