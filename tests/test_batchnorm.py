"""fastopt.functional.batch_norm_forward / batch_norm_backward against the float64 reference, threads, ISA paths,
numerical stability and finite differences."""
import numpy as np
import pytest

import fastopt
from fastopt import _config
from fastopt.functional import batch_norm_backward, batch_norm_forward

from _reference_batchnorm import backward as ref_backward
from _reference_batchnorm import forward as ref_forward

# name -> (logical shape, axis, memory): memory "c" C-contiguous, "other" the other layout's C order viewed in
# this shape, "strided" a non-contiguous view (the kernels read a copy)
LAYOUTS = {
    "nc": ((640, 60), 1, "c"),
    "nc_last": ((640, 60), -1, "c"),
    "ncl": ((12, 6, 700), 1, "c"),
    "nchw": ((16, 6, 20, 20), 1, "c"),
    "nchw_c3": ((16, 3, 30, 30), 1, "c"),          # channels split across threads
    "ncdhw": ((4, 4, 6, 7, 8), 1, "c"),
    "nhwc": ((16, 20, 20, 6), -1, "c"),
    "nchw_channels_last": ((16, 6, 20, 20), 1, "other"),   # torch channels_last memory, NCHW shape
    "nhwc_channels_first": ((16, 20, 20, 6), -1, "other"),
    "nchw_strided": ((8, 6, 20, 20), 1, "strided"),
}

# More layouts for the thread-count test, one per schedule that LAYOUTS does not reach at 1, 2 and 3 threads
SCHEDULE_LAYOUTS = {
    "nchw_c2_blocks": ((8, 2, 100, 100), 1, "c"),   # 10 blocks a channel: whole channels at 2 threads, split at 3
    "nc_wide": ((256, 1024), 1, "c"),               # column blocks at 1 thread, rows split at 2 (float32)
    "nc_cols": ((256, 2048), 1, "c"),               # column blocks at every thread count
}


def make_x(rng, name, dtype, loc=1.5, scale=2.0):
    shape, axis, memory = LAYOUTS[name] if name in LAYOUTS else SCHEDULE_LAYOUTS[name]
    if memory == "c":
        x = rng.normal(loc, scale, shape)
    elif memory == "other":
        nd = len(shape)
        src, dst = (1, nd - 1) if axis == 1 else (nd - 1, 1)
        mem_shape = list(shape)
        mem_shape.insert(dst, mem_shape.pop(src))
        x = np.moveaxis(rng.normal(loc, scale, mem_shape), dst, src)
        assert x.shape == shape and not x.flags.c_contiguous
    else:
        big = rng.normal(loc, scale, shape[:-1] + (2 * shape[-1],))
        x = big[..., ::2]
    return x.astype(dtype, copy=False) if memory != "other" else x.astype(dtype, order="K"), axis


def tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-11


def assert_close(actual, expected, dtype, what):
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol(dtype), atol=tol(dtype) * scale, err_msg=what)


def channel_params(rng, C, dtype):
    gamma = rng.uniform(0.5, 1.5, C).astype(dtype)
    beta = rng.normal(0, 0.5, C).astype(dtype)
    rm = rng.normal(0, 1, C).astype(dtype)
    rv = rng.uniform(0.5, 2, C).astype(dtype)
    return gamma, beta, rm, rv


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_matches_reference(name, dtype, training, affine, activation, num_threads, rng):
    x, axis = make_x(rng, name, dtype)
    C = x.shape[axis]
    gamma, beta, rm, rv = channel_params(rng, C, dtype)
    if not affine:
        gamma = beta = None
    rm0, rv0 = rm.copy(), rv.copy()
    y, save_mean, save_invstd = batch_norm_forward(x, gamma, beta, rm, rv, training=training, momentum=0.3,
                                                   eps=1e-3, axis=axis, activation=activation)
    ry, rmean, rinvstd, rrm, rrv = ref_forward(x, gamma, beta, rm0, rv0, training=training, momentum=0.3, eps=1e-3,
                                               axis=axis, activation=activation)
    assert y.dtype == dtype and y.shape == x.shape
    if LAYOUTS[name][2] == "other":
        assert y.strides == x.strides     # the output keeps x's memory layout
    assert_close(y, ry, dtype, "y")
    assert_close(save_mean, rmean, dtype, "save_mean")
    assert_close(save_invstd, rinvstd, dtype, "save_invstd")
    assert_close(rm, rrm, dtype, "running_mean")
    assert_close(rv, rrv, dtype, "running_var")

    dy = rng.normal(0, 1, x.shape).astype(dtype)
    dx, dgamma, dbeta = batch_norm_backward(dy, x, gamma, save_mean, save_invstd, axis=axis, training=training,
                                            activation=activation, beta=beta)
    rdx, rdgamma, rdbeta = ref_backward(dy, x, gamma, beta, rmean, rinvstd, training=training, axis=axis,
                                        activation=activation)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, rdx, dtype, "dx")
    if affine:
        assert_close(dgamma, rdgamma, dtype, "dgamma")
        assert_close(dbeta, rdbeta, dtype, "dbeta")
    else:
        assert dgamma is None and dbeta is None


