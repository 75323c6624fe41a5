"""Prints a sha256 of every output of the loss and batch-norm kernels, for checking that a refactor of csrc/ is
bit-identical: run it before and after and diff the two outputs (every line must match).

    PYTHONPATH=. python benchmarks/output_hashes.py > /tmp/hashes-before.txt
    ... change csrc/, rebuild ...
    PYTHONPATH=. python benchmarks/output_hashes.py | diff /tmp/hashes-before.txt - && echo identical

Covers every instruction-set path this CPU runs (fastopt.set_isa) at 1 and 2 threads, float32 and float64, small
inputs and inputs above the serial threshold; for the losses every option set that selects a distinct kernel
specialization (reduction, class_weight / sample_weight, label smoothing, ignore_index, pos_weight, labels vs
probabilities, short vs long rows), for batch norm every layout and thread schedule (NCHW by channel and split,
(N, C) rows split and column blocks, channels-last), training / eval, affine on / off, fused ReLU.
Also hinge, the elastic-net penalty, max-norm, dropout, bias + activation, gradient clipping, and six steps of
every optimizer option set of tests/_cases_optim.py over three params (1000 and 70001 elements, a (7, 3) matrix;
one gradient None at one step).
"""
import hashlib
import itertools
import os
import sys

import numpy as np

import fastopt
from fastopt import losses
from fastopt.functional import (batch_norm_backward, batch_norm_forward, bias_activation, bias_activation_backward,
                                dropout)


def _digest(*outs):
    h = hashlib.sha256()
    for o in outs:
        if o is None:
            h.update(b"None")
        elif isinstance(o, np.ndarray):
            h.update(str((o.dtype.str, o.shape)).encode())
            h.update(np.ascontiguousarray(o).tobytes())
        else:
            h.update(np.float64(o).tobytes())
    return h.hexdigest()


def _rng(*key):
    """A generator seeded from the case's key (stable across runs, unlike hash())."""
    return np.random.default_rng(int(hashlib.md5(repr(key).encode()).hexdigest()[:8], 16))


def elementwise_cases(dt):
    for shape in [(7, 5), (300, 130)]:
        r = _rng("ew", shape, dt)
        x = r.standard_normal(shape).astype(dt) * 2
        t = r.standard_normal(shape).astype(dt)
        tb = r.random(shape).astype(dt)
        sw = r.random(shape[0]).astype(dt) + 0.5
        pw = r.random(shape[1]).astype(dt) + 0.5
        for red, w in itertools.product(["mean", "sum", "none"], [None, "sw"]):
            swv = sw if w else None
            yield f"mse{shape}{red}{w}", lambda: losses.mse(x, t, reduction=red, sample_weight=swv)
            yield f"mae{shape}{red}{w}", lambda: losses.mae(x, t, reduction=red, sample_weight=swv)
            yield f"huber{shape}{red}{w}", lambda: losses.huber(x, t, 0.7, reduction=red, sample_weight=swv)
            yield f"mse1d{shape}{red}{w}", lambda: losses.mse(x[0], t[0], reduction=red,
                                                             sample_weight=x[0] * 0 + 1.5 if w else None)
            for p in [None, 2.0, pw]:
                yield (f"bce{shape}{red}{w}{'arr' if isinstance(p, np.ndarray) else p}",
                       lambda: losses.binary_cross_entropy_with_logits(x, tb, pos_weight=p, reduction=red,
                                                                       sample_weight=swv))


def rows_cases(dt):
    for n, c in [(9, 5), (40, 100), (4000, 10), (700, 70)]:
        r = _rng("ce", n, c, dt)
        x = (r.standard_normal((n, c)) * 3).astype(dt)
        y = r.integers(0, c, n)
        y[::7] = -100
        yi = y.copy()
        yi[::7] = 1
        q = r.random((n, c)).astype(dt)
        q /= q.sum(1, keepdims=True)
        cw = (r.random(c) + 0.5).astype(dt)
        sw = (r.random(n) + 0.5).astype(dt)
        for red, cwv, swv, eps in itertools.product(["mean", "sum", "none"], [None, cw], [None, sw], [0.0, 0.2]):
            tag = f"{n}x{c}{red}cw{cwv is not None}sw{swv is not None}eps{eps}"
            yield f"ce-labels{tag}", lambda: losses.softmax_cross_entropy(
                x, y, class_weight=cwv, sample_weight=swv, label_smoothing=eps, reduction=red)
            yield f"ce-probs{tag}", lambda: losses.softmax_cross_entropy(
                x, q, class_weight=cwv, sample_weight=swv, label_smoothing=eps, reduction=red)
            if eps == 0.0:
                yield f"hinge{tag}", lambda: losses.hinge(x, yi, margin=0.8, class_weight=cwv, sample_weight=swv,
                                                          reduction=red)
        yield f"ce-ignore5-{n}x{c}", lambda: losses.softmax_cross_entropy(x, yi, ignore_index=5)


