"""Schedule-Free's modes: train() / eval() against the paper's x and the reference implementation's (schedulefree)
lerps, their idempotence, a step in eval mode refused with nothing written, state_dict resume in both modes,
the functional form's state, the estimators (x outside the steps) and fastopt.torch's pass-through."""
import pickle

import numpy as np
import pytest

import fastopt
from _reference_optim import reference_hparams, reference_step, schedulefree_x
from test_optim_reference import make_problem

NAMES = ["ScheduleFreeAdamW", "ScheduleFreeSGD"]
KWARGS = {"ScheduleFreeAdamW": dict(lr=0.01, warmup_steps=5, weight_decay=0.1, r=1.0),
          "ScheduleFreeSGD": dict(lr=0.05, warmup_steps=5, weight_decay=0.1, momentum=0.3)}   # |1 - 1/0.3| >= 0.5
BETA = {"ScheduleFreeAdamW": lambda kw: kw.get("betas", (0.9, 0.999))[0],
        "ScheduleFreeSGD": lambda kw: kw.get("momentum", 0.9)}


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64).copy()


def _run(name, kwargs, params, grads):
    opt = getattr(fastopt, name)(params, **kwargs)
    for gs in grads:
        opt.step(gs)
    return opt


def _snapshot(opt, params):
    return [p.copy() for p in params], pickle.dumps(opt.state_dict())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_eval_gives_the_papers_x_and_train_gives_y_back(name, dtype):
    params, grads = make_problem(name, dtype)
    kwargs = KWARGS[name]
    hp = reference_hparams(name, kwargs)
    refs, states = [p.astype(np.float64) for p in params], [{} for _ in params]
    for gs in grads:
        for p, g, st in zip(refs, gs, states):
            reference_step(name, hp, p, g.astype(np.float64), st)
    opt = _run(name, kwargs, params, grads)
    y = [p.copy() for p in params]
    assert opt.train_mode
    opt.eval()
    assert not opt.train_mode
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-11, 1e-13)
    for i, (p, ref, st) in enumerate(zip(params, refs, states)):
        np.testing.assert_allclose(p, schedulefree_x(BETA[name](kwargs), ref, st), rtol=rtol, atol=atol,
                                   err_msg=f"x of params[{i}]")
    opt.train()
    eps = np.finfo(dtype).eps
    for i, (p, before) in enumerate(zip(params, y)):
        # y back to rounding: the two lerps round twice (the reference's round trip is not exact either)
        np.testing.assert_allclose(p, before, rtol=64 * eps, atol=64 * eps, err_msg=f"y of params[{i}]")


@pytest.mark.parametrize("name", NAMES)
def test_train_and_eval_are_idempotent_and_skip_params_without_state(name, rng):
    params = [rng.standard_normal(50).astype(np.float32), rng.standard_normal(7).astype(np.float32)]
    opt = getattr(fastopt, name)(params, **KWARGS[name])
    fresh = [p.copy() for p in params]
    opt.eval()                                    # no state yet: nothing moves
    opt.train()
    for p, f in zip(params, fresh):
        np.testing.assert_array_equal(_bits(p), _bits(f))
    for _ in range(3):
        opt.step([rng.standard_normal(50).astype(np.float32), None])   # params[1] never gets state
    opt.train()                                   # already in train mode: a no-op
    y = [_bits(p) for p in params]
    np.testing.assert_array_equal(_bits(params[0]), y[0])
    opt.eval()
    x = [_bits(p) for p in params]
    assert not np.array_equal(x[0], y[0])
    np.testing.assert_array_equal(x[1], _bits(fresh[1]))
    opt.eval()                                    # again: a no-op
    for p, b in zip(params, x):
        np.testing.assert_array_equal(_bits(p), b)
    arrays = [id(p) for p in params]
    opt.train()
    assert [id(p) for p in opt.param_groups[0]["params"]] == arrays      # in place, never rebound


