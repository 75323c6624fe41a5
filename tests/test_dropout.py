"""Dropout with a counter-based mask: mask rate, the published hash, backward, thread-count identity, in place."""
import math

import numpy as np
import pytest

import fastopt
from fastopt.functional import dropout, dropout_backward

import _reference_loss as ref

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_rate_within_binomial_bound(p):
    n = 1_000_000
    y = dropout(np.ones(n, np.float32), p=p, seed=123)
    kept = int((y != 0).sum())
    mean, sd = n * (1 - p), math.sqrt(n * p * (1 - p))
    assert abs(kept - mean) < 5 * sd            # 5 sigma: a false alarm once in ~3.5 million runs


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_and_scale_match_published_hash(rng, dtype):
    x = rng.standard_normal(10_007).astype(dtype)
    p, seed = 0.3, 2 ** 63 + 12345
    keep = ref.dropout_keep(seed, x.size, p)
    y = dropout(x, p=p, seed=seed)
    scale = dtype(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y, np.where(keep, x * scale, 0))


def test_backward_uses_the_same_mask(rng):
    x = rng.standard_normal((64, 33)).astype(np.float32)
    y = dropout(x, p=0.4, seed=7)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = dropout_backward(dy, p=0.4, seed=7)
    np.testing.assert_array_equal(dx != 0, y != 0)
    np.testing.assert_array_equal(dx, np.where(y != 0, dy * np.float32(1 / 0.6), 0))


def test_seeds_give_different_uncorrelated_masks():
    a = dropout(np.ones(200_000), p=0.5, seed=1) != 0
    b = dropout(np.ones(200_000), p=0.5, seed=2) != 0
    agree = (a == b).mean()
    assert abs(agree - 0.5) < 5 * math.sqrt(0.25 / 200_000)


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_and_isa_identity(rng, dtype):
    x = rng.standard_normal(300_001).astype(dtype)
    results = []
    before_t, before_isa = fastopt.get_num_threads(), fastopt.get_isa()
    try:
        for isa in fastopt.available_isas():
            fastopt.set_isa(isa)
            for nt in (1, 2):
                fastopt.set_num_threads(nt)
                results.append(dropout(x, p=0.25, seed=99))
    finally:
        fastopt.set_num_threads(before_t)
        fastopt.set_isa(before_isa)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_in_place_out_and_eval_mode(rng):
    x = rng.standard_normal(1000)
    expect = dropout(x, p=0.5, seed=3)
    h = x.copy()
    assert dropout(h, p=0.5, seed=3, out=h) is h
    np.testing.assert_array_equal(h, expect)
    assert dropout(x, p=0.5, seed=3, training=False) is x
    out = np.empty_like(x)
    assert dropout(x, p=0.5, seed=3, training=False, out=out) is out
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(dropout(x, p=0.0, seed=3), x)


def test_noncontiguous_input_uses_c_order_index(rng):
    x = rng.standard_normal((40, 30))
    xt = x.T                                 # F-ordered view
    np.testing.assert_array_equal(dropout(xt, p=0.5, seed=5), dropout(np.ascontiguousarray(xt), p=0.5, seed=5))


def test_torch_statistics_agree():
    """Same inverted scaling as torch: kept values are x / (1 - p), the mean is preserved in expectation."""
    torch = pytest.importorskip("torch")
    x = np.ones(400_000, np.float32)
    y = dropout(x, p=0.2, seed=11)
    yt = torch.nn.functional.dropout(torch.tensor(x), p=0.2, training=True).numpy()
    assert set(np.unique(y)) == set(np.unique(yt))
    assert abs(y.mean() - 1) < 0.01 and abs(yt.mean() - 1) < 0.01
