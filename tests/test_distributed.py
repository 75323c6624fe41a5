"""fastopt.distributed: the layout and the import hint here; everything collective under ``mpiexec -n 2`` and
``-n 3`` (uneven shards; oversubscribed on a 2-core machine) as subprocesses running tests/distributed/; faults: a
rank that raises, dies, or never joins a collective must end the job with an error, not hang it."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastopt
from fastopt.distributed._layout import BLOCK, spaces

HERE = os.path.dirname(os.path.abspath(__file__))
# the folder holding the fastopt this process imported (the checkout's in-place build, or site-packages): the
# subprocesses import the same one, and run outside the checkout, whose source folder would shadow an install
FASTOPT_HOME = os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__)))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def needs_mpi():
    pytest.importorskip("mpi4py")
    if MPIEXEC is None:
        pytest.skip("no mpiexec (pip install 'fastopt[mpi]')")


def mpiexec(n, args, timeout, cwd, env=None):
    """Runs ``mpiexec -n n python args`` in ``cwd`` (outside the checkout); (returncode, output); fails on a hang."""
    run_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=FASTOPT_HOME)
    run_env.update(env or {})
    try:
        proc = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *args], cwd=cwd, env=run_env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n} hung for {timeout} s: {e.stdout}\n{e.stderr}")
    return proc.returncode, proc.stdout + proc.stderr


def test_layout_block_aligned_within_one_block():
    params = [np.zeros(s, np.float32) for s in [(300, 7), (5,), (2000,), (1,)]] + [np.zeros(700)]
    for n in (1, 2, 3, 5, 40):
        for space in spaces(params, n):
            assert space.size % BLOCK == 0 and all(off % BLOCK == 0 for off in space.offsets)
            counts = space.counts()
            assert sum(counts) == space.size and max(counts) - min(counts) <= BLOCK
            owned = [sum(p.b - p.a for p in space.pieces(r)) for r in range(n)]
            assert sum(owned) == sum(space.sizes)
            for r in range(n):
                for p in space.pieces(r):
                    assert p.a % BLOCK == 0 and (p.b % BLOCK == 0 or p.b == params[p.index].size)


def test_import_error_names_the_extra(monkeypatch):
    from fastopt.distributed import _comm
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'fastopt\[mpi\]'"):
        _comm.mpi()


def test_import_fastopt_does_not_import_mpi4py():
    code = "import sys, fastopt; assert 'mpi4py' not in sys.modules and 'fastopt.distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/", env=dict(os.environ, PYTHONPATH=FASTOPT_HOME))


@pytest.mark.parametrize("n", [2, 3])
def test_collective_cases_under_mpiexec(n, tmp_path):
    needs_mpi()
    cases = [os.path.join(HERE, "distributed", f"cases_{name}.py") for name in ("zero", "allreduce", "estimator")]
    rc, out = mpiexec(n, ["-m", "pytest", "-q", "-p", "no:cacheprovider", *cases], 600, cwd=tmp_path)
    assert rc == 0, out
    assert out.count(" passed") >= n, out


FAULT = textwrap.dedent("""
    import os, sys, time
    import numpy as np, fastopt
    from mpi4py import MPI
    from fastopt.distributed import ZeroRedundancyOptimizer
    comm = MPI.COMM_WORLD
    params = [np.zeros(1000, np.float32)]
    zero = ZeroRedundancyOptimizer(params, fastopt.AdamW, comm=comm, timeout=float(os.environ["T"]))
    zero.step([np.ones(1000, np.float32)])
    if comm.rank == 1:
        mode = os.environ["MODE"]
        if mode == "raise":
            def broken(grads):
                raise RuntimeError("kernel exploded on purpose")
            zero.local_optimizer.step = broken
        elif mode == "die":
            os._exit(3)
        elif mode == "hang":
            time.sleep(3600)
    zero.step([np.ones(1000, np.float32)])
    print("rank", comm.rank, "finished", flush=True)
""")


@pytest.mark.parametrize("mode,expect", [("raise", "RuntimeError in ZeroRedundancyOptimizer.step: kernel exploded"),
                                         ("die", ""), ("hang", "did not complete within 5 s")])
def test_a_failing_rank_ends_the_job(tmp_path, mode, expect):
    """Rank 1 raises inside a step (it aborts the job), dies (mpiexec ends the job) or hangs (rank 0's collective
    times out after 5 s and aborts): mpiexec returns non-zero well within 60 s."""
    needs_mpi()
    script = tmp_path / "fault.py"
    script.write_text(FAULT)
    rc, out = mpiexec(2, [str(script)], 60, cwd=tmp_path, env={"MODE": mode, "T": "5"})
    assert rc != 0, out
    assert expect in out, out
    assert "rank 1 finished" not in out
