"""The losses' fast paths (``fastopt._loss.try_elementwise``, ``try_hinge``, ``try_softmax_ce``, checked in C):
taken for the common call, bit-identical to the Python-checked path, and declining (None, nothing written) for
anything they do not take."""
import numpy as np
import pytest

from fastopt import _loss, losses
from _arrays import readonly

KINDS = {"mse": (_loss.MSE, losses.mse), "mae": (_loss.MAE, losses.mae), "huber": (_loss.HUBER, losses.huber),
         "bce": (_loss.BCE, losses.binary_cross_entropy_with_logits)}


def _inputs(shape, dtype, kind):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.random(shape).astype(dtype) if kind == "bce" else rng.standard_normal(shape).astype(dtype)
    return x, t


@pytest.mark.parametrize("with_out", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(), (7,), (5, 3), (40000,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fast_path_equals_the_checked_path(kind, dtype, shape, reduction, with_out, monkeypatch):
    code, fn = KINDS[kind]
    x, t = _inputs(shape, dtype, kind)
    out = np.full(shape, np.nan, dtype) if with_out else None
    assert _loss.try_elementwise(code, x, t, reduction, None, 1.0) is not None      # the fast path takes it
    fast_loss, fast_grad = fn(x, t, reduction=reduction, grad_out=out)
    monkeypatch.setattr(_loss, "try_elementwise", lambda *args: None)              # the Python-checked path
    slow_loss, slow_grad = fn(x, t, reduction=reduction, grad_out=None if out is None else np.empty_like(out))
    assert np.float64(fast_loss).tobytes() == np.float64(slow_loss).tobytes()
    assert fast_grad.tobytes() == slow_grad.tobytes() and fast_grad.shape == slow_grad.shape
    if with_out:
        assert fast_grad is out


def _declines(x, t, reduction="mean", grad_out=None):
    before = None if grad_out is None else grad_out.copy()
    assert _loss.try_elementwise(_loss.MSE, x, t, reduction, grad_out, 1.0) is None
    if grad_out is not None:
        np.testing.assert_array_equal(grad_out, before)


def test_fast_path_declines_what_it_does_not_take():
    x, t = _inputs((6, 4), np.float32, "mse")
    g = np.zeros_like(x)
    _declines(x, t, reduction="none")
    _declines(x, t, reduction=3)
    _declines(x, t.astype(np.float64))
    _declines(x, t[:3])
    _declines(x.astype(np.float64).astype(">f8"), t.astype(np.float64))          # byte-swapped input: copied
    _declines(x[:, ::2], t[:, ::2])                                              # strided: copied
    _declines(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))       # empty: the NaN mean
    _declines(x, t, grad_out=readonly(g))
    _declines(x, t, grad_out=g.astype(np.float64))
    _declines(x, t, grad_out=g[:3])
    _declines(x, t, grad_out=x)                                                   # aliases the input
    _declines(x.tolist(), t)


@pytest.mark.parametrize("with_out", [False, True])
@pytest.mark.parametrize("shape", [(1, 3), (33, 10), (0, 4), (4096, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,reduction", [("hinge", "mean"), ("hinge", "sum"), ("ce", "mean")])
def test_rows_fast_paths_equal_the_checked_path(kind, dtype, shape, reduction, with_out, monkeypatch):
    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    out = np.full(shape, np.nan, dtype) if with_out else None
    if kind == "hinge":
        call = lambda g: losses.hinge(x, y, margin=0.7, reduction=reduction, grad_out=g)   # noqa: E731
        hook, taken = "try_hinge", _loss.try_hinge(x, y, None, 0.7, reduction)
    else:
        call = lambda g: losses.softmax_cross_entropy(x, y, grad_out=g)                    # noqa: E731
        hook, taken = "try_softmax_ce", _loss.try_softmax_ce(x, y, None, -100)
    assert taken is not None
    fast_loss, fast_grad = call(out)
    monkeypatch.setattr(_loss, hook, lambda *args: None)
    slow_loss, slow_grad = call(None if out is None else np.empty_like(out))
    assert np.float64(fast_loss).tobytes() == np.float64(slow_loss).tobytes()
    assert fast_grad.tobytes() == slow_grad.tobytes() and fast_grad.shape == slow_grad.shape


def test_rows_fast_paths_decline_what_they_do_not_take():
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    g = np.zeros_like(x)
    for args in [(x, y, None, 1, "mean"), (x, y, None, float("nan"), "mean"), (x, y, None, 1.0, "none"),
                 (x, y.astype(np.int32), None, 1.0, "mean"), (x, np.array([0, 1, 2, 9, 0, 1]), g, 1.0, "mean"),
                 (x, y, x, 1.0, "mean"), (x, y, readonly(g), 1.0, "mean"), (x[:, ::2], y, None, 1.0, "mean"),
                 (x.reshape(-1), y, None, 1.0, "mean"), (x, y[:3], None, 1.0, "mean")]:
        before = g.copy()
        assert _loss.try_hinge(*args) is None
        np.testing.assert_array_equal(g, before)
    assert _loss.try_softmax_ce(x, y, None, 2 ** 70) is None
    assert _loss.try_softmax_ce(x, np.array([0, 1, 2, 9, 0, 1]), g, -100) is None
    np.testing.assert_array_equal(g, 0)
