"""fastopt.SparseAdam: torch.optim.SparseAdam's trajectories fed the same sparse COO gradients (repeated indices,
empty gradients, maximize), rows outside the gradient untouched, errors that change nothing, state_dict."""
import pickle

import numpy as np
import pytest

import fastopt

torch = pytest.importorskip("torch")

TOL = {np.float64: 1e-10, np.float32: 1e-5}
SHAPES = [(12, 5), (4, 3)]


def _sparse_grads(dtype, steps=30, seed=0, shapes=SHAPES):
    """Per step, per param: (indices, rows) with repeats (every 7th step empty, k = 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        gs = []
        for n_rows, n_cols in shapes:
            k = 0 if t % 7 == 3 else int(rng.integers(1, 2 * n_rows))
            idx = rng.integers(0, n_rows, size=k).astype(np.int64)
            gs.append((idx, rng.standard_normal((k, n_cols)).astype(dtype)))
        out.append(gs)
    return out


def _torch_run(params, grads, **kwargs):
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = torch.optim.SparseAdam(tparams, **kwargs)
    for gs in grads:
        for tp, g in zip(tparams, gs):
            tp.grad = None if g is None else torch.sparse_coo_tensor(
                torch.from_numpy(g[0])[None], torch.from_numpy(g[1]), tp.shape, check_invariants=True)
        opt.step()
    return [tp.detach().numpy() for tp in tparams], opt


OPTIONS = [dict(), dict(maximize=True), dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "maximize", "lr,betas,eps"])
def test_trajectory_matches_torch(options, dtype):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = _sparse_grads(dtype)
    grads[5][1] = None
    expected, topt = _torch_run(params, grads, **options)
    opt = fastopt.SparseAdam(params, **options)
    for gs in grads:
        opt.step(gs)
    for a, b in zip(params, expected):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])
    for i, tp in enumerate(topt.param_groups[0]["params"]):
        assert int(opt.state[i]["step"]) == topt.state[tp]["step"]
        np.testing.assert_allclose(opt.state[i]["exp_avg_sq"], topt.state[tp]["exp_avg_sq"].numpy(),
                                   rtol=TOL[dtype], atol=TOL[dtype])


def _reference(p0, grads, lr, betas, eps, maximize):
    """float64 SparseAdam written from the class docstring's rule, one row at a time: (param, exp_avg, exp_avg_sq)
    after every step of ``grads`` (per step: (indices, rows))."""
    p, m, v = p0.astype(np.float64), np.zeros(p0.shape), np.zeros(p0.shape)
    b1, b2 = betas
    for t, (idx, rows) in enumerate(grads, start=1):
        summed = {}
        for i, r in zip(idx.tolist(), rows.astype(np.float64)):
            summed[i] = summed.get(i, 0.0) + r
        for i, g in summed.items():
            g = -g if maximize else g
            m[i] = m[i] + (1 - b1) * (g - m[i])
            v[i] = v[i] + (1 - b2) * (g * g - v[i])
            p[i] = p[i] - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[i] / (np.sqrt(v[i]) + eps)
    return p, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("shape", [(300, 67), (20, 1100)])
def test_native_step_matches_a_float64_reference_with_the_same_bits_on_every_path(shape, dtype, maximize,
                                                                                  for_each_isa):
    """12 steps of up to 400 indices with repeats, threaded from 256 elements, on 300 x 67 (an odd width: every
    path's vector tail) and 20 x 1100 (rows split between threads; repeats summed over 3 stack blocks): within
    float32/float64 rounding of the reference, and the same bits on every instruction-set path at 1 and 2 threads
    (each element's arithmetic is fixed; only its thread changes)."""
    from fastopt import _config
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = []
    for _ in range(12):
        idx = rng.integers(0, shape[0], size=int(rng.integers(1, 400)))
        grads.append((idx, rng.standard_normal((idx.size, shape[1])).astype(dtype)))
    hp = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, maximize=maximize)
    expected = _reference(p0, grads, **hp)
    runs = []
    before, before_min = fastopt.get_num_threads(), fastopt.parallel_min_elements()
    try:
        _config.set_parallel_min_elements(256)
        for isa in for_each_isa():
            for n in (1, 2):
                fastopt.set_num_threads(n)
                p = p0.copy()
                opt = fastopt.SparseAdam([p], **hp)
                for g in grads:
                    opt.step([g])
                runs.append((isa, n, [p, opt.state[0]["exp_avg"], opt.state[0]["exp_avg_sq"]]))
    finally:
        fastopt.set_num_threads(before)
        _config.set_parallel_min_elements(before_min)
    for got, want in zip(runs[0][2], expected):
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])
    assert not np.array_equal(runs[0][2][0], p0)
    for isa, n, arrays in runs[1:]:
        assert [a.tobytes() for a in arrays] == [a.tobytes() for a in runs[0][2]], (isa, n)


