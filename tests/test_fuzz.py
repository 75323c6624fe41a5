"""Fuzzing every public entry point with hostile arrays and hyperparameters (issue 15).

Each case ends in either a TypeError/ValueError that names an argument, with every array byte-for-byte unchanged,
or a result equal to the same call on clean copies of its arrays (C-contiguous, aligned, native, writeable).
Anything else fails the test: another exception type, a partial write, a result that depends on layout. The default run is short;
FASTOPT_FUZZ_EXAMPLES=10000 (a CI step) is the long run, and prints the outcome counts per entry point."""
import collections
import functools
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastopt
from fastopt.optim.specs import SPECS
from fastopt import losses
from fastopt.functional import (adafactor_, adam_, batch_norm_forward, bias_activation, dropout, sgd_,
                                sparse_adam_)

CASES = int(os.environ.get("FASTOPT_FUZZ_EXAMPLES", "8"))       # cases per entry point
LONG = "FASTOPT_FUZZ_EXAMPLES" in os.environ
# The long run takes its cases in batches: each hypothesis example runs BATCH cases, each of its own draws, so
# hypothesis's engine cost per example (half of a case's time in a profile of the long run) is paid once a batch.
BATCH = 4 if CASES >= 1000 else 1
FUZZ = settings(max_examples=-(-CASES // BATCH), deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
FUZZ_ONE_CASE = settings(FUZZ, max_examples=CASES)      # tests whose example is one case (drawn by @given's args)


def batched(case):
    """Runs ``case(data, ...)`` BATCH times per hypothesis example (see BATCH)."""
    @functools.wraps(case)
    def run(*args, **kwargs):
        for _ in range(BATCH):
            case(*args, **kwargs)
    return run
OUTCOMES = collections.defaultdict(collections.Counter)

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.bool_, np.complex128, object]
# Hostile hyperparameters: the edge values by name (drawn from a list: hypothesis's text strategy cost more than
# the call under test), any float, and integers far past int64.
EDGE_VALUES = [math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-3, 0.1, 0.9, 1.0, 1.5, 1e300, 5e-324, 2**63 - 1,
               2**63, 2**64, -2**63 - 1, True, False, None, "", "0.1", [0.1], (0.1,), {}, np.float32(0.5),
               np.int64(3), np.bool_(True), np.array(0.1), np.array([0.1]), complex(0.1, 0), b"1"]
HYPER = st.one_of(st.sampled_from(EDGE_VALUES), st.floats(allow_nan=True, allow_infinity=True),
                  st.integers(-2**70, 2**70))


@pytest.fixture(scope="module", autouse=True)
def report(request):
    """The long run hands its outcome counts to conftest's terminal summary (printed with or without -s)."""
    if LONG:
        request.config.fuzz_outcomes = OUTCOMES
    yield


def _layout(base, how, dtype):
    """A view of ``base``'s values in a hostile layout (values kept where the layout allows)."""
    if how == "plain":
        return base
    if how == "readonly":
        out = base.copy()
        out.setflags(write=False)
        return out
    if how == "swapped":
        return base.astype(base.dtype.newbyteorder()) if base.dtype.kind in "fic" else base
    if how == "unaligned" and base.dtype.kind in "fic":
        buf = np.zeros(base.nbytes + 1, np.uint8)
        out = buf[1:].view(base.dtype).reshape(base.shape)
        out[...] = base
        return out
    if how == "fortran":
        return np.asfortranarray(base)
    if how == "negative" and base.ndim:
        out = np.empty_like(base)[::-1]
        out[...] = base
        return out
    if how == "strided" and base.ndim:
        out = np.empty((2 * base.shape[0],) + base.shape[1:], base.dtype)[::2]
        out[...] = base
        return out
    if how == "transposed" and base.ndim > 1:
        return np.ascontiguousarray(base.T).T
    return base


LAYOUTS = ["plain"] * 4 + ["readonly", "swapped", "unaligned", "fortran", "negative", "strided", "transposed"]


# One draw per array: a seed, from which numpy draws whether to replace the shape and the dtype by hostile ones
# (one in ten each), which dtype, the values (and a replaced shape) and the layout (hypothesis's per-draw cost, and
# its validation of a strategy built per call, dominated the run).
ARRAY_SEED = st.integers(0, 2**64 - 1)


FLOAT_DTYPE = st.sampled_from([np.float32, np.float64])
OPTIMIZER_KEY = st.sampled_from(["lr", "weight_decay", "eps", "momentum", "betas", "maximize", None])


@functools.lru_cache(maxsize=None)
def _shape_strategy(low, min_dims, max_dims):
    return st.lists(st.integers(low, 4), min_size=min_dims, max_size=max_dims)


def draw_shape(data, low=0, min_dims=0, max_dims=3):
    """A shape of min_dims to max_dims extents in [low, 4] (one strategy per signature, built once)."""
    return tuple(data.draw(_shape_strategy(low, min_dims, max_dims)))


def draw_array(data, shape=None, dtype=None, hostile=True):
    """An array drawn from ``data``: of ``shape`` and ``dtype`` unless replaced by hostile ones, in a hostile
    layout (``hostile``), values from a drawn seed."""
    rng = np.random.default_rng(data.draw(ARRAY_SEED))
    reshape, retype, which, layout = rng.integers(0, 10), rng.integers(0, 10), rng.integers(len(DTYPES)), \
        LAYOUTS[rng.integers(len(LAYOUTS))]
    if shape is None or (hostile and reshape == 0):
        shape = tuple(int(n) for n in rng.integers(0, 6, rng.integers(0, 4)))     # mismatched, 0-d or empty
    if dtype is None or (hostile and retype == 0):
        dtype = DTYPES[which]
    values = rng.standard_normal(shape)
    base = values.astype(dtype) if dtype is not object else values.astype(object)
    return _layout(base, layout if hostile else "plain", dtype)


def _clean(a):
    if isinstance(a, np.ndarray) and a.dtype != object:
        return np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
    return a


def _snapshot(objs):
    return [(a, a.tobytes(), a.strides) for a in objs if isinstance(a, np.ndarray)]


# Reductions whose order depends on the memory layout the kernel is handed (batch-norm statistics: channels-first
# or channels-last schedules, accumulated in double) agree to this relative tolerance, not bit for bit.
LAYOUT_RTOL = {"batch_norm_forward": 1e-6}


def _equal(a, b, rtol=0.0):
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if rtol and a.shape == b.shape and a.dtype == b.dtype:
            return np.allclose(a, b, rtol=rtol, atol=rtol, equal_nan=True)
        return np.array_equal(a, b, equal_nan=True)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _unaligned(a):
    return isinstance(a, np.ndarray) and not a.flags.aligned


def _odd_0d(a):
    return isinstance(a, np.ndarray) and a.ndim == 0 and (not a.flags.aligned or not a.dtype.isnative)


def fuzz_call(name, fn, arrs, written=(), names=()):
    """Runs fn(*arrs); ``written`` indexes the arrays the call updates in place; ``names``: the argument names an
    error message may name (one of them must appear). Checks the outcome (see above)."""
    snap = _snapshot(arrs)
    try:
        result = fn(*arrs)
    except (TypeError, ValueError) as e:
        for a, data, _ in snap:
            assert a.tobytes() == data, f"{name}: {type(e).__name__}({e}) after a partial write"
        assert any(n in str(e) for n in names), f"{name}: {type(e).__name__}({e}) names no argument of {names}"
        OUTCOMES[name]["clear error"] += 1
        return
    except Exception as e:                                  # pragma: no cover - the failure being hunted
        OUTCOMES[name]["other"] += 1
        raise AssertionError(f"{name}: {type(e).__name__}: {e}") from e
    # re-run on clean copies of the ORIGINAL values, rebuilt from the snapshot bytes
    fresh = []
    for a, data, strides in snap:
        orig = np.ndarray(a.shape, a.dtype, buffer=bytearray(data)) if a.dtype != object else None
        fresh.append(_clean(orig) if orig is not None else a)
    it = iter(fresh)
    args = [next(it) if isinstance(a, np.ndarray) else a for a in arrs]
    expected = fn(*args)
    assert _equal(result, expected, LAYOUT_RTOL.get(name, 0.0)), f"{name}: the result depends on the layout"
    for i in written:
        assert _equal(arrs[i], args[i], LAYOUT_RTOL.get(name, 0.0)), f"{name}: in-place update of argument {i} depends on the layout"
    OUTCOMES[name]["correct result"] += 1


# --------------------------------------------------------------------------- optimizers

OPTIMIZERS = [s.name for s in SPECS]
HYPER_NAMES = ("learning rate", "lr", "weight_decay", "eps", "epsilon", "momentum", "beta", "maximize")
OPTIMIZER_NAMES = ("params", "grads") + HYPER_NAMES
FUNCTIONAL_NAMES = ("param", "grad", "momentum_buffer", "exp_avg", "exp_avg_sq") + HYPER_NAMES


@pytest.mark.parametrize("name", OPTIMIZERS)       # each optimizer its own FASTOPT_FUZZ_EXAMPLES cases
@FUZZ
@given(data=st.data())
@batched
def test_fuzz_optimizer_constructor_and_step(name, data):
    shape = draw_shape(data, max_dims=3)
    dtype = data.draw(FLOAT_DTYPE)
    p = draw_array(data, shape, dtype)
    g = draw_array(data, shape, dtype)
    key = data.draw(OPTIMIZER_KEY)
    kwargs = {}
    if key is not None:
        value = data.draw(HYPER)
        if key == "betas":
            value = (value, 0.999)
        if key in ("eps", "momentum", "betas") and key not in _accepted(name):
            key = None
        else:
            kwargs[key] = value

    def run(p, g):
        opt = getattr(fastopt, name)([p], **kwargs)
        opt.step([g])
        opt.step([g])
        return None
    fuzz_call(f"{name}.step", run, [p, g], written=(0,), names=OPTIMIZER_NAMES)


def _accepted(name):
    import inspect
    return inspect.signature(getattr(fastopt, name)).parameters


@FUZZ
@given(data=st.data())
@batched
def test_fuzz_functional_sgd_and_adam(data):
    shape = draw_shape(data, max_dims=2)
    dtype = data.draw(FLOAT_DTYPE)
    p, g, m, v = (draw_array(data, shape, dtype) for _ in range(4))
    lr = data.draw(HYPER)
    fuzz_call("functional.sgd_", lambda p, g, m: sgd_(p, g, m, lr=lr, momentum=0.9), [p, g, m], written=(0, 2),
              names=FUNCTIONAL_NAMES)
    p2, g2, m2, v2 = (draw_array(data, shape, dtype) for _ in range(4))
    fuzz_call("functional.adam_", lambda p, g, m, v: adam_(p, g, m, v, step=1, lr=0.1, beta1=0.9, beta2=0.999,
                                                            eps=1e-8, weight_decay=0.0),
              [p2, g2, m2, v2], written=(0, 2, 3), names=FUNCTIONAL_NAMES)


INDEX_KINDS = st.sampled_from(["int64"] * 3 + ["repeats", "int32", "uint8", "float", "2-D", "list", "out of range",
                                               "negative", "strided", "readonly"])
SPARSE_NAMES = FUNCTIONAL_NAMES + ("params", "grads")


def draw_row_indices(data, n_rows):
    """A row-sparse gradient's indices, hostile (a wrong dtype, shape or range, a list, a strided view), and k."""
    rng = np.random.default_rng(data.draw(ARRAY_SEED))
    k = int(rng.integers(0, 7))
    idx = rng.integers(0, max(n_rows, 1), k)
    kind = data.draw(INDEX_KINDS)
    if kind == "repeats" and k:
        idx[:] = idx[0]
    elif kind in ("int32", "uint8"):
        idx = idx.astype(kind)
    elif kind == "float":
        idx = idx.astype(np.float64)
    elif kind == "2-D":
        idx = idx[None]
    elif kind == "list":
        idx = idx.tolist()
    elif kind == "out of range" and k:
        idx[-1] = n_rows
    elif kind == "negative" and k:
        idx[0] = -1
    elif kind in ("strided", "readonly"):
        idx = _layout(idx, kind, idx.dtype)
    return idx, k


@FUZZ
@given(data=st.data())
@batched
def test_fuzz_sparse_adam(data):
    """SparseAdam.step and sparse_adam_ (their native row kernel) on hostile params, moments, indices and rows."""
    shape = draw_shape(data, low=1, min_dims=2, max_dims=2)
    dtype = data.draw(FLOAT_DTYPE)
    idx, k = draw_row_indices(data, shape[0])
    p, rows = draw_array(data, shape, dtype), draw_array(data, (k, shape[1]), dtype)
    lr = data.draw(st.one_of(st.just(0.1), HYPER))

    def step(p, rows, *idx_array):
        opt = fastopt.SparseAdam([p], lr=lr)
        opt.step([(idx_array[0] if idx_array else idx, rows)])
        opt.step([(idx_array[0] if idx_array else idx, rows)])
    arrays = [p, rows] + ([idx] if isinstance(idx, np.ndarray) else [])
    fuzz_call("SparseAdam.step", step, arrays, written=(0,), names=SPARSE_NAMES)
    p, m, v = (draw_array(data, shape, dtype) for _ in range(3))
    idx, k = draw_row_indices(data, shape[0])
    rows = draw_array(data, (k, shape[1]), dtype)

    def functional(p, m, v, rows, *idx_array):
        return sparse_adam_(p, idx_array[0] if idx_array else idx, rows, m, v, step=1, lr=lr)
    arrays = [p, m, v, rows] + ([idx] if isinstance(idx, np.ndarray) else [])
    fuzz_call("functional.sparse_adam_", functional, arrays, written=(0, 1, 2), names=SPARSE_NAMES)


ADAFACTOR_KEY = st.sampled_from(["lr", "weight_decay", "d", "beta2_decay", "eps", "maximize", None])


@FUZZ
@given(data=st.data())
@batched
def test_fuzz_adafactor(data):
    """Adafactor.step and adafactor_ (their native three-sweep kernel) on hostile params, gradients, state and
    hyperparameters, 0 to 3 dims (factored from 2)."""
    shape = draw_shape(data, max_dims=3)
    dtype = data.draw(FLOAT_DTYPE)
    p, g = draw_array(data, shape, dtype), draw_array(data, shape, dtype)
    key, value = data.draw(ADAFACTOR_KEY), data.draw(HYPER)
    kwargs = {} if key is None else {key: (None, value) if key == "eps" else value}

    def step(p, g):
        opt = fastopt.Adafactor([p], **kwargs)
        opt.step([g])
        opt.step([g])
    fuzz_call("Adafactor.step", step, [p, g], written=(0,), names=OPTIMIZER_NAMES + ("eps", "d", "beta2_decay"))
    p, g = draw_array(data, shape, dtype), draw_array(data, shape, dtype)
    factored = len(shape) >= 2
    state_shapes = [shape[:-1] + (1,), shape[:-2] + (1, shape[-1])] if factored else [shape]
    state = [draw_array(data, s, dtype) for s in state_shapes]
    fuzz_call("functional.adafactor_", lambda p, g, *st: adafactor_(p, g, *st, step=1, **kwargs), [p, g, *state],
              written=(0,) + tuple(range(2, 2 + len(state))),
              names=FUNCTIONAL_NAMES + ("row_var", "col_var", "variance", "state", "eps", "d", "beta2_decay"))


# --------------------------------------------------------------------------- losses, layers, clipping

@pytest.mark.parametrize("kind", ["mse", "mae", "huber", "bce", "ce", "hinge"])
@FUZZ
@given(data=st.data())
@batched
def test_fuzz_losses(data, kind):
    shape = draw_shape(data, low=1, min_dims=2, max_dims=2)
    dtype = data.draw(FLOAT_DTYPE)
    x = draw_array(data, shape, dtype)
    reduction = data.draw(st.sampled_from(["mean", "sum", "none", "bogus", 3]))
    if kind in ("ce", "hinge"):
        labels = np.random.default_rng(0).integers(0, shape[1], shape[0])
        y = data.draw(st.sampled_from([labels, labels.astype(np.float64), labels[:1], labels.astype(np.int32)]))
        fn = losses.softmax_cross_entropy if kind == "ce" else losses.hinge
    else:
        y = draw_array(data, shape, dtype)
        fn = {"mse": losses.mse, "mae": losses.mae, "huber": losses.huber,
              "bce": losses.binary_cross_entropy_with_logits}[kind]
    fuzz_call(f"losses.{kind}", lambda x, y: fn(x, y, reduction=reduction), [x, y],
              names=("input", "target", "logits", "reduction"))


@FUZZ
@given(data=st.data())
@batched
def test_fuzz_batch_norm_forward(data):
    shape = draw_shape(data, low=1, min_dims=2, max_dims=4)
    dtype = data.draw(FLOAT_DTYPE)
    C = shape[1]
    x = draw_array(data, shape, dtype)
    gamma, beta, rm = (draw_array(data, (C,), dtype) for _ in range(3))
    rv = np.abs(draw_array(data, (C,), dtype, hostile=False)) + 0.5
    eps = data.draw(st.one_of(st.just(1e-5), HYPER))
    fuzz_call("batch_norm_forward",
              lambda x, g, b, m, v: batch_norm_forward(x, g, b, m, v, training=True, eps=eps),
              [x, gamma, beta, rm, rv], written=(3, 4),
              names=("x", "weight", "bias", "running_mean", "running_var", "eps", "input"))


@FUZZ
@given(data=st.data())
@batched
def test_fuzz_activation_and_dropout(data):
    shape = draw_shape(data, low=1, min_dims=2, max_dims=2)
    dtype = data.draw(FLOAT_DTYPE)
    x, b = draw_array(data, shape, dtype), draw_array(data, (shape[1],), dtype)
    fuzz_call("bias_activation", lambda x, b: bias_activation(x, b), [x, b], names=("x", "bias"))
    p = data.draw(st.one_of(st.floats(0, 0.9), HYPER))
    seed = data.draw(st.one_of(st.integers(0, 2**63), HYPER))
    x2 = draw_array(data, shape, dtype)
    fuzz_call("dropout", lambda x: dropout(x, p=p, seed=seed), [x2], names=("x", "dropout probability", "seed"))


@FUZZ
@given(data=st.data())
@batched
def test_fuzz_clipping(data):
    dtype = data.draw(FLOAT_DTYPE)
    grads = [draw_array(data, (data.draw(st.integers(0, 6)),), dtype) for _ in range(data.draw(st.integers(1, 3)))]
    max_norm, norm_type = data.draw(st.one_of(st.just(1.0), HYPER)), data.draw(st.sampled_from([2.0, 1, math.inf,
                                                                                              0, -1, "fro"]))
    fuzz_call("clip_grad_norm_", lambda *g: fastopt.clip_grad_norm_(list(g), max_norm, norm_type=norm_type), grads,
              written=range(len(grads)), names=("grads", "max_norm", "norm_type"))
    value = data.draw(st.one_of(st.just(0.5), HYPER))
    grads = [draw_array(data, (4,), dtype) for _ in range(2)]
    fuzz_call("clip_grad_value_", lambda *g: fastopt.clip_grad_value_(list(g), value), grads, written=(0, 1),
              names=("grads", "clip_value"))


# --------------------------------------------------------------------------- schedules, state dicts

@FUZZ_ONE_CASE
@given(step=st.one_of(st.integers(-5, 10**6), HYPER), T_max=st.one_of(st.integers(1, 100), HYPER),
       base_lr=st.one_of(st.just(0.1), HYPER))
def test_fuzz_schedule_function(step, T_max, base_lr):
    fuzz_call("schedules.cosine_annealing_lr",
              lambda: fastopt.schedules.cosine_annealing_lr(step, base_lr=base_lr, T_max=T_max), [],
              names=("step", "base_lr", "T_max"))


@FUZZ_ONE_CASE
@given(name=st.sampled_from(["SGD", "Adam", "RMSprop"]), key=st.sampled_from(["step", "lr", "exp_avg", "drop"]),
       value=st.one_of(HYPER, st.just(np.ones(2)), st.just(np.ones(3, np.float32))))
def test_fuzz_load_state_dict(name, key, value):
    p = np.ones(3, np.float32)
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    opt = getattr(fastopt, name)([p], lr=0.1, **kwargs)
    opt.step([np.full(3, 0.5, np.float32)])
    sd = opt.state_dict()
    state = sd["state"][0]
    if key == "lr":
        sd["param_groups"][0]["lr"] = value
    elif key == "drop":
        state.pop(next(iter(state)))
    else:
        state[key] = value
    before = [p.copy()] + [a.copy() for a in opt.state[p].values() if isinstance(a, np.ndarray)]
    try:
        opt.load_state_dict(sd)
    except (TypeError, ValueError) as e:
        named = {"lr": ("lr", "learning rate"),
                 "drop": ("step", "exp_avg", "exp_avg_sq", "momentum_buffer", "square_avg")}.get(key, (key,))
        assert any(n in str(e) for n in named), f"load_state_dict: {type(e).__name__}({e}) names no key of {named}"
        after = [p] + [a for a in opt.state[p].values() if isinstance(a, np.ndarray)]
        assert all(np.array_equal(a, b) for a, b in zip(before, after))
        OUTCOMES["load_state_dict"]["clear error"] += 1
        return
    opt.step([np.full(3, 0.5, np.float32)])         # an accepted state must give a usable optimizer
    OUTCOMES["load_state_dict"]["correct result"] += 1
