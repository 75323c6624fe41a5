"""Optimizer API: param groups, skipped params, inputs accepted, functional forms, threads, configuration."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from _reference_optim import reference_hparams, reference_step


def test_param_groups_use_their_own_hyperparameters(rng):
    params = [rng.standard_normal(50).astype(np.float64) for _ in range(3)]
    grads = [[rng.standard_normal(50) for _ in range(3)] for _ in range(10)]
    groups = [{"params": [params[0]], "lr": 0.1, "weight_decay": 0.5},
              {"params": params[1:], "betas": (0.5, 0.6), "amsgrad": True}]
    refs = [p.copy() for p in params]
    opt = fastopt.Adam(groups, lr=0.01)
    hps = [reference_hparams("Adam", dict(lr=0.1, weight_decay=0.5))] + \
          [reference_hparams("Adam", dict(lr=0.01, betas=(0.5, 0.6), amsgrad=True))] * 2
    states = [{}, {}, {}]
    for gs in grads:
        opt.step(gs)
        for p, g, hp, st in zip(refs, gs, hps, states):
            reference_step("Adam", hp, p, g, st)
    for p, r in zip(params, refs):
        np.testing.assert_allclose(p, r, rtol=1e-12)
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[0]["amsgrad"] is False


def test_add_param_group_later(rng):
    a, b = rng.standard_normal(10), rng.standard_normal(4)
    opt = fastopt.SGD([a], lr=0.1)
    opt.step([np.ones(10)])
    opt.add_param_group({"params": [b], "lr": 1.0})
    b0 = b.copy()
    opt.step([np.ones(10), np.ones(4)])
    np.testing.assert_allclose(b, b0 - 1.0)
    with pytest.raises(ValueError, match=r"params\[0\] and params\[2\] share memory"):
        opt.add_param_group({"params": [a]})


def test_none_grad_skips_param_and_its_step_count(rng):
    params = [rng.standard_normal(5), rng.standard_normal(3)]
    frozen = params[1].copy()
    opt = fastopt.Adam(params, lr=0.1)
    opt.step([np.ones(5), None])
    np.testing.assert_array_equal(params[1], frozen)
    assert 1 not in opt.state
    opt.step([np.ones(5), np.ones(3)])
    assert int(opt.state[0]["step"]) == 2 and int(opt.state[1]["step"]) == 1
    # the first real step of params[1] is a bias-corrected first Adam step: p -= lr * sign(g)
    np.testing.assert_allclose(params[1], frozen - 0.1, rtol=1e-6)


def test_lr_written_between_steps_is_used(rng):
    p = np.zeros(3)
    opt = fastopt.SGD([p], lr=1.0)
    opt.step([np.ones(3)])
    opt.param_groups[0]["lr"] = 0.25
    opt.step([np.ones(3)])
    np.testing.assert_allclose(p, -1.25)


def test_readonly_and_noncontiguous_grads_are_accepted(rng):
    p1, p2 = np.zeros((4, 3)), np.zeros((4, 3))
    g = rng.standard_normal((3, 4)).T            # non-contiguous view
    g_ro = np.ascontiguousarray(g)
    g_ro.flags.writeable = False
    fastopt.SGD([p1], lr=1.0).step([g])
    fastopt.SGD([p2], lr=1.0).step([g_ro])
    np.testing.assert_array_equal(p1, -g)
    np.testing.assert_array_equal(p2, -g)


def test_byteswapped_grad_is_converted(rng):
    p = np.zeros(5, np.float32)
    g = rng.standard_normal(5).astype(">f4")
    fastopt.SGD([p], lr=1.0).step([g])
    np.testing.assert_array_equal(p, -g.astype(np.float32))


def test_mixed_dtypes_in_one_group(rng):
    a, b = np.zeros(4, np.float32), np.zeros(4, np.float64)
    opt = fastopt.Adam([a, b], lr=0.5)
    opt.step([np.ones(4, np.float32), np.ones(4, np.float64)])
    np.testing.assert_allclose(a, -0.5, rtol=1e-6)
    np.testing.assert_allclose(b, -0.5 / (1 + 1e-8), rtol=1e-12)   # g / (|g| + eps)


def test_state_lookup_by_param_and_index(rng):
    p = rng.standard_normal(3)
    opt = fastopt.Adam([p])
    opt.step([np.ones(3)])
    assert opt.state[p] is opt.state[0]
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"}
    with pytest.raises(KeyError):
        opt.state[np.ones(3)]
    assert "Adam (" in repr(opt) and "lr: 0.001" in repr(opt)


def test_option_switched_on_mid_run_matches_reference(rng):
    """amsgrad and SGD momentum turned on between steps create their state then, as torch does."""
    for name, switch in [("Adam", {"amsgrad": True}), ("SGD", {"momentum": 0.9, "dampening": 0.3}),
                         ("RMSprop", {"momentum": 0.5, "centered": True})]:
        p = rng.standard_normal(20)
        ref = p.copy()
        kwargs = {"lr": 0.01}
        opt = getattr(fastopt, name)([p], **kwargs)
        st = {}
        for step in range(6):
            g = rng.standard_normal(20)
            if step == 3:
                opt.param_groups[0].update(switch)
                kwargs = dict(kwargs, **switch)
            opt.step([g])
            reference_step(name, reference_hparams(name, kwargs), ref, g, st)
        np.testing.assert_allclose(p, ref, rtol=1e-12, err_msg=name)


def test_functional_forms_equal_the_optimizer_objects(rng):
    shape = (1000,)
    g_seq = [rng.standard_normal(shape).astype(np.float32) for _ in range(5)]
    cases = [
        ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True),
         lambda p, g, st, t: fastopt.functional.adam_(p, g, st["exp_avg"], st["exp_avg_sq"], step=t, lr=0.01,
                                                      beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1,
                                                      amsgrad=True, max_exp_avg_sq=st["max_exp_avg_sq"]),
         ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
        ("AdamW", dict(lr=0.01),
         lambda p, g, st, t: fastopt.functional.adamw_(p, g, st["exp_avg"], st["exp_avg_sq"], step=t, lr=0.01,
                                                       beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2),
         ["exp_avg", "exp_avg_sq"]),
        ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2),
         lambda p, g, st, t: fastopt.functional.sgd_(p, g, st["momentum_buffer"], lr=0.1, momentum=0.9,
                                                     dampening=0.2, first_step=(t == 1)),
         ["momentum_buffer"]),
        ("Adamax", dict(lr=0.01),
         lambda p, g, st, t: fastopt.functional.adamax_(p, g, st["exp_avg"], st["exp_inf"], step=t, lr=0.01,
                                                        beta1=0.9, beta2=0.999, eps=1e-8), ["exp_avg", "exp_inf"]),
        ("NAdam", dict(lr=0.01),
         lambda p, g, st, t: fastopt.functional.nadam_(p, g, st["exp_avg"], st["exp_avg_sq"], st["mu"], step=t,
                                                       lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
         ["exp_avg", "exp_avg_sq"]),
        ("RAdam", dict(lr=0.01),
         lambda p, g, st, t: fastopt.functional.radam_(p, g, st["exp_avg"], st["exp_avg_sq"], step=t, lr=0.01,
                                                       beta1=0.9, beta2=0.999, eps=1e-8),
         ["exp_avg", "exp_avg_sq"]),
        ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True),
         lambda p, g, st, t: fastopt.functional.rmsprop_(p, g, st["square_avg"], lr=0.01, alpha=0.99, eps=1e-8,
                                                         momentum=0.5, centered=True,
                                                         momentum_buffer=st["momentum_buffer"],
                                                         grad_avg=st["grad_avg"]),
         ["square_avg", "momentum_buffer", "grad_avg"]),
        ("Adagrad", dict(lr=0.1, lr_decay=0.01),
         lambda p, g, st, t: fastopt.functional.adagrad_(p, g, st["sum"], step=t, lr=0.1, lr_decay=0.01), ["sum"]),
        ("Lion", dict(lr=0.01, weight_decay=0.1),
         lambda p, g, st, t: fastopt.functional.lion_(p, g, st["exp_avg"], lr=0.01, weight_decay=0.1), ["exp_avg"]),
    ]
    for name, kwargs, fn, names in cases:
        p_obj = np.linspace(-1, 1, 1000, dtype=np.float32)
        p_fn = p_obj.copy()
        opt = getattr(fastopt, name)([p_obj], **kwargs)
        st = {k: np.zeros(shape, np.float32) for k in names}
        st["mu"] = np.ones((), np.float64)
        for t, g in enumerate(g_seq, start=1):
            opt.step([g])
            assert fn(p_fn, g, st, t) is p_fn
        np.testing.assert_array_equal(p_fn, p_obj, err_msg=name)


FUNCTIONAL_ERRORS = [
    (lambda p, g, m, v: fastopt.functional.adam_(p, g, m, v, step=0, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                                 weight_decay=0), ValueError, r"Invalid step"),
    (lambda p, g, m, v: fastopt.functional.adam_(p, g, m[:4], v, step=1, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                                 weight_decay=0), ValueError, r"exp_avg: shape \(4,\)"),
    (lambda p, g, m, v: fastopt.functional.adam_(p, g, m, m, step=1, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                                 weight_decay=0), ValueError, r"exp_avg and exp_avg_sq share memory"),
    (lambda p, g, m, v: fastopt.functional.adam_(p, g, m, v, step=1, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                                 weight_decay=0, amsgrad=True), ValueError,
     r"max_exp_avg_sq: required"),
    (lambda p, g, m, v: fastopt.functional.adam_(p, g.astype(np.float64), m, v, step=1, lr=0.1, beta1=0.9,
                                                 beta2=0.99, eps=1e-8, weight_decay=0), TypeError, r"grad: expected"),
    (lambda p, g, m, v: fastopt.functional.adam_(p, g, m, v, step=1, lr=0.1, beta1=1.9, beta2=0.99, eps=1e-8,
                                                 weight_decay=0), ValueError, r"Invalid beta parameter at index 0"),
    (lambda p, g, m, v: fastopt.functional.sgd_(p, g, None, lr=0.1, momentum=0.9), ValueError,
     r"momentum_buffer: required"),
    (lambda p, g, m, v: fastopt.functional.sgd_(p, p, None, lr=0.1), ValueError, r"param and grad share memory"),
    (lambda p, g, m, v: fastopt.functional.nadam_(p, g, m, v, 1.0, step=1, lr=0.1, beta1=0.9, beta2=0.99,
                                                  eps=1e-8), TypeError, r"mu_product"),
]


@pytest.mark.parametrize("call,exc,match", FUNCTIONAL_ERRORS)
def test_functional_errors_change_nothing(call, exc, match, rng):
    p, g = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    m, v = np.full(8, 0.5, np.float32), np.full(8, 0.25, np.float32)
    before = [a.copy() for a in (p, g, m, v)]
    with pytest.raises(exc, match=match):
        call(p, g, m, v)
    for a, b in zip((p, g, m, v), before):
        np.testing.assert_array_equal(a, b)


def test_set_and_get_num_threads():
    before = fastopt.get_num_threads()
    try:
        fastopt.set_num_threads(1)
        assert fastopt.get_num_threads() == 1
        fastopt.set_num_threads(3)
        assert fastopt.get_num_threads() == 3
        for bad in (0, -1):
            with pytest.raises(ValueError, match="Invalid number of threads"):
                fastopt.set_num_threads(bad)
        for bad in (1.5, True, "2"):
            with pytest.raises(TypeError, match="Invalid number of threads"):
                fastopt.set_num_threads(bad)
    finally:
        fastopt.set_num_threads(before)


def test_threadpoolctl_limits_take_effect():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fastopt.config()["openmp"]:
        pytest.skip("built without OpenMP")
    before = fastopt.get_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastopt.get_num_threads() == 1
    assert fastopt.get_num_threads() == before


def test_omp_num_threads_is_honoured(tmp_path):
    # the fastopt under test (installed or built in place), not an unbuilt checkout in the cwd
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__))))
    out = subprocess.run([sys.executable, "-c", "import fastopt; print(fastopt.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "1"


def test_show_config_reports_openmp_and_isa(capsys):
    fastopt.show_config()
    out = capsys.readouterr().out
    cfg = fastopt.config()
    assert f"openmp" in out and str(cfg["openmp"]) in out
    assert cfg["isa"] in out and cfg["isa"] in ("baseline", "avx2", "avx512")
    assert cfg["isa"] in fastopt.available_isas()
    assert cfg["parallel_min_elements"] > 0