@pytest.mark.parametrize("case, match", [
    ("strided param", "plain 2-D"), ("int32 rows", "int64"), ("rows not ascending", "ascend strictly"),
    ("row out of range", "ascend strictly"), ("order out of range", r"order in \[0, k\)"),
    ("starts short of k", "from 0 to k")])
def test_the_native_call_rejects_what_it_cannot_step(case, match):
    """The kernel's own guard (its caller checks and sorts first): a bad layout or a bad plan of rows is a
    ValueError before anything is written, never a write through a wrong stride or out of bounds."""
    from fastopt import _optim
    p, m, v = np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 3))
    i64 = lambda *a: np.array(a, np.int64)
    rows, starts, order, grad = i64(0, 2), i64(0, 1, 2), i64(1, 0), np.ones((2, 3))
    if case == "strided param":
        p = np.zeros((4, 6))[:, ::2]
    elif case == "int32 rows":
        rows = rows.astype(np.int32)
    elif case == "rows not ascending":
        rows = i64(2, 0)
    elif case == "row out of range":
        rows = i64(0, 4)
    elif case == "order out of range":
        order = i64(0, 2)
    else:
        starts = i64(0, 1, 1)
    with pytest.raises(ValueError, match=match):
        _optim.sparse_adam_rows(p, m, v, rows, starts, order, grad, 1, 0.1, 0.9, 0.99, 1e-8, False)
    assert not p.any() and not m.any() and not v.any()
    p = np.zeros((4, 3))
    _optim.sparse_adam_rows(p, m, v, i64(0, 2), i64(0, 1, 2), i64(1, 0), grad, 1, 0.1, 0.9, 0.99, 1e-8, False)
    assert p[[0, 2]].all() and not p[[1, 3]].any()      # the same call with a good plan steps exactly its rows


def test_rows_not_in_the_gradient_are_untouched_bit_for_bit():
    rng = np.random.default_rng(2)
    p = rng.standard_normal((50, 8)).astype(np.float32)
    before = p.copy()
    opt = fastopt.SparseAdam([p], lr=0.1)
    touched = set()
    for _ in range(10):
        idx = rng.integers(0, 25, size=6)          # rows 25..49 never appear
        touched.update(idx.tolist())
        opt.step([(idx, rng.standard_normal((6, 8)).astype(np.float32))])
    untouched = sorted(set(range(50)) - touched)
    np.testing.assert_array_equal(p[untouched], before[untouched])
    assert not np.any(opt.state[0]["exp_avg"][untouched]) and not np.any(opt.state[0]["exp_avg_sq"][untouched])
    assert np.all(p[sorted(touched)] != before[sorted(touched)])


def test_repeated_indices_are_summed_first():
    a, b = np.zeros((3, 2)), np.zeros((3, 2))
    fastopt.SparseAdam([a], lr=0.1).step([(np.array([2, 0, 2]), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, -7.0]]))])
    fastopt.SparseAdam([b], lr=0.1).step([(np.array([0, 2]), np.array([[3.0, 4.0], [6.0, -5.0]]))])
    np.testing.assert_array_equal(a, b)


def test_empty_gradient_counts_a_step_and_changes_nothing_else():
    p = np.ones((4, 2))
    opt = fastopt.SparseAdam([p])
    opt.step([(np.zeros(0, np.int64), np.zeros((0, 2)))])
    assert int(opt.state[0]["step"]) == 1 and np.all(p == 1) and not np.any(opt.state[0]["exp_avg"])


def _bad_grads(p):
    idx, rows = np.array([0, 1]), np.ones((2, 3))
    return [((np.array([0, 4]), rows), ValueError, r"grads\[1\] indices: index 4 is out of range"),
            ((np.array([-1, 0]), rows), ValueError, "index -1 is out of range"),
            ((np.array([0.0, 1.0]), rows), TypeError, "integer ndarray, got dtype float64"),
            (([0, 1], rows), TypeError, "integer ndarray, got list"),
            ((np.array([[0, 1]]), rows), ValueError, r"expected shape \(k,\)"),
            ((idx, np.ones((2, 4))), ValueError, r"does not match \(k, n_cols\) = \(2, 3\)"),
            ((idx, np.ones((3, 3))), ValueError, "does not match"),
            ((idx, np.ones((2, 3), np.float32)), TypeError, "expected dtype float64"),
            (np.ones((4, 3)), TypeError, r"expected a tuple \(indices, rows\)"),
            ((idx, p[:2]), ValueError, "share memory")]


