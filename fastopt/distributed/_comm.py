"""The communicator side of ``fastopt.distributed``: the lazy mpi4py import, argument checks, and fault handling.

Every collective of this package runs under :func:`deadline` (``timeout`` seconds, default ``FASTOPT_MPI_TIMEOUT``
or 300): a watchdog thread aborts the communicator with a clear message when a rank never joins (it hangs, or
skipped a step), instead of waiting forever. A rank
that raises inside a step (:func:`guarded`) prints the error and aborts the communicator, so that the others are
stopped too; a rank that dies is detected by the process manager (``mpiexec`` ends the job).
"""
import contextlib
import os
import sys
import threading
import time
import traceback

_HINT = "fastopt.distributed needs mpi4py and an MPI library: pip install 'fastopt[mpi]' (mpi4py + mpich)"

DEFAULT_TIMEOUT = 300.0


def mpi():
    """The ``mpi4py.MPI`` module; ImportError with the install hint when mpi4py (or its MPI library) is absent."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"{_HINT} ({e})") from e
    return MPI


def check_comm(comm, name="comm"):
    """``comm`` as an mpi4py intracommunicator; None means ``MPI.COMM_WORLD``. TypeError naming ``name`` else."""
    MPI = mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"{name} must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD) or None, "
                        f"got {type(comm).__name__}")
    return comm


def check_timeout(timeout, name="timeout"):
    """Seconds a collective may wait for the other ranks: a number > 0 (``math.inf``: forever), or None for
    ``FASTOPT_MPI_TIMEOUT`` (default 300 s)."""
    if timeout is None:
        timeout = os.environ.get("FASTOPT_MPI_TIMEOUT", DEFAULT_TIMEOUT)
        try:
            timeout = float(timeout)
        except ValueError:
            raise ValueError(f"FASTOPT_MPI_TIMEOUT must be a number of seconds, got {timeout!r}") from None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {timeout!r}")
    return float(timeout)


ABORT_GRACE = 0.5               # seconds between the message and MPI_Abort


def abort(comm, message):
    """Prints ``message`` (with the rank) on stderr and aborts every rank of ``comm`` (MPI_Abort, exit code 1)."""
    print(f"fastopt.distributed: rank {comm.Get_rank()} of {comm.Get_size()}: {message}; aborting the "
          "communicator", file=sys.stderr, flush=True)
    time.sleep(ABORT_GRACE)     # mpiexec relays output asynchronously: MPI_Abort's kill could drop this line
    comm.Abort(1)


class _Watchdog:
    """One daemon thread per process that aborts the communicator of a collective in flight past its deadline.
    The rank thread only stores and clears ``active`` around a blocking MPI call (mpi4py releases the GIL in it;
    MPI runs with MPI_THREAD_MULTIPLE, so the watchdog's MPI_Abort is legal meanwhile): no cost on the fast path
    but two attribute writes. The watchdog looks every ``min(timeout / 4, 0.5)`` seconds."""

    def __init__(self):
        self.active = None           # (deadline, timeout, comm, what) of the collective in flight
        self._thread = None

    def _run(self):
        while True:
            active = self.active
            if active is not None and time.monotonic() > active[0]:
                abort(active[2], f"{active[3]} did not complete within {active[1]:g} s (another rank hung, died "
                                 "or skipped it)")
                os._exit(1)                    # the rank thread is stuck in MPI: end this process if Abort returns
            time.sleep(0.5 if active is None else min(active[1] / 4, 0.5))

    @contextlib.contextmanager
    def deadline(self, comm, timeout, what):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fastopt-mpi-watchdog", daemon=True)
            self._thread.start()
        self.active = (time.monotonic() + timeout, timeout, comm, what)
        try:
            yield
        finally:
            self.active = None


_WATCHDOG = _Watchdog()


def deadline(comm, timeout, what):
    """Context for a blocking collective on ``comm``: past ``timeout`` seconds the watchdog aborts ``comm``
    naming ``what``. ``timeout == inf``: no watchdog."""
    if timeout == float("inf"):
        return contextlib.nullcontext()
    return _WATCHDOG.deadline(comm, timeout, what)


def wait(request, comm, timeout, what):
    """Waits for the non-blocking collective ``request`` (MPI_Wait), aborting ``comm`` past ``timeout``."""
    with deadline(comm, timeout, what):
        request.Wait()


def wait_all(requests, comm, timeout, what):
    with deadline(comm, timeout, what):
        for req in requests:
            req.Wait()


class AgreedError(Exception):
    """An error that every rank raises alike, decided collectively (a non-finite averaged gradient): ``guarded``
    lets it through instead of aborting."""


@contextlib.contextmanager
def guarded(comm, what):
    """Runs the block; an exception in it prints its traceback and aborts ``comm`` (the other ranks would otherwise
    wait in the next collective). Size-1 communicators re-raise instead: there is nobody to stop."""
    try:
        yield
    except AgreedError:
        raise
    except BaseException as e:
        if comm.Get_size() == 1:
            raise
        traceback.print_exc()
        abort(comm, f"{type(e).__name__} in {what}: {e}")
        raise                                  # MPI_Abort may return before the job is torn down
