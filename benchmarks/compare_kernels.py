"""Best-of-N times (us) of the loss and batch-norm kernels over their option sets, one line per case, for
comparing two builds: run it alternately from each checkout and compare the columns (min is robust to the noise
of a shared machine; alternate several runs).

    (cd /tmp/old && PYTHONPATH=. python /path/to/benchmarks/compare_kernels.py [threads [name ...]]) > old.txt
"""
import sys
import time

import numpy as np

import fastopt
from fastopt import losses
from fastopt.functional import batch_norm_backward, batch_norm_forward


def _best(fn, reps=30, inner=3):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best * 1e6


def cases():
    r = np.random.default_rng(0)
    for n, c in [(4096, 1000), (65536, 10), (2000, 10), (512, 100)]:
        x = r.standard_normal((n, c)).astype(np.float32)
        y = r.integers(0, c, n)
        q = np.full((n, c), 1.0 / c, np.float32)
        cw = (r.random(c) + 0.5).astype(np.float32)
        sw = (r.random(n) + 0.5).astype(np.float32)
        g = np.empty_like(x)
        yield f"ce {n}x{c} labels", lambda: losses.softmax_cross_entropy(x, y, grad_out=g)
        yield f"ce {n}x{c} labels cw sw eps none", lambda: losses.softmax_cross_entropy(
            x, y, class_weight=cw, sample_weight=sw, label_smoothing=0.1, reduction="none", grad_out=g)
        yield f"ce {n}x{c} probs sw", lambda: losses.softmax_cross_entropy(x, q, sample_weight=sw, grad_out=g)
    x = r.standard_normal((1000, 1000)).astype(np.float32)
    t = r.random((1000, 1000)).astype(np.float32)
    g = np.empty_like(x)
    sw = (r.random(1000) + 0.5).astype(np.float32)
    yield "mse 1e6", lambda: losses.mse(x, t, grad_out=g)
    yield "mse 1e6 sw none", lambda: losses.mse(x, t, sample_weight=sw, reduction="none", grad_out=g)
    yield "bce 1e6 pw", lambda: losses.binary_cross_entropy_with_logits(x, t, pos_weight=2.0, grad_out=g)
    for shape, axis in [((32, 64, 28, 28), 1), ((16, 3, 64, 64), 1), ((256, 1024), 1), ((4096, 128), 1),
                        ((32, 14, 14, 64), -1)]:
        C = shape[axis]
        x = r.standard_normal(shape).astype(np.float32)
        dy = r.standard_normal(shape).astype(np.float32)
        gm, bt = np.ones(C, np.float32), np.zeros(C, np.float32)
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        out, dx = np.empty_like(x), np.empty_like(x)
        dg, db = np.empty(C, np.float32), np.empty(C, np.float32)
        _, sm, si = batch_norm_forward(x, gm, bt, rm, rv, training=True, axis=axis)
        yield f"bn fwd train {shape}", lambda: batch_norm_forward(x, gm, bt, rm, rv, training=True, axis=axis,
                                                                  out=out)
        yield f"bn fwd eval relu {shape}", lambda: batch_norm_forward(x, gm, bt, rm, rv, training=False, axis=axis,
                                                                      out=out, activation="relu")
        yield f"bn bwd train {shape}", lambda: batch_norm_backward(dy, x, gm, sm, si, axis=axis, dx_out=dx,
                                                                   dgamma_out=dg, dbeta_out=db)


if __name__ == "__main__":
    fastopt.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    only = sys.argv[2:]          # optional substrings: only the cases whose name holds one
    for name, fn in cases():
        if only and not any(o in name for o in only):
            continue
        print(f"{name:45s} {_best(fn):10.1f}")
