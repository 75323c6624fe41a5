"""How a fit shares the cores between BLAS (the matmuls) and fastopt's OpenMP team (every other kernel).

Both pools keep their idle threads spinning for a while after each call (OpenBLAS's pthreads, libgomp's team).
A training step hands over from one pool to the other several times per layer, so with both pools at full width
each one's workers spin on the cores the other needs: on 2 cores a fit ran 10x slower than with either pool on one
thread. The rule, which depends on the network and the batch and not on the machine's sizes:

    during a fit, one pool owns the cores and the other runs on the calling thread only.

BLAS owns them when the matmuls are most of a step's work. A step of a network with layer sizes a_l -> b_l and
batch B does 3 B sum(a_l b_l) multiply-adds in BLAS (the forward product and the two backward ones), while the
optimizer step, bias + activation, loss and penalties touch about P + 4 B sum(b_l) elements (P = sum(a_l b_l)
weights) in memory-bound passes. One element of such a pass costs about ``MADDS_PER_ELEMENT`` BLAS multiply-adds
(Adam moves 28 bytes an element, ~1.4 ns at 20 GB/s a core; a core multiply-adds at ~20-50 G/s in a GEMM), so

    owner = "blas"    if 3 B sum(a_l b_l) >= MADDS_PER_ELEMENT * (P + 4 B sum(b_l))
            "openmp"  otherwise (small batches of wide layers: the optimizer step dominates).

The split is insensitive to that constant where it matters: for a large network the ratio is ~3B / 30, so BLAS
owns the cores from batch ~10 on, where the two costs are within a factor of ~2 anyway, and for a small network
neither pool threads (OpenBLAS keeps small products serial; fastopt runs below ``parallel_min_elements`` serially).
When BLAS threads through the same OpenMP runtime as fastopt (an OpenMP build of OpenBLAS on libgomp), the two
already are one pool and nothing is limited.
"""
import contextlib
import functools

from threadpoolctl import threadpool_info, threadpool_limits

import fastopt

MADDS_PER_ELEMENT = 30


def pool_owner(sizes, batch):
    """"blas" or "openmp": the pool that gets the threads while training layer sizes ``sizes`` at ``batch``."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    weights = sum(a * b for a, b in pairs)
    madds = 3 * batch * weights
    elements = weights + 4 * batch * sum(b for _, b in pairs)
    return "blas" if madds >= MADDS_PER_ELEMENT * elements else "openmp"


@functools.lru_cache(maxsize=1)
def _blas_shares_openmp():
    """True when every BLAS library threads with OpenMP and only one OpenMP runtime is loaded (one pool)."""
    info = threadpool_info()
    blas = [lib for lib in info if lib["user_api"] == "blas"]
    runtimes = {lib["filepath"] for lib in info if lib["user_api"] == "openmp"}
    return bool(blas) and len(runtimes) == 1 and all(lib.get("threading_layer") == "openmp" for lib in blas)


@contextlib.contextmanager
def _fastopt_threads(n):
    before = fastopt.get_num_threads()
    fastopt.set_num_threads(n)
    try:
        yield
    finally:
        fastopt.set_num_threads(before)


def training_threads(sizes, batch):
    """Context manager for a fit: the pool ``pool_owner`` names keeps its threads, the other gets one."""
    if fastopt.get_num_threads() == 1 or _blas_shares_openmp():
        return contextlib.nullcontext()
    if pool_owner(sizes, batch) == "blas":
        return _fastopt_threads(1)
    return threadpool_limits(limits=1, user_api="blas")
