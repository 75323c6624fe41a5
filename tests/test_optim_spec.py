"""The spec is the one declaration: class and functional form share its checks; hyperparameters are re-checked by
type and value at every step; load_state_dict rejects corrupt state naming the key and changes nothing."""
import numpy as np
import pytest

import fastopt
from fastopt.optim._spec import REQUIRED
from fastopt.optim.specs import SPECS


def test_registries_derive_from_the_specs():
    names = [s.name for s in SPECS]
    outside = [cls.__name__ for cls in fastopt.optim.NOT_ELEMENTWISE]     # not element-wise: no spec
    assert fastopt.optim.__all__ == ["Optimizer"] + names + outside
    assert all(n in fastopt.__all__ and getattr(fastopt, n) is getattr(fastopt.optim, n) for n in names + outside)
    # the spec-made forms, then those of the optimizers that are not element-wise (LBFGS has none)
    assert [f for f in fastopt.functional.__all__ if f.endswith("_")] == [n.lower() + "_" for n in names] + [
        "adafactor_", "sparse_adam_", "muon_"]
    from fastopt.estimators._mlp import OPTIMIZERS
    assert list(OPTIMIZERS) == [n.lower() for n in names]


def _functional_call(spec, bad_name, bad_value):
    """Calls spec's functional form on valid arrays with hyperparameter bad_name (class name) set to bad_value."""
    p, g = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    kw = {}
    for arg, default, *_ in spec.functional_hypers():
        kw[arg] = default if default is not REQUIRED else {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "beta3": 0.999,
                                                       "eps": 1e-8, "weight_decay": 0.0, "alpha": 0.9}[arg]
    hyper = next(h for h in spec.hypers if h.name == bad_name)
    if isinstance(hyper.default, tuple):            # a pair: the functional form takes its two fields
        first = fastopt._optim.FIELDS.index(hyper.field)
        kw.update(zip(fastopt._optim.FIELDS[first:first + len(hyper.default)], bad_value))
    else:
        kw[bad_name] = bad_value
    slots = {s.arg_name: np.zeros(4, np.float32) for s in spec.slots}
    args = [slots.pop(s.arg_name) for s in spec.slots if not s.keyword]
    if spec.aux:
        args.append(np.ones((), np.float64))
    if spec.uses_step:
        kw["step"] = 1
    fn = getattr(fastopt.functional, spec.functional_name)
    return lambda: fn(p, g, *args, **kw, **slots), p


BAD = [("lr", -1.0), ("lr", True), ("lr", 10 ** 400), ("lr", float("nan")), ("lr", "0.1"), ("betas", (1.5, 0.9)),
       ("betas", (0.9, True)), ("eps", -1e-8), ("weight_decay", float("inf")), ("amsgrad", 1),
       ("amsgrad", None), ("maximize", 1), ("momentum", -0.5), ("alpha", float("nan")), ("centered", "yes"),
       ("nesterov", True), ("momentum_decay", -1.0), ("lr_decay", -1.0), ("dampening", float("nan")),
       ("rho", 1.5), ("lambd", -1.0), ("t0", float("inf")), ("etas", (0.5, 0.9)), ("etas", (1.0, 1.2)),
       ("etas", (0.5, float("nan"))), ("step_sizes", (1e-6, float("inf"))), ("t_alpha_beta3", 0.0),
       ("t_alpha_beta3", -5.0), ("t_alpha_beta3", "10")]
BAD_IF_CHECK = {"UNIT": [("alpha", 1.5)],                  # RMSprop's alpha is in [0, 1]; ASGD's is any real
                "BETAS3": [("betas", (0.9, 0.99, 1.0))]}   # AdEMAMix's three betas


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_class_and_functional_raise_the_same_error(spec):
    cls = getattr(fastopt, spec.name)
    names = {h.name for h in spec.hypers if h.field is not None}
    extra = [(n, v) for kind, bad in BAD_IF_CHECK.items() for n, v in bad
             if any(h.name == n and h.check == getattr(fastopt._optim, kind) for h in spec.hypers)]
    for name, value in BAD + extra:
        if name not in names or (name == "nesterov" and spec.cross_check is None):
            continue                   # nesterov=True alone is an error only under SGD's Nesterov rule
        with pytest.raises((TypeError, ValueError)) as from_class:
            cls([np.ones(4, np.float32)], **{name: value})
        default = next(h.default for h in spec.hypers if h.name == name)
        if isinstance(default, tuple) and len(value) != len(default):
            continue                   # a tuple of the wrong length: the functional form takes its fields apart
        call, p = _functional_call(spec, name, value)
        with pytest.raises(type(from_class.value)) as from_functional:
            call()
        assert str(from_functional.value) == str(from_class.value), (spec.name, name, value)
        np.testing.assert_array_equal(p, np.ones(4, np.float32))


