"""fastopt.functional.bias_activation / bias_activation_backward: float64 reference, finite differences, threads,
instruction-set paths, in-place use and the bad-input table."""
import numpy as np
import pytest

import fastopt
from fastopt.functional import bias_activation, bias_activation_backward
from _arrays import readonly

SHAPES = [(1, 1), (3, 5), (64, 256), (67, 33), (300, 517), (1030, 40)]   # the last two: threads, several blocks


def reference(x, b, dy, relu):
    """The formulas in float64: y = act(x + b), dx = dy [y > 0] (or dy), dbias = column sums of dx."""
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    pre = x64 + (0.0 if b is None else b.astype(np.float64))
    y = np.maximum(pre, 0.0) if relu else pre
    dx = dy64 * (y > 0) if relu else dy64
    return y, dx, dx.sum(axis=0)


def data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, b, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ["relu", None])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_reference(shape, dtype, activation, with_bias, num_threads):
    x, b, dy = data(shape, dtype)
    b = b if with_bias else None
    relu = activation == "relu"
    ry, rdx, rdb = reference(x, b, dy, relu)
    y = bias_activation(x, b, activation=activation)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y, ry.astype(dtype))      # one rounding of x + b: exact
    dx, db = bias_activation_backward(dy, y, activation=activation)
    np.testing.assert_array_equal(dx, rdx.astype(dtype))     # a mask: exact
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(db, rdb, rtol=rtol, atol=rtol * np.abs(dx).sum(axis=0).max())


