"""fastopt.Muon against torch.optim.Muon: trajectories over every option, param groups, errors (nothing written),
state_dict and resume, convergence."""
import itertools
import pickle

import numpy as np
import pytest

import fastopt

SHAPES = {"tall": (24, 10), "wide": (10, 24), "square": (16, 16)}
STEPS = 30


def _problem(shape, dtype, seed=0):
    """(W0, X, Y) of the least-squares problem min 0.5 |W X - Y|^2 / n over W of ``shape``."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    x = rng.standard_normal((cols, 40))
    return (0.1 * rng.standard_normal(shape)).astype(dtype), x.astype(dtype), rng.standard_normal((rows, 40)).astype(dtype)


def _grad(w, x, y):
    return (w @ x - y) @ x.T / x.shape[1]


def _ns_in_own_dtype(grad, ns_coefficients, ns_steps, eps):
    """torch's _zeropower_via_newtonschulz without its cast to bfloat16 (the one difference to fastopt)."""
    import torch
    a, b, c = ns_coefficients
    x = grad.clone()
    if grad.size(0) > grad.size(1):
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if grad.size(0) > grad.size(1) else x


def _run_torch(groups, problems, steps):
    """torch.optim.Muon over ``groups`` (lists of param indices + hyperparameters) on ``problems``."""
    import torch
    ws = [torch.tensor(w0.copy(), requires_grad=True) for w0, _, _ in problems]
    opt = torch.optim.Muon([{**g, "params": [ws[i] for i in g["params"]]} for g in groups])
    for _ in range(steps):
        for w, (_, x, y) in zip(ws, problems):
            w.grad = torch.from_numpy(_grad(w.detach().numpy(), x, y))
        opt.step()
    return [w.detach().numpy() for w in ws]


def _run_fastopt(groups, problems, steps):
    ws = [w0.copy() for w0, _, _ in problems]
    opt = fastopt.Muon([{**g, "params": [ws[i] for i in g["params"]]} for g in groups])
    order = [i for g in groups for i in g["params"]]
    for _ in range(steps):
        opt.step([_grad(ws[i], *problems[i][1:]) for i in order])
    return ws


def _max_rel(ours, theirs):
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(ours, theirs))


# Max deviation relative to the param's largest element, over every case here. float64: both sides orthogonalise
# in float64 and differ only in BLAS summation order (measured 1.4e-15). float32: the same in float32 matmuls,
# whose roundings in different orders are amplified by 30 steps of 5 quintic iterations (measured 8.4e-7): 1e-5.
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-5}


@pytest.fixture
def torch_ns_in_own_dtype(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", _ns_in_own_dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("nesterov,weight_decay,adjust_lr_fn",
                         list(itertools.product([True, False], [0.0, 0.1], [None, "original", "match_rms_adamw"])))
def test_trajectory_matches_torch(torch_ns_in_own_dtype, dtype, shape, nesterov, weight_decay, adjust_lr_fn):
    problems = [_problem(SHAPES[shape], dtype)]
    groups = [dict(params=[0], lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay,
                   adjust_lr_fn=adjust_lr_fn)]
    ours, theirs = _run_fastopt(groups, problems, STEPS), _run_torch(groups, problems, STEPS)
    assert ours[0].dtype == dtype
    assert _max_rel(ours, theirs) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_param_groups_match_torch(torch_ns_in_own_dtype, dtype):
    problems = [_problem(SHAPES[s], dtype, seed) for seed, s in enumerate(["tall", "wide", "square", "tall"])]
    groups = [dict(params=[0, 2], lr=0.03, momentum=0.95, weight_decay=0.1),
              dict(params=[1], lr=0.01, momentum=0.5, nesterov=False, weight_decay=0.0,
                   adjust_lr_fn="match_rms_adamw", ns_steps=3, eps=1e-5),
              dict(params=[3], lr=0.02, ns_coefficients=(2.0, -1.5, 0.5))]
    ours, theirs = _run_fastopt(groups, problems, STEPS), _run_torch(groups, problems, STEPS)
    assert _max_rel(ours, theirs) <= TOLERANCE[dtype]


def test_stock_torch_muon_agrees_to_bfloat16_rounding():
    """Stock torch.optim.Muon orthogonalises in bfloat16 (8-bit mantissa; on the CPU too), fastopt in the param's
    dtype. Over 30 steps the two displacements W_30 - W_0 differ by 3.7e-3 to 3.9e-3 of their norm (measured,
    every shape, both dtypes); the bound 8e-3 is below what a wrong rule gives against torch (nesterov off:
    1.3e-2 to 3.8e-2; 4 NS iterations instead of 5: 0.22 to 0.28)."""
    pytest.importorskip("torch")
    for shape, dtype in itertools.product(SHAPES.values(), [np.float32, np.float64]):
        problems = [_problem(shape, dtype)]
        groups = [dict(params=[0], lr=0.02, weight_decay=0.1)]
        w0 = problems[0][0]
        ours = _run_fastopt(groups, problems, STEPS)[0] - w0
        theirs = _run_torch(groups, problems, STEPS)[0] - w0
        assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 8e-3