@pytest.mark.parametrize("name", ["nchw", "nhwc", "nc"])
def test_out_buffers_are_used(name, rng):
    x, axis = make_x(rng, name, np.float32)
    C = x.shape[axis]
    gamma, beta, rm, rv = channel_params(rng, C, np.float32)
    out = np.full_like(x, np.nan)
    y, sm, si = batch_norm_forward(x, gamma, beta, rm, rv, training=True, axis=axis, out=out)
    assert y is out and not np.isnan(out).any()
    dx_out, dg, db = np.full_like(x, np.nan), np.full(C, np.nan, np.float32), np.full(C, np.nan, np.float32)
    dx, dgamma, dbeta = batch_norm_backward(np.ones_like(x), x, gamma, sm, si, axis=axis, dx_out=dx_out,
                                            dgamma_out=dg, dbeta_out=db)
    assert dx is dx_out and dgamma is dg and dbeta is db
    assert not np.isnan(dx).any() and not np.isnan(dg).any()
    np.testing.assert_allclose(db, x.size // C, rtol=1e-6)


def test_non_contiguous_dy_is_copied(rng):
    x, axis = make_x(rng, "nchw", np.float64)
    C = x.shape[1]
    gamma, beta, rm, rv = channel_params(rng, C, np.float64)
    _, sm, si = batch_norm_forward(x, gamma, beta, rm, rv, training=True)
    dy = np.asfortranarray(rng.normal(size=x.shape))
    dx, dg, db = batch_norm_backward(dy, x, gamma, sm, si)
    rdx, rdg, rdb = ref_backward(dy, x, gamma, beta, sm, si)
    assert_close(dx, rdx, np.float64, "dx")
    assert_close(dg, rdg, np.float64, "dgamma")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["nchw", "nchw_c3", "nhwc", "nc"] + list(SCHEDULE_LAYOUTS))
