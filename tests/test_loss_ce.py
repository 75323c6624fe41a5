"""Softmax cross-entropy and multi-class hinge: references, torch and scikit-learn parity, gradients, stability."""
import numpy as np
import pytest

import fastopt
from fastopt import losses

import _reference_loss as ref

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def _problem(rng, n, c, dtype, ignore=0):
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    y = rng.integers(0, c, n)
    if ignore:
        y[rng.choice(n, ignore, replace=False)] = -100
    return x, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1}, {"class_weight": True},
                                  {"class_weight": True, "label_smoothing": 0.25}, {"sample_weight": True},
                                  {"sample_weight": True, "class_weight": True, "label_smoothing": 0.05}])
@pytest.mark.parametrize("shape", [(37, 11), (5, 1000), (3000, 7)])
def test_labels_match_reference(rng, num_threads, dtype, reduction, opts, shape):
    n, c = shape
    x, y = _problem(rng, n, c, dtype, ignore=n // 5)
    kw = dict(opts)
    if kw.get("class_weight"):
        kw["class_weight"] = rng.uniform(0.1, 2.0, c).astype(dtype)
    if kw.get("sample_weight"):
        kw["sample_weight"] = rng.uniform(0.0, 2.0, n).astype(dtype)
    loss, grad = losses.softmax_cross_entropy(x, y, reduction=reduction, **kw)
    rloss, rgrad = ref.softmax_cross_entropy(x, y, reduction=reduction, **kw)
    np.testing.assert_allclose(loss, rloss, **TOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])
    assert grad.dtype == dtype
    assert (grad[y == -100] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.2}, {"class_weight": True}, {"sample_weight": True}])
def test_probabilities_match_reference(rng, dtype, opts):
    n, c = 64, 9
    x = rng.standard_normal((n, c)).astype(dtype)
    t = rng.dirichlet(np.ones(c), n).astype(dtype)
    kw = dict(opts)
    if kw.get("class_weight"):
        kw["class_weight"] = rng.uniform(0.1, 2.0, c).astype(dtype)
    if kw.get("sample_weight"):
        kw["sample_weight"] = rng.uniform(0.0, 2.0, n).astype(dtype)
    for reduction in ("mean", "sum", "none"):
        loss, grad = losses.softmax_cross_entropy(x, t, reduction=reduction, **kw)
        rloss, rgrad = ref.softmax_cross_entropy(x, t, reduction=reduction, **kw)
        np.testing.assert_allclose(loss, rloss, **TOL[dtype])
        np.testing.assert_allclose(grad, rgrad, **TOL[dtype])