# ------------------------------------------------------------------ errors: each leaves everything unchanged
def _setup(dtype=np.float32):
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((4, 5)).astype(dtype)]
    opt = fastopt.Muon(ws, lr=0.02)
    opt.step([np.ones_like(w) for w in ws])
    return ws, opt


def _snapshot(ws, opt):
    return [w.copy() for w in ws], {i: st["momentum_buffer"].copy() for i, st in opt._state.items()}


def _assert_unchanged(ws, opt, snap):
    assert all(np.array_equal(w, s) for w, s in zip(ws, snap[0]))
    assert set(opt._state) == set(snap[1])
    assert all(np.array_equal(opt._state[i]["momentum_buffer"], b) for i, b in snap[1].items())


def test_non_2d_param_names_its_index_and_the_way_out():
    with pytest.raises(ValueError, match=r"params\[1\] has shape \(4,\).*second optimizer, e\.g\. fastopt\.AdamW"):
        fastopt.Muon([np.zeros((4, 3)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"params\[0\] has shape \(2, 3, 4\)"):
        fastopt.Muon([np.zeros((2, 3, 4))])


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(lr=-1.0), ValueError, r"Invalid learning rate: -1\.0"),
    (dict(lr=float("nan")), ValueError, r"Invalid learning rate: nan"),
    (dict(weight_decay=-0.1), ValueError, r"Invalid weight_decay value: -0\.1"),
    (dict(momentum=-0.5), ValueError, r"Invalid momentum value: -0\.5"),
    (dict(eps=-1e-7), ValueError, r"Invalid epsilon value: -1e-07"),
    (dict(nesterov=1), TypeError, r"Invalid nesterov: expected a bool, got int 1"),
    (dict(ns_steps=100), ValueError, r"Invalid ns_steps: 100"),
    (dict(ns_steps=2.5), TypeError, r"Invalid ns_steps: expected an integer, got float 2\.5"),
    (dict(ns_coefficients=(1.0, 2.0)), ValueError, r"Invalid ns_coefficients: expected a tuple of 3 floats"),
    (dict(ns_coefficients=(1.0, float("inf"), 2.0)), ValueError, r"Invalid ns_coefficients \(element 1\): inf"),
    (dict(adjust_lr_fn="rms"), ValueError, r"Invalid adjust_lr_fn: 'rms'"),
])
def test_bad_hyperparameters_raise_at_construction_and_at_step(kwargs, error, message):
    with pytest.raises(error, match=message):
        fastopt.Muon([np.zeros((3, 2))], **kwargs)
    ws, opt = _setup()
    snap = _snapshot(ws, opt)
    opt.add_param_group({"params": [np.zeros((2, 2), np.float32)]})
    opt.param_groups[1].update(kwargs)              # the second group: the first must not be stepped either
    with pytest.raises(error, match=message):
        opt.step([np.ones_like(w) for w in ws] + [np.ones((2, 2), np.float32)])
    _assert_unchanged(ws, opt, snap)


def test_unknown_hyperparameter_is_a_type_error():
    with pytest.raises(TypeError, match=r"unknown hyperparameter\(s\) \['betas'\] for Muon"):
        fastopt.Muon([{"params": [np.zeros((3, 2))], "betas": (0.9, 0.99)}])


@pytest.mark.parametrize("make_grads,error,message", [
    (lambda ws: [np.ones((4, 6), np.float32), np.ones_like(ws[1])], ValueError,
     r"grads\[0\]: shape \(4, 6\) does not match params\[0\]'s shape \(6, 4\)"),
    (lambda ws: [np.ones_like(ws[0]), np.ones(ws[1].shape)], TypeError,
     r"grads\[1\]: expected dtype float32 \(the dtype of params\[1\]\), got float64"),
    (lambda ws: [np.ones_like(ws[0])], ValueError, r"expected 2 gradients .* got 1"),
    (lambda ws: [np.ones_like(ws[0]), ws[1]], ValueError, r"params\[1\] and grads\[1\] share memory"),
    (lambda ws: [np.ones_like(ws[0]), [[1.0] * 5] * 4], TypeError, r"grads\[1\]: expected a numpy\.ndarray"),
    (lambda ws: np.ones((6, 4), np.float32), TypeError, r"grads must be a list"),
])
def test_bad_gradients_raise_and_write_nothing(make_grads, error, message):
    ws, opt = _setup()
    snap = _snapshot(ws, opt)
    with pytest.raises(error, match=message):
        opt.step(make_grads(ws))
    _assert_unchanged(ws, opt, snap)


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("param,error,message", [
    (np.zeros((4, 6), np.float32)[:, ::2], ValueError, r"params\[0\] is written in place .* not C-contiguous"),
    (_read_only(np.zeros((4, 3))), ValueError, "read-only"),
    (np.zeros((4, 3), np.int64), TypeError, r"params\[0\]: expected dtype float32 or float64, got int64"),
])
def test_params_follow_the_inplace_contract(param, error, message):
    with pytest.raises(error, match=message):
        fastopt.Muon([param])


