"""Gradient clipping: torch parity, a float64 NumPy reference, threads, nonfinite handling, error tables."""
import math

import numpy as np
import pytest

import fastopt
from fastopt.clip import clip_grad_norm_, clip_grad_value_, get_total_norm

NORMS = [1.0, 2.0, math.inf, 3.0, 0.5]


def ref_norm(arrays, p):
    """Published definition: the p-norm of the per-array p-norms, in float64."""
    per = [np.linalg.norm(a.astype(np.float64).ravel(), ord=p) for a in arrays if a is not None]
    if not per:
        return 0.0
    return float(np.linalg.norm(np.array(per), ord=p))


def make_grads(rng, dtype, sizes=(1, 7, 100, 33000, 5000, 70001)):
    return [(rng.standard_normal(n) * 3).astype(dtype).reshape(-1) for n in sizes]


@pytest.mark.parametrize("p", NORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_matches_reference(rng, num_threads, p, dtype):
    grads = make_grads(rng, dtype)
    grads.insert(2, None)
    want = ref_norm(grads, p)
    got = get_total_norm(grads, p)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("p", NORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_norm_reference(rng, num_threads, p, dtype, max_norm):
    grads = make_grads(rng, dtype)
    before = [g.copy() for g in grads]
    total = clip_grad_norm_(grads, max_norm, p)
    coef = min(1.0, max_norm / (total + 1e-6))           # the coefficient of the returned norm
    assert total == pytest.approx(ref_norm(before, p), rel=1e-12)
    for g, b in zip(grads, before):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, b * dtype(coef) if coef < 1 else b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_counts_agree(rng, dtype):
    """The norm is a blocked reduction (csrc/blocked_sum.h): the same bits at any thread count, norm and clipped
    gradients alike."""
    grads = make_grads(rng, dtype, sizes=(40000, 3, 90001, 17, 65536, 0, 8192, 8193))
    results = {}
    before = fastopt.get_num_threads()
    try:
        for nt in (1, 2, 3):
            fastopt.set_num_threads(nt)
            norms = [get_total_norm(grads, p) for p in NORMS]
            work = [g.copy() for g in grads]
            results[nt] = norms, clip_grad_norm_(work, 0.5), work
            assert [get_total_norm(grads, p) for p in NORMS] == norms          # same thread count: same bits
    finally:
        fastopt.set_num_threads(before)
    for nt in (2, 3):
        assert results[nt][0] == results[1][0], nt                              # every p, inf included: exact
        assert results[nt][1] == results[1][1], nt
        for a, b in zip(results[nt][2], results[1][2]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity(rng, num_threads, p, dtype):
    torch = pytest.importorskip("torch")
    grads = make_grads(rng, dtype, sizes=(10, 4000, 50000, 1))
    params = []
    for g in grads:
        t = torch.zeros(g.shape, dtype=torch.float32 if dtype == np.float32 else torch.float64, requires_grad=True)
        t.grad = torch.from_numpy(g.copy())
        params.append(t)
    want = float(torch.nn.utils.clip_grad_norm_(params, 2.5, norm_type=p))
    got = clip_grad_norm_(grads, 2.5, norm_type=p)
    # torch sums float32 arrays in float32 (relative error ~1e-6..1e-5 over 5e4 elements); fastopt sums in double
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    assert got == pytest.approx(want, rel=rtol)
    for g, t in zip(grads, params):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol * 2, atol=0)


def test_torch_parity_value(rng, num_threads):
    torch = pytest.importorskip("torch")
    grads = make_grads(rng, np.float32)
    grads[0][0] = np.nan
    ts = [torch.from_numpy(g.copy()) for g in grads]
    params = []
    for t in ts:
        p = torch.zeros_like(t, requires_grad=True)
        p.grad = t
        params.append(p)
    torch.nn.utils.clip_grad_value_(params, 0.7)
    clip_grad_value_(grads, 0.7)
    for g, p in zip(grads, params):
        np.testing.assert_array_equal(g, p.grad.numpy())
    assert np.isnan(grads[0][0])


@pytest.mark.parametrize("bad, expect_total", [(np.inf, math.inf), (np.nan, math.nan)])
@pytest.mark.parametrize("p", [2.0, math.inf])
def test_nonfinite(rng, num_threads, bad, expect_total, p):
    grads = make_grads(rng, np.float64)
    grads[3][5] = bad
    before = [g.copy() for g in grads]
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(grads, 1.0, p, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)
    total = clip_grad_norm_(grads, 1.0, p)
    if math.isnan(expect_total):
        assert math.isnan(total)
        assert all(np.isnan(g).all() for g in grads)          # NaN coefficient, as torch
    else:
        assert total == math.inf
        assert grads[0].max() == 0 and np.isnan(grads[3][5])   # coefficient 0: inf * 0 = NaN


def test_inf_norm_nan_and_inf_together():
    g = [np.array([1.0, np.inf, 2.0]), np.array([np.nan])]
    assert math.isnan(get_total_norm(g, math.inf))
    assert get_total_norm([np.array([1.0, -np.inf])], math.inf) == math.inf


def test_empty_and_mixed_dtypes(rng):
    assert clip_grad_norm_([], 1.0) == 0.0
    assert clip_grad_norm_([None, None], 1.0) == 0.0
    assert get_total_norm([np.zeros(0, np.float32)]) == 0.0
    a = rng.standard_normal(1000)
    b = rng.standard_normal(500).astype(np.float32)
    for p in NORMS:
        assert get_total_norm([a, b], p) == pytest.approx(ref_norm([a, b], p), rel=1e-12)
    total = clip_grad_norm_([a, b], 0.1)
    assert get_total_norm([a, b]) == pytest.approx(0.1, rel=1e-5)
    assert total > 1


def test_read_only_and_strided_inputs_to_get_total_norm(rng):
    a = rng.standard_normal((40, 30))
    view = a[:, ::3]
    ro = a.copy()
    ro.flags.writeable = False
    assert get_total_norm([view]) == pytest.approx(np.linalg.norm(view), rel=1e-13)
    assert get_total_norm([ro]) == pytest.approx(np.linalg.norm(a), rel=1e-13)
    assert get_total_norm([a.astype(">f8")]) == pytest.approx(np.linalg.norm(a), rel=1e-13)


def test_clip_value_noop_and_bounds(rng):
    g = [rng.standard_normal(100)]
    before = g[0].copy()
    clip_grad_value_(g, math.inf)
    np.testing.assert_array_equal(g[0], before)
    clip_grad_value_(g, 0.0)
    assert not g[0].any()


def _arr(n=10, dtype=np.float64):
    return np.arange(n, dtype=dtype) + 1.0


def _ro():
    a = _arr()
    a.flags.writeable = False
    return a


_shared = _arr(20)

BAD = [
    # (grads, kwargs, exception, message regex)
    (lambda: _arr(), {}, TypeError, "grads must be a list"),
    (lambda: [_arr(), [1.0, 2.0]], {}, TypeError, r"grads\[1\]: expected a numpy.ndarray"),
    (lambda: [_arr(), np.arange(3)], {}, TypeError, r"grads\[1\]: expected dtype float32 or float64, got int64"),
    (lambda: [_arr(), _arr(dtype=np.float16)], {}, TypeError, r"grads\[1\].*float16"),
    (lambda: [_arr(), _arr(20)[::2]], {}, ValueError, r"grads\[1\] is written in place.*not C-contiguous"),
    (lambda: [_ro()], {}, ValueError, r"grads\[0\].*read-only"),
    (lambda: [_arr().astype(">f8")], {}, ValueError, r"grads\[0\].*byte order"),
    (lambda: [_shared[:10], _arr(), _shared[5:]], {}, ValueError, r"grads\[0\] and grads\[2\] share memory"),
    (lambda: [_arr()], {"max_norm": -1.0}, ValueError, "Invalid max_norm: -1.0"),
    (lambda: [_arr()], {"max_norm": math.nan}, ValueError, "Invalid max_norm: nan"),
    (lambda: [_arr()], {"max_norm": "1"}, TypeError, "max_norm"),
    (lambda: [_arr()], {"norm_type": 0}, ValueError, "Invalid norm_type: 0"),
    (lambda: [_arr()], {"norm_type": -2.0}, ValueError, "Invalid norm_type"),
    (lambda: [_arr()], {"norm_type": -math.inf}, ValueError, "Invalid norm_type"),
    (lambda: [_arr()], {"norm_type": "fro"}, TypeError, "norm_type"),
    (lambda: [_arr()], {"error_if_nonfinite": 1}, TypeError, "error_if_nonfinite"),
]


@pytest.mark.parametrize("make, kwargs, exc, msg", BAD)
def test_bad_input_clip_norm(make, kwargs, exc, msg):
    grads = make()
    snapshot = [g.copy() if isinstance(g, np.ndarray) else g for g in (grads if isinstance(grads, list) else [])]
    shared_before = _shared.copy()
    kwargs = {"max_norm": 0.01, **kwargs}
    with pytest.raises(exc, match=msg):
        clip_grad_norm_(grads, **kwargs)
    for g, s in zip(grads if isinstance(grads, list) else [], snapshot):
        if isinstance(g, np.ndarray):
            np.testing.assert_array_equal(g, s)
    np.testing.assert_array_equal(_shared, shared_before)


@pytest.mark.parametrize("value, exc, msg", [(-0.5, ValueError, "Invalid clip_value: -0.5"),
                                             (math.nan, ValueError, "Invalid clip_value"),
                                             (None, TypeError, "clip_value")])
def test_bad_input_clip_value(value, exc, msg):
    g = [_arr() * 100]
    before = g[0].copy()
    with pytest.raises(exc, match=msg):
        clip_grad_value_(g, value)
    np.testing.assert_array_equal(g[0], before)
    with pytest.raises(ValueError, match="read-only"):
        clip_grad_value_([_ro()], 1.0)


def test_isa_paths_agree(rng, for_each_isa):
    grads = make_grads(rng, np.float32)
    results = {}
    for isa in for_each_isa():
        work = [g.copy() for g in grads]
        results[isa] = ([get_total_norm(grads, p) for p in NORMS], clip_grad_norm_(work, 0.3), work)
    first = results[fastopt.available_isas()[0]]
    for norms, total, work in results.values():
        np.testing.assert_allclose(norms, first[0], rtol=1e-13)
        assert norms[2] == first[0][2]
        for a, b in zip(work, first[2]):              # the scale pass is element-wise: same coefficient bits
            if total == first[1]:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int64])
def test_non_float_arrays_are_a_type_error_and_nothing_is_written(dtype):
    """A bool array's typenum is 0, the contract's "not a float" answer: it once passed the plain-array test and was
    read (and scaled in place) as float64, past its end (found by the fuzzer's long run)."""
    bad = np.ones(7, dtype)
    good = np.full(5, 3.0, np.float32)
    for call in (lambda: fastopt.clip_grad_norm_([good, bad], 1.0), lambda: fastopt.get_total_norm([good, bad]),
                 lambda: fastopt.clip_grad_value_([good, bad], 1.0)):
        with pytest.raises(TypeError, match=r"\[1\]: expected dtype float32 or float64"):
            call()
        np.testing.assert_array_equal(bad, np.ones(7, dtype))
        np.testing.assert_array_equal(good, np.full(5, 3.0, np.float32))
