"""Elastic-net penalty gradient (add_penalty_grad_) and the max-norm constraint (max_norm_)."""
import numpy as np
import pytest

import fastopt
from fastopt import losses, regularize

import _reference_loss as ref

DTYPES = [np.float32, np.float64]


def _pairs(rng, shapes, dtype):
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    for p in params:
        p.reshape(-1)[:3] = 0.0          # sign(0) = 0
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return grads, params


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1, l2", [(1e-3, 0.0), (0.0, 1e-2), (1e-3, 1e-2), (0.0, 0.0)])
@pytest.mark.parametrize("shapes", [[(10,)], [(300, 200)], [(5,), (70_000,), (3, 4, 5), (0,), (9000,)]])
def test_matches_reference(rng, num_threads, dtype, l1, l2, shapes):
    grads, params = _pairs(rng, shapes, dtype)
    before = [p.copy() for p in params]
    rgrads, rvalue = ref.penalty(grads, params, l1, l2)
    value = regularize.add_penalty_grad_(grads, params, l1=l1, l2=l2)
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(value, rvalue, rtol=1e-12)
    for g, rg in zip(grads, rgrads):
        np.testing.assert_allclose(g, rg, **tol)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)        # params are read only
    assert isinstance(value, float)


def test_single_arrays_and_sgd_weight_decay_convention(rng):
    """l2 equals torch's SGD weight_decay: grad + l2 w; the value l2/2 sum w^2 has exactly that gradient."""
    w = rng.standard_normal(50)
    g = np.zeros(50)
    value = regularize.add_penalty_grad_(g, w, l2=0.3)
    np.testing.assert_allclose(g, 0.3 * w, rtol=1e-15)
    np.testing.assert_allclose(value, 0.15 * (w ** 2).sum(), rtol=1e-14)
    g = np.zeros(50)
    value = regularize.add_penalty_grad_(g, w, l1=0.5)
    np.testing.assert_array_equal(g, 0.5 * np.sign(w))
    np.testing.assert_allclose(value, 0.5 * np.abs(w).sum(), rtol=1e-14)


def test_finite_difference(rng):
    w = rng.standard_normal(7) + np.sign(rng.standard_normal(7)) * 0.5   # away from 0
    l1, l2 = 0.2, 0.7
    g = np.zeros(7)
    regularize.add_penalty_grad_(g, w, l1=l1, l2=l2)
    h = 1e-6
    for i in range(7):
        wp, wm = w.copy(), w.copy()
        wp[i] += h
        wm[i] -= h
        fd = (regularize.add_penalty_grad_(np.zeros(7), wp, l1=l1, l2=l2)
              - regularize.add_penalty_grad_(np.zeros(7), wm, l1=l1, l2=l2)) / (2 * h)
        assert abs(fd - g[i]) < 1e-7


def test_thread_count_identity(rng):
    grads, params = _pairs(rng, [(100_001,), (3,), (250_000,)], np.float32)
    out = []
    before = fastopt.get_num_threads()
    try:
        for nt in (1, 2):
            fastopt.set_num_threads(nt)
            gs = [g.copy() for g in grads]
            out.append((regularize.add_penalty_grad_(gs, params, l1=1e-3, l2=1e-2), gs))
    finally:
        fastopt.set_num_threads(before)
    assert out[0][0] == out[1][0]
    for a, b in zip(out[0][1], out[1][1]):
        np.testing.assert_array_equal(a, b)


def test_noncontiguous_params_are_read(rng):
    w = rng.standard_normal((20, 10))[:, ::2]
    g = np.zeros((20, 5))
    regularize.add_penalty_grad_(g, w, l2=2.0)
    np.testing.assert_allclose(g, 2.0 * w)


# ---------------------------------------------------------------------------------------------- max_norm_
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", [((30, 20), 0), ((30, 20), 1), ((30, 20), -1), ((4, 600, 3), 1),
                                         ((7, 5, 300), 0), ((64,), 0), ((30, 20), None), ((200, 700), 0)])
def test_max_norm_matches_reference(rng, num_threads, dtype, shape, axis):
    w = (rng.standard_normal(shape) * rng.uniform(0.1, 2, shape)).astype(dtype)
    expect = ref.max_norm(w, 1.5, axis)
    out = regularize.max_norm_(w, 1.5, axis=axis)
    assert out is w
    np.testing.assert_allclose(w, expect, rtol=1e-6 if dtype == np.float32 else 1e-14)
    norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=axis))
    assert (norms <= 1.5 + 1e-5).all()


def test_max_norm_torch_renorm(rng):
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((6, 40))
    expect = torch.renorm(torch.tensor(w), p=2, dim=0, maxnorm=2.0).numpy()   # rows kept: norm over axis 1
    regularize.max_norm_([w], 2.0, axis=1)
    np.testing.assert_allclose(w, expect, rtol=1e-12)


def test_old_home_still_exports_the_penalties():
    assert losses.add_penalty_grad_ is regularize.add_penalty_grad_
    assert losses.max_norm_ is regularize.max_norm_
