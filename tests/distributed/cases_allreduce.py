"""allreduce_grads_ and its errors under mpiexec (started by tests/test_distributed.py)."""
import numpy as np
import pytest

from fastopt.distributed import allreduce_grads_

MPI = pytest.importorskip("mpi4py.MPI")
COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()


def grads_of(rank, dtype=np.float32):
    return [np.full((30, 5), rank + 1.0, dtype), None, np.arange(7, dtype=np.float64) * (rank + 1),
            np.full(1000, 2.0 * rank, dtype)]


@pytest.mark.parametrize("bucket_bytes", [1, 64, 10_000, 25 * 2 ** 20])
@pytest.mark.parametrize("average", [True, False])
def test_sum_and_average(bucket_bytes, average):
    grads = grads_of(RANK)
    expect = [None if g is None else sum(grads_of(r)[k] for r in range(SIZE)) for k, g in enumerate(grads)]
    if average:
        expect = [None if e is None else e / SIZE for e in expect]
    allreduce_grads_(grads, COMM, average=average, bucket_bytes=bucket_bytes)
    for g, e in zip(grads, expect):
        assert (g is None and e is None) or np.array_equal(g, e.astype(g.dtype))


def test_views_of_a_flat_buffer_are_reduced_in_place():
    flat = np.full(600, float(RANK), np.float32)
    grads = [flat[:100].reshape(10, 10), flat[100:350], flat[350:]]
    allreduce_grads_(grads, COMM, bucket_bytes=16)
    assert np.array_equal(flat, np.full(600, (SIZE - 1) / 2, np.float32))


def test_async_handle_overlaps():
    a, b = np.full(10, float(RANK)), np.full(3, 1.0, np.float32)
    h1 = allreduce_grads_([a], COMM, async_op=True)
    h2 = allreduce_grads_([b], COMM, async_op=True, average=False)     # two pending: separate buffers
    h2.wait()
    h1.wait()
    h1.wait()                                                          # waiting twice is a no-op
    assert np.array_equal(a, np.full(10, (SIZE - 1) / 2)) and np.array_equal(b, np.full(3, SIZE, np.float32))
    assert h1.test()


def test_errors_before_anything_is_sent():
    g = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="grads must be a list"):
        allreduce_grads_(g, COMM)
    ro = np.ones(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        allreduce_grads_([g, ro], COMM)
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        allreduce_grads_([np.ones(3, np.int64)], COMM)
    with pytest.raises(ValueError, match="bucket_bytes"):
        allreduce_grads_([g], COMM, bucket_bytes=0)
    with pytest.raises(TypeError, match="comm must be"):
        allreduce_grads_([g], comm=3)
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        allreduce_grads_([g, g[:2]], COMM)                 # sharing memory
    assert np.array_equal(g, np.ones(4, np.float32))
