"""Cases, implementations, correctness check and alternating-round timing."""
import functools
import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from fastopt import _probe


@dataclass
class Impl:
    """One implementation of a case. ``make()`` builds its arrays (outside any timing) and returns an object with
    ``run()`` (one timed call) and ``result()`` (list of arrays to compare, or None for probes)."""
    name: str
    make: Callable[[], object]
    is_probe: bool = False


def impls_of(args, entries, probe):
    """A case's implementations: one Impl per (name, factory) of ``entries`` whose factory is set (None or False: a
    peer that is absent or not wanted), built as ``factory(*args)``, then the roofline probe ``probe(*args)``."""
    impls = [Impl(name, functools.partial(factory, *args)) for name, factory in entries if factory]
    impls.append(Impl("roofline", functools.partial(probe, *args), is_probe=True))
    return impls


class Probe:
    """A roofline probe: it moves a kernel's memory traffic and computes nothing, so it has no result to check."""

    def result(self):
        return None


class StreamProbe(Probe):
    """The roofline probe of an elementwise kernel: ``fastopt._probe.stream`` over ``reads`` arrays of ``shape``
    into one output (the last input itself if ``writes_alias``, an in-place kernel's traffic)."""

    def __init__(self, reads, writes_alias, shape, dtype):
        self.arrays = [np.ones(shape, dtype=dtype).reshape(-1) for _ in range(reads)]
        self.out = self.arrays[-1] if writes_alias else np.ones(shape, dtype=dtype).reshape(-1)

    def run(self):
        _probe.stream(self.arrays, [self.out])


@dataclass
class StreamKernel:
    """One kernel of a streaming family (losses, regularizers): its implementations, each built as
    ``cls(shape, dtype)`` (torch's as ``cls(torch, shape, dtype)``; None: no such peer), and its traffic: the
    probe streams ``probe_reads`` arrays into one output (the last input itself if ``probe_in_place``), and a call
    moves ``nbytes(shape, itemsize)`` bytes."""
    fastopt: type
    numpy: Optional[type]
    torch: Optional[type]
    torch_name: str
    probe_reads: int
    probe_in_place: bool
    nbytes: Callable[[tuple, int], int]


def stream_cases(family, kernels, table, sizes=None, threads=(1, 2), dtypes=("float32",), peers=True, only=None):
    """The Cases of a streaming family: ``kernels`` {name: StreamKernel}, ``table`` {name: [size labels]} (the
    default sizes; ``sizes``: these labels for every kernel instead).

    Every implementation computes a reduced value (a loss, a penalty) next to its arrays: torch and NumPy sum
    1e6+ float32 terms in float32 (relative error up to ~1e-3 at 1e7), fastopt in double, so float32 cases of that
    size compare to rtol 1e-3."""
    torch = optional_import("torch") if peers else None
    out = []
    for name in only or list(table):
        if name not in kernels:
            raise ValueError(f"unknown {family} kernel {name!r}; expected one of {sorted(kernels)}")
        k = kernels[name]
        for label in sizes or table[name]:
            shape = parse_shape(label)
            numel = int(np.prod(shape))
            for dtype in dtypes:
                entries = [("fastopt", k.fastopt), ("numpy", peers and k.numpy)]
                probe = functools.partial(StreamProbe, k.probe_reads, k.probe_in_place)
                impls = impls_of((shape, dtype), entries, probe)
                if torch is not None and k.torch is not None:
                    impls.insert(-1, Impl(k.torch_name, functools.partial(k.torch, torch, shape, dtype)))
                tol = dict(rtol=2e-4, atol=1e-7) if dtype == "float32" else dict(rtol=1e-10, atol=1e-14)
                if dtype == "float32" and numel >= 10**6:
                    tol["rtol"] = 1e-3
                nbytes = k.nbytes(shape, np.dtype(dtype).itemsize)
                out.extend(Case(family, name, label, numel, dtype, t, nbytes, impls, check_steps=1, **tol)
                           for t in threads)
    return out


def parse_shape(label):
    """A size label as a shape: "4096x1000" -> (4096, 1000), "1e7" -> (10000000,)."""
    return tuple(int(float(d)) for d in label.split("x"))


