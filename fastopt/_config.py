"""Threads and instruction-set paths of the compiled kernels, and ``show_config``.

Threads follow OpenMP's own setting (``omp_get_max_threads``), so ``OMP_NUM_THREADS``,
``threadpoolctl.threadpool_limits(n, user_api="openmp")`` and ``set_num_threads`` all act on the same value.
The instruction-set path, the serial threshold and the fork rule live once, in ``fastopt._runtime``, whose state
every kernel module reads.
"""
import glob
import importlib
import importlib.machinery
import os
import platform
import sys
import warnings

import numpy as np

from fastopt import _runtime


def _kernel_modules():
    """Every compiled module of the package that reads the runtime (derived from the files present)."""
    here = os.path.dirname(os.path.abspath(__file__))
    names = set()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in glob.glob(os.path.join(here, "_*" + suffix)):
            names.add(os.path.basename(path).split(".")[0])
    names.discard("_runtime")
    return [importlib.import_module("fastopt." + name) for name in sorted(names)]


def _check_count(n, what):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"Invalid {what}: expected an integer >= 1, got {type(n).__name__} {n!r}")
    if n < 1:
        raise ValueError(f"Invalid {what}: expected an integer >= 1, got {n!r}")
    return int(n)


def get_num_threads():
    """Threads a kernel may use (OpenMP's max threads; 1 in a build without OpenMP, and in a child forked after
    threaded kernels ran, until ``set_num_threads`` is called there)."""
    return _runtime.max_threads()


def set_num_threads(n):
    """Sets the threads kernels may use (``omp_set_num_threads``). Kernels on fewer than
    ``parallel_min_elements()`` elements run serially whatever this says. In a forked child it turns threads back
    on, which hangs with libgomp if the parent had run threaded kernels (prefer the spawn/forkserver start methods)."""
    _runtime.set_max_threads(_check_count(n, "number of threads"))


def parallel_min_elements():
    """Below this many elements a kernel call runs on one thread (thread start-up would cost more)."""
    return _runtime.parallel_min_elements()


def set_parallel_min_elements(n):
    """Sets the serial threshold of every kernel (for benchmarks that measure where it should be)."""
    _runtime.set_parallel_min_elements(_check_count(n, "threshold"))


def get_isa():
    """Name of the active instruction-set path: 'baseline', 'avx2' or 'avx512'."""
    return _runtime.isa_active()


def available_isas():
    """Instruction-set paths this build and CPU can run, narrowest first."""
    return [name for name, (compiled, supported) in _runtime.isa_table().items() if compiled and supported]


def set_isa(name):
    """Forces one instruction-set path for every kernel (results agree across paths bit for bit)."""
    names = _runtime.isa_names()
    if not isinstance(name, str):
        raise TypeError(f"Invalid instruction set {name!r}: expected a str, one of {names}")
    if name not in names:
        raise ValueError(f"Invalid instruction set {name!r}: expected one of {names}")
    if not _runtime.isa_set(names.index(name)):
        raise ValueError(f"instruction set {name!r} is not supported here; available: {available_isas()}")


def config():
    """The build and run-time configuration as a dict."""
    from fastopt import __version__
    return {
        "fastopt": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "openmp": _runtime.openmp_enabled(),
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
