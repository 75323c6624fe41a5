"""EarlyStopping: stopping rule, best-weight snapshot and in-place restore, state_dict, bad input."""
import math
import pickle

import numpy as np
import pytest

from fastopt.callbacks import EarlyStopping


def make_params(rng):
    return [rng.standard_normal((4, 3)), rng.standard_normal(5).astype(np.float32)]


def train(stopper, params, metrics):
    """Perturbs params each epoch, records the params at each epoch; returns (epoch stopped at, history)."""
    history = []
    for epoch, m in enumerate(metrics):
        for p in params:
            p += 1.0
        history.append([p.copy() for p in params])
        if stopper.step(m, params):
            return epoch, history
    return None, history


@pytest.mark.parametrize("mode, sign", [("min", 1.0), ("max", -1.0)])
def test_stops_and_restores_best(rng, mode, sign):
    params = make_params(rng)
    ids = [id(p) for p in params]
    metrics = [sign * v for v in [5.0, 4.0, 3.0, 3.5, 2.9995, 3.1, 3.2, 1.0]]
    stopper = EarlyStopping(patience=3, min_delta=0.001, mode=mode)
    stopped_at, history = train(stopper, params, metrics)
    assert stopped_at == 5           # 3.5, 2.9995 (< min_delta better), 3.1 are three bad steps after epoch 2
    assert stopper.best == sign * 3.0 and stopper.best_step == 2 and stopper.stopped
    for p, best in zip(params, history[2]):
        np.testing.assert_array_equal(p, best)        # restored in place
    assert [id(p) for p in params] == ids
    assert stopper.step(0.0, params) is True          # stays stopped


def test_no_restore_and_patience_zero(rng):
    params = make_params(rng)
    stopper = EarlyStopping(patience=0, restore_best=False)
    assert stopper.step(1.0) is False
    assert stopper.step(1.0) is True
    with pytest.raises(RuntimeError, match="no snapshot"):
        stopper.restore(params)


def test_nan_metric_is_not_an_improvement(rng):
    params = make_params(rng)
    stopper = EarlyStopping(patience=2)
    stopper.step(1.0, params)
    best = [p.copy() for p in params]
    params[0] += 7
    assert stopper.step(math.nan, params) is False
    assert stopper.step(np.array([math.nan]), params) is True
    np.testing.assert_array_equal(params[0], best[0])


def test_snapshot_buffers_reused(rng):
    params = make_params(rng)
    stopper = EarlyStopping(patience=5)
    stopper.step(3.0, params)
    bufs = [id(b) for b in stopper.best_params]
    params[1] += 1
    stopper.step(2.0, params)
    assert [id(b) for b in stopper.best_params] == bufs
    np.testing.assert_array_equal(stopper.best_params[1], params[1])


def test_state_dict_resume(rng):
    metrics = [3.0, 2.0, 2.5, 1.5, 1.6, 1.7, 1.8, 1.9]
    params = make_params(rng)
    start = [p.copy() for p in params]
    full = EarlyStopping(patience=3)
    stopped_full, _ = train(full, params, metrics)
    final_full = [p.copy() for p in params]

    params = [p.copy() for p in start]
    a = EarlyStopping(patience=3)
    train(a, params, metrics[:4])
    sd = pickle.loads(pickle.dumps(a.state_dict()))
    b = EarlyStopping(patience=99)
    b.load_state_dict(sd)
    stopped, _ = train(b, params, metrics[4:])
    assert stopped + 4 == stopped_full
    for p, q in zip(params, final_full):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(patience=-1), ValueError, "Invalid patience: -1"),
    (dict(patience=1.5), TypeError, "Invalid patience: 1.5"),
    (dict(patience=2, min_delta=-0.1), ValueError, "Invalid min_delta: -0.1"),
    (dict(patience=2, mode="best"), ValueError, "Invalid mode: 'best'"),
    (dict(patience=2, restore_best=1), TypeError, "restore_best"),
])
def test_bad_construction(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        EarlyStopping(**kwargs)


def test_bad_step_inputs_change_nothing(rng):
    params = make_params(rng)
    stopper = EarlyStopping(patience=1)
    stopper.step(1.0, params)
    ro = params[0].copy()
    ro.flags.writeable = False
    cases = [
        (lambda: stopper.step("x", params), TypeError, "metric"),
        (lambda: stopper.step(2.0), ValueError, "params is required"),
        (lambda: stopper.step(2.0, params[0]), TypeError, "params must be a list"),
        (lambda: stopper.step(2.0, params[:1]), ValueError, "expected 2 params"),
        (lambda: stopper.step(2.0, [params[0], params[1].astype(np.float64)]), TypeError, r"params\[1\]: dtype"),
        (lambda: stopper.step(2.0, [params[0][:2], params[1]]), ValueError, r"params\[0\]: shape"),
        (lambda: stopper.step(2.0, [ro, params[1]]), ValueError, "read-only"),
        (lambda: stopper.load_state_dict({"best": 1.0}), ValueError, "state_dict must be a dict"),
    ]
    state = stopper.state_dict()
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()
        after = stopper.state_dict()
        assert {k: v for k, v in after.items() if k != "snapshot"} == \
               {k: v for k, v in state.items() if k != "snapshot"}
    assert stopper.num_bad_steps == 0 and not stopper.stopped