def test_finite_differences():
    """L = sum(w * act(x + b)): dL/dx and dL/db from the backward against central differences (float64, points
    away from the kink)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 9))
    x[np.abs(x) < 0.05] = 0.3
    b = np.zeros(9)
    w = rng.standard_normal((7, 9))

    def loss(xx, bb):
        return float((w * bias_activation(xx, bb)).sum())

    y = bias_activation(x, b)
    dx, db = bias_activation_backward(w, y)
    h = 1e-6
    num_dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num_dx[idx] = (loss(xp, b) - loss(xm, b)) / (2 * h)
    num_db = np.zeros_like(b)
    for j in range(b.size):
        bp, bm = b.copy(), b.copy()
        bp[j] += h
        bm[j] -= h
        num_db[j] = (loss(x, bp) - loss(x, bm)) / (2 * h)
    np.testing.assert_allclose(dx, num_dx, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, num_db, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place(dtype):
    x, b, dy = data((67, 33), dtype)
    y_ref = bias_activation(x, b)
    dx_ref, db_ref = bias_activation_backward(dy, y_ref)
    xi, dyi = x.copy(), dy.copy()
    y = bias_activation(xi, b, out=xi)
    assert y is xi
    np.testing.assert_array_equal(xi, y_ref)
    dbuf = np.full(33, 7, dtype)
    dx, db = bias_activation_backward(dyi, xi, dx_out=dyi, dbias_out=dbuf)
    assert dx is dyi and db is dbuf
    np.testing.assert_array_equal(dyi, dx_ref)
    np.testing.assert_array_equal(dbuf, db_ref)


def test_non_contiguous_inputs_are_copied():
    x, b, dy = data((40, 64), np.float32)
    xs, dys = np.asfortranarray(x), dy[:, ::1].T.copy().T          # column-major views of the same values
    np.testing.assert_array_equal(bias_activation(xs, b[::1]), bias_activation(x, b))
    y = bias_activation(x, b)
    np.testing.assert_array_equal(bias_activation_backward(dys, np.asfortranarray(y))[0],
                                  bias_activation_backward(dy, y)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_counts_agree_bitwise(dtype):
    """Rows per thread, the bias gradient in fixed blocks of rows added in order: the same bits at any thread count."""
    x, b, dy = data((1030, 517), dtype)
    before = fastopt.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            fastopt.set_num_threads(n)
            y = bias_activation(x, b)
            out.append((y, *bias_activation_backward(dy, y)))
    finally:
        fastopt.set_num_threads(before)
    for a, c in zip(*out):
        np.testing.assert_array_equal(a, c)


def test_isa_paths_agree_bitwise(for_each_isa):
    if len(fastopt.available_isas()) < 2:
        pytest.skip("one instruction-set path on this machine")
    x, b, dy = data((67, 100), np.float32)
    out = []
    for _ in for_each_isa():
        y = bias_activation(x, b)
        out.append((y, *bias_activation_backward(dy, y)))
    for other in out[1:]:
        for a, c in zip(out[0], other):
            np.testing.assert_array_equal(a, c)


def _fwd(**kw):
    x, b, _ = data((8, 6), np.float32)
    args = dict(x=x, bias=b)
    args.update(kw)
    return lambda: bias_activation(args.pop("x"), args.pop("bias"), **args)


def _bwd(**kw):
    x, b, dy = data((8, 6), np.float32)
    y = bias_activation(x, b)
    args = dict(dy=dy, y=y)
    args.update(kw)
    return lambda: bias_activation_backward(args.pop("dy"), args.pop("y"), **args)


_shared = np.zeros((8, 6), np.float32)
_big = np.zeros(64, np.float32)

ERRORS = [
    ("x_list", _fwd(x=[[1.0, 2.0]]), TypeError, "x: expected a numpy.ndarray"),
    ("x_int", _fwd(x=np.ones((8, 6), np.int32)), TypeError, "x: expected dtype float32 or float64"),
    ("x_1d", _fwd(x=np.ones(6, np.float32)), ValueError, "x: expected a 2-d"),
    ("bias_dtype", _fwd(bias=np.ones(6, np.float64)), TypeError, "bias: expected dtype float32"),
    ("bias_shape", _fwd(bias=np.ones(5, np.float32)), ValueError, r"bias: expected shape \(6,\)"),
    ("activation", _fwd(activation="tanh"), ValueError, "Invalid activation"),
    ("out_readonly", _fwd(out=readonly(np.zeros((8, 6), np.float32))), ValueError, "read-only"),
    ("out_shape", _fwd(out=np.zeros((6, 8), np.float32)), ValueError, "out: shape"),
    ("out_dtype", _fwd(out=np.zeros((8, 6), np.float64)), TypeError, "out: expected dtype float32"),
    ("out_overlaps_x", _fwd(x=_big[:48].reshape(8, 6), out=_big[16:].reshape(8, 6)), ValueError,
     "out and x share memory"),
    ("dy_int", _bwd(dy=np.ones((8, 6), np.int64)), TypeError, "dy: expected dtype float32 or float64"),
    ("y_missing", _bwd(y=None), ValueError, "y: required with activation='relu'"),
    ("y_shape", _bwd(y=np.zeros((8, 5), np.float32)), ValueError, "y: shape"),
    ("y_dtype", _bwd(y=np.zeros((8, 6), np.float64)), TypeError, "y: expected dtype float32"),
    ("dx_out_overlaps_y", _bwd(y=_shared, dx_out=_shared), ValueError, "dx_out and y share memory"),
    ("dbias_out_readonly", _bwd(dbias_out=readonly(np.zeros(6, np.float32))), ValueError, "read-only"),
    ("dbias_out_shape", _bwd(dbias_out=np.zeros(5, np.float32)), ValueError, r"dbias_out: expected shape \(6,\)"),
    ("dbias_out_in_dy", _bwd(dy=_big[:48].reshape(8, 6), dbias_out=_big[:6]), ValueError,
     "dbias_out and dy share memory"),
]


@pytest.mark.parametrize("name,call,exc,msg", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_raises_before_writing(name, call, exc, msg):
    snapshot = (_shared.copy(), _big.copy())
    with pytest.raises(exc, match=msg):
        call()
    np.testing.assert_array_equal(_shared, snapshot[0])
    np.testing.assert_array_equal(_big, snapshot[1])


def test_out_may_not_alias_a_bias_read_from_x():
    """bias inside x is fine to read; writing out over it is an overlap error."""
    x = np.ones((8, 6), np.float32)
    with pytest.raises(ValueError, match="out and bias share memory"):
        bias_activation(x, x[0], out=x)


# ---- the C-checked fast path (_activation.try_forward / try_backward)

def test_fast_path_equals_python_path(monkeypatch):
    from fastopt import _activation
    from fastopt.functional import activation as module
    x, b, dy = data((67, 33), np.float32)
    fast_y = bias_activation(x, b)
    fast = (fast_y, *bias_activation_backward(dy, fast_y))
    assert _activation.try_forward(x, b, None, "relu") is not None
    monkeypatch.setattr(module._activation, "try_forward", lambda *a: None)
    monkeypatch.setattr(module._activation, "try_backward", lambda *a: None)
    slow_y = bias_activation(x, b)
    slow = (slow_y, *bias_activation_backward(dy, slow_y))
    for f, s in zip(fast, slow):
        np.testing.assert_array_equal(f, s)


def _declines_forward():
    x, b, _ = data((8, 6), np.float32)
    buf = np.zeros(64, np.float32)
    return {
        "x_fortran": (np.asfortranarray(x), b, None, "relu"),
        "x_1d": (x[0], b, None, "relu"),
        "bias_float64": (x, b.astype(np.float64), None, "relu"),
        "bias_strided": (x, np.repeat(b, 2)[::2], None, "relu"),
        "out_readonly": (x, b, readonly(np.zeros((8, 6), np.float32)), "relu"),
        "out_overlaps_x": (buf[:48].reshape(8, 6), b, buf[8:56].reshape(8, 6), "relu"),
        "out_holds_bias": (x, buf[:6], buf[:48].reshape(8, 6), "relu"),
        "activation": (x, b, None, "gelu"),
    }


def _declines_backward():
    x, b, dy = data((8, 6), np.float32)
    y = bias_activation(x, b)
    buf = np.zeros(64, np.float32)
    return {
        "relu_without_y": (dy, None, None, None, "relu"),
        "y_float64": (dy, y.astype(np.float64), None, None, "relu"),
        "dx_out_is_y": (dy, y, y, None, "relu"),
        "dbias_out_in_dx_out": (dy, y, buf[:48].reshape(8, 6), buf[:6], "relu"),
        "dbias_out_readonly": (dy, y, None, readonly(np.zeros(6, np.float32)), "relu"),
        "dy_strided": (np.repeat(dy, 2, axis=1)[:, ::2], y, None, None, "relu"),
    }


DECLINES = {"try_forward": _declines_forward, "try_backward": _declines_backward}


@pytest.mark.parametrize("fn,name", [(fn, name) for fn, cases in DECLINES.items() for name in cases()],
                         ids=[f"{fn}-{name}" for fn, cases in DECLINES.items() for name in cases()])
def test_fast_path_declines_and_writes_nothing(fn, name):
    from fastopt import _activation
    args = DECLINES[fn]()[name]
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    assert getattr(_activation, fn)(*args) is None
    for a, c in zip(args, before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, c)
