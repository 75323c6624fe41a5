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
    with pytest.raises(TypeError, match="float32 or torch.float64"):
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
