"""Learning-rate schedules: torch parity (bit for bit) over 120+ steps, hand-computed tables, pure functions,
state_dict resume, standalone use, bad-input tables."""
import math
import pickle

import numpy as np
import pytest

import fastopt
from fastopt import schedules as S

STEPS = 130
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of .lr_scheduler.step:UserWarning")


def fo_optimizer(kind="sgd"):
    ps = [np.zeros(3), np.zeros(2)]
    groups = [{"params": [ps[0]], "lr": 0.1}, {"params": [ps[1]], "lr": 0.03}]
    if kind == "adam":
        return fastopt.Adam(groups, lr=0.1)
    return fastopt.SGD(groups, lr=0.1, momentum=0.9)


def torch_optimizer(torch, kind="sgd"):
    ps = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    groups = [{"params": [ps[0]], "lr": 0.1}, {"params": [ps[1]], "lr": 0.03}]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=0.1)
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


# name -> (optimizer kind, factory(module, optimizer), steps); module is fastopt.schedules or torch's lr_scheduler
CASES = {
    "step": ("sgd", lambda m, o: m.StepLR(o, step_size=7, gamma=0.5), STEPS),
    "multistep": ("sgd", lambda m, o: m.MultiStepLR(o, milestones=[3, 30, 30, 80], gamma=0.3), STEPS),
    "exponential": ("sgd", lambda m, o: m.ExponentialLR(o, gamma=0.97), STEPS),
    "cosine": ("sgd", lambda m, o: m.CosineAnnealingLR(o, T_max=25, eta_min=0.001), STEPS),
    "cosine_nomin": ("sgd", lambda m, o: m.CosineAnnealingLR(o, T_max=40), STEPS),
    "warm_restarts": ("sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, eta_min=1e-4), STEPS),
    "warm_restarts_mult": ("sgd", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2), STEPS),
    "polynomial": ("sgd", lambda m, o: m.PolynomialLR(o, total_iters=90, power=2.0), STEPS),
    "polynomial_frac": ("sgd", lambda m, o: m.PolynomialLR(o, total_iters=60, power=0.7), STEPS),
    "linear": ("sgd", lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=40), STEPS),
    "linear_down": ("sgd", lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=100), STEPS),
    "onecycle_cos": ("sgd", lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.4], total_steps=STEPS + 1), STEPS),
    "onecycle_linear": ("sgd", lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS + 1,
                                                         anneal_strategy="linear", pct_start=0.25), STEPS),
    "onecycle_three": ("adam", lambda m, o: m.OneCycleLR(o, max_lr=0.8, epochs=11, steps_per_epoch=12,
                                                         three_phase=True), STEPS),
    "onecycle_three_lin": ("adam", lambda m, o: m.OneCycleLR(o, max_lr=0.8, total_steps=STEPS, three_phase=True,
                                                             anneal_strategy="linear", cycle_momentum=False),
                           STEPS - 1),
    "sequential": ("sgd", lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.01, total_iters=10), m.CosineAnnealingLR(o, T_max=50, eta_min=1e-3),
            m.ExponentialLR(o, gamma=0.9)], milestones=[10, 60]), STEPS),
    "sequential_restarts": ("sgd", lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.5, total_iters=4),
            m.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2), m.StepLR(o, 10)], milestones=[5, 50]), STEPS),
}


def run_sequence(sched, opt, steps, metric=None):
    lrs = [sched.get_last_lr()]
    moms = []
    for t in range(steps):
        if metric is None:
            sched.step()
        else:
            sched.step(metric[t])
        lrs.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == lrs[-1]
        moms.append([g.get("momentum", g.get("betas", (None,))[0]) for g in opt.param_groups])
    return lrs, moms


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_parity(name):
    torch = pytest.importorskip("torch")
    kind, factory, steps = CASES[name]
    t_opt, f_opt = torch_optimizer(torch, kind), fo_optimizer(kind)
    t_lrs, t_moms = run_sequence(factory(torch.optim.lr_scheduler, t_opt), t_opt, steps)
    f_lrs, f_moms = run_sequence(factory(S, f_opt), f_opt, steps)
    assert f_lrs == t_lrs                      # bit for bit
    assert f_moms == t_moms
    for tg, fg in zip(t_opt.param_groups, f_opt.param_groups):
        assert fg["initial_lr"] == tg["initial_lr"]


