"""The same trajectories as torch.optim (single-tensor implementation), option by option, float32 and float64."""
import numpy as np
import pytest

from fastopt.optim._formats import FORMAT_KEYS
import fastopt
from fastopt.optim.specs import SPECS
from _cases_optim import CASES, IDS
from test_optim_reference import make_problem, run_fastopt

torch = pytest.importorskip("torch")

TORCH_CASES = [(c, i) for c, i in zip(CASES, IDS) if hasattr(torch.optim, c[0])]   # torch has no Lion


def run_torch(name, kwargs, params, grads, cls=None):
    """The trajectory of torch.optim.<name> (or of the torch optimizer class ``cls``), single-tensor path."""
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = (cls or getattr(torch.optim, name))(tparams, foreach=False, **kwargs)
    if callable(getattr(opt, "train", None)):     # schedulefree's optimizers step only in train mode
        opt.train()
    for gs in grads:
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        opt.step()
    return [tp.detach().numpy() for tp in tparams], opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [c for c, _ in TORCH_CASES], ids=[i for _, i in TORCH_CASES])
def test_trajectory_matches_torch(case, dtype, num_threads):
    name, kwargs = case
    params, grads = make_problem(name, dtype)
    default = torch.get_default_dtype()
    if name == "ASGD" and dtype == np.float64:
        torch.set_default_dtype(torch.float64)      # else torch keeps eta and mu as float32 scalars
    try:
        expected, topt = run_torch(name, kwargs, params, grads)
    finally:
        torch.set_default_dtype(default)
    opt = run_fastopt(name, kwargs, params, grads)
    if dtype == np.float32:
        rtol, atol = 1e-5, 1e-6
        if name == "RMSprop" and kwargs.get("alpha") == 0.3:
            # sqrt(s - a^2) cancels badly when alpha is small, and torch's vectorized lerp uses FMA: a few
            # elements differ by more than float32 rounding (both sides agree with the float64 reference).
            rtol, atol = 1e-3, 2e-5
    else:
        # torch keeps NAdam's mu_product as a float32 scalar even for float64 params
        rtol, atol = (1e-6, 1e-8) if name == "NAdam" else (1e-12, 1e-14)
    for i, (p, e) in enumerate(zip(params, expected)):
        np.testing.assert_allclose(p, e, rtol=rtol, atol=atol, err_msg=f"params[{i}]")
    tstate = topt.state[topt.param_groups[0]["params"][0]]
    for key, value in tstate.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            np.testing.assert_allclose(opt.state[0][key], value.numpy(), rtol=10 * rtol, atol=10 * atol,
                                       err_msg=f"state {key}")


def test_defaults_match_torch():
    import inspect
    for name in [s.name for s in SPECS if hasattr(torch.optim, s.name)]:
        ours = inspect.signature(getattr(fastopt, name).__init__).parameters
        theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
        for key, param in ours.items():
            if param.default is inspect.Parameter.empty or key in FORMAT_KEYS:   # fastopt's own state formats
                continue
            assert key in theirs, f"{name}.{key} is not a torch.optim.{name} argument"
            assert param.default == theirs[key].default, f"{name}.{key}: {param.default} != {theirs[key].default}"


def test_param_groups_and_lr_changes_match_torch(rng):
    shapes = [(100,), (30, 3), (5,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    groups = lambda ps: [{"params": ps[:2], "lr": 0.02, "weight_decay": 0.1}, {"params": ps[2:], "betas": (0.5, 0.9)}]
    opt = fastopt.AdamW(groups(params), lr=0.01)
    topt = torch.optim.AdamW(groups(tparams), lr=0.01, foreach=False)
    for step in range(25):
        gs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        if step == 10:
            for g1, g2 in zip(opt.param_groups, topt.param_groups):
                g1["lr"] *= 0.5
                g2["lr"] *= 0.5
        opt.step(gs)
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
