"""Functional forms of the optimizers that are not element-wise: adafactor_, sparse_adam_, muon_ give the class's
bits (one update function in adafactor.py / sparse_adam.py / muon.py), check as the class does, write nothing on
bad input."""
import numpy as np
import pytest

import fastopt
from fastopt.functional import adafactor_, muon_, sparse_adam_

STEPS = 10


def _dense_grads(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(STEPS)]


ADAFACTOR_OPTIONS = [dict(), dict(lr=0.05, weight_decay=0.1, maximize=True), dict(eps=(1e-20, 1e-3), d=2.0,
                                                                                   beta2_decay=-0.5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6), (9,), ()])
@pytest.mark.parametrize("options", ADAFACTOR_OPTIONS)
def test_adafactor_matches_the_class(shape, dtype, options):
    p0 = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    a, b = p0.copy(), p0.copy()
    opt = fastopt.Adafactor([a], **options)
    state = [np.zeros(s, dtype) for s in fastopt.optim.adafactor.state_shapes(b).values()]
    for t, g in enumerate(_dense_grads(shape, dtype), start=1):
        opt.step([g])
        assert adafactor_(b, g, *state, step=t, **options) is b
        np.testing.assert_array_equal(a, b)
    for name, s in zip(fastopt.optim.adafactor.state_shapes(b), state):
        np.testing.assert_array_equal(opt.state[a][name], s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, maximize=True)])
def test_sparse_adam_matches_the_class(dtype, options):
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal((12, 5)).astype(dtype)
    a, b = p0.copy(), p0.copy()
    opt = fastopt.SparseAdam([a], **options)
    m, v = np.zeros_like(b), np.zeros_like(b)
    for t in range(1, STEPS + 1):
        k = 0 if t == 4 else int(rng.integers(1, 20))              # repeats, and one empty gradient
        idx, rows = rng.integers(0, 12, size=k), rng.standard_normal((k, 5)).astype(dtype)
        opt.step([(idx, rows)])
        assert sparse_adam_(b, idx, rows, m, v, step=t, **options) is b
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(opt.state[a]["exp_avg"], m)
    np.testing.assert_array_equal(opt.state[a]["exp_avg_sq"], v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 4), (4, 6)])
@pytest.mark.parametrize("options", [dict(), dict(lr=0.02, nesterov=False, adjust_lr_fn="match_rms_adamw")])
def test_muon_matches_the_class(shape, dtype, options):
    p0 = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    a, b = p0.copy(), p0.copy()
    opt = fastopt.Muon([a], **options)
    buf = np.zeros_like(b)
    for g in _dense_grads(shape, dtype):
        opt.step([g])
        assert muon_(b, g, buf, **options) is b
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(opt.state[a]["momentum_buffer"], buf)


def _adafactor_case():
    p, g = np.ones((4, 3), np.float32), np.full((4, 3), 0.5, np.float32)
    return p, g, [np.full((4, 1), 0.25, np.float32), np.full((1, 3), 0.25, np.float32)]


ADAFACTOR_BAD = [
    (lambda p, g, s: adafactor_(p, g, *s, step=1, lr=-1.0), ValueError, "learning rate"),
    (lambda p, g, s: adafactor_(p, g, *s, step=1, eps=1e-3), TypeError, "Invalid eps"),
    (lambda p, g, s: adafactor_(p, g, *s, step=1, d=0.5), ValueError, "clipping threshold d"),
    (lambda p, g, s: adafactor_(p, g, *s, step=0), ValueError, "Invalid step"),
    (lambda p, g, s: adafactor_(p, g, *s, step=1.0), TypeError, "Invalid step"),
    (lambda p, g, s: adafactor_(p, g, s[0], step=1), TypeError, "row_var and col_var"),
    (lambda p, g, s: adafactor_(p, g, s[1], s[0], step=1), ValueError, "row_var: shape"),
    (lambda p, g, s: adafactor_(p, g.astype(np.float64), *s, step=1), TypeError, "grad"),
    (lambda p, g, s: adafactor_(p, g[:2], *s, step=1), ValueError, "grad: shape"),
    (lambda p, g, s: adafactor_(p, p, *s, step=1), ValueError, "share memory"),
    (lambda p, g, s: adafactor_(p, g, s[0], s[0].reshape(1, 4)[:, :3], step=1), ValueError, "share memory"),
    (lambda p, g, s: adafactor_(p.T, g.T, *s, step=1), ValueError, "param"),
]


