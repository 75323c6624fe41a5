"""MSE, MAE, Huber and binary cross-entropy with logits: references, torch parity, finite differences, weights."""
import numpy as np
import pytest

import fastopt
from fastopt import losses

import _reference_loss as ref

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
KINDS = ["mse", "mae", "huber", "bce"]


def _call(kind, x, t, **kw):
    if kind == "mse":
        return losses.mse(x, t, **kw)
    if kind == "mae":
        return losses.mae(x, t, **kw)
    if kind == "huber":
        return losses.huber(x, t, **kw)
    return losses.binary_cross_entropy_with_logits(x, t, **kw)


def _ref(kind, x, t, **kw):
    if kind == "bce":
        return ref.bce_with_logits(x, t, **kw)
    return ref.regression(kind, x, t, **kw)


def _data(rng, kind, shape, dtype):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    t = rng.uniform(0, 1, shape).astype(dtype) if kind == "bce" else rng.standard_normal(shape).astype(dtype)
    return x, t


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(1,), (1000,), (70001,), (300, 7), (40, 3, 5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_reference(rng, num_threads, kind, dtype, reduction, shape, weighted):
    x, t = _data(rng, kind, shape, dtype)
    kw = {}
    if weighted:
        kw["sample_weight"] = rng.uniform(0, 2, shape[0]).astype(dtype)
    extra = {"delta": 0.7} if kind == "huber" else {}
    loss, grad = _call(kind, x, t, reduction=reduction, **kw, **extra)
    rloss, rgrad = _ref(kind, x, t, reduction=reduction, **kw, **extra)
    np.testing.assert_allclose(loss, rloss, **TOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    assert grad.dtype == dtype and grad.shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, pw_shape", [((50, 4), (4,)), ((6, 5, 4), (4,)), ((30,), (30,)), ((8, 3), (1,))])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_pos_weight(rng, dtype, shape, pw_shape, weighted):
    x, t = _data(rng, "bce", shape, dtype)
    pw = rng.uniform(0.2, 3, pw_shape).astype(dtype)
    kw = {"sample_weight": rng.uniform(0, 2, shape[0]).astype(dtype)} if weighted else {}
    for reduction in ("mean", "sum", "none"):
        loss, grad = losses.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=reduction, **kw)
        rloss, rgrad = ref.bce_with_logits(x, t, pos_weight=pw, reduction=reduction, **kw)
        np.testing.assert_allclose(loss, rloss, **TOL[dtype])
        np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    loss, _ = losses.binary_cross_entropy_with_logits(x, t, pos_weight=2.5)
    np.testing.assert_allclose(loss, ref.bce_with_logits(x, t, pos_weight=2.5)[0], **TOL[dtype])


def test_torch_parity(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((64, 5)) * 3
    t = rng.standard_normal((64, 5))
    tb = rng.uniform(0, 1, (64, 5))
    pw = rng.uniform(0.1, 4, 5)
    cases = [("mse", F.mse_loss, t, {}, {}), ("mae", F.l1_loss, t, {}, {}),
             ("huber", F.huber_loss, t, {"delta": 0.6}, {"delta": 0.6}),
             ("bce", F.binary_cross_entropy_with_logits, tb, {}, {}),
             ("bce", F.binary_cross_entropy_with_logits, tb, {"pos_weight": pw}, {"pos_weight": torch.tensor(pw)})]
    for kind, fn, target, fkw, tkw in cases:
        for reduction in ("mean", "sum", "none"):
            xt = torch.tensor(x, requires_grad=True)
            lt = fn(xt, torch.tensor(target), reduction=reduction, **tkw)
            lt.sum().backward()
            loss, grad = _call(kind, x, target, reduction=reduction, **fkw)
            np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_torch_parity_bce_elementwise_weight(rng):
    """torch's weight= (N, 1) with reduction='sum' is fastopt's sample_weight with 'sum'."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((20, 3))
    t = rng.uniform(0, 1, (20, 3))
    w = rng.uniform(0, 2, 20)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(t), weight=torch.tensor(w[:, None]),
                                                              reduction="sum")
    lt.backward()
    loss, grad = losses.binary_cross_entropy_with_logits(x, t, sample_weight=w, reduction="sum")
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_finite_difference_gradient(rng, kind):
    x, t = _data(rng, kind, (4, 3), np.float64)
    if kind in ("mae", "huber"):
        x = t + np.where(rng.random(x.shape) < 0.5, -1, 1) * rng.uniform(0.1, 2.0, x.shape)  # away from kinks
    kw = {"sample_weight": rng.uniform(0.5, 2, 4)}
    if kind == "huber":
        kw["delta"] = 0.9
    if kind == "bce":
        kw["pos_weight"] = rng.uniform(0.5, 2, 3)
    _, grad = _call(kind, x, t, **kw)
    h = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (_call(kind, xp, t, **kw)[0] - _call(kind, xm, t, **kw)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_extreme_logits(dtype):
    x = np.array([1e4, -1e4, 1e4, -1e4, 50, -50, 0], dtype=dtype)
    t = np.array([1, 0, 0, 1, 1, 0, 0.5], dtype=dtype)
    loss, grad = losses.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, [0, 0, 1e4, 1e4, np.exp(-50.0), np.exp(-50.0), np.log(2)], rtol=1e-5)
    np.testing.assert_allclose(grad, [0, 0, 1, -1, -np.exp(-50.0), np.exp(-50.0), 0], rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("kind", KINDS)
def test_thread_count_identity(rng, kind):
    x, t = _data(rng, kind, (200_003,), np.float32)
    before = fastopt.get_num_threads()
    try:
        out = []
        for nt in (1, 2):
            fastopt.set_num_threads(nt)
            out.append(_call(kind, x, t))
    finally:
        fastopt.set_num_threads(before)
    assert out[0][0] == out[1][0]     # fixed-block reduction: bit-identical loss at any thread count
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("kind", KINDS)
def test_isa_paths_agree(rng, kind, for_each_isa):
    x, t = _data(rng, kind, (5003,), np.float32)
    res = [_call(kind, x, t) for _ in for_each_isa()]
    for loss, grad in res:
        if kind == "bce":    # exp/log1p use FMA on the AVX2/AVX-512 paths: equal to rounding, not bit for bit
            np.testing.assert_allclose(grad, res[0][1], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(loss, res[0][0], rtol=1e-6)
        else:
            np.testing.assert_array_equal(grad, res[0][1])
            np.testing.assert_allclose(loss, res[0][0], rtol=1e-14)


def test_mse_large_mean_accuracy(rng):
    """The mean of 1e6 float32 terms is accumulated in double (a float32 running sum would be far off)."""
    x = rng.standard_normal(1_000_000).astype(np.float32)
    t = np.zeros_like(x)
    loss, _ = losses.mse(x, t)
    np.testing.assert_allclose(loss, np.mean(x.astype(np.float64) ** 2), rtol=1e-8)  # terms rounded to float32


def test_grad_out_reused_and_empty(rng):
    x, t = _data(rng, "mse", (100,), np.float32)
    g = np.empty_like(x)
    loss, grad = losses.mse(x, t, grad_out=g)
    assert grad is g
    loss, grad = losses.mse(x[:0], t[:0])
    assert np.isnan(loss) and grad.shape == (0,)
    assert losses.mse(x[:0], t[:0], reduction="sum")[0] == 0.0


def test_zero_weights_give_nan_mean_and_zero_grad(rng):
    x, t = _data(rng, "mse", (10,), np.float64)
    loss, grad = losses.mse(x, t, sample_weight=np.zeros(10))
    assert np.isnan(loss) and (grad == 0).all()
