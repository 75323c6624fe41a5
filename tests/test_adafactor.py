"""fastopt.Adafactor: torch.optim.Adafactor's trajectories option by option, errors that change nothing, state_dict
round trip and bit-identical resume, the factored state's size, convergence."""
import pickle

import numpy as np
import pytest

import fastopt

torch = pytest.importorskip("torch")

SHAPES = [(), (7,), (5, 6), (3, 4, 5)]
OPTIONS = [dict(), dict(maximize=True), dict(weight_decay=0.1), dict(eps=(1e-30, 1e-3)), dict(d=4.0),
           dict(beta2_decay=-0.5), dict(lr=0.2, eps=(1e-30, 1e-2), weight_decay=0.05, maximize=True, d=1.5)]
TOL = {np.float64: 1e-10, np.float32: 1e-5}


def _problem(dtype, shapes=SHAPES, steps=30, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return params, grads


def _torch_run(groups, grads, defaults):
    """torch.optim.Adafactor's params after the steps; ``groups``: list of (arrays, group hyperparameters)."""
    tgroups = [{"params": [torch.tensor(p.copy(), requires_grad=True) for p in ps], **hp} for ps, hp in groups]
    opt = torch.optim.Adafactor(tgroups, foreach=False, **defaults)
    tparams = [tp for g in tgroups for tp in g["params"]]
    for gs in grads:
        for tp, g in zip(tparams, gs):
            tp.grad = None if g is None else torch.tensor(g)
        opt.step()
    return [tp.detach().numpy() for tp in tparams]


def _assert_close(ours, theirs, dtype):
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=[",".join(map(str, o.items())) or "defaults" for o in OPTIONS])
def test_trajectory_matches_torch(options, dtype):
    params, grads = _problem(dtype)
    expected = _torch_run([(params, {})], grads, options)
    opt = fastopt.Adafactor(params, **options)
    for gs in grads:
        opt.step(gs)
    _assert_close(params, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_groups_skipped_grads_and_hyperparameters_written_between_steps(dtype):
    params, grads = _problem(dtype)
    for t in range(0, 30, 4):
        grads[t][1] = None                               # skipped: no step counted for params[1]
    groups = [(params[:2], {"lr": 0.05, "weight_decay": 0.2}), (params[2:], {"eps": (1e-30, 1e-2), "d": 2.0})]
    expected = _torch_run(groups, grads, dict(beta2_decay=-0.6))
    opt = fastopt.Adafactor([{"params": ps, **hp} for ps, hp in groups], beta2_decay=-0.6)
    for gs in grads:
        opt.step(gs)
    _assert_close(params, expected, dtype)
    assert int(opt.state[0]["step"]) == 30 and int(opt.state[1]["step"]) == 30 - 8


def test_lr_written_between_steps_is_read():
    params, grads = _problem(np.float64, shapes=[(4, 3)], steps=6)
    tp = torch.tensor(params[0].copy(), requires_grad=True)
    topt = torch.optim.Adafactor([tp], foreach=False, weight_decay=0.1)
    opt = fastopt.Adafactor(params, weight_decay=0.1)
    for t, gs in enumerate(grads):
        opt.param_groups[0]["lr"] = topt.param_groups[0]["lr"] = 0.01 * (t + 1)
        tp.grad = torch.tensor(gs[0])
        topt.step()
        opt.step(gs)
    np.testing.assert_allclose(params[0], tp.detach().numpy(), rtol=1e-12)


def test_state_names_and_shapes_are_torchs():
    params, grads = _problem(np.float32)
    opt = fastopt.Adafactor(params)
    opt.step(grads[0])
    assert set(opt.state[params[0]]) == {"step", "variance"} and opt.state[1]["variance"].shape == (7,)
    assert opt.state[2]["row_var"].shape == (5, 1) and opt.state[2]["col_var"].shape == (1, 6)
    assert opt.state[3]["row_var"].shape == (3, 4, 1) and opt.state[3]["col_var"].shape == (3, 1, 5)
    assert all(v.dtype == np.float32 for st in opt.state.values() for k, v in st.items() if k != "step")


def test_factored_state_is_rows_plus_cols_floats():
    """The state of a (4096, 4096) float32 param: 4096 + 4096 floats (32 KiB), 0.024% of Adam's 2 x 4096^2 x 4 B."""
    p = np.zeros((4096, 4096), np.float32)
    opt = fastopt.Adafactor([p])
    opt.step([np.full_like(p, 1e-3)])
    arrays = [v for k, v in opt.state[0].items() if k != "step"]
    nbytes = sum(a.nbytes for a in arrays)
    assert nbytes == (4096 + 4096) * 4
    ratio = nbytes / (2 * 4096 * 4096 * 4)
    assert ratio <= 1e-3
    print(f"Adafactor state {nbytes} B vs Adam {2 * 4096 * 4096 * 4} B: {100 * ratio:.4f}%")


def test_state_dict_round_trip_and_bit_identical_resume(tmp_path):
    params, grads = _problem(np.float32)
    copy = [p.copy() for p in params]
    full = fastopt.Adafactor(params, weight_decay=0.01)
    for gs in grads:
        full.step(gs)
    first = fastopt.Adafactor(copy, weight_decay=0.01)
    for gs in grads[:11]:
        first.step(gs)
    sd = first.state_dict()
    assert all(isinstance(st["step"], int) for st in sd["state"].values())
    path = tmp_path / "sd.pkl"
    path.write_bytes(pickle.dumps(sd))
    resumed = fastopt.Adafactor(copy, weight_decay=0.5)
    resumed.load_state_dict(pickle.loads(path.read_bytes()))
    assert resumed.param_groups[0]["weight_decay"] == 0.01
    for gs in grads[11:]:
        resumed.step(gs)
    for a, b in zip(copy, params):
        np.testing.assert_array_equal(a, b)
    again = pickle.loads(pickle.dumps(resumed))
    assert again.state_dict()["state"][2]["step"] == 30


BAD_HYPERS = [(dict(lr=-1.0), ValueError, "learning rate: -1.0"), (dict(lr="x"), TypeError, "learning rate"),
              (dict(beta2_decay=0.5), ValueError, "beta2_decay"), (dict(eps=(-1.0, 1e-3)), ValueError, "epsilon1"),
              (dict(eps=(None, -1.0)), ValueError, "epsilon2"), (dict(eps=1e-3), TypeError, "eps"),
              (dict(d=0.5), ValueError, "clipping threshold d"), (dict(weight_decay=-0.1), ValueError,
                                                                   "weight_decay"),
              (dict(maximize=1), TypeError, "maximize"), (dict(betas=(0.9, 0.99)), TypeError, "unexpected|unknown")]


@pytest.mark.parametrize("kwargs, exc, match", BAD_HYPERS)
def test_bad_hyperparameters_raise_at_construction_and_at_step(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fastopt.Adafactor([np.zeros(3)], **kwargs)
    p = np.ones((2, 3))
    opt = fastopt.Adafactor([p])
    opt.param_groups[0].update(kwargs)
    with pytest.raises(exc, match=match):
        opt.step([np.ones((2, 3))])
    assert np.all(p == 1) and len(opt.state) == 0


def _bad_grads(p, q):
    return [([np.ones((2, 3)), np.ones(4, np.float32)], TypeError, r"grads\[1\]"),
            ([np.ones((2, 3)), np.ones(5)], ValueError, r"grads\[1\]"),
            ([np.ones((2, 3)), [1.0] * 4], TypeError, r"grads\[1\]"),
            ([np.ones((2, 3)), p.reshape(-1)[:4]], ValueError, "share memory"),
            ([np.ones((2, 3))], ValueError, "expected 2 gradients")]


@pytest.mark.parametrize("case", range(5))
def test_bad_gradients_change_nothing(case):
    p, q = np.ones((2, 3)), np.ones(4)
    opt = fastopt.Adafactor([p, q])
    opt.step([np.ones((2, 3)), np.ones(4)])
    before = pickle.dumps(opt.state_dict()), p.copy(), q.copy()
    grads, exc, match = _bad_grads(p, q)[case]
    with pytest.raises(exc, match=match):
        opt.step(grads)
    assert pickle.dumps(opt.state_dict()) == before[0]
    np.testing.assert_array_equal(p, before[1])
    np.testing.assert_array_equal(q, before[2])


def test_bad_params_and_bad_state_dicts():
    with pytest.raises(ValueError, match=r"params\[0\]"):
        fastopt.Adafactor([np.ones((3, 4))[:, ::2]])
    with pytest.raises(TypeError, match=r"params\[0\]"):
        fastopt.Adafactor([np.ones(3, np.int64)])
    p = np.ones((3, 4))
    opt = fastopt.Adafactor([p])
    opt.step([np.ones((3, 4))])
    good = opt.state_dict()
    bad_shape = {"state": {0: {**good["state"][0], "row_var": np.zeros((4, 1))}}, "param_groups": good["param_groups"]}
    bad_dtype = {"state": {0: {**good["state"][0], "col_var": np.zeros((1, 4), np.float32)}},
                 "param_groups": good["param_groups"]}
    unknown = {"state": {0: {**good["state"][0], "variance": np.zeros((3, 4))}}, "param_groups": good["param_groups"]}
    bad_hyper = {"state": good["state"], "param_groups": [{**good["param_groups"][0], "d": 0.1}]}
    for sd, exc, match in [(bad_shape, ValueError, "row_var"), (bad_dtype, TypeError, "col_var"),
                           (unknown, ValueError, "unknown entries"), (bad_hyper, ValueError, "clipping"),
                           ({"state": {0: {"row_var": good["state"][0]["row_var"]}},
                             "param_groups": good["param_groups"]}, ValueError, "no 'step'")]:
        with pytest.raises(exc, match=match):
            opt.load_state_dict(sd)
        assert pickle.dumps(opt.state_dict()) == pickle.dumps(good)


def test_converges_on_a_parabola():
    """sum((x - 3)^2) from 0 with lr=0.1: at the minimum within 1e-6 in 500 steps (measured: 0.78 off after 100
    steps, exactly 3.0 by step 500: a zero gradient gives a zero update)."""
    x = np.zeros(10)
    opt = fastopt.Adafactor([x], lr=0.1)
    for _ in range(500):
        opt.step([2 * (x - 3.0)])
    assert np.max(np.abs(x - 3.0)) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_converges_on_least_squares(dtype):
    """0.5 ||A W - B||^2 over a (20, 5) weight matrix (the factored path), lr=0.05: the loss falls below 1e-3 of
    its starting value in 1,500 steps (measured: 1.8e-6 at step 300; the relative step size keeps the iterate
    moving near the optimum, so 3.3e-5 (float32) and 3.7e-6 (float64) at step 1,500)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((200, 20)).astype(dtype)
    w_true = rng.standard_normal((20, 5)).astype(dtype)
    b = a @ w_true
    w = np.zeros((20, 5), dtype)
    opt = fastopt.Adafactor([w], lr=0.05)
    loss0 = 0.5 * np.sum(b ** 2)
    for _ in range(1500):
        opt.step([(a.T @ (a @ w - b)) / len(a)])
    assert 0.5 * np.sum((a @ w - b) ** 2) < 1e-3 * loss0


def test_a_step_allocates_no_temporary_of_the_params_size():
    """After the first step (state and the work buffer made), a step allocates only NumPy's fixed iterator
    buffers (measured: 130 KiB at any size), not arrays of the param's size (here 2 MiB)."""
    import tracemalloc
    p = np.random.default_rng(0).standard_normal((512, 512))
    opt = fastopt.Adafactor([p], weight_decay=0.1, maximize=True)
    g = np.ones_like(p)
    opt.step([g])
    tracemalloc.start()
    opt.step([g])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 256 * 1024, peak


@pytest.mark.parametrize("first", [np.float32, np.float64])
def test_eps1_none_takes_the_dtype_of_the_groups_first_param_with_a_gradient(first):
    """torch resolves eps1=None once per group, from the first param stepped: a float64 param after a float32 one
    gets float32's machine epsilon (and the other way round). Zero gradient rows make eps1 matter."""
    second = np.float64 if first is np.float32 else np.float32
    rng = np.random.default_rng(5)
    params = [rng.standard_normal((4, 3)).astype(first), rng.standard_normal((6, 2)).astype(second)]
    grads = []
    for _ in range(10):
        gs = [rng.standard_normal(p.shape).astype(p.dtype) * 1e-4 for p in params]
        for g in gs:
            g[0] = 0.0
        grads.append(gs)
    expected = _torch_run([(params, {})], grads, {})
    opt = fastopt.Adafactor(params)
    for gs in grads:
        opt.step(gs)
    for a, b in zip(params, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the native kernel against float64
def _reference(p0, grads, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, maximize=False):
    """float64 Adafactor written from the class docstring's rule (eps1 None: the machine epsilon of p0's dtype)."""
    eps1 = float(np.finfo(p0.dtype).eps) if eps[0] is None else eps[0]
    p = p0.astype(np.float64)
    rms = lambda x: np.sqrt(np.sum(x * x) / x.size)
    lerp = lambda a, b, w: a + w * (b - a)
    if p.ndim >= 2:
        row, col = np.zeros(p.shape[:-1] + (1,)), np.zeros(p.shape[:-2] + (1, p.shape[-1]))
    else:
        var = np.zeros(p.shape)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64) * (-1 if maximize else 1)
        w, rho = t ** beta2_decay, min(lr, 1 / np.sqrt(t))
        alpha = max(eps[1], rms(p)) * rho
        p = p * (1 - lr * weight_decay)
        if p.ndim >= 2:
            row = lerp(row, np.mean(g * g, axis=-1, keepdims=True), w)
            col = lerp(col, np.mean(g * g, axis=-2, keepdims=True), w)
            v = row * col / np.maximum(np.mean(row, axis=-2, keepdims=True), eps1)
        else:
            var = lerp(var, g * g, w)
            v = var
        u = g / np.sqrt(np.maximum(v, eps1 * eps1))
        p = p - alpha / max(1.0, rms(u) / d) * u
    return p


BIG_SHAPES = [(3, 300, 100), (200, 41), (9000,), ()]     # several blocks of rows per matrix; odd widths


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=[",".join(map(str, o.items())) or "defaults" for o in OPTIONS])
def test_native_step_matches_a_float64_reference(options, dtype):
    params, grads = _problem(dtype, shapes=BIG_SHAPES, steps=12, seed=3)
    expected = [_reference(p, [gs[i] for gs in grads], **options) for i, p in enumerate(params)]
    opt = fastopt.Adafactor(params, **options)
    for gs in grads:
        opt.step(gs)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_at_any_thread_count_and_on_every_isa(dtype, for_each_isa):
    """The sums run over fixed blocks of rows, added in block order: threads only decide who sums which block."""
    from fastopt import _config
    runs = []
    before, before_min = fastopt.get_num_threads(), fastopt.parallel_min_elements()
    try:
        _config.set_parallel_min_elements(256)
        for isa in for_each_isa():
            for n in (1, 2):
                fastopt.set_num_threads(n)
                params, grads = _problem(dtype, shapes=BIG_SHAPES, steps=4, seed=4)
                opt = fastopt.Adafactor(params, lr=0.1, weight_decay=0.01)
                for gs in grads:
                    opt.step(gs)
                state = [a for i in range(len(params)) for k, a in sorted(opt.state[i].items()) if k != "step"]
                runs.append((isa, n, [a.tobytes() for a in params + state]))
    finally:
        fastopt.set_num_threads(before)
        _config.set_parallel_min_elements(before_min)
    for isa, n, arrays in runs[1:]:
        assert arrays == runs[0][2], (isa, n)


def test_the_native_call_rejects_a_layout_it_cannot_step():
    """The kernel's own guard (its callers check first): a ValueError before anything is written."""
    from fastopt import _optim
    p, g = np.zeros((4, 6))[:, ::2], np.ones((4, 3))
    state = {"row_var": np.zeros((4, 1)), "col_var": np.zeros((1, 3))}
    with pytest.raises(ValueError, match="plain arrays"):
        _optim.adafactor_step(p, g, state, 1.0, 0.01, 1e-30, 1e-3, 1.0, 1.0, False)
    p = np.zeros((4, 3))
    for bad in ({"row_var": np.zeros((4, 1))}, {"row_var": np.zeros((4, 1)), "col_var": np.zeros((3, 1))},
                {"variance": np.zeros((4, 3))}):
        with pytest.raises(ValueError, match="expected shapes"):
            _optim.adafactor_step(p, g, bad, 1.0, 0.01, 1e-30, 1e-3, 1.0, 1.0, False)
    assert not p.any() and not state["row_var"].any()