def test_torch_parity_cross_entropy(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, c = 50, 13
    x, y = _problem(rng, n, c, np.float64, ignore=7)
    y[y == -100] = 4  # torch's ignore_index here is 4 (a valid class id)
    w = rng.uniform(0.2, 3.0, c)
    probs = rng.dirichlet(np.ones(c), n)
    cases = [dict(), dict(label_smoothing=0.3), dict(weight=w), dict(weight=w, label_smoothing=0.1),
             dict(ignore_index=4), dict(ignore_index=4, weight=w, label_smoothing=0.2)]
    for kw in cases:
        for reduction in ("mean", "sum", "none"):
            xt = torch.tensor(x, requires_grad=True)
            tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
            lt = F.cross_entropy(xt, torch.tensor(y), reduction=reduction, **tkw)
            lt.sum().backward()
            fkw = {("class_weight" if k == "weight" else k): v for k, v in kw.items()}
            loss, grad = losses.softmax_cross_entropy(x, y, reduction=reduction, **fkw)
            np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    for kw in (dict(), dict(weight=w, label_smoothing=0.15)):
        xt = torch.tensor(x, requires_grad=True)
        tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
        lt = F.cross_entropy(xt, torch.tensor(probs), **tkw)
        lt.backward()
        fkw = {("class_weight" if k == "weight" else k): v for k, v in kw.items()}
        loss, grad = losses.softmax_cross_entropy(x, probs, **fkw)
        np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_all_ignored_gives_nan_loss_and_zero_grad_as_torch():
    x = np.ones((3, 4))
    loss, grad = losses.softmax_cross_entropy(x, np.full(3, -100))
    assert np.isnan(loss) and (grad == 0).all()


def test_sklearn_log_loss(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    n, c = 200, 6
    x = rng.standard_normal((n, c)) * 2
    y = rng.integers(0, c, n)
    sw = rng.uniform(0.1, 1.0, n)
    p = np.exp(ref.log_softmax(x))
    loss, _ = losses.softmax_cross_entropy(x, y)
    np.testing.assert_allclose(loss, metrics.log_loss(y, p, labels=np.arange(c)), rtol=1e-10)
    loss, _ = losses.softmax_cross_entropy(x, y, sample_weight=sw)
    np.testing.assert_allclose(loss, metrics.log_loss(y, p, sample_weight=sw, labels=np.arange(c)), rtol=1e-10)


@pytest.mark.parametrize("target", ["labels", "probs"])
def test_finite_difference_gradient(rng, target):
    n, c = 6, 5
    x = rng.standard_normal((n, c))
    t = rng.integers(0, c, n) if target == "labels" else rng.dirichlet(np.ones(c), n)
    kw = dict(class_weight=rng.uniform(0.5, 2, c), sample_weight=rng.uniform(0.5, 2, n), label_smoothing=0.1)
    if target == "labels":
        t[2] = -100
    _, grad = losses.softmax_cross_entropy(x, t, **kw)
    h = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (losses.softmax_cross_entropy(xp, t, **kw)[0] - losses.softmax_cross_entropy(xm, t, **kw)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logits_are_stable(dtype):
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [0.0, 1e4, 0.0]], dtype=dtype)
    y = np.array([0, 1, 2, 0])
    loss, grad = losses.softmax_cross_entropy(x, y, reduction="none")
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, [0.0, np.log(3), 2e4 + np.log(2), 1e4], rtol=1e-6)
    np.testing.assert_allclose(grad[0], [0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(grad[1], [1 / 3, -2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(grad[2], [0.5, 0.5, -1.0], rtol=1e-6)
    loss, grad = losses.softmax_cross_entropy(x, y, label_smoothing=0.1)
    assert np.isfinite(loss) and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_identity(rng, dtype):
    x, y = _problem(rng, 20000, 37, dtype, ignore=100)
    before = fastopt.get_num_threads()
    try:
        out = []
        for nt in (1, 2):
            fastopt.set_num_threads(nt)
            out.append(losses.softmax_cross_entropy(x, y, label_smoothing=0.1))
    finally:
        fastopt.set_num_threads(before)
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_isa_paths_agree(rng, dtype, for_each_isa):
    x, y = _problem(rng, 300, 129, dtype)
    res = {isa: losses.softmax_cross_entropy(x, y, label_smoothing=0.1) for isa in for_each_isa()}
    base = res["baseline"]
    for loss, grad in res.values():
        np.testing.assert_allclose(loss, base[0], rtol=1e-6 if dtype == np.float32 else 1e-14)
        np.testing.assert_allclose(grad, base[1], rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-9)


def test_grad_out_and_unbatched(rng):
    x, y = _problem(rng, 8, 5, np.float32)
    g = np.full_like(x, np.nan)
    loss, grad = losses.softmax_cross_entropy(x, y, grad_out=g)
    assert grad is g and np.isfinite(g).all()
    l1, g1 = losses.softmax_cross_entropy(x[3], y[3], reduction="none")
    assert g1.shape == (5,)
    np.testing.assert_allclose(g1, losses.softmax_cross_entropy(x[3:4], y[3:4], reduction="sum")[1][0])
    xs = np.asfortranarray(x)
    np.testing.assert_array_equal(losses.softmax_cross_entropy(xs, y)[1], grad)


# ---------------------------------------------------------------------------------------------- hinge
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hinge_matches_reference(rng, dtype, reduction, num_threads):
    n, c = 700, 12
    x = rng.standard_normal((n, c)).astype(dtype)
    y = rng.integers(0, c, n)
    kw = dict(class_weight=rng.uniform(0.1, 2, c).astype(dtype), sample_weight=rng.uniform(0, 1, n).astype(dtype),
              margin=0.7)
    loss, grad = losses.hinge(x, y, reduction=reduction, **kw)
    rloss, rgrad = ref.hinge(x, y, reduction=reduction, **kw)
    np.testing.assert_allclose(loss, rloss, **TOL[dtype])
    np.testing.assert_allclose(grad, rgrad, **TOL[dtype])


def test_hinge_torch_parity(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((40, 6))
    y = rng.integers(0, 6, 40)
    w = rng.uniform(0.2, 2, 6)
    for kw in (dict(), dict(weight=w, margin=0.5)):
        for reduction in ("mean", "sum", "none"):
            xt = torch.tensor(x, requires_grad=True)
            tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
            lt = torch.nn.functional.multi_margin_loss(xt, torch.tensor(y), reduction=reduction, **tkw)
            lt.sum().backward()
            fkw = {("class_weight" if k == "weight" else k): v for k, v in kw.items()}
            loss, grad = losses.hinge(x, y, reduction=reduction, **fkw)
            np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_hinge_finite_difference(rng):
    x = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    _, grad = losses.hinge(x, y)
    h = 1e-7
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (losses.hinge(xp, y)[0] - losses.hinge(xm, y)[0]) / (2 * h)
        assert abs(fd - grad[idx]) < 1e-6
