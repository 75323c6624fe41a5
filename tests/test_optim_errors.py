"""Bad input raises a clear error before anything is written: the error table of the optimizer API."""
import numpy as np
import pytest

import fastopt


def fresh(dtype=np.float32):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal(5).astype(dtype)]


def stepped_adam(params):
    opt = fastopt.Adam(params, lr=0.1)
    opt.step([np.ones_like(p) for p in params])
    return opt


def snapshot(opt):
    arrays = [p.copy() for p in opt.params]
    for i in sorted(opt.state):
        st = opt.state[i]
        arrays += [np.array(v, copy=True) for v in st.values() if v is not None]
    return arrays


def assert_unchanged(opt, before):
    after = snapshot(opt)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def ro(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def grads_with(params, index, value):
    gs = [np.ones_like(p) for p in params]
    gs[index] = value(params) if callable(value) else value
    return gs


# (description, make grads from params, exception, message regex)
STEP_ERRORS = [
    ("float64 grad for float32 param", lambda ps: grads_with(ps, 1, ps[1].astype(np.float64)), TypeError,
     r"grads\[1\]: expected dtype float32 \(the dtype of params\[1\]\) or bfloat16, got float64"),
    ("int grad", lambda ps: grads_with(ps, 0, np.ones((4, 3), dtype=np.int64)), TypeError, r"grads\[0\].*int64"),
    ("list grad", lambda ps: grads_with(ps, 0, [[1.0] * 3] * 4), TypeError, r"grads\[0\]: expected a numpy.ndarray"),
    ("wrong shape", lambda ps: grads_with(ps, 0, np.ones((3, 4), np.float32)), ValueError,
     r"grads\[0\]: shape \(3, 4\) does not match params\[0\] shape \(4, 3\)"),
    ("wrong ndim", lambda ps: grads_with(ps, 1, np.ones((5, 1), np.float32)), ValueError, r"grads\[1\]: shape"),
    ("too few grads", lambda ps: [np.ones_like(ps[0])], ValueError, r"expected 2 gradients.*got 1"),
    ("too many grads", lambda ps: [np.ones_like(p) for p in ps] * 2, ValueError, r"expected 2 gradients"),
    ("grads not a list", lambda ps: np.ones(3), TypeError, r"grads must be a list"),
    ("grad is the param", lambda ps: grads_with(ps, 0, ps[0]), ValueError, r"grads\[0\] shares memory"),
    ("grad is another param", lambda ps: grads_with(ps, 1, ps[0].reshape(-1)[:5]), ValueError,
     r"grads\[1\] shares memory"),
]


@pytest.mark.parametrize("desc,make,exc,match", STEP_ERRORS, ids=[e[0] for e in STEP_ERRORS])
def test_step_errors_change_nothing(desc, make, exc, match):
    params = fresh()
    opt = stepped_adam(params)
    before = snapshot(opt)
    with pytest.raises(exc, match=match):
        opt.step(make(params))
    assert_unchanged(opt, before)


def test_grad_sharing_state_memory_is_rejected():
    params = fresh()
    opt = stepped_adam(params)
    before = snapshot(opt)
    with pytest.raises(ValueError, match=r"grads\[0\] shares memory"):
        opt.step([opt.state[0]["exp_avg"], np.ones(5, np.float32)])
    assert_unchanged(opt, before)


def test_check_finite_raises_before_any_write():
    params = fresh()
    opt = stepped_adam(params)
    before = snapshot(opt)
    bad = np.ones(5, np.float32)
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"grads\[1\] contains inf or NaN"):
        opt.step([np.ones((4, 3), np.float32), bad], check_finite=True)
    assert_unchanged(opt, before)
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        opt.step([np.ones((4, 3), np.float32), bad], check_finite=True)
    assert_unchanged(opt, before)


def test_nonfinite_grads_propagate_without_check():
    params = fresh()
    opt = fastopt.SGD(params, lr=0.1)
    g = np.ones(5, np.float32)
    g[0] = np.nan
    opt.step([np.ones((4, 3), np.float32), g])
    assert np.isnan(params[1][0]) and np.all(np.isfinite(params[1][1:]))


PARAM_ERRORS = [
    ("int param", lambda: [np.ones(3, dtype=np.int32)], TypeError, r"params\[0\]: expected dtype float32 or float64"),
    ("float16 param", lambda: [np.ones(3, dtype=np.float16)], TypeError, r"params\[0\].*float16"),
    ("list param", lambda: [[1.0, 2.0]], TypeError, r"params\[0\]: expected a numpy.ndarray"),
    ("non-contiguous", lambda: [np.ones((4, 4), np.float32)[:, ::2]], ValueError, r"params\[0\].*not C-contiguous"),
    ("fortran order", lambda: [np.asfortranarray(np.ones((4, 3), np.float32))], ValueError, r"not C-contiguous"),
    ("read-only", lambda: [ro(np.ones(3, np.float32))], ValueError, r"params\[0\].*read-only"),
    ("byte-swapped", lambda: [np.ones(3, dtype=">f4")], ValueError, r"params\[0\].*not in native byte order"),
    ("misaligned", lambda: [np.frombuffer(bytearray(17), dtype=np.float32, offset=1, count=4)], ValueError,
     r"params\[0\].*not aligned"),
    ("same array twice", lambda: [np.ones(3)] * 2, ValueError, r"params\[0\] and params\[1\] share memory"),
    ("overlapping views", lambda: (lambda b: [b[:6], b[4:]])(np.ones(10)), ValueError, r"share memory"),
    ("empty list", lambda: [], ValueError, r"empty parameter list"),
    ("single array", lambda: np.ones(3), TypeError, r"not a single array"),
]