@pytest.mark.parametrize("name", NAMES)
def test_a_step_in_eval_mode_raises_and_writes_nothing(name, rng):
    params = [rng.standard_normal(30), rng.standard_normal((4, 5))]
    opt = getattr(fastopt, name)(params, **KWARGS[name])
    grads = [rng.standard_normal(30), rng.standard_normal((4, 5))]
    opt.step(grads)
    opt.eval()
    before, saved = _snapshot(opt, params)
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step(grads)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(_bits(p), _bits(b))
    after = opt.state_dict()
    ref = pickle.loads(saved)
    for i, st in ref["state"].items():
        assert after["state"][i]["step"] == st["step"]
        for key, value in st.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(_bits(after["state"][i][key]), _bits(value))
    opt.train()
    opt.step(grads)                               # train mode again: steps


@pytest.mark.parametrize("eval_mode", [False, True], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resumes_bit_for_bit_in_either_mode(name, dtype, eval_mode):
    params, grads = make_problem(name, dtype)
    kwargs = KWARGS[name]
    a = getattr(fastopt, name)(params, **kwargs)
    for gs in grads[:12]:
        a.step(gs)
    if eval_mode:
        a.eval()                                  # the reference's advice: checkpoint in eval mode
    copies, saved = _snapshot(a, params)
    sd = pickle.loads(saved)
    assert sd["train_mode"] is (not eval_mode)
    assert all(st["lr_max_weight_sum"].dtype == np.float64 for st in sd["state"].values())
    b = getattr(fastopt, name)(copies, **kwargs)
    b.load_state_dict(sd)
    assert b.train_mode is (not eval_mode)
    for opt in (a, b):
        opt.train()
    for gs in grads[12:]:
        a.step(gs)
        b.step(gs)
    a.eval()
    b.eval()
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(_bits(p), _bits(q))


def test_load_state_dict_needs_the_mode(rng):
    params = [rng.standard_normal(5)]
    opt = fastopt.ScheduleFreeSGD(params, lr=0.1)
    opt.step([rng.standard_normal(5)])
    sd = opt.state_dict()
    del sd["train_mode"]
    other = fastopt.ScheduleFreeSGD([params[0].copy()], lr=0.1)
    with pytest.raises(ValueError, match="train_mode"):
        other.load_state_dict(sd)
    assert other.state_dict()["state"] == {}
    sd = opt.state_dict()
    sd["state"][0]["lr_max_weight_sum"] = [0.1]
    with pytest.raises(ValueError, match="lr_max_weight_sum"):
        other.load_state_dict(sd)


def test_momentum_must_be_inside_the_unit_interval():
    for momentum in (0.0, 1.0):
        with pytest.raises(ValueError, match="exclusive"):
            fastopt.ScheduleFreeSGD([np.zeros(3)], momentum=momentum)


@pytest.mark.parametrize("name", NAMES)
def test_functional_form_matches_the_class(name, rng):
    p0 = rng.standard_normal(40)
    grads = [rng.standard_normal(40) for _ in range(6)]
    p = p0.copy()
    _run(name, KWARGS[name], [p], [[g] for g in grads])
    q = p0.copy()
    z, aux = q.copy(), np.array([-1.0, 0.0])
    fn = getattr(fastopt.functional, fastopt.optim.OPTIMIZERS[name.lower()].spec.functional_name)
    kw = dict(KWARGS[name], **(dict(beta1=0.9, beta2=0.999, eps=1e-8) if name == "ScheduleFreeAdamW" else {}))
    for t, g in enumerate(grads, 1):
        if name == "ScheduleFreeAdamW":
            fn(q, g, z, v if t > 1 else (v := np.zeros(40)), aux, step=t, **kw)
        else:
            fn(q, g, z, aux, step=t, **kw)
    np.testing.assert_array_equal(p, q)
    with pytest.raises(TypeError, match="shape \\(2,\\)"):
        args = (z, np.zeros(40)) if name == "ScheduleFreeAdamW" else (z,)
        fn(q, grads[0], *args, np.array(0.0), step=7, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_peer_eval_and_train_match(name):
    """The trajectory, then eval() and train(), against schedulefree's (its own lerp_ in torch)."""
    torch = pytest.importorskip("torch")
    peer_cls = getattr(pytest.importorskip("schedulefree"), fastopt.optim.OPTIMIZERS[name.lower()].spec.peer[1])
    for dtype, (rtol, atol) in ((np.float32, (1e-5, 1e-6)), (np.float64, (1e-10, 1e-12))):
        params, grads = make_problem(name, dtype)
        tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
        peer = peer_cls(tparams, **KWARGS[name])
        peer.train()
        for gs in grads:
            for tp, g in zip(tparams, gs):
                tp.grad = torch.tensor(g)
            peer.step()
        opt = _run(name, KWARGS[name], params, grads)
        for switch in ("eval", "train", "eval"):
            getattr(peer, switch)()
            getattr(opt, switch)()
            for i, (p, tp) in enumerate(zip(params, tparams)):
                np.testing.assert_allclose(p, tp.detach().numpy(), rtol=rtol, atol=atol,
                                           err_msg=f"{switch}: params[{i}] ({dtype.__name__})")


def test_torch_wrapper_passes_train_and_eval_through():
    torch = pytest.importorskip("torch")
    import fastopt.torch as ft
    schedulefree = pytest.importorskip("schedulefree")
    rng = np.random.default_rng(5)
    start = rng.standard_normal((6, 4)).astype(np.float32)
    ours, theirs = torch.tensor(start.copy(), requires_grad=True), torch.tensor(start.copy(), requires_grad=True)
    opt = ft.ScheduleFreeAdamW([ours], lr=0.01, warmup_steps=2)
    peer = schedulefree.AdamWScheduleFree([theirs], lr=0.01, warmup_steps=2)
    peer.train()
    opt.train()
    for _ in range(8):
        g = rng.standard_normal((6, 4)).astype(np.float32)
        ours.grad, theirs.grad = torch.tensor(g), torch.tensor(g)
        opt.step()
        peer.step()
    opt.eval()
    peer.eval()
    assert not opt.train_mode
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()
    sd = opt.state_dict()
    assert sd["train_mode"] is False
    again = ft.ScheduleFreeAdamW([torch.tensor(ours.detach().numpy().copy())], lr=0.01, warmup_steps=2)
    again.load_state_dict(sd)
    assert not again.train_mode
    np.testing.assert_array_equal(again._inner.state[0]["lr_max_weight_sum"],
                                  opt._inner.state[0]["lr_max_weight_sum"])


def test_estimator_evaluates_at_x():
    pytest.importorskip("sklearn")
    from fastopt.estimators import MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    model = MLPRegressor(hidden_layer_sizes=(8,), optimizer="schedulefreeadamw", learning_rate=1e-2, max_iter=30,
                         random_state=0, early_stopping=True, n_iter_no_change=100)
    model.fit(X, y)
    opt = model._opt
    assert not opt.train_mode                     # the fitted weights are x
    x = [p.copy() for p in opt.params]
    opt.train()
    opt.eval()
    for p, q in zip(opt.params, x):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-6)      # two roundings (a float32 net)
    assert model.score(X, y) > 0.9
    model.partial_fit(X, y)                       # back to y for the steps, x after
    assert not model._opt.train_mode


@pytest.mark.parametrize("name", NAMES)
def test_zero_redundancy_takes_schedule_free(name):
    """ZeroRedundancyOptimizer shards them (its modes under mpiexec: tests/distributed/cases_zero.py)."""
    from fastopt.distributed.zero import _check_class
    assert _check_class(getattr(fastopt, name)) is getattr(fastopt, name)