def metric_sequence():
    rng = np.random.default_rng(3)
    base = np.concatenate([np.linspace(1.0, 0.5, 20), np.full(30, 0.5), np.linspace(0.5, 0.45, 10),
                           np.full(40, 0.45), np.linspace(0.45, 0.1, 20), np.full(30, 0.1)])
    return list(base + rng.normal(0, 0.002, base.size))


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(patience=3, factor=0.5, cooldown=2, min_lr=[0.01, 0.002]),
    dict(mode="max", patience=2, threshold=0.01, threshold_mode="abs", factor=0.3, min_lr=1e-3),
    dict(mode="min", patience=0, threshold=0.05, threshold_mode="abs", eps=1e-3),
    dict(mode="max", threshold_mode="rel", patience=4),
])
def test_torch_parity_plateau(kwargs):
    torch = pytest.importorskip("torch")
    metric = metric_sequence()
    if kwargs.get("mode") == "max":
        metric = [-m for m in metric]
    t_opt, f_opt = torch_optimizer(torch), fo_optimizer()
    t_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, **kwargs)
    f_sched = S.ReduceLROnPlateau(f_opt, **kwargs)
    t_lrs, _ = run_sequence(t_sched, t_opt, len(metric), metric)
    f_lrs, _ = run_sequence(f_sched, f_opt, len(metric), metric)
    assert f_lrs == t_lrs
    assert len({tuple(x) for x in f_lrs}) > 2          # the lr really dropped several times
    assert f_sched.num_bad_epochs == t_sched.num_bad_epochs and f_sched.best == t_sched.best


def test_torch_parity_warm_restarts_fractional_epochs():
    torch = pytest.importorskip("torch")
    t_opt, f_opt = torch_optimizer(torch), fo_optimizer()
    t_s = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(t_opt, T_0=4, T_mult=2, eta_min=0.001)
    f_s = S.CosineAnnealingWarmRestarts(f_opt, T_0=4, T_mult=2, eta_min=0.001)
    import warnings
    for epoch in range(30):
        for i in range(5):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_s.step(epoch + i / 5)
            f_s.step(epoch + i / 5)
            assert f_s.get_last_lr() == t_s.get_last_lr()


@pytest.mark.parametrize("name", sorted(CASES))
def test_closed_form_matches_stepping(name):
    kind, factory, steps = CASES[name]
    opt = fo_optimizer(kind)
    sched = factory(S, opt)
    lrs, _ = run_sequence(sched, opt, steps)
    for t, row in enumerate(lrs):
        np.testing.assert_allclose(sched(t), row, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("cut", [1, 17, 64])
def test_state_dict_resume(name, cut):
    kind, factory, steps = CASES[name]
    opt = fo_optimizer(kind)
    full, _ = run_sequence(factory(S, opt), opt, steps)

    opt = fo_optimizer(kind)
    sched = factory(S, opt)
    for _ in range(cut):
        sched.step()
    saved_sched = pickle.loads(pickle.dumps(sched.state_dict()))
    saved_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]

    opt2 = fo_optimizer(kind)                    # a fresh run: new optimizer and scheduler, then load
    sched2 = factory(S, opt2)
    for g, saved in zip(opt2.param_groups, saved_groups):
        g.update(saved)
    sched2.load_state_dict(saved_sched)
    rest = [sched2.get_last_lr()]
    for _ in range(steps - cut):
        sched2.step()
        rest.append(sched2.get_last_lr())
    assert rest == full[cut:]


def test_plateau_state_dict_resume():
    metric = metric_sequence()
    opt = fo_optimizer()
    full, _ = run_sequence(S.ReduceLROnPlateau(opt, patience=3, cooldown=1), opt, len(metric), metric)
    opt = fo_optimizer()
    s = S.ReduceLROnPlateau(opt, patience=3, cooldown=1)
    for m in metric[:55]:
        s.step(m)
    sd = pickle.loads(pickle.dumps(s.state_dict()))
    lrs = [g["lr"] for g in opt.param_groups]
    opt2 = fo_optimizer()
    s2 = S.ReduceLROnPlateau(opt2)
    for g, lr in zip(opt2.param_groups, lrs):
        g["lr"] = lr
    s2.load_state_dict(sd)
    rest = [s2.get_last_lr()]
    for m in metric[55:]:
        s2.step(m)
        rest.append(s2.get_last_lr())
    assert rest == full[55:]


# ------------------------------------------------------------------ hand-computed tables (no torch needed)
def _stepped(sched, n):
    out = [sched.get_last_lr()[0]]
    for _ in range(n):
        sched.step()
        out.append(sched.get_last_lr()[0])
    return out


