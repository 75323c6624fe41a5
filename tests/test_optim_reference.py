"""Every optimizer × every option × float32/float64 × 1 and 2 threads against the float64 reference, 30 steps."""
import numpy as np
import pytest

import fastopt
from _cases_optim import CASES, IDS
from _reference_optim import reference_hparams, reference_step

# Shapes of one parameter list: above and below the parallel threshold, odd sizes, a 0-d scalar, an empty array.
SHAPES = [(50_003,), (40, 25), (7,), (1,), (), (0,), (3, 0)]
STEPS = 30


def make_problem(name, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = []
    for _ in range(STEPS):
        if name == "Lion":
            # Lion's sign(c) is discontinuous at 0: a gradient of steady sign per element keeps c away from 0, so
            # float32 and float64 never round to different signs.
            gs = [np.where(np.arange(np.prod(s, dtype=int)).reshape(s) % 2 == 0, 1.0, -1.0)
                  * rng.uniform(0.5, 1.5, s) for s in SHAPES]
        else:
            gs = [rng.standard_normal(s) for s in SHAPES]
        grads.append([np.asarray(g).astype(dtype) for g in gs])
    return params, grads


def run_fastopt(name, kwargs, params, grads):
    opt = getattr(fastopt, name)(params, **kwargs)
    for gs in grads:
        opt.step(gs)
    return opt


def run_reference(name, kwargs, params, grads):
    hp = reference_hparams(name, kwargs)
    ps = [p.astype(np.float64) for p in params]
    states = [{} for _ in ps]
    for gs in grads:
        for p, g, st in zip(ps, gs, states):
            reference_step(name, hp, p, g.astype(np.float64), st)
    return ps, states


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_trajectory_matches_reference(case, dtype, num_threads):
    name, kwargs = case
    params, grads = make_problem(name, dtype)
    ref_params, ref_states = run_reference(name, kwargs, params, grads)
    opt = run_fastopt(name, kwargs, params, grads)
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-11, 1e-13)
    for i, (p, ref) in enumerate(zip(params, ref_params)):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, ref, rtol=rtol, atol=atol, err_msg=f"params[{i}]")
        for key, value in ref_states[i].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_allclose(opt.state[i][key], value, rtol=10 * rtol, atol=10 * atol,
                                           err_msg=f"state[{i}][{key}]")
            elif key == "step":
                assert int(opt.state[i]["step"]) == value


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_thread_counts_give_identical_bits(case):
    name, kwargs = case
    results = []
    for threads in (1, 2):
        before = fastopt.get_num_threads()
        fastopt.set_num_threads(threads)
        try:
            params, grads = make_problem(name, np.float32, seed=1)
            run_fastopt(name, kwargs, params, grads)
        finally:
            fastopt.set_num_threads(before)
        results.append(params)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


NORM_SWEEP_CASES = {"LARS": dict(lr=0.1, weight_decay=0.01, trust_coefficient=0.02),
                    "LAMB": dict(lr=0.01, weight_decay=0.01)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(NORM_SWEEP_CASES))
def test_norm_sweep_of_many_blocks_has_the_same_bits_at_any_thread_count(name, dtype):
    """Per-tensor norms over params of many blocks (blocked_sum.h), split among threads: the same bits at 1 and 2
    threads, and the float64 reference's trajectory."""
    rng = np.random.default_rng(3)
    shapes = [(300, 201), (5, 9000), (70001,)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]
    kwargs = NORM_SWEEP_CASES[name]
    results = []
    for threads in (1, 2):
        before = fastopt.get_num_threads()
        fastopt.set_num_threads(threads)
        try:
            params = [p.copy() for p in start]
            run_fastopt(name, kwargs, params, grads)
        finally:
            fastopt.set_num_threads(before)
        results.append(params)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    hp = reference_hparams(name, kwargs)
    for p, p0, k in zip(results[0], start, range(len(shapes))):
        ref, st = p0.astype(np.float64), {}
        for gs in grads:
            reference_step(name, hp, ref, gs[k].astype(np.float64), st)
        np.testing.assert_allclose(p, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_params_actually_move():
    """Guards the parity tests against a no-op: every non-empty param changes."""
    params, grads = make_problem("Adam", np.float32)
    before = [p.copy() for p in params]
    run_fastopt("Adam", {}, params, grads)
    for p, b in zip(params, before):
        if p.size:
            assert np.mean(p != b) > 0.99      # a random walk may return to its start in an element or two
