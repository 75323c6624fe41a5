"""state_dict / load_state_dict: plain scalars and arrays, validation, bit-identical resume."""
import io
import pickle

import numpy as np
import pytest

import fastopt
from _cases_optim import CASES, IDS

SHAPES = [(300,), (10, 7), ()]


def problem(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    params = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in SHAPES]
    grads = [[np.asarray(rng.standard_normal(s), dtype=dtype) for s in SHAPES] for _ in range(20)]
    return params, grads


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_resume_is_bit_identical(case):
    name, kwargs = case
    cls = getattr(fastopt, name)
    params, grads = problem()
    opt = cls(params, **kwargs)
    for gs in grads:
        opt.step(gs)

    params2, _ = problem()
    opt2 = cls(params2, **kwargs)
    for gs in grads[:8]:
        opt2.step(gs)
    saved = pickle.loads(pickle.dumps((opt2.state_dict(), [p.copy() for p in params2])))
    params3, _ = problem(seed=99)
    for p, q in zip(params3, saved[1]):
        p[...] = q
    opt3 = cls(params3, **kwargs)
    opt3.load_state_dict(saved[0])
    for gs in grads[8:]:
        opt3.step(gs)
    for a, b in zip(params, params3):
        np.testing.assert_array_equal(a, b)


def test_state_dict_holds_python_scalars_and_arrays():
    params, grads = problem()
    opt = fastopt.NAdam(params)
    opt.step(grads[0])
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    st = sd["state"][0]
    assert type(st["step"]) is int and st["step"] == 1
    assert type(st["mu_product"]) is float
    assert isinstance(st["exp_avg"], np.ndarray) and st["exp_avg"].dtype == np.float32
    # a copy, not a view of live state
    st["exp_avg"][...] = 123
    assert not np.any(opt.state[0]["exp_avg"] == 123)
    # savable with np.savez (object array) and restorable
    buf = io.BytesIO()
    np.savez(buf, state=np.array(sd, dtype=object))
    buf.seek(0)
    loaded = np.load(buf, allow_pickle=True)["state"].item()
    assert loaded["state"][0]["step"] == 1


def test_state_dict_restores_hyperparameters():
    params, grads = problem()
    opt = fastopt.Adam(params, lr=0.1)
    opt.param_groups[0]["lr"] = 0.025
    sd = opt.state_dict()
    opt2 = fastopt.Adam(problem()[0], lr=0.1)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.025


def test_sgd_fresh_momentum_buffer_round_trips():
    """A momentum buffer that has never been used saves as None (as torch), and resumes identically."""
    params, grads = problem()
    opt = fastopt.SGD(params, lr=0.1, momentum=0.9, dampening=0.5)
    sd0 = opt.state_dict()
    assert sd0["state"] == {}
    opt.step(grads[0])
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["momentum_buffer"], np.ndarray)


LOAD_ERRORS = [
    ("not a dict", lambda sd: [1, 2], ValueError, r"state_dict must be a dict"),
    ("group count", lambda sd: dict(sd, param_groups=sd["param_groups"] * 2), ValueError,
     r"has 2 parameter groups, the optimizer has 1"),
    ("param count", lambda sd: dict(sd, param_groups=[dict(sd["param_groups"][0], params=[0, 1])]), ValueError,
     r"group 0 has 2 params, the optimizer's has 3"),
    ("wrong shape", lambda sd: _patch(sd, 0, "exp_avg", np.zeros(299, np.float32)), ValueError,
     r"params\[0\] 'exp_avg': shape \(299,\) does not match the param's \(300,\)"),
    ("wrong dtype", lambda sd: _patch(sd, 1, "exp_avg_sq", np.zeros((10, 7), np.float64)), TypeError,
     r"params\[1\] 'exp_avg_sq': expected dtype float32"),
    ("not an array", lambda sd: _patch(sd, 0, "exp_avg", [0.0] * 300), TypeError, r"expected a numpy.ndarray"),
    ("unknown key", lambda sd: _patch(sd, 0, "momentum_buffer", np.zeros(300, np.float32)), ValueError,
     r"unknown entries \['momentum_buffer'\]"),
    ("bad step", lambda sd: _patch(sd, 0, "step", -3), ValueError, r"invalid step -3"),
    ("bad hyperparameter", lambda sd: dict(sd, param_groups=[dict(sd["param_groups"][0], lr=-1.0)]), ValueError,
     r"Invalid learning rate: -1.0"),
    ("unknown param id", lambda sd: dict(sd, state={**sd["state"], 17: sd["state"][0]}), ValueError,
     r"state for param 17"),
]


def _patch(sd, i, key, value):
    state = {k: dict(v) for k, v in sd["state"].items()}
    state[i][key] = value
    return dict(sd, state=state)


@pytest.mark.parametrize("desc,mutate,exc,match", LOAD_ERRORS, ids=[e[0] for e in LOAD_ERRORS])
def test_load_state_dict_errors_change_nothing(desc, mutate, exc, match):
    params, grads = problem()
    opt = fastopt.Adam(params, lr=0.1)
    opt.step(grads[0])
    sd = opt.state_dict()
    before = opt.state_dict()
    with pytest.raises(exc, match=match):
        opt.load_state_dict(mutate(sd))
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i in before["state"]:
        for key, value in before["state"][i].items():
            np.testing.assert_array_equal(after["state"][i][key], value)


def test_pickled_optimizer_continues_identically():
    params, grads = problem()
    opt = fastopt.AdamW(params, lr=0.05, amsgrad=True)
    for gs in grads[:5]:
        opt.step(gs)
    clone = pickle.loads(pickle.dumps(opt))
    for gs in grads[5:]:
        opt.step(gs)
        clone.step(gs)
    for a, b in zip(opt.params, clone.params):
        np.testing.assert_array_equal(a, b)
    assert clone.params[0] is not opt.params[0]