@pytest.mark.parametrize("call,exc,match", ADAFACTOR_BAD)
def test_adafactor_errors_write_nothing(call, exc, match):
    p, g, state = _adafactor_case()
    before = [p.copy(), g.copy()] + [s.copy() for s in state]
    with pytest.raises(exc, match=match):
        call(p, g, state)
    for x, y in zip([p, g] + state, before):
        np.testing.assert_array_equal(x, y)


SPARSE_BAD = [
    (lambda p, i, r, m, v: sparse_adam_(p, i, r, m, v, step=1, lr=0.0), ValueError, "learning rate"),
    (lambda p, i, r, m, v: sparse_adam_(p, i, r, m, v, step=1, betas=(1.0, 0.9)), ValueError, "beta"),
    (lambda p, i, r, m, v: sparse_adam_(p, i, r, m, v, step=0), ValueError, "Invalid step"),
    (lambda p, i, r, m, v: sparse_adam_(p, i + 10, r, m, v, step=1), ValueError, "out of range for param"),
    (lambda p, i, r, m, v: sparse_adam_(p, i.astype(float), r, m, v, step=1), TypeError, "integer ndarray"),
    (lambda p, i, r, m, v: sparse_adam_(p, i, r[:1], m, v, step=1), ValueError, "grad rows: shape"),
    (lambda p, i, r, m, v: sparse_adam_(p, i, r.astype(np.float64), m, v, step=1), TypeError, "grad rows"),
    (lambda p, i, r, m, v: sparse_adam_(p, i, r, m, m, step=1), ValueError, "share memory"),
    (lambda p, i, r, m, v: sparse_adam_(p, i, r, m[:2], v, step=1), ValueError, "exp_avg: shape"),
    (lambda p, i, r, m, v: sparse_adam_(p, i, p[:2], m, v, step=1), ValueError, "share memory"),
    (lambda p, i, r, m, v: sparse_adam_(p[0], i, r, m, v, step=1), ValueError, "2-D"),
]


@pytest.mark.parametrize("call,exc,match", SPARSE_BAD)
def test_sparse_adam_errors_write_nothing(call, exc, match):
    p = np.ones((4, 3), np.float32)
    i, r = np.array([0, 2]), np.full((2, 3), 0.5, np.float32)
    m, v = np.full_like(p, 0.1), np.full_like(p, 0.2)
    before = [a.copy() for a in (p, i, r, m, v)]
    with pytest.raises(exc, match=match):
        call(p, i, r, m, v)
    for x, y in zip((p, i, r, m, v), before):
        np.testing.assert_array_equal(x, y)


MUON_BAD = [
    (lambda p, g, b: muon_(p, g, b, ns_steps=100), ValueError, "ns_steps"),
    (lambda p, g, b: muon_(p, g, b, adjust_lr_fn="bogus"), ValueError, "adjust_lr_fn"),
    (lambda p, g, b: muon_(p, g, b, momentum=-0.5), ValueError, "momentum"),
    (lambda p, g, b: muon_(p[0], g[0], b[0]), ValueError, "2-D"),
    (lambda p, g, b: muon_(p, g, b[:2]), ValueError, "momentum_buffer: shape"),
    (lambda p, g, b: muon_(p, g, p), ValueError, "share memory"),
    (lambda p, g, b: muon_(p, b, b), ValueError, "share memory"),
]


@pytest.mark.parametrize("call,exc,match", MUON_BAD)
def test_muon_errors_write_nothing(call, exc, match):
    p, g, b = np.ones((4, 3), np.float32), np.full((4, 3), 0.5, np.float32), np.full((4, 3), 0.1, np.float32)
    before = [a.copy() for a in (p, g, b)]
    with pytest.raises(exc, match=match):
        call(p, g, b)
    for x, y in zip((p, g, b), before):
        np.testing.assert_array_equal(x, y)


def test_listed_in_functional_all():
    names = fastopt.functional.__all__
    assert all(n in names and getattr(fastopt.functional, n) is f
               for n, f in [("adafactor_", adafactor_), ("sparse_adam_", sparse_adam_), ("muon_", muon_)])
    assert "lbfgs_" not in names
