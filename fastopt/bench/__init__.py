"""fastopt's microbenchmark harness: kernels against their peers and a roofline probe, measured in one run.

Each kernel family contributes ``cases(sizes, threads, dtypes, quick)`` returning :class:`~fastopt.bench.core.Case`
objects (see ``optim.py``); ``python -m fastopt bench`` and the pytest-benchmark files in ``benchmarks/`` both use
them. Speed is reported as the median time per call, achieved GB/s (bytes each implementation must move, counted
as documented per case), the fraction of a roofline probe with the same traffic measured in the same run, and the
ratio to every peer.
"""
from fastopt.bench.core import Case, Impl, check_case, measure_case

FAMILIES = ("optim", "batchnorm", "loss", "regularize", "clip", "activation")   # module fastopt.bench.<family>

__all__ = ["Case", "Impl", "check_case", "measure_case", "FAMILIES"]
