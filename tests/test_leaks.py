"""Leaks: many calls of every entry point, valid and failing, leave RSS and the inputs' reference counts unchanged.

RSS is read from /proc/self/statm after a warm-up round (first calls allocate caches and plans for good); growth
over the measured rounds must stay under 1 MiB."""
import gc
import os
import sys

import numpy as np
import pytest

import fastopt
from fastopt import losses
from fastopt.functional import batch_norm_forward, bias_activation, dropout

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")]
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1 << 20


def refcounts(arrays):
    gc.collect()        # a failed call's traceback cycle holds its frames' arrays until the collector runs
    return [sys.getrefcount(a) for a in arrays]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _growth(fn, n, warmup=200):
    for _ in range(warmup):
        fn()
    before = rss()
    for _ in range(n):
        fn()
    return rss() - before


def _raises(fn, exc=(TypeError, ValueError)):
    def call():
        try:
            fn()
        except exc:
            return
        raise AssertionError("expected an error")
    return call


def test_optimizer_steps_do_not_leak():
    p, g = np.ones(64, np.float32), np.full(64, 1e-3, np.float32)
    opt = fastopt.Adam([p], lr=1e-4)
    opt.step([g])                                   # the first step creates the state (which refers to p)
    counts = refcounts([p, g])
    assert _growth(lambda: opt.step([g]), 100_000) < MiB
    assert refcounts([p, g]) == counts


def _failing_step(p, g):
    def call():
        fastopt.SGD([p], lr=0.1).step([g])
    return _raises(call)


def test_failing_steps_do_not_leak():
    p = np.ones(64, np.float32)
    bad_dtype, bad_shape = np.ones(64, np.float64), np.ones(63, np.float32)
    counts = refcounts([p, bad_dtype, bad_shape])
    assert _growth(_failing_step(p, bad_dtype), 5_000) + _growth(_failing_step(p, bad_shape), 5_000) < MiB
    assert refcounts([p, bad_dtype, bad_shape]) == counts


def test_overlapping_gradient_error_does_not_leak():
    """Issue 15 defect 8: a gradient overlapping a parameter, 1,000 failed Adam(...).step() calls."""
    buf = np.ones(128, np.float32)
    p, g = buf[:64], buf[32:96]
    counts = refcounts([buf, p, g])
    grow = _growth(_raises(lambda: fastopt.Adam([p]).step([g])), 10_000)
    assert refcounts([buf, p, g]) == counts
    assert grow < MiB


def _entry_points():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((32, 10)), rng.standard_normal((32, 10))
    labels = rng.integers(0, 10, 32)
    gamma, beta = np.ones(10), np.zeros(10)
    grads = [rng.standard_normal(100)]
    bad = np.ones((3, 3), np.int64)
    valid = {
        "mse": lambda: losses.mse(x, t),
        "softmax_cross_entropy": lambda: losses.softmax_cross_entropy(x, labels),
        "batch_norm_forward": lambda: batch_norm_forward(x, gamma, beta, None, None, training=True),
        "bias_activation": lambda: bias_activation(x, beta),
        "dropout": lambda: dropout(x, p=0.5, seed=1),
        "clip_grad_norm_": lambda: fastopt.clip_grad_norm_(grads, 1e6),
        "clip_grad_value_": lambda: fastopt.clip_grad_value_(grads, 1e6),
        "schedule": lambda: fastopt.schedules.cosine_annealing_lr(3, base_lr=0.1, T_max=10),
    }
    failing = {
        "mse": lambda: losses.mse(x, bad),
        "softmax_cross_entropy": lambda: losses.softmax_cross_entropy(x, labels[:5]),
        "batch_norm_forward": lambda: batch_norm_forward(bad, gamma, beta, None, None, training=True),
        "bias_activation": lambda: bias_activation(x, bad),
        "dropout": lambda: dropout(bad, p=0.5, seed=1),
        "clip_grad_norm_": lambda: fastopt.clip_grad_norm_([bad], 1.0),
        "clip_grad_value_": lambda: fastopt.clip_grad_value_(grads, -1.0),
        "schedule": lambda: fastopt.schedules.cosine_annealing_lr(3, base_lr=0.1, T_max=-1),
    }
    return [x, t, labels, gamma, beta, grads[0], bad], valid, failing


def test_every_entry_point_10000_calls_do_not_leak():
    arrays, valid, failing = _entry_points()
    counts = refcounts(arrays)
    grown = {}
    for name in valid:
        grown[name] = _growth(valid[name], 10_000) + _growth(_raises(failing[name]), 10_000)
    assert {k: v for k, v in grown.items() if v >= MiB} == {}
    assert refcounts(arrays) == counts
