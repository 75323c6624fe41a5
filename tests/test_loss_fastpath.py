"""The elementwise losses' fast path (``fastopt._loss.try_elementwise``, checked in C): taken for the common call,
bit-identical to the Python-checked path, and declining (None, nothing written) for anything it does not take."""
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
