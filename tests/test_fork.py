"""Fork safety: a fork()ed child of a process that ran multi-threaded kernels must not block in OpenMP.

libgomp's thread pool does not survive fork(): on main, a child's first threaded kernel waited forever (futex,
0% CPU). The runtime (fastopt/_runtime.pyx, csrc/runtime.c) notices the fork, runs the child's kernels serially
and warns once. Every case runs in a fresh interpreter under a hard timeout, so a regression fails instead of
hanging the suite.
"""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

import fastopt

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
needs_openmp = pytest.mark.skipif(not fastopt.config()["openmp"], reason="needs an OpenMP build")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__)))
N = 1 << 17       # well above the serial threshold: 2 threads in the parent

# Each family's threaded kernel, as a statement on `rng` that sets `out`, compared between parent (2 threads) and
# child (serial): exactly, except for reductions whose rounding depends on the thread count (the row-split
# batch-norm statistics; see csrc/batchnorm.h). The global norm is a blocked reduction: exact (csrc/reduce.h).
INEXACT = {"batchnorm"}
KERNELS = {
    "optim": "p = [np.ones(N, np.float32)]; fastopt.Adam(p, lr=0.1).step([rng.standard_normal(N, np.float32)]); "
             "out = p[0]",
    "clip": "g = [rng.standard_normal(N)]; fastopt.clip_grad_norm_(g, 0.5); out = g[0]",
    "loss": "out = np.array(fastopt.losses.mse(rng.standard_normal(N), rng.standard_normal(N))[1])",
    "batchnorm": "bn = fastopt.nn.BatchNorm(64); out = bn.forward(rng.standard_normal((N // 64, 64), np.float32), True)",
    "activation": "out = fastopt.functional.bias_activation(rng.standard_normal((N // 64, 64)), np.ones(64))",
}

SCRIPT = """
import os
import numpy as np
import fastopt, fastopt.nn, fastopt.losses, fastopt.functional
N = {N}
def run():
    rng = np.random.default_rng(0)
    {kernel}
    return np.asarray(out)
fastopt.set_num_threads(2)
parent = run()
assert fastopt._runtime.fork_state()[2], "the parent ran no thread team"
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    same = np.array_equal if {exact} else lambda a, b: np.allclose(a, b, rtol=1e-12, atol=1e-12)
    ok = same(run(), parent) and fastopt.get_num_threads() == 1
    os.write(w, b"same" if ok else b"diff")
    os._exit(0)
os.close(w)
print(os.read(r, 16).decode())
os.waitpid(pid, 0)
"""


def _run(code, timeout=90):
    """Runs `code` in a fresh interpreter; on timeout kills its whole process group (a hung forked child too)."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="2")
    # cwd outside the checkout: `python -c` puts the working directory first on sys.path, where a source checkout
    # would shadow the installed package under test
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=tempfile.gettempdir())
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@needs_openmp
@pytest.mark.parametrize("family", sorted(KERNELS))
def test_forked_child_runs_threaded_kernel(family):
    code = SCRIPT.format(N=N, kernel=KERNELS[family], exact=family not in INEXACT)
    try:
        res = _run(code)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{family}: the forked child hung in a threaded kernel")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "same", res.stdout + res.stderr
    assert res.stderr.count("OpenMP threads do not survive fork") == 1, res.stderr   # warned once, in the child


POOL = """
import multiprocessing as mp, numpy as np, fastopt
def step(seed):
    p = [np.ones({N}, np.float32)]
    fastopt.Adam(p, lr=0.1).step([np.random.default_rng(seed).standard_normal({N}, np.float32)])
    return float(p[0].sum())
if __name__ == "__main__":
    fastopt.set_num_threads(2)
    parent = [step(s) for s in range(4)]
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(step, range(4)) == parent
    print("ok")
"""


@needs_openmp
def test_fork_pool_map_returns():
    try:
        res = _run(POOL.format(N=N))
    except subprocess.TimeoutExpired:
        pytest.fail("multiprocessing fork Pool.map hung")
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


@needs_openmp
def test_child_of_serial_parent_keeps_threads():
    """A parent that never ran a team leaves the child's OpenMP intact: no serial mode, no warning."""
    code = textwrap.dedent("""
        import os, fastopt
        pid = os.fork()
        if pid == 0:
            os._exit(0 if fastopt.get_num_threads() == 2 and not fastopt._runtime.fork_state()[0] else 3)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    res = _run(code)
    assert res.stdout.strip() == "0", res.stdout + res.stderr
    assert "survive fork" not in res.stderr


@needs_openmp
def test_set_num_threads_in_child_reenables_threads():
    code = textwrap.dedent(f"""
        import os, numpy as np, fastopt
        fastopt.set_num_threads(2)
        p = [np.ones({N})]; fastopt.SGD(p, lr=0.1).step([np.ones({N})])
        pid = os.fork()
        if pid == 0:
            serial = fastopt._runtime.fork_state()[0] and fastopt.get_num_threads() == 1
            fastopt.set_num_threads(2)
            again = not fastopt._runtime.fork_state()[0] and fastopt.get_num_threads() == 2
            os._exit(0 if serial and again else 3)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    res = _run(code)
    assert res.stdout.strip() == "0", res.stdout + res.stderr


LOCK_HELD = """
import os, threading, numpy as np, fastopt
p = [np.ones(8)]
opt = fastopt.SGD(p, lr=0.5)
held, done = threading.Event(), threading.Event()
def hold():                          # another thread inside a step of `opt` at the moment of the fork
    with opt._lock:
        held.set()
        done.wait()
threading.Thread(target=hold, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    opt.step([np.ones(8)])           # hung forever on the inherited, never-released lock before the fix
    os._exit(0 if np.array_equal(p[0], np.full(8, 0.5)) else 3)
done.set()
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_child_steps_an_optimizer_whose_lock_another_thread_held_at_fork():
    try:
        res = _run(LOCK_HELD, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the forked child deadlocked on the optimizer's lock")
    assert res.stdout.strip() == "0", res.stdout + res.stderr
