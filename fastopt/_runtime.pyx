# cython: language_level=3
# csrc-sources: runtime.c kernels_baseline.c kernels_avx2.c kernels_avx512.c
"""The one runtime of fastopt: instruction-set path, serial threshold and fork handling, shared by every kernel.

This is the only extension compiled with csrc/runtime.c. It owns the single ``fo_runtime`` state and exports its
address in the capsule ``_C_API``; every other kernel module reads that state through a pointer set at its import
(fastopt/_runtime_api.pxi), so ``set_isa`` or ``set_parallel_min_elements`` act on one value for all of them.

Fork: OpenMP (libgomp) cannot start a thread team in a ``fork()``ed child once the parent has run one: the child
would wait forever for threads that were not copied. The runtime notices the fork (a ``pthread_atfork`` child
handler) and, if the parent had run a threaded kernel, runs every kernel of the child serially and warns once.
``set_num_threads(n)`` in the child turns threads back on: safe only with an OpenMP runtime that survives fork
(libgomp does not; use the "spawn" or "forkserver" start methods of multiprocessing instead).
"""
import os
import warnings

from cpython.pycapsule cimport PyCapsule_New

cdef extern from "runtime.h" nogil:
    void fo_runtime_init()
    int fo_isa_compiled(int isa)
    int fo_isa_supported(int isa)
    int fo_isa_set(int isa)
    const char *fo_isa_name(int isa)
    int fo_openmp_enabled()
    void fo_set_max_threads(int n)
    void fo_set_parallel_min(int64_t n)

fo_runtime_init()
_C_API = PyCapsule_New(<void *>fo_rt, b"fastopt._runtime._C_API", NULL)

FORK_WARNING = ("fastopt: this process was forked after running multi-threaded kernels; OpenMP threads do not "
                "survive fork, so kernels in this child run on one thread. Use the 'spawn' or 'forkserver' "
                "start method for parallel workers, or call fastopt.set_num_threads(n) in the child to accept "
                "the risk of a hang.")


def isa_names():
    """Names of every instruction-set path, narrowest first."""
    return [fo_isa_name(isa).decode() for isa in range(FO_ISA_COUNT)]


def isa_active():
    """Name of the instruction-set path every kernel uses now."""
    return fo_isa_name(fo_isa_active()).decode()


def isa_set(int isa):
    """Selects path number `isa` (an index into isa_names()) for every kernel; False if this CPU or build lacks it."""
    return fo_isa_set(isa) == FO_OK


def isa_table():
    """{name: (compiled, supported)} for every instruction-set path."""
    return {fo_isa_name(isa).decode(): (bool(fo_isa_compiled(isa)), bool(fo_isa_supported(isa)))
            for isa in range(FO_ISA_COUNT)}


def openmp_enabled():
    return bool(fo_openmp_enabled())


def max_threads():
    """Threads a kernel may use: OpenMP's max threads, or 1 in a forked child (see the module docstring)."""
    return 1 if fo_rt.fork_serial else fo_max_threads()


def set_max_threads(int n):
    fo_set_max_threads(n)


def parallel_min_elements():
    return fo_parallel_min()


def set_parallel_min_elements(int64_t n):
    fo_set_parallel_min(n)


def fork_state():
    """(fork_serial, fork_generation, teams_started) of the runtime state, for tests and show_config."""
    return bool(fo_rt.fork_serial), fo_rt.fork_generation, bool(fo_rt.teams_started)


def _after_fork_in_child():
    if fo_rt.fork_serial:
        warnings.warn(FORK_WARNING, RuntimeWarning, stacklevel=2)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