@dataclass
class Case:
    family: str
    kernel: str
    size: str                      # label, e.g. "1e6" or "200x5000"
    numel: int                     # elements per call
    dtype: str
    threads: int
    bytes_per_call: float          # bytes the kernel must move per call (documented by each family)
    impls: List[Impl]
    rtol: float = 1e-4
    atol: float = 1e-6
    check_steps: int = 3
    meta: dict = field(default_factory=dict)

    @property
    def key(self):
        return f"{self.family}/{self.kernel}/{self.size}/{self.dtype}/t{self.threads}"


def set_threads(n):
    """Sets the threads of fastopt and, where importable, of torch, for one case."""
    import fastopt
    fastopt.set_num_threads(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass


def check_case(case: Case):
    """Runs every non-probe implementation ``check_steps`` times from the same data and asserts equal results
    (within the case's tolerance) before anything is timed: no benchmark of wrong code."""
    set_threads(case.threads)
    reference_name, reference = None, None
    for impl in case.impls:
        if impl.is_probe:
            continue
        obj = impl.make()
        for _ in range(case.check_steps):
            obj.run()
        result = [np.asarray(r, dtype=np.float64) for r in obj.result()]
        if reference is None:
            reference_name, reference = impl.name, result
            continue
        assert len(result) == len(reference), f"{case.key}: {impl.name} returned {len(result)} arrays"
        for i, (a, b) in enumerate(zip(result, reference)):
            np.testing.assert_allclose(a, b, rtol=case.rtol, atol=case.atol,
                                       err_msg=f"{case.key}: {impl.name} differs from {reference_name} (array {i})")
        del obj
    gc.collect()


def _calibrate(run, min_time):
    """Calls per sample so that one sample lasts about ``min_time`` seconds (at least 1)."""
    t0 = time.perf_counter()
    run()
    dt = time.perf_counter() - t0
    return max(1, min(100_000, int(min_time / max(dt, 1e-7))))


def measure_case(case: Case, rounds=7, min_time=0.005):
    """Times every implementation in alternating rounds (the machine's speed drifts; alternating keeps the
    comparison fair) and returns one record per implementation with the median seconds per call."""
    set_threads(case.threads)
    objs = [(impl, impl.make()) for impl in case.impls]
    numbers = []
    for impl, obj in objs:
        obj.run()                                   # warm-up: page faults, lazy state, caches
        numbers.append(_calibrate(obj.run, min_time))
    samples = [[] for _ in objs]
    for r in range(rounds):
        order = list(range(len(objs)))
        order = order[r % len(order):] + order[:r % len(order)]
        for k in order:
            run, number = objs[k][1].run, numbers[k]
            t0 = time.perf_counter()
            for _ in range(number):
                run()
            samples[k].append((time.perf_counter() - t0) / number)
    del objs
    gc.collect()
    records = []
    for (impl, _), s in zip(((i, None) for i in case.impls), samples):
        med = statistics.median(s)
        records.append({
            "family": case.family, "kernel": case.kernel, "size": case.size, "numel": case.numel,
            "dtype": case.dtype, "threads": case.threads, "impl": impl.name, "is_probe": impl.is_probe,
            "median_s": med, "min_s": min(s), "max_s": max(s), "rounds": len(s),
            "bytes": case.bytes_per_call, "gbps": case.bytes_per_call / med / 1e9,
        })
    probe = next((r for r in records if r["is_probe"]), None)
    fast = next((r for r in records if r["impl"] == "fastopt"), None)
    for rec in records:
        rec["pct_roofline"] = 100.0 * probe["median_s"] / rec["median_s"] if probe else None
        rec["fastopt_speedup"] = rec["median_s"] / fast["median_s"] if fast else None
    return records


def optional_import(name) -> Optional[object]:
    try:
        return __import__(name)
    except ImportError:
        return None


def chosen_sizes(sizes, quick, full, small):
    """[(label, value)] for the size labels asked for (default: every label of ``small`` if quick, else of
    ``full``), each looked up in the table of the run's mode, then in ``full``; ValueError for unknown labels."""
    table = small if quick else full
    out = []
    for label in sizes or list(table):
        value = table.get(label) or full.get(label)
        if value is None:
            raise ValueError(f"unknown size {label!r}; expected one of {sorted(set(full) | set(small))}")
        out.append((label, value))
    return out

