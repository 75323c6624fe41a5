r"""``allreduce_grads_``: data-parallel gradient averaging over MPI, in place, through bucketed reused buffers.

After the call every rank holds, in each of its gradient arrays,

.. math:: g_k \leftarrow \frac{1}{N} \sum_{r=0}^{N-1} g_k^{(r)} \quad(\text{average=True}), \qquad
          g_k \leftarrow \sum_r g_k^{(r)} \quad(\text{average=False})

Small gradients are packed into buckets of at most ``bucket_bytes`` (one MPI_Iallreduce per bucket: fewer
messages, each latency paid once); a run of gradients that lie end to end in one buffer (views of a flat gradient
buffer) is reduced where it lies, without a copy, as is any gradient larger than a bucket. Bucket buffers are kept
between calls and reused. ``async_op=True`` returns a :class:`Handle` at once: start the reduction of a layer's
gradients, compute the next layer's backward, then ``wait()`` (MPICH progresses a collective inside MPI calls:
``handle.test()`` now and then, or ``MPIR_CVAR_ASYNC_PROGRESS=1`` for a progress thread). The blocking form uses
MPI_Allreduce (MPICH's faster algorithms); both run under the watchdog's deadline (``_comm.py``).
"""
import numpy as np

from fastopt._validation import check_flag, check_inplace_array, check_no_overlap
from fastopt.distributed import _comm

__all__ = ["allreduce_grads_", "Handle", "DEFAULT_BUCKET_BYTES"]

DEFAULT_BUCKET_BYTES = 25 * 2 ** 20          # torch DDP's default bucket size


class _Pool:
    """Reused bucket buffers per dtype; a buffer lent to a pending Handle is not lent again until it is waited."""

    def __init__(self):
        self._free = {}

    def take(self, dtype, n):
        free = self._free.setdefault(dtype, [])
        for k, buf in enumerate(free):
            if buf.size >= n:
                return free.pop(k)
        return np.empty(max(n, 1), dtype)

    def give(self, buf):
        self._free.setdefault(buf.dtype, []).append(buf)


_POOL = _Pool()


class Handle:
    """A pending gradient reduction: ``wait()`` completes it (the gradients hold the result afterwards);
    ``test()`` drives it and says whether it is done. Waiting past the timeout aborts the communicator."""

    def __init__(self, comm, requests, buckets, direct, divisor, timeout):
        self._comm, self._requests, self._buckets, self._direct = comm, requests, buckets, direct
        self._divisor, self._timeout, self._done = divisor, timeout, False

    def test(self):
        return self._done or all(req.Test() for req in self._requests)

    def wait(self):
        if self._done:
            return
        _comm.wait_all(self._requests, self._comm, self._timeout, "allreduce_grads_")
        d = self._divisor
        for buf, pieces in self._buckets:
            for flat, lo in pieces:
                src = buf[lo:lo + flat.size]
                if d == 1:
                    np.copyto(flat, src)
                else:
                    np.divide(src, d, out=flat)
            _POOL.give(buf)
        if d != 1:
            for flat in self._direct:
                np.divide(flat, d, out=flat)
        self._done = True


def _check_grads(grads):
    """The non-None gradients as [(index, array)], checked as in-place targets (float32/float64, writeable,
    C-contiguous, aligned, native order, no two sharing memory): TypeError/ValueError naming ``grads[i]``."""
    if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    items = [(i, g) for i, g in enumerate(grads) if g is not None]
    for i, g in items:
        check_inplace_array(g, f"grads[{i}]")
    check_no_overlap([g for _, g in items], lambda k: f"grads[{items[k][0]}]")
    return items


def _runs(items):
    """Per dtype, the flat 1-d views of maximal runs of gradients lying end to end in memory (in list order): views
    of one flat gradient buffer are reduced where they lie, as one region."""
    runs = {}
    for _, g in items:
        flat = g.reshape(-1)
        if flat.size == 0:
            continue
        out = runs.setdefault(g.dtype, [])
        merged = _joined(out[-1], flat) if out else None
        if merged is not None:
            out[-1] = merged
        else:
            out.append(flat)
    return runs


def _joined(a, b):
    """One writeable 1-d view over ``a`` then ``b`` when ``b`` starts where ``a`` ends inside the same C-contiguous
    owner array; None otherwise."""
    base = a.base
    if not (isinstance(base, np.ndarray) and base is b.base and base.flags.c_contiguous and base.flags.writeable):
        return None
    if a.ctypes.data + a.nbytes != b.ctypes.data:
        return None
    return np.ndarray((a.size + b.size,), a.dtype, buffer=base, offset=a.ctypes.data - base.ctypes.data)


def _start(comm, runs, bucket_bytes, op, blocking):
    """Starts one MPI_Iallreduce per bucket and per direct run (``blocking``: runs MPI_Allreduce instead, MPICH's
    faster algorithms); returns (requests, buckets, direct runs)."""
    MPI = _comm.mpi()
    requests, buckets, direct = [], [], []

    def reduce(buf):
        if blocking:
            comm.Allreduce(MPI.IN_PLACE, buf, op)
        else:
            requests.append(comm.Iallreduce(MPI.IN_PLACE, buf, op))

    for dtype, flats in runs.items():
        cap = max(1, bucket_bytes // dtype.itemsize)
        pending, used = [], 0

        def flush():
            nonlocal pending, used
            if pending:
                buf = _POOL.take(dtype, used)
                for flat, lo in pending:
                    buf[lo:lo + flat.size] = flat
                reduce(buf[:used])
                buckets.append((buf, pending))
            pending, used = [], 0

        for flat in flats:
            if flat.size >= cap:
                reduce(flat)
                direct.append(flat)
                continue
            if used + flat.size > cap:
                flush()
            pending.append((flat, used))
            used += flat.size
        flush()
    return requests, buckets, direct


def allreduce_grads_(grads, comm=None, average=True, bucket_bytes=DEFAULT_BUCKET_BYTES, *, async_op=False,
                     timeout=None):
    """Sums (``average=True``: averages) every gradient array across the ranks of ``comm``, in place.

    grads: list of float32/float64 arrays (None entries skipped), in-place targets as for
    :func:`fastopt.clip_grad_norm_`; every rank must pass the same shapes, dtypes and None pattern, in the same
    order. comm: an mpi4py intracommunicator (None: ``MPI.COMM_WORLD``). bucket_bytes: an int >= 1, the largest
    bucket. async_op: return a :class:`Handle` without waiting. timeout: seconds to wait for the other ranks before
    aborting the communicator (None: ``FASTOPT_MPI_TIMEOUT`` or 300).

    Returns the Handle when ``async_op``, else None. Every argument is checked before anything is sent or written.
    """
    comm = _comm.check_comm(comm)
    average = check_flag(average, "average")
    async_op = check_flag(async_op, "async_op")
    if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) or bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be an integer >= 1, got {bucket_bytes!r}")
    timeout = _comm.check_timeout(timeout)
    items = _check_grads(grads)
    with _comm.deadline(comm, timeout, "allreduce_grads_"):
        requests, buckets, direct = _start(comm, _runs(items), int(bucket_bytes), _comm.mpi().SUM, not async_op)
    handle = Handle(comm, requests, buckets, direct, comm.Get_size() if average else 1, timeout)
    if async_op:
        return handle
    handle.wait()
    return None