@pytest.mark.parametrize("key,value,exc", [("lr", True, TypeError), ("lr", 10 ** 400, ValueError),
                                           ("amsgrad", 1, TypeError), ("amsgrad", None, TypeError),
                                           ("lr", -1, ValueError), ("betas", (0.9, 1), ValueError),
                                           ("learning_rate", 0.1, TypeError)])
def test_group_edits_are_rechecked_by_type_and_value(key, value, exc):
    p = np.ones(4, np.float32)
    opt = fastopt.Adam([p], lr=1.0)
    opt.step([np.ones(4, np.float32)])
    before = p.copy()
    state = opt.state_dict()
    opt.param_groups[0][key] = value
    match = {"lr": "learning rate", "betas": "beta parameter at index 1"}.get(key, key)
    with pytest.raises(exc, match=match):
        opt.step([np.ones(4, np.float32)])
    np.testing.assert_array_equal(p, before)
    assert opt.state_dict()["state"][0]["step"] == state["state"][0]["step"]


def test_huge_integer_hyperparameter_at_construction_names_it():
    with pytest.raises(ValueError, match="Invalid learning rate"):
        fastopt.SGD([np.ones(3)], lr=10 ** 400)


def _drop(sd, key):
    del sd["state"][0][key]


def _set(key, value):
    def f(sd):
        sd["state"][0][key] = value
    return f


def _drop_lr(sd):
    del sd["param_groups"][0]["lr"]


LOAD_ERRORS = [
    ("missing exp_avg_sq", lambda sd: _drop(sd, "exp_avg_sq"), ValueError, r"no 'exp_avg_sq'"),
    ("step near int64 max", _set("step", 2 ** 63 - 1), ValueError, r"invalid step"),
    ("step 2**63", _set("step", 2 ** 63), ValueError, r"invalid step"),
    ("step 1e30", _set("step", 1e30), ValueError, r"invalid step"),
    ("step True", _set("step", True), TypeError, r"invalid step True"),
    ("step string", _set("step", "3"), TypeError, r"invalid step"),
    ("group without lr", _drop_lr, ValueError, r"group 0 has no 'lr'"),
    ("huge lr", lambda sd: sd["param_groups"][0].update(lr=10 ** 400), ValueError, r"learning rate"),
    ("lr True", lambda sd: sd["param_groups"][0].update(lr=True), TypeError, r"learning rate"),
]


@pytest.mark.parametrize("desc,mutate,exc,match", LOAD_ERRORS, ids=[e[0] for e in LOAD_ERRORS])
def test_corrupt_state_dict_is_rejected_and_changes_nothing(desc, mutate, exc, match):
    p = np.linspace(-1, 1, 6).astype(np.float32)
    opt = fastopt.Adam([p], lr=0.1)
    opt.step([np.ones(6, np.float32)])
    sd = opt.state_dict()
    mutate(sd)
    before = opt.state_dict()
    with pytest.raises(exc, match=match):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after["state"][0]["step"] == before["state"][0]["step"]
    for k in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(after["state"][0][k], before["state"][0][k])


def test_nadam_state_without_mu_product_and_sgd_without_buffer():
    p = np.ones(3)
    opt = fastopt.NAdam([p])
    opt.step([np.ones(3)])
    sd = opt.state_dict()
    del sd["state"][0]["mu_product"]
    with pytest.raises(ValueError, match="mu_product"):
        opt.load_state_dict(sd)
    sgd = fastopt.SGD([np.ones(3)], lr=0.1, momentum=0.9)     # torch: a missing momentum buffer = a first step
    sgd.step([np.ones(3)])
    sd = sgd.state_dict()
    del sd["state"][0]["momentum_buffer"]
    sgd.load_state_dict(sd)
    sgd.step([np.ones(3)])
    np.testing.assert_array_equal(sgd.params[0], 1 - 0.2)


def test_functional_step_errors():
    p, g, m, v = (np.ones(3, np.float32) for _ in range(4))
    kw = dict(lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0)
    with pytest.raises(TypeError, match="Invalid step"):
        fastopt.functional.adam_(p, g, m, v, step=True, **kw)
    with pytest.raises(ValueError, match="Invalid step"):
        fastopt.functional.adam_(p, g, m, v, step=2 ** 63, **kw)
    np.testing.assert_array_equal(p, 1)