def test_table_step_multistep_exponential():
    assert _stepped(S.StepLR(None, 2, 0.5, base_lr=1.0), 6) == [1, 1, .5, .5, .25, .25, .125]
    assert _stepped(S.MultiStepLR(None, [1, 3, 3], 0.1, base_lr=1.0), 4) == pytest.approx([1, .1, .1, .001, .001])
    assert _stepped(S.ExponentialLR(None, 0.5, base_lr=2.0), 3) == [2, 1, .5, .25]


def test_table_cosine_and_restarts():
    c = _stepped(S.CosineAnnealingLR(None, T_max=4, eta_min=0.0, base_lr=1.0), 8)
    half = (1 + math.cos(math.pi / 4)) / 2
    assert c == pytest.approx([1, half, .5, 1 - half, 0, 1 - half, .5, half, 1], abs=1e-15)
    w = _stepped(S.CosineAnnealingWarmRestarts(None, T_0=2, T_mult=2, base_lr=1.0), 7)
    assert w == pytest.approx([1, .5, 1, half, .5, 1 - half, 1, (1 + math.cos(math.pi / 8)) / 2], abs=1e-15)


def test_table_polynomial_linear():
    assert _stepped(S.PolynomialLR(None, total_iters=4, power=2.0, base_lr=1.0), 5) == \
        pytest.approx([1, .5625, .25, .0625, 0, 0], abs=1e-15)
    assert _stepped(S.LinearLR(None, start_factor=0.25, end_factor=1.0, total_iters=3, base_lr=4.0), 4) == \
        pytest.approx([1, 2, 3, 4, 4])


def test_table_one_cycle():
    # total 10, pct 0.3: up from 0.04 to 1 over steps 0..2, cos down to 4e-6 over steps 2..9
    lrs = _stepped(S.OneCycleLR(None, max_lr=1.0, total_steps=10, anneal_strategy="linear"), 9)
    lo = 0.04 / 1e4
    want = [0.04, 0.52, 1.0] + [1.0 + (lo - 1.0) * k / 7 for k in range(1, 8)]
    assert lrs == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        s = S.OneCycleLR(None, max_lr=1.0, total_steps=10)
        for _ in range(11):
            s.step()


def test_table_sequential_and_functions():
    seq = S.SequentialLR(None, [S.LinearLR(None, 0.5, total_iters=2, base_lr=1.0),
                                S.ExponentialLR(None, 0.5, base_lr=1.0)], milestones=[3])
    assert _stepped(seq, 5) == pytest.approx([.5, .75, 1, 1, .5, .25])
    assert S.sequential_lr(4, [lambda t: 1.0, lambda t: 0.5 ** t], [3]) == 0.5
    assert S.step_lr(5, 1.0, 2, 0.5) == 0.25
    assert S.multistep_lr(3, 1.0, [3, 1], 0.5) == 0.25
    assert S.exponential_lr(2, 3.0, 0.5) == 0.75
    assert S.cosine_annealing_lr(5, 1.0, 10) == pytest.approx(0.5)
    assert S.cosine_annealing_warm_restarts_lr(1000, 1.0, 1, 10) == pytest.approx(
        S.cosine_annealing_warm_restarts_lr(0, 1.0, 1, 10) * 0 + (1 + math.cos(math.pi * 889 / 1000)) / 2)
    assert S.polynomial_lr(2, 1.0, 4, 1.0) == 0.5
    assert S.linear_lr(1, 1.0, 0.5, 1.0, 2) == 0.75
    assert S.one_cycle_lr(0, 1.0, 100) == pytest.approx(0.04)
    assert S.CosineAnnealingLR(None, T_max=10, base_lr=0.1)(3) == S.cosine_annealing_lr(3, 0.1, 10)


def test_scheduler_drives_optimizer_step():
    """The lr a schedule writes is the one the next opt.step uses."""
    w = np.zeros(1)
    opt = fastopt.SGD([w], lr=1.0)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        opt.step([np.ones(1)])
        sched.step()
    assert w[0] == -(1 + .5 + .25)


def test_resume_requires_initial_lr():
    opt = fo_optimizer()
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(opt, 3, last_epoch=5)