@pytest.mark.parametrize("case", range(10))
def test_bad_gradients_change_nothing(case):
    p, q = np.ones((4, 3)), np.ones((2, 2))
    opt = fastopt.SparseAdam([q, p])
    opt.step([(np.array([1]), np.ones((1, 2))), None])
    before = pickle.dumps(opt.state_dict()), p.copy(), q.copy()
    grad, exc, match = _bad_grads(p)[case]
    with pytest.raises(exc, match=match):
        opt.step([(np.array([0]), np.ones((1, 2))), grad])     # the valid first gradient is not applied either
    assert pickle.dumps(opt.state_dict()) == before[0]
    np.testing.assert_array_equal(p, before[1])
    np.testing.assert_array_equal(q, before[2])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(lr=0.0), ValueError, "learning rate: 0.0"), (dict(eps=0.0), ValueError, "epsilon value"),
    (dict(betas=(0.9, 1.0)), ValueError, "beta parameter at index 1: 1.0"), (dict(maximize=None), TypeError,
                                                                            "maximize")])
def test_bad_hyperparameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fastopt.SparseAdam([np.zeros((2, 2))], **kwargs)
    opt = fastopt.SparseAdam([np.zeros((2, 2))])
    opt.param_groups[0].update(kwargs)
    with pytest.raises(exc, match=match):
        opt.step([(np.array([0]), np.ones((1, 2)))])
    assert len(opt.state) == 0


def test_params_must_be_2d():
    with pytest.raises(ValueError, match=r"params\[1\]: SparseAdam steps 2-D params"):
        fastopt.SparseAdam([np.zeros((2, 2)), np.zeros(5)])


def test_readonly_int32_and_strided_inputs_are_read():
    a, b = np.zeros((5, 3)), np.zeros((5, 3))
    rows = np.arange(12.0).reshape(3, 4)[:, :3]          # strided
    idx = np.array([4, 0, 2], np.int32)
    idx.flags.writeable = False
    fastopt.SparseAdam([a]).step([(idx, rows)])
    fastopt.SparseAdam([b]).step([(idx.astype(np.int64), np.ascontiguousarray(rows))])
    np.testing.assert_array_equal(a, b)


def test_state_dict_round_trip_and_bit_identical_resume():
    rng = np.random.default_rng(4)
    params = [rng.standard_normal(s) for s in SHAPES]
    copy = [p.copy() for p in params]
    grads = _sparse_grads(np.float64)
    full = fastopt.SparseAdam(params, lr=0.01)
    for gs in grads:
        full.step(gs)
    first = fastopt.SparseAdam(copy, lr=0.01)
    for gs in grads[:13]:
        first.step(gs)
    sd = pickle.loads(pickle.dumps(first.state_dict()))
    assert sd["state"][0]["step"] == 13 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    resumed = fastopt.SparseAdam(copy, lr=0.5)
    resumed.load_state_dict(sd)
    for gs in grads[13:]:
        resumed.step(gs)
    for a, b in zip(copy, params):
        np.testing.assert_array_equal(a, b)
    bad = {"state": {0: {**sd["state"][0], "exp_avg": np.zeros((12, 4))}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match="exp_avg"):
        resumed.load_state_dict(bad)


def test_sorted_rows_gives_the_same_plan_by_either_sort():
    """The int64-key sort and the stable argsort it falls back to (index and position past 63 bits) agree:
    ascending distinct rows, their gradient rows in the order they came."""
    from fastopt.optim.sparse_adam import _sorted_rows
    idx = np.array([5, 2, 5, 0, 2, 5, 9], np.int64)
    keys = _sorted_rows(idx, 10)
    argsorted = _sorted_rows(idx, 2 ** 61)
    for a, b in zip(keys, argsorted):
        assert a.dtype == b.dtype == np.int64
        np.testing.assert_array_equal(a, b)
    unique, starts, order = keys
    np.testing.assert_array_equal(unique, [0, 2, 5, 9])
    np.testing.assert_array_equal(starts, [0, 1, 3, 6, 7])
    np.testing.assert_array_equal(order, [3, 1, 4, 0, 2, 5, 6])
