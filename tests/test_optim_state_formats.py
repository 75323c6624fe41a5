"""Low-precision optimizer state (``state_dtype``): the fused step equals its composition bit for bit.

The composition: decode the state to float32 (ml_dtypes for bfloat16, ``fastopt.quantize`` for int8/int4), run
fastopt's float32 step on the decoded copies, encode the new state back. The fused step (block wrapper,
csrc/optim_formats.c) must give the same param and the same codes, at any thread count and on every
instruction-set path, for every optimizer with element-wise state and every option set of the parity tests.
"""
import numpy as np
import pytest

import fastopt
from fastopt import _config
from fastopt.optim import _formats
from fastopt.optim._spec import COPY_OF_PARAM
from fastopt.optim.specs import SPECS

from _cases_optim import optimizer_cases

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SPEC = {s.name: s for s in SPECS}
FORMATS = [f for f in _formats.LOW_PRECISION]
CASES = [(n, kw) for n, kw in optimizer_cases() if SPEC[n].state_formats]
MIN_SIZE = 300
# A param split into blocks with a partial last one, one of exactly one block, one too small to be stored in a
# low-precision format (keeps float32 state) and a 2-D one.
SHAPES = [(2000 + 37,), (256,), (MIN_SIZE - 1,), (23, 41)]