def test_none_gradient_skips_the_param_and_strided_gradient_is_read():
    ws, opt = _setup(np.float64)
    twin = pickle.loads(pickle.dumps(opt))
    before = ws[0].copy()
    strided = np.random.default_rng(0).standard_normal((8, 5))[::2]          # (4, 5), not contiguous
    opt.step([None, strided])
    twin.step([None, strided.copy()])
    assert np.array_equal(ws[0], before)
    assert np.array_equal(ws[1], twin.params[1])
    fresh = fastopt.Muon([np.zeros((3, 3)), np.zeros((2, 2))])
    fresh.step([None, np.ones((2, 2))])
    assert sorted(fresh.state) == [1]


# ------------------------------------------------------------------ state_dict, resume
def _steps(opt, ws, problems, n):
    for _ in range(n):
        opt.step([_grad(w, x, y) for w, (_, x, y) in zip(ws, problems)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resume_from_state_dict_is_bit_identical(dtype):
    problems = [_problem(SHAPES[s], dtype, k) for k, s in enumerate(["tall", "wide"])]
    ws = [p[0].copy() for p in problems]
    opt = fastopt.Muon([{"params": [ws[0]]}, {"params": [ws[1]], "lr": 0.05, "nesterov": False}], lr=0.02)
    _steps(opt, ws, problems, 5)
    saved, saved_ws = pickle.loads(pickle.dumps(opt.state_dict())), [w.copy() for w in ws]
    assert isinstance(saved["state"][0]["momentum_buffer"], np.ndarray)
    assert saved["param_groups"][1] == {**opt.defaults, "lr": 0.05, "nesterov": False, "params": [1]}
    _steps(opt, ws, problems, 5)
    resumed = [w.copy() for w in saved_ws]
    again = fastopt.Muon([{"params": [resumed[0]]}, {"params": [resumed[1]]}])
    again.load_state_dict(saved)
    assert again.param_groups[1]["lr"] == 0.05
    _steps(again, resumed, problems, 5)
    assert all(np.array_equal(a, b) for a, b in zip(ws, resumed))


@pytest.mark.parametrize("edit,error,message", [
    (lambda sd: sd["state"][0].update(momentum_buffer=np.zeros((4, 6), np.float32)), ValueError,
     r"params\[0\] 'momentum_buffer': shape \(4, 6\) does not match the expected \(6, 4\)"),
    (lambda sd: sd["state"][1].update(momentum_buffer=np.zeros((4, 5))), TypeError,
     r"'momentum_buffer': expected dtype float32 \(the param's\), got float64"),
    (lambda sd: sd["state"][0].update(step=3), ValueError, r"unknown entries \['step'\] for Muon \(expected \['momentum_buffer'\]\)"),
    (lambda sd: sd["state"].update({7: {}}), ValueError, r"state for param 7, which no group lists"),
    (lambda sd: sd["param_groups"][0].update(lr=-2.0), ValueError, r"Invalid learning rate: -2\.0"),
    (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), ValueError, r"has 2 parameter groups"),
])
def test_load_state_dict_rejects_a_mismatch_and_changes_nothing(edit, error, message):
    ws, opt = _setup()
    sd = opt.state_dict()
    edit(sd)
    snap, groups = _snapshot(ws, opt), [dict(g) for g in opt.param_groups]
    with pytest.raises(error, match=message):
        opt.load_state_dict(sd)
    _assert_unchanged(ws, opt, snap)
    assert opt.param_groups == groups


def test_state_is_reachable_by_param_and_hyperparameters_are_read_at_each_step():
    ws, opt = _setup(np.float64)
    assert opt.state[ws[1]]["momentum_buffer"] is opt.state[1]["momentum_buffer"]
    before = ws[0].copy()
    opt.param_groups[0]["lr"] = 0.0
    opt.param_groups[0]["weight_decay"] = 0.0
    opt.step([np.ones_like(w) for w in ws])
    assert np.array_equal(ws[0], before)


# ------------------------------------------------------------------ convergence
def test_solves_a_least_squares_matrix_problem():
    """min 0.5 |W X - Y|^2 / 64 over W (16 x 8), Y = W* X: from zero to |W - W*|_F <= 1e-3 |W*|_F within 150
    steps (measured: 96), lr 0.3 decayed by 0.96 a step (Muon's update has a fixed spectral size, lr sets it)."""
    rng = np.random.default_rng(1)
    target, x = rng.standard_normal((16, 8)), rng.standard_normal((8, 64))
    y, w = target @ x, np.zeros((16, 8))
    opt = fastopt.Muon([w], lr=0.3, weight_decay=0.0, momentum=0.9)
    for t in range(150):
        opt.param_groups[0]["lr"] = 0.3 * 0.96 ** t
        opt.step([(w @ x - y) @ x.T / 64])
        if np.linalg.norm(w - target) <= 1e-3 * np.linalg.norm(target):
            break
    assert np.linalg.norm(w - target) <= 1e-3 * np.linalg.norm(target)