@pytest.mark.parametrize("desc,make,exc,match", PARAM_ERRORS, ids=[e[0] for e in PARAM_ERRORS])
def test_bad_params_rejected_at_construction(desc, make, exc, match):
    with pytest.raises(exc, match=match):
        fastopt.Adam(make())


def test_param_made_read_only_after_construction():
    params = fresh()
    opt = stepped_adam(params)
    before = snapshot(opt)
    params[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\].*read-only"):
        opt.step([np.ones_like(p) for p in params])
    assert_unchanged(opt, before)


HPARAM_ERRORS = [
    ("Adam", dict(lr=-1e-3), ValueError, r"Invalid learning rate: -0.001"),
    ("Adam", dict(lr=float("nan")), ValueError, r"Invalid learning rate: nan"),
    ("Adam", dict(eps=-1.0), ValueError, r"Invalid epsilon value: -1.0"),
    ("Adam", dict(betas=(0.9, 1.5)), ValueError, r"Invalid beta parameter at index 1: 1.5"),
    ("Adam", dict(betas=(-0.1, 0.9)), ValueError, r"Invalid beta parameter at index 0: -0.1"),
    ("Adam", dict(betas=(1.0, 0.9)), ValueError, r"Invalid beta parameter at index 0: 1.0"),
    ("Adam", dict(betas=0.9), ValueError, r"Invalid betas"),
    ("Adam", dict(weight_decay=-0.1), ValueError, r"Invalid weight_decay value: -0.1"),
    ("Adam", dict(amsgrad="yes"), TypeError, r"Invalid amsgrad: expected a bool"),
    ("Adam", dict(lr="0.1"), TypeError, r"Invalid learning rate: expected a real number"),
    ("AdamW", dict(weight_decay=float("inf")), ValueError, r"Invalid weight_decay value: inf"),
    ("SGD", dict(momentum=-0.5), ValueError, r"Invalid momentum value: -0.5"),
    ("SGD", dict(nesterov=True), ValueError, r"Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, r"Nesterov momentum requires"),
    ("RMSprop", dict(alpha=1.5), ValueError, r"Invalid alpha value: 1.5"),
    ("RMSprop", dict(momentum=-1), ValueError, r"Invalid momentum value"),
    ("Adagrad", dict(lr_decay=-1), ValueError, r"Invalid lr_decay value"),
    ("Adagrad", dict(initial_accumulator_value=-1), ValueError, r"Invalid initial_accumulator_value"),
    ("NAdam", dict(momentum_decay=-1), ValueError, r"Invalid momentum_decay value"),
    ("Lion", dict(betas=(0.9, 1.0)), ValueError, r"Invalid beta parameter at index 1: 1.0"),
    ("Adam", dict(foo=1), TypeError, r"unexpected keyword argument 'foo'"),
]


@pytest.mark.parametrize("name,kwargs,exc,match", HPARAM_ERRORS,
                         ids=[f"{n}-{list(k)[0]}-{i}" for i, (n, k, _, _) in enumerate(HPARAM_ERRORS)])
def test_bad_hyperparameters_rejected_at_construction(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        getattr(fastopt, name)(fresh(), **kwargs)


def test_bad_hyperparameter_set_between_steps_raises_before_writing():
    params = fresh()
    opt = stepped_adam(params)
    before = snapshot(opt)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"Invalid learning rate: -1.0"):
        opt.step([np.ones_like(p) for p in params])
    assert_unchanged(opt, before)
    opt.param_groups[0]["lr"] = 0.1
    opt.param_groups[0]["betas"] = (0.9, 2.0)
    with pytest.raises(ValueError, match=r"Invalid beta parameter at index 1: 2.0"):
        opt.step([np.ones_like(p) for p in params])
    assert_unchanged(opt, before)


def test_error_in_second_group_leaves_first_group_untouched():
    params = fresh()
    opt = fastopt.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    before = snapshot(opt)
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        opt.step([np.ones((4, 3), np.float32), np.ones(5, np.float64)])
    assert_unchanged(opt, before)


def test_unknown_group_key_rejected():
    with pytest.raises(TypeError, match=r"unknown hyperparameter\(s\) \['lrr'\]"):
        fastopt.Adam([{"params": fresh(), "lrr": 0.1}])
