"""The tests of this folder run under mpiexec, every test on every rank (tests/test_distributed.py starts them);
outside mpiexec they skip. A test that fails on one rank prints its report and aborts the job: the other ranks
would otherwise wait forever in that test's next collective."""
import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent

UNDER_MPIEXEC = any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))


def pytest_collection_modifyitems(config, items):
    """Skips this folder's tests outside mpiexec (the hook sees every item of the session: only ours are marked)."""
    if not UNDER_MPIEXEC:
        skip = pytest.mark.skip(reason="runs under mpiexec (tests/test_distributed.py starts it)")
        for item in items:
            if HERE in pathlib.Path(str(item.fspath)).resolve().parents:
                item.add_marker(skip)


def pytest_runtest_logreport(report):
    if report.failed and UNDER_MPIEXEC:
        from mpi4py import MPI
        rank = MPI.COMM_WORLD.Get_rank()
        print(f"\nrank {rank}: FAILED {report.nodeid} ({report.when})\n{report.longreprtext}", file=sys.stderr,
              flush=True)
        MPI.COMM_WORLD.Abort(1)