def misc_cases(dt):
    for n in [(33, 17), (300, 400)]:
        r = _rng("misc", n, dt)
        w = r.standard_normal(n).astype(dt)
        g = r.standard_normal(n).astype(dt)
        b = r.standard_normal(n[1]).astype(dt)
        for l1, l2 in [(0.1, 0.0), (0.0, 0.2), (0.1, 0.2)]:
            def pen(l1=l1, l2=l2):
                gg = [g.copy(), g[:3].copy()]
                p = losses.add_penalty_grad_(gg, [w, w[:3].copy()], l1=l1, l2=l2)
                return (p, *gg)
            yield f"penalty{n}{l1}{l2}", pen
        for ax in [0, 1, None]:
            def mn(ax=ax):
                ww = w.copy()
                losses.max_norm_([ww], 2.0, axis=ax)
                return (ww,)
            yield f"max_norm{n}{ax}", mn
        yield f"dropout{n}", lambda: (dropout(w, 0.3, seed=5),)
        yield f"bias_act{n}", lambda: bias_activation(w, b, activation="relu")
        yield f"bias_act_bwd{n}", lambda: bias_activation_backward(g, np.maximum(w, 0), activation="relu")


BN_SHAPES = [  # (shape, axis): the comment names the schedule at 2 threads
    ((4, 8, 4, 4), 1),         # NCHW small
    ((16, 3, 32, 32), 1),      # NCHW, few channels: every channel split across threads
    ((8, 32, 16, 16), 1),      # NCHW by channel
    ((64, 16), 1),             # (N, C) small
    ((256, 256), 1),           # (N, C) rows split
    ((4096, 128), 1),          # (N, C) float32 forward column blocks
    ((2048, 256), 1),          # (N, C) float32 backward column blocks
    ((1024, 512), 1),          # (N, C) float64 column blocks
    ((8, 6, 6, 32), -1),       # channels-last small
    ((32, 16, 16, 16), -1),    # channels-last rows split
]


def bn_cases(dt):
    for shape, axis in BN_SHAPES:
        C = shape[axis]
        r = _rng("bn", shape, dt)
        x = (r.standard_normal(shape) * 2 + 3).astype(dt)
        dy = r.standard_normal(shape).astype(dt)
        gamma = (r.random(C) + 0.5).astype(dt)
        beta = r.standard_normal(C).astype(dt)
        rm0 = r.standard_normal(C).astype(dt)
        rv0 = (r.random(C) + 0.5).astype(dt)
        for training, affine, relu in itertools.product([True, False], [True, False], [False, True]):
            g, b = (gamma, beta) if affine else (None, None)
            act = "relu" if relu else None

            def fwd_bwd(g=g, b=b, act=act, training=training):
                rm, rv = rm0.copy(), rv0.copy()
                y, sm, si = batch_norm_forward(x, g, b, rm, rv, training=training, momentum=0.1, eps=1e-5,
                                               axis=axis, activation=act)
                dx, dg, db = batch_norm_backward(dy, x, g, sm, si, axis=axis, training=training, activation=act,
                                                 beta=b)
                return y, sm, si, rm, rv, dx, dg, db
            yield f"bn{shape}ax{axis}train{training}affine{affine}relu{relu}", fwd_bwd
        yield f"bn-untracked{shape}", lambda: batch_norm_forward(x, gamma, beta, None, None, training=True,
                                                                 axis=axis)


def optim_cases(dt):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
    from _cases_optim import CASES, IDS
    for (name, kw), cid in zip(CASES, IDS):
        if not hasattr(fastopt, name):          # an optimizer the tree under test (an older one) does not have
            continue

        def run(name=name, kw=kw):
            rng = _rng(1)
            params = [rng.standard_normal(s).astype(dt) for s in (1000, 70001, (7, 3))]
            opt = getattr(fastopt, name)(params, **kw)
            for t in range(6):
                grads = [rng.standard_normal(p.shape).astype(dt) for p in params]
                opt.step([None if (t == 2 and k == 2) else g for k, g in enumerate(grads)])
            return tuple(params)
        yield f"optim {cid}", run


def clip_cases(dt):
    for norm_type in (2.0, 3.0, float("inf")):
        def run(norm_type=norm_type):
            rng = _rng(2)
            grads = [rng.standard_normal(s).astype(dt) for s in (10, 50000)]
            total = fastopt.clip_grad_norm_(grads, 0.5, norm_type=norm_type)
            return (total, *grads)
        yield f"clip norm_type={norm_type}", run


def main():
    families = [elementwise_cases, rows_cases, misc_cases, bn_cases, optim_cases, clip_cases]
    print(f"# parallel_min_elements {fastopt.parallel_min_elements()}, isas {fastopt.available_isas()}")
    for isa in [i for i in ["baseline", "avx2", "avx512"] if i in fastopt.available_isas()]:
        fastopt.set_isa(isa)
        for nth in (1, 2):
            fastopt.set_num_threads(nth)
            for dt in (np.float32, np.float64):
                for fam in families:
                    for name, fn in fam(dt):
                        out = fn()
                        out = out if isinstance(out, tuple) else (out,)
                        flat = []
                        for o in out:
                            flat.extend(o if isinstance(o, tuple) else (o,))
                        print(f"{isa} t{nth} {np.dtype(dt).name} {name} {_digest(*flat)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