def test_thread_counts_agree(name, dtype, rng):
    """Stated guarantee (csrc/batchnorm.h): every reduction is the block-order sum of fixed blocks that depend only on
    the shape, so every output is bit-identical at 1, 2 and 3 threads, whatever schedule each thread count picks:
    NCHW whole channels per thread ("nchw") or channels split across threads ("nchw_c3" at 2 threads,
    "nchw_c2_blocks" at 3), (N, C) and channels-last rows split ("nc", "nhwc") or column blocks ("nc_wide" at 1
    thread, "nc_cols"), in training and eval."""
    x, axis = make_x(rng, name, dtype)
    C = x.shape[axis]
    gamma, beta, rm, rv = channel_params(rng, C, dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    before, before_min = fastopt.get_num_threads(), fastopt.parallel_min_elements()
    results = {}
    try:
        _config.set_parallel_min_elements(1024)      # 3 threads even on the small layouts
        for n in (1, 2, 3):
            fastopt.set_num_threads(n)
            r = {}
            for training in (True, False):
                rmn, rvn = rm.copy(), rv.copy()
                y, sm, si = batch_norm_forward(x, gamma, beta, rmn, rvn, training=training, axis=axis)
                dx, dg, db = batch_norm_backward(dy, x, gamma, sm, si, axis=axis, training=training)
                r[training] = (y, sm, si, dx, dg, db, rmn, rvn)
            results[n] = r
    finally:
        fastopt.set_num_threads(before)
        _config.set_parallel_min_elements(before_min)
    for n in (2, 3):
        for training in (True, False):
            for a, b in zip(results[1][training], results[n][training]):
                np.testing.assert_array_equal(a, b, err_msg=f"{n} threads, training={training}")


@pytest.mark.parametrize("name", ["nchw", "nhwc", "nchw_c3"])
def test_isa_paths_agree_bitwise(name, rng):
    """Fixed-lane accumulation and no FMA contraction: every instruction-set path gives the same bits."""
    isas = fastopt.available_isas()
    if len(isas) < 2:
        pytest.skip("one instruction-set path on this machine")
    x, axis = make_x(rng, name, np.float32, loc=3.0)
    C = x.shape[axis]
    gamma, beta, rm, rv = channel_params(rng, C, np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    before = fastopt.get_isa()
    outs = []
    try:
        for isa in isas:
            fastopt.set_isa(isa)
            rmn, rvn = rm.copy(), rv.copy()
            y, sm, si = batch_norm_forward(x, gamma, beta, rmn, rvn, training=True, axis=axis, activation="relu")
            dx, dg, db = batch_norm_backward(dy, x, gamma, sm, si, axis=axis, activation="relu", beta=beta)
            outs.append((y, sm, si, rmn, rvn, dx, dg, db))
    finally:
        fastopt.set_isa(before)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["nchw", "nhwc", "nc", "nchw_c3"])
def test_float32_large_mean_small_std_is_stable(name, num_threads, rng):
    """mean 1e4, std 1e-2 in float32 (about 10 float32 ulps of spread): statistics and y match the float64
    reference computed from the same float32 data."""
    x, axis = make_x(rng, name, np.float32, loc=1e4, scale=1e-2)
    C = x.shape[axis]
    gamma, beta, rm, rv = channel_params(rng, C, np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    y, sm, si = batch_norm_forward(x, gamma, beta, rm, rv, training=True, axis=axis, eps=1e-8)
    ry, rmean, rinvstd, rrm, rrv = ref_forward(x, gamma, beta, rm0, rv0, training=True, axis=axis, eps=1e-8)
    np.testing.assert_allclose(sm, rmean, rtol=1e-12)
    np.testing.assert_allclose(si, rinvstd, rtol=1e-7)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rv, rrv, rtol=1e-5)
    dy = rng.normal(size=x.shape).astype(np.float32)
    dx, dg, db = batch_norm_backward(dy, x, gamma, sm, si, axis=axis)
    rdx, rdg, rdb = ref_backward(dy, x, gamma, beta, rmean, rinvstd, axis=axis)
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-4 * np.max(np.abs(rdx)))
    np.testing.assert_allclose(dg, rdg, rtol=1e-4, atol=1e-4 * np.max(np.abs(rdg)))


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape,axis", [((5, 3), 1), ((3, 2, 4, 3), 1), ((3, 4, 2, 3), -1)])
def test_backward_matches_finite_differences(shape, axis, training, activation):
    rng = np.random.default_rng(7)
    x = rng.normal(0.3, 1.5, shape)
    C = shape[axis]
    gamma, beta = rng.uniform(0.5, 1.5, C), rng.normal(0, 0.5, C)
    rm, rv = rng.normal(0, 1, C), rng.uniform(0.5, 2, C)
    w = rng.normal(size=shape)          # loss L = sum(w * y)

    def loss(xx, g, b):
        y, _, _ = batch_norm_forward(xx, g, b, None if training else rm, None if training else rv,
                                     training=training, axis=axis, activation=activation)
        return float(np.sum(w * y))

    _, sm, si = batch_norm_forward(x, gamma, beta, None if training else rm, None if training else rv,
                                   training=training, axis=axis, activation=activation)
    dx, dg, db = batch_norm_backward(w, x, gamma, sm, si, axis=axis, training=training, activation=activation,
                                     beta=beta)
    h = 1e-6

    def numeric(arr, f):
        grad = np.empty_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = f()
            arr[i] = old - h
            down = f()
            arr[i] = old
            grad[i] = (up - down) / (2 * h)
        return grad

    np.testing.assert_allclose(dx, numeric(x, lambda: loss(x, gamma, beta)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dg, numeric(gamma, lambda: loss(x, gamma, beta)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, numeric(beta, lambda: loss(x, gamma, beta)), rtol=1e-5, atol=1e-6)


def test_eval_with_empty_batch(rng):
    x = np.empty((0, 4, 3, 3), np.float32)
    gamma, beta, rm, rv = channel_params(rng, 4, np.float32)
    y, sm, si = batch_norm_forward(x, gamma, beta, rm, rv, training=False)
    assert y.shape == x.shape
    np.testing.assert_allclose(si, 1 / np.sqrt(rv.astype(np.float64) + 1e-5))


def test_nan_propagates(rng):
    x = rng.normal(size=(8, 4, 5, 5))
    x[3, 2, 1, 1] = np.nan
    y, sm, si = batch_norm_forward(x, None, None, None, None, training=True)
    assert np.isnan(y[:, 2]).all() and not np.isnan(y[:, [0, 1, 3]]).any()
