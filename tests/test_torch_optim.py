"""fastopt.torch: every fastopt optimizer as a torch.optim.Optimizer stepping CPU tensors in place."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastopt.optim  # noqa: E402
import fastopt.torch as ft  # noqa: E402

NAMES = [n for n in fastopt.optim.__all__ if n not in ft.NOT_WRAPPED]
# the torch.optim twin and keywords for each algorithm torch has (Lion has none)
TWINS = {"SGD": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
         "Adam": dict(lr=1e-2, weight_decay=1e-2, amsgrad=True), "AdamW": dict(lr=1e-2),
         "Adamax": dict(lr=1e-2), "NAdam": dict(lr=1e-2), "RAdam": dict(lr=1e-2),
         "RMSprop": dict(lr=1e-2, momentum=0.5, centered=True), "Adagrad": dict(lr=0.05)}


def _model(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh(), torch.nn.Linear(9, 3)).to(dtype)


def _train(model, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(17, 6, generator=g, dtype=next(model.parameters()).dtype)
        opt.zero_grad()
        ((model(x) - x[:, :3].sin()) ** 2).mean().backward()
        opt.step()


def test_every_fastopt_optimizer_has_a_torch_class():
    assert set(NAMES) <= set(ft.__all__)
    for name in NAMES:
        cls = getattr(ft, name)
        assert issubclass(cls, torch.optim.Optimizer) and cls.fastopt_class is getattr(fastopt.optim, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(TWINS))
def test_trajectory_matches_torch_optim(name, dtype):
    a, b = _model(dtype), _model(dtype)
    ours = getattr(ft, name)(a.parameters(), **TWINS[name])
    theirs = getattr(torch.optim, name)(b.parameters(), **TWINS[name])
    _train(a, ours, 25)
    _train(b, theirs, 25)
    # float64: torch keeps NAdam's mu_product in a float32 scalar tensor (fastopt in float64)
    tol = 2e-5 if dtype == torch.float32 else (1e-6 if name == "NAdam" else 1e-11)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_steps_in_place_like_the_numpy_optimizer(name):
    """Zero copies: the update lands in the tensor's own storage, and equals fastopt's NumPy optimizer's."""
    model = _model(torch.float32)
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    ptrs = [p.data_ptr() for p in model.parameters()]
    opt = getattr(ft, name)(model.parameters(), lr=1e-2)
    ref = getattr(fastopt.optim, name)(arrays, lr=1e-2)
    for _ in range(3):
        _train(model, opt, 1)
        ref.step([p.grad.numpy() for p in model.parameters()])
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    for p, r in zip(model.parameters(), arrays):
        np.testing.assert_array_equal(p.detach().numpy(), r)