# ------------------------------------------------------------------ bad input
BAD = [
    (lambda o: S.StepLR(o, 0), ValueError, "Invalid step_size: 0"),
    (lambda o: S.StepLR(o, 2.5), ValueError, "Invalid step_size: 2.5"),
    (lambda o: S.StepLR(o, 2, gamma=-0.1), ValueError, "Invalid gamma: -0.1"),
    (lambda o: S.StepLR(o, 2, gamma="x"), TypeError, "gamma"),
    (lambda o: S.MultiStepLR(o, [1, -2]), ValueError, "milestones entry: -2"),
    (lambda o: S.MultiStepLR(o, 5), TypeError, "milestones"),
    (lambda o: S.ExponentialLR(o, gamma=math.nan), ValueError, "Invalid gamma: nan"),
    (lambda o: S.CosineAnnealingLR(o, T_max=0), ValueError, "Invalid T_max: 0"),
    (lambda o: S.CosineAnnealingLR(o, T_max=5, eta_min=-1), ValueError, "Invalid eta_min: -1"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "Invalid T_0: 0"),
    (lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=0), ValueError, "Invalid T_mult: 0"),
    (lambda o: S.PolynomialLR(o, total_iters=0), ValueError, "Invalid total_iters: 0"),
    (lambda o: S.LinearLR(o, start_factor=0.0), ValueError, "Invalid start_factor: 0.0"),
    (lambda o: S.LinearLR(o, end_factor=1.5), ValueError, "Invalid end_factor: 1.5"),
    (lambda o: S.OneCycleLR(o, max_lr=1.0), ValueError, "total_steps OR"),
    (lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=0), ValueError, "Invalid total_steps: 0"),
    (lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=1.5), ValueError, "Invalid pct_start: 1.5"),
    (lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
    (lambda o: S.OneCycleLR(o, max_lr=[1.0], total_steps=10), ValueError, "max_lr must have the same length"),
    (lambda o: S.SequentialLR(o, [], []), ValueError, "at least one scheduler"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), S.StepLR(o, 3)], []), ValueError, "one more than the number"),
    (lambda o: S.SequentialLR(o, [S.ReduceLROnPlateau(o)], []), ValueError, "ReduceLROnPlateau"),
    (lambda o: S.SequentialLR(o, [S.StepLR(fo_optimizer(), 2)], []), ValueError, "same optimizer"),
    (lambda o: S.ReduceLROnPlateau(o, factor=1.0), ValueError, "Invalid factor: 1.0"),
    (lambda o: S.ReduceLROnPlateau(o, mode="median"), ValueError, "Invalid mode: 'median'"),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "Invalid threshold_mode"),
    (lambda o: S.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "expected 2 min_lrs, got 1"),
    (lambda o: S.ReduceLROnPlateau(o, patience=-1), ValueError, "Invalid patience: -1"),
    (lambda o: S.StepLR(o, 2, last_epoch=-2), ValueError, "Invalid last_epoch: -2"),
    (lambda o: S.StepLR(object(), 2), TypeError, "is not an optimizer"),
    (lambda o: S.StepLR(None, 2), TypeError, "needs an optimizer"),
    (lambda o: S.StepLR(o, 2, base_lr=0.1), ValueError, "base_lr is only for a standalone"),
    (lambda o: S.StepLR(None, 2, base_lr=-0.1), ValueError, "Invalid base_lr: -0.1"),
]


@pytest.mark.parametrize("make, exc, msg", BAD)
def test_bad_arguments(make, exc, msg):
    opt = fo_optimizer()
    before = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
    with pytest.raises(exc, match=msg):
        make(opt)
    if "Sequential" not in msg and "same optimizer" not in msg and "one more" not in msg:
        assert [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups] == before


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: S.step_lr(-1, 0.1, 2), ValueError, "Invalid step: -1"),
    (lambda: S.step_lr(1.5, 0.1, 2), ValueError, "Invalid step: 1.5"),
    (lambda: S.cosine_annealing_lr(3, 0.1, T_max=0), ValueError, "T_max"),
    (lambda: S.one_cycle_lr(11, 1.0, 10), ValueError, "Tried to step 11"),
    (lambda: S.sequential_lr(1, [lambda t: 1.0], [2]), ValueError, "len\\(milestones\\)"),
    (lambda: S.ReduceLROnPlateau(None, base_lr=0.1)(3), TypeError, "no closed form"),
    (lambda: S.ReduceLROnPlateau(None, base_lr=0.1).step("bad"), TypeError, "metrics"),
    (lambda: S.StepLR(None, 2, base_lr=0.1).load_state_dict({"_class": "ExponentialLR"}), ValueError,
     "not a StepLR state"),
    (lambda: S.CosineAnnealingWarmRestarts(None, 2, base_lr=0.1).step(-1), ValueError, "Invalid epoch: -1"),
])
def test_bad_calls(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_optimizer_state_dict_roundtrip_with_scheduler_keys():
    opt = fo_optimizer()
    S.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    other = fo_optimizer()
    other.load_state_dict(opt.state_dict())
    for g_saved, g_loaded in zip(opt.param_groups, other.param_groups):
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            assert g_loaded[key] == g_saved[key]