def _params(seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _grads(rng):
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _signed(name, key):
    slot = next((s for s in SPEC[name].slots if s.name == key), None)
    return slot is not None and slot.quantize == "signed"


def _decoded(name, sd, fmt):
    """The state dict ``sd`` of a ``fmt`` optimizer as a float32 optimizer's: every state array decoded."""
    state = {}
    for i, st in sd["state"].items():
        out = {}
        for key, value in st.items():
            if key.endswith(_formats.ABSMAX_SUFFIX):
                continue
            absmax = st.get(key + _formats.ABSMAX_SUFFIX)
            if isinstance(value, np.ndarray) and value.dtype == BF16:
                value = value.astype(np.float32)
            elif isinstance(value, np.ndarray) and value.dtype == np.uint8:
                value = _dequantize(fmt, value, absmax, SHAPES[i], _signed(name, key))
            out[key] = value
        state[i] = out
    groups = [dict(g, state_dtype=None) for g in sd["param_groups"]]
    return dict(sd, state=state, param_groups=groups)


def _dequantize(fmt, codes, absmax, shape, signed):
    from fastopt import quantize
    bits = 8 if fmt == "int8" else 4
    n = int(np.prod(shape))
    return quantize.dequantize_blockwise(codes.reshape(-1), absmax, n=n, bits=bits, signed=signed).reshape(shape)


def _encoded(fmt, x, signed):
    """(codes as raw bytes, absmax or None) of float32 x in fmt, the composition's encoder."""
    if fmt == "bfloat16":
        return x.astype(BF16).view(np.uint16), None
    from fastopt import quantize
    codes, absmax = quantize.quantize_blockwise(x.reshape(-1), bits=8 if fmt == "int8" else 4, signed=signed)
    return codes, absmax


def _check_state(name, fused, ref, fmt, where):
    """Every state array of ``fused`` is the encoding of ``ref``'s (float32), bit for bit; small params float32."""
    fs, rs = fused.state_dict()["state"], ref.state_dict()["state"]
    for i in rs:
        small = np.prod(SHAPES[i]) < MIN_SIZE
        for key, value in rs[i].items():
            got = fs[i][key]
            if not isinstance(value, np.ndarray) or key not in fused.slots:
                assert np.array_equal(np.asarray(got), np.asarray(value), equal_nan=True), (where, i, key)
                continue
            quantize = next(s.quantize for s in SPEC[name].slots if s.name == key)
            if small or quantize is None:
                assert got.dtype == np.float32 and got.tobytes() == value.tobytes(), (where, i, key)
                continue
            codes, absmax = _encoded(fmt, value, quantize == "signed")
            assert got.reshape(-1).view(codes.dtype).tobytes() == codes.tobytes(), (where, i, key)
            if absmax is not None:
                assert fs[i][key + _formats.ABSMAX_SUFFIX].tobytes() == absmax.tobytes(), (where, i, key)


def _composition_run(name, kw, fmt, steps=4, seed=0):
    """Steps a ``fmt`` optimizer and, at each step, a float32 one loaded with its decoded state and params;
    asserts the same params and the encoded state, bit for bit."""
    cls = getattr(fastopt, name)
    pf, pr = _params(seed), _params(seed)
    fused = cls(pf, state_dtype=fmt, min_quantized_size=MIN_SIZE, **kw)
    ref = cls(pr, **kw)
    rng = np.random.default_rng(seed + 1)
    exact_initial = all(fused._slot_initial_value(fused.param_groups[0], s.name) in (0.0, COPY_OF_PARAM)
                        for s in SPEC[name].slots)
    for t in range(steps):
        grads = _grads(rng)
        if t > 0:
            ref.load_state_dict(_decoded(name, fused.state_dict(), fmt))
            for a, b in zip(pr, pf):
                np.copyto(a, b)
        fused.step(grads)
        ref.step(grads)
        if t == 0 and not exact_initial:
            continue          # the first step starts from the encoded initial value (Adagrad's, Rprop's lr)
        for a, b in zip(pf, pr):
            assert a.tobytes() == b.tobytes(), (name, kw, fmt, t)
        _check_state(name, fused, ref, fmt, (name, kw, fmt, t))
    return pf, fused


def _with_threads(n, fn):
    before, before_min = fastopt.get_num_threads(), fastopt.parallel_min_elements()
    try:
        fastopt.set_num_threads(n)
        _config.set_parallel_min_elements(256)      # the small params here split between the threads too
        return fn()
    finally:
        fastopt.set_num_threads(before)
        _config.set_parallel_min_elements(before_min)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_fused_step_equals_its_composition(name, kw, fmt):
    _composition_run(name, kw, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_bits_at_any_thread_count_and_on_every_isa(fmt, for_each_isa):
    """One trajectory per optimizer (its first option set), at 1 and 2 threads on every instruction-set path: the
    same params and state bytes everywhere (the composition holds on each, a block is never split)."""
    firsts = {}
    for name, kw in CASES:
        firsts.setdefault(name, kw)
    for name, kw in firsts.items():
        results = []
        for isa in for_each_isa():
            for n in (1, 2):
                params, opt = _with_threads(n, lambda: _composition_run(name, kw, fmt, steps=3))
                sd = opt.state_dict()["state"]
                results.append((isa, n, [p.tobytes() for p in params],
                                [v.tobytes() for i in sorted(sd) for v in sd[i].values() if isinstance(v, np.ndarray)]))
        for isa, n, params, state in results[1:]:
            assert params == results[0][2] and state == results[0][3], (name, fmt, isa, n)


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_params_keep_float32_state(fmt):
    big, small = np.ones(5000, np.float32), np.ones(4095, np.float32)
    opt = fastopt.Adam([big, small], state_dtype=fmt)          # default min_quantized_size: 4096
    opt.step([np.ones_like(big), np.ones_like(small)])
    assert opt.state[1]["exp_avg"].dtype == np.float32 and opt.state[1]["exp_avg_sq"].dtype == np.float32
    assert opt.state[0]["exp_avg"].dtype != np.float32


def test_iterates_keep_the_param_dtype():
    p = np.ones(5000, np.float32)
    opt = fastopt.ScheduleFreeAdamW([p], state_dtype="bfloat16")
    opt.step([np.ones_like(p)])
    assert opt.state[0]["z"].dtype == np.float32 and opt.state[0]["exp_avg_sq"].dtype == BF16


def test_state_is_aligned_and_contiguous():
    ps = [np.ones(5000 + k, np.float32) for k in range(3)]
    opt = fastopt.Adam(ps, state_dtype="bfloat16", min_quantized_size=0)
    opt.step([np.ones_like(p) for p in ps])
    for i in range(3):
        for key, a in opt.state[i].items():
            if a.ndim:
                assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous, (i, key)