def test_param_groups_schedulers_closure_and_state():
    model = _model(torch.float32)
    w, rest = list(model.parameters())[0], list(model.parameters())[1:]
    opt = ft.Adam([{"params": [w], "lr": 0.1}, {"params": rest}], lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x = torch.randn(8, 6)

    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.05
    opt.step(closure)
    assert opt._inner.param_groups[0]["lr"] == 0.05          # the scheduler's value reached the step
    state = opt.state[w]
    assert int(state["step"]) == 2 and state["exp_avg"].shape == w.shape
    state["exp_avg"].zero_()                                   # a view: writes reach the optimizer
    assert not opt._inner.state[0]["exp_avg"].any()
    extra = torch.nn.Parameter(torch.zeros(4))
    opt.add_param_group({"params": [extra], "lr": 0.2})
    extra.grad = torch.ones(4)
    opt.step()
    assert torch.all(extra < 0)


@pytest.mark.parametrize("name", ["Adam", "SGD", "NAdam", "RMSprop"])
def test_state_dict_is_torch_format_both_ways(name):
    kw = dict(TWINS[name])
    a, b = _model(torch.float32), _model(torch.float32)
    ours = getattr(ft, name)(a.parameters(), **kw)
    theirs = getattr(torch.optim, name)(b.parameters(), **kw)
    _train(a, ours, 5)
    _train(b, theirs, 5)
    # torch continues from fastopt's checkpoint, fastopt from torch's: the trajectories stay together
    b2, a2 = copy.deepcopy(a), copy.deepcopy(b)
    t_from_f = getattr(torch.optim, name)(b2.parameters(), **kw)
    t_from_f.load_state_dict(ours.state_dict())
    f_from_t = getattr(ft, name)(a2.parameters(), **kw)
    f_from_t.load_state_dict(theirs.state_dict())
    for m, o in ((a, ours), (b2, t_from_f), (b, theirs), (a2, f_from_t)):
        _train(m, o, 5, seed=7)
    for p, q in zip(a.parameters(), b2.parameters()):
        torch.testing.assert_close(p, q, rtol=2e-5, atol=2e-5)
    for p, q in zip(b.parameters(), a2.parameters()):
        torch.testing.assert_close(p, q, rtol=2e-5, atol=2e-5)


def test_resume_from_state_dict_is_bit_identical():
    a = _model(torch.float64)
    opt = ft.NAdam(a.parameters(), lr=1e-2)
    _train(a, opt, 4)
    b = copy.deepcopy(a)
    opt_b = ft.NAdam(b.parameters(), lr=1e-2)
    opt_b.load_state_dict(opt.state_dict())
    _train(a, opt, 4, seed=3)
    _train(b, opt_b, 4, seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_bad_inputs_raise_before_anything_is_written():
    with pytest.raises(TypeError, match="torch.float32, torch.float64 or torch.bfloat16, got torch.float16"):
        ft.Adam([torch.zeros(3, dtype=torch.float16, requires_grad=True)])
    with pytest.raises(ValueError, match="params\\[0\\]"):
        ft.Adam([torch.zeros(4, 4).t().requires_grad_()])          # an in-place target is never copied
    with pytest.raises(ValueError, match="Invalid learning rate"):
        ft.Adam([torch.zeros(3, requires_grad=True)], lr=-1.0)
    p = torch.nn.Parameter(torch.ones(3))
    q = torch.nn.Parameter(torch.ones(3))
    opt = ft.Adam([p, q], lr=0.1)
    p.grad, q.grad = torch.ones(3), torch.ones(3).to_sparse()
    with pytest.raises(ValueError, match="params\\[1\\].grad: expected a strided"):
        opt.step()
    assert torch.equal(p, torch.ones(3)) and torch.equal(q, torch.ones(3))
    q.grad = torch.ones(3)
    p.data = torch.zeros(3)                                        # the optimizer's view would go stale
    with pytest.raises(ValueError, match="storage changed"):
        opt.step()
    assert torch.equal(q, torch.ones(3))


# ------------------------------------------------------------------------------------ bfloat16 tensors
def _bf16_pairs(seed=0, shapes=((300, 20), (20,), (7,))):
    """bfloat16 params as torch tensors and, with the same bits, as ml_dtypes arrays; and bfloat16 grads."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(s, generator=g).to(torch.bfloat16).requires_grad_() for s in shapes]
    arrays = [t.detach().view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16) for t in tensors]
    grads = [[torch.randn(s, generator=g).to(torch.bfloat16) for s in shapes] for _ in range(4)]
    return tensors, arrays, grads


@pytest.mark.parametrize("compensation", ["kahan", "stochastic", "none"])
@pytest.mark.parametrize("state_dtype", [None, "float32", "int8"])
def test_bfloat16_tensors_step_as_the_numpy_optimizer(compensation, state_dtype):
    tensors, arrays, grads = _bf16_pairs()
    kw = dict(lr=1e-2, compensation=compensation, state_dtype=state_dtype, min_quantized_size=1000)
    opt, ref = ft.AdamW(tensors, **kw), fastopt.optim.AdamW(arrays, **kw)
    for step in grads:
        for t, gr in zip(tensors, step):
            t.grad = gr
        opt.step()
        ref.step([gr.view(torch.int16).numpy().view(arrays[0].dtype) for gr in step])
    for t, a in zip(tensors, arrays):
        assert t.dtype == torch.bfloat16 and t.detach().view(torch.int16).numpy().tobytes() == a.tobytes()
    st = opt.state[tensors[0]]
    assert st["exp_avg"].dtype == {None: torch.bfloat16, "float32": torch.float32, "int8": torch.uint8}[state_dtype]
    assert ("kahan_comp" in st) == (compensation == "kahan")


def test_bfloat16_state_dict_round_trips_and_loads_torch_optims():
    tensors, _, grads = _bf16_pairs()
    opt = ft.Adam(tensors, lr=1e-2)
    for t, gr in zip(tensors, grads[0]):
        t.grad = gr
    opt.step()
    sd = opt.state_dict()
    assert sd["state"][0]["kahan_comp"].dtype == torch.bfloat16 and sd["state"][0]["exp_avg"].dtype == torch.bfloat16
    again = ft.Adam([t.detach().clone().requires_grad_() for t in tensors], lr=1e-2)
    again.load_state_dict(sd)
    for key, value in sd["state"][0].items():
        assert torch.equal(again.state_dict()["state"][0][key], value), key
    twin = [t.detach().clone().requires_grad_() for t in tensors]       # torch.optim's bfloat16 state loads too
    ref = torch.optim.Adam(twin, lr=1e-2)
    for t, gr in zip(twin, grads[0]):
        t.grad = gr
    ref.step()
    loaded = ft.Adam([t.detach().clone().requires_grad_() for t in tensors], lr=1e-2)
    loaded.load_state_dict(ref.state_dict())
    assert torch.equal(loaded.state_dict()["state"][0]["exp_avg"], ref.state_dict()["state"][0]["exp_avg"])
    assert not loaded.state_dict()["state"][0]["kahan_comp"].any()       # torch keeps none: zeros


def test_bfloat16_tensors_follow_float32_master_weights_closer_than_torch_bfloat16():
    """Kahan-compensated bfloat16 params against torch.optim.Adam with float32 params (the master-weights loop)
    and against torch.optim.Adam on bfloat16 params (no compensation): 200 steps of a small regression."""
    torch.manual_seed(0)
    x, w_true = torch.randn(256, 64), torch.randn(64, 1)
    y = x @ w_true
    w0 = torch.randn(64, 1)
    runs = {}
    for name, dtype, cls in (("master", torch.float32, torch.optim.Adam), ("fastopt", torch.bfloat16, ft.Adam),
                             ("torch-bf16", torch.bfloat16, torch.optim.Adam)):
        w = w0.clone().to(dtype).requires_grad_()
        opt = cls([w], lr=1e-3)
        for _ in range(200):
            opt.zero_grad()
            ((x.to(dtype) @ w - y.to(dtype)) ** 2).mean().backward()
            opt.step()
        runs[name] = w.detach().float()
    fastopt_err = (runs["fastopt"] - runs["master"]).abs().max()
    torch_err = (runs["torch-bf16"] - runs["master"]).abs().max()
    assert fastopt_err < 0.25 * torch_err, (fastopt_err, torch_err)      # measured: 0.014 against 0.20
