"""Accuracy of the vectorized exp / log / log1p inside the loss kernels, on every instruction-set path."""
import numpy as np
import pytest

import fastopt
from fastopt import _loss


@pytest.fixture(params=fastopt.available_isas())
def isa(request):
    before = fastopt.get_isa()
    fastopt.set_isa(request.param)
    yield request.param
    fastopt.set_isa(before)


def _apply(x, which):
    y = np.empty_like(x)
    _loss.math(x, y, which)
    return y


def _ulps(y, ref, dtype):
    ref_r = ref.astype(dtype)
    return np.abs(y.astype(np.float64) - ref) / np.spacing(np.abs(ref_r))


@pytest.mark.parametrize("dtype, lo, hi", [(np.float32, -87.0, 88.0), (np.float64, -708.0, 709.0)])
def test_exp_within_2_ulp(isa, dtype, lo, hi):
    x = np.concatenate([np.linspace(lo, hi, 400_001), np.linspace(-1, 1, 100_001)]).astype(dtype)
    y = _apply(x, 0)
    ref = np.exp(x.astype(np.float64))
    assert _ulps(y, ref, dtype).max() <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(isa, dtype):
    x = np.array([-np.inf, -1e4, -1e3, 0.0, -0.0, np.nan, 1e4, np.inf], dtype=dtype)
    y = _apply(x, 0)
    np.testing.assert_array_equal(y[:5], [0, 0, 0, 1, 1])
    assert np.isnan(y[5])
    assert np.isposinf(y[6]) and np.isposinf(y[7])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_underflow_flushes_to_zero(isa, dtype):
    tiny = np.finfo(dtype).tiny
    x = np.linspace(np.log(tiny) - 30, np.log(tiny) - 1e-3, 1001).astype(dtype)
    y = _apply(x, 0)
    assert (y == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_within_2_ulp(isa, dtype):
    x = np.exp(np.linspace(-80, 80, 400_001)).astype(dtype)
    x = x[(x > np.finfo(dtype).tiny) & np.isfinite(x)]
    y = _apply(x, 1)
    ref = np.log(x.astype(np.float64))
    err = np.abs(y - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(dtype).tiny).astype(dtype))
    assert err.max() <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_special_values(isa, dtype):
    y = _apply(np.array([0.0, -1.0, np.inf, np.nan, 1.0], dtype=dtype), 1)
    assert np.isneginf(y[0]) and np.isnan(y[1]) and np.isposinf(y[2]) and np.isnan(y[3]) and y[4] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_on_unit_interval(isa, dtype):
    x = np.concatenate([np.linspace(0, 1, 200_001), np.exp(np.linspace(-700 if dtype == np.float64 else -87, 0,
                                                                       10_001))]).astype(dtype)
    y = _apply(x, 2)
    ref = np.log1p(x.astype(np.float64))
    assert _ulps(y[x > 0], ref[x > 0], dtype).max() <= 4.0
    assert y[x == 0].tolist() == [0.0] * int((x == 0).sum())
