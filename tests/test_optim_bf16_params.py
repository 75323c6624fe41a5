"""bfloat16 parameters (``ml_dtypes.bfloat16`` arrays): the fused step equals its composition bit for bit.

The composition, written from the documented rule (fastopt/optim/_formats.py, csrc/optim.h FO_COMP_*): decode the
param to float32 (``old``), run fastopt's float32 step on that copy with float32 state (the fused optimizer's state,
decoded) to get the new value ``x``, then store ``x`` by the group's compensation, computed here in NumPy float32:

- ``"none"``: ``p = rn(x)`` (round to nearest even, as ml_dtypes' astype);
- ``"kahan"``: ``s = (x - old) + c``, ``p = rn(old + s)``, ``c = rn(s - (p - old))`` (optimi's scheme);
- ``"stochastic"``: ``p = (bits(x) + r) >> 16`` with ``r`` bits ``16 (i % 4)`` to ``16 (i % 4) + 15`` of
  ``mix64(key + (i // 4 + 1) * GAMMA)`` for element ``i``, ``key = mix64((seed ^ mix64(step)) + GAMMA)``, the seed
  the param's flat index and ``step`` its step count after the step (splitmix64, the dropout hash's sequence).

Then the behaviour those rules exist for, against a float64 reference: plain bfloat16 stalls once the update is
under half an ulp; Kahan's ``p + c`` follows the float64 trajectory; stochastic rounding is unbiased.
"""
import numpy as np
import pytest

import fastopt
from fastopt.optim import _formats
from fastopt.optim._spec import COPY_OF_PARAM
from fastopt.optim.specs import SPECS

from _cases_optim import norm_sums, optimizer_cases

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.float32
SPEC = {s.name: s for s in SPECS}
CASES = [(n, kw) for n, kw in optimizer_cases() if SPEC[n].state_formats]
# Each optimizer's first option set with state (SGD's and LARS's first have no momentum buffer).
FIRST_CASES = list({n: (n, kw) for n, kw in reversed(CASES)
                    if not (n in ("SGD", "LARS") and not kw.get("momentum"))}.values())[::-1]
COMPENSATIONS = ["none", "kahan", "stochastic"]
MIN_SIZE = 300
# Blocks with a partial last one, exactly one block, a param under MIN_SIZE (int8 state stays float32), 2-D, and
# 2-D of two partial-sum blocks under the tile size (LARS's and LAMB's norm sweep and step back to back).
SHAPES = [(2000 + 37,), (256,), (MIN_SIZE - 1,), (23, 41), (97, 101)]
GAMMA = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z):
    z = np.asarray(z, np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _stochastic(x, seed, step):
    """x (float32) rounded stochastically to bfloat16 with the bits of (seed, step), as documented."""
    with np.errstate(over="ignore"):
        key = _mix64((np.uint64(seed) ^ _mix64(np.uint64(step))) + GAMMA)
        e = np.arange(x.size, dtype=np.uint64)                  # element e: 16 bits of output e // 4
        h = _mix64(key + (e // np.uint64(4) + np.uint64(1)) * GAMMA)
        r = (h >> (np.uint64(16) * (e % np.uint64(4)))) & np.uint64(0xFFFF)
    u = x.reshape(-1).view(np.uint32).astype(np.uint64)
    out = ((u + r) >> np.uint64(16)).astype(np.uint16)
    nan = np.isnan(x.reshape(-1))
    out[nan] = (((u[nan] >> np.uint64(16)) & np.uint64(0x8000)) | np.uint64(0x7FC0)).astype(np.uint16)
    return out.view(BF16).reshape(x.shape)


def _stored(compensation, x, old, comp, seed, step):
    """(bfloat16 param, Kahan buffer or None) of the new float32 value x of a param that held old."""
    if compensation == "none":
        return x.astype(BF16), None
    if compensation == "stochastic":
        return _stochastic(x, seed, step), None
    s = (x - old) + comp.astype(F32)
    p = (old + s).astype(BF16)
    return p, (s - (p.astype(F32) - old)).astype(BF16)


def _params(seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(BF16) for s in shapes]


def _decoded_state(opt, fmt_of):
    """The state dict of a bfloat16-param optimizer as a float32 optimizer loads it: state decoded to float32."""
    from fastopt import quantize
    sd = opt.state_dict()
    state = {}
    for i, st in sd["state"].items():
        out = {}
        for key, value in st.items():
            if key == _formats.KAHAN_KEY or key.endswith(_formats.ABSMAX_SUFFIX):
                continue
            if isinstance(value, np.ndarray) and value.dtype == BF16:
                value = value.astype(F32)
            elif isinstance(value, np.ndarray) and value.dtype == np.uint8:
                slot = next(s for s in SPEC[type(opt).__name__].slots if s.name == key)
                bits = 8 if fmt_of == "int8" else 4
                n = opt.params[i].size
                value = quantize.dequantize_blockwise(value.reshape(-1), st[key + _formats.ABSMAX_SUFFIX], n=n,
                                                      bits=bits, signed=slot.quantize == "signed")
                value = value.reshape(opt.params[i].shape)
            out[key] = value
        state[i] = out
    groups = [dict(g, state_dtype=None) for g in sd["param_groups"]]
    return dict(sd, state=state, param_groups=groups)


def _composition_run(name, kw, compensation, state_dtype=None, steps=4, seed=0, shapes=SHAPES, grad_dtype=F32):
    """Steps a bfloat16-param optimizer and, at each step, a float32 one loaded with its decoded params and state;
    asserts the param (and Kahan buffer) bits of the documented store of the float32 step's values."""
    cls = getattr(fastopt, name)
    pb = _params(seed, shapes)
    pr = [p.astype(F32) for p in pb]
    fused = cls(pb, state_dtype=state_dtype, min_quantized_size=MIN_SIZE, compensation=compensation, **kw)
    ref = cls(pr, **kw)
    rng = np.random.default_rng(seed + 1)
    exact_initial = state_dtype == "float32" or all(
        fused._slot_initial_value(fused.param_groups[0], s.name) in (0.0, COPY_OF_PARAM) for s in SPEC[name].slots)
    for t in range(steps):
        grads = [rng.standard_normal(s).astype(grad_dtype) for s in shapes]
        if t > 0:
            ref.load_state_dict(_decoded_state(fused, state_dtype))
        old = [p.astype(F32) for p in pb]
        comps = [fused.state[i].get(_formats.KAHAN_KEY) for i in range(len(pb))] if t > 0 else \
            [np.zeros(s, BF16) for s in shapes]
        comps = [c.copy() if c is not None else None for c in comps]
        for a, b in zip(pr, old):
            np.copyto(a, b)
        fused.step(grads)
        ref.step([g.astype(F32) for g in grads])
        if t == 0 and not exact_initial:
            continue          # the first step starts from the encoded initial value (Adagrad's, Rprop's lr)
        if SPEC[name].norm_sweep:
            assert norm_sums(fused) == norm_sums(ref), (name, kw, compensation, t)
        for i, (p, x) in enumerate(zip(pb, pr)):
            want, want_comp = _stored(compensation, x, old[i], comps[i], i, t + 1)
            assert p.view(np.uint16).tobytes() == want.view(np.uint16).tobytes(), (name, kw, compensation, t, i)
            if want_comp is not None:
                got = fused.state[i][_formats.KAHAN_KEY]
                assert got.view(np.uint16).tobytes() == want_comp.view(np.uint16).tobytes(), (name, t, i)
    return pb, fused


@pytest.mark.parametrize("compensation", COMPENSATIONS)
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_step_equals_its_composition(name, kw, compensation):
    # LARS and LAMB also over a tensor larger than a tile: the team-wide norm sweep, every option set
    _composition_run(name, kw, compensation, state_dtype="float32",
                     shapes=SHAPES + [(3, 13337)] if SPEC[name].norm_sweep else SHAPES)


@pytest.mark.parametrize("state_dtype", [None, "bfloat16", "int8", "int4"])
@pytest.mark.parametrize("compensation", COMPENSATIONS)
@pytest.mark.parametrize("name,kw", FIRST_CASES, ids=[n for n, _ in FIRST_CASES])
def test_low_precision_state_with_bfloat16_params(name, kw, compensation, state_dtype):
    _composition_run(name, kw, compensation, state_dtype=state_dtype, steps=3,
                     shapes=SHAPES + [(3, 13337)] if SPEC[name].norm_sweep else SHAPES)


@pytest.mark.parametrize("compensation", COMPENSATIONS)
def test_bfloat16_gradients_are_their_float32_values(compensation):
    _composition_run("Adam", dict(lr=0.01), compensation, grad_dtype=BF16)
    _composition_run("Lion", dict(lr=0.01), compensation, state_dtype="int8", grad_dtype=BF16)


def test_float32_params_take_bfloat16_gradients():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(5000).astype(F32)
    b = a.copy()
    oa, ob = fastopt.AdamW([a], lr=0.01), fastopt.AdamW([b], lr=0.01)
    for _ in range(3):
        g = rng.standard_normal(5000).astype(BF16)
        oa.step([g])
        ob.step([g.astype(F32)])
    assert a.tobytes() == b.tobytes()
    assert oa.state[0]["exp_avg"].tobytes() == ob.state[0]["exp_avg"].tobytes()


def test_noncontiguous_bfloat16_gradient_is_read_as_is():
    p, q = _params(0, [(64, 80)])[0], _params(0, [(64, 80)])[0]
    g = np.random.default_rng(1).standard_normal((80, 64)).astype(BF16).T
    fastopt.Adam([p], lr=0.01).step([g])
    fastopt.Adam([q], lr=0.01).step([np.ascontiguousarray(g)])
    assert p.tobytes() == q.tobytes()


THREAD_CASES = [("Adam", dict(lr=0.01)), ("LARS", dict(lr=0.1, trust_coefficient=0.02, momentum=0.9)),
                ("LAMB", dict(lr=0.01, weight_decay=0.1))]


@pytest.mark.parametrize("name,kw", THREAD_CASES, ids=[n for n, _ in THREAD_CASES])
@pytest.mark.parametrize("compensation", ["kahan", "stochastic"])
def test_same_bits_at_any_thread_count_and_on_every_isa(compensation, name, kw, for_each_isa):
    from fastopt import _config
    shapes = SHAPES + [(3, 13337)]      # over the tile size: LARS's and LAMB's team-wide norm sweep, 2 threads
    results = []
    before, before_min = fastopt.get_num_threads(), fastopt.parallel_min_elements()
    try:
        _config.set_parallel_min_elements(256)
        for isa in for_each_isa():
            for n in (1, 2):
                fastopt.set_num_threads(n)
                params, opt = _composition_run(name, kw, compensation, "int8", steps=3, shapes=shapes)
                kahan = [opt.state[i].get(_formats.KAHAN_KEY) for i in range(len(params))]
                results.append((isa, n, [p.tobytes() for p in params], [np.asarray(c).tobytes() for c in kahan]))
    finally:
        fastopt.set_num_threads(before)
        _config.set_parallel_min_elements(before_min)
    for isa, n, params, kahan in results[1:]:
        assert params == results[0][2] and kahan == results[0][3], (name, compensation, isa, n)


# ------------------------------------------------------------------------------------ against float64
def _least_squares(compensation, steps=3000, lr=1e-3):
    """SGD on 0.5 ||p - target||^2 from p = 0.5 towards 0.75 (bfloat16 ulp 2^-8 there): each update
    lr (p - target) <= 2.5e-4 is under half an ulp. Returns (final bfloat16 param as float64, Kahan sum p + c or
    None, the float64 reference)."""
    target = np.full(4096, 0.75)
    p = np.full(4096, 0.5, BF16)
    ref = np.full(4096, 0.5)
    opt = fastopt.SGD([p], lr=lr, compensation=compensation)
    for _ in range(steps):
        opt.step([(p.astype(np.float64) - target).astype(F32)])
        ref -= lr * (ref - target)
    comp = opt.state[0].get(_formats.KAHAN_KEY)
    total = None if comp is None else p.astype(np.float64) + comp.astype(np.float64)
    return p.astype(np.float64), total, ref


def test_plain_bfloat16_stalls_where_kahan_and_stochastic_rounding_follow_float64():
    p_none, _, ref = _least_squares("none")
    assert np.all(p_none == 0.5)                               # every update rounded away: it never moved
    p_kahan, total, _ = _least_squares("kahan")
    # p + c tracks float64 to an eighth of an ulp (3.9e-3; measured 2.5e-4: the gradient sees the rounded p)
    assert np.max(np.abs(total - ref)) < 2 ** -8 / 8
    assert np.max(np.abs(p_kahan - ref)) <= 2 ** -8            # p itself within an ulp
    p_sr, _, _ = _least_squares("stochastic")
    assert abs(p_sr.mean() - ref.mean()) < 2e-3 and ref.mean() - 0.5 > 0.2


def test_stochastic_rounding_is_unbiased():
    n, delta = 200000, 1e-3                   # 1 + delta lies 0.128 ulps (ulp 2^-7) above 1
    p = np.ones(n, BF16)
    fastopt.SGD([p], lr=1.0, compensation="stochastic").step([np.full(n, -delta, F32)])
    values = p.astype(np.float64)
    assert set(np.unique(values)) == {1.0, 1.0 + 2 ** -7}      # one of the two neighbours
    q = delta / 2 ** -7
    sigma = 2 ** -7 * np.sqrt(q * (1 - q) / n)
    assert abs(values.mean() - (1 + delta)) < 5 * sigma


# ------------------------------------------------------------------------------------ options and errors
def _trained(compensation="kahan", steps=3, state_dtype=None, seed=0):
    ps = _params(seed, [(5000,), (100,)])
    opt = fastopt.Adam(ps, lr=0.01, compensation=compensation, state_dtype=state_dtype)
    rng = np.random.default_rng(seed + 1)
    for _ in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(F32) for p in ps])
    return ps, opt


def test_default_state_is_bfloat16_with_a_kahan_buffer():
    ps, opt = _trained()
    st = opt.state[0]
    assert st["exp_avg"].dtype == BF16 and st["exp_avg_sq"].dtype == BF16 and st["kahan_comp"].dtype == BF16
    assert opt.state[1]["exp_avg"].dtype == BF16                # every size: the param's dtype
    assert opt.state_nbytes() == 6 * 5100 + 2 * 8               # two moments and the buffer, 2 bytes each
    assert opt.param_groups[0]["compensation"] == "kahan"
    _, opt = _trained("stochastic", state_dtype="float32")
    assert "kahan_comp" not in opt.state[0] and opt.state[0]["exp_avg"].dtype == F32


@pytest.mark.parametrize("compensation", COMPENSATIONS)
def test_resume_is_bit_identical(compensation):
    ps, opt = _trained(compensation, steps=6)
    qs, half = _trained(compensation, steps=3)
    resumed = fastopt.Adam(qs, lr=0.01, compensation=compensation)
    resumed.load_state_dict(half.state_dict())
    rng = np.random.default_rng(1)
    for _ in range(3):
        rng.standard_normal(5000), rng.standard_normal(100)    # the three steps `half` took
    for _ in range(3):
        resumed.step([rng.standard_normal(p.shape).astype(F32) for p in qs])
    assert [p.tobytes() for p in ps] == [q.tobytes() for q in qs]
    assert opt.state_dict()["state"][0].keys() == resumed.state_dict()["state"][0].keys()
    for key, value in opt.state_dict()["state"][0].items():
        assert np.asarray(value).tobytes() == np.asarray(resumed.state_dict()["state"][0][key]).tobytes(), key


def test_state_loads_across_compensations():
    ps, opt = _trained("none")
    kahan = fastopt.Adam(ps, lr=0.01, compensation="kahan")
    kahan.load_state_dict(opt.state_dict())                 # no buffer saved: it starts from zeros
    assert not kahan.state[0]["kahan_comp"].astype(F32).any()
    _, opt = _trained("kahan")
    plain = fastopt.Adam(ps, lr=0.01, compensation="none")
    plain.load_state_dict(opt.state_dict())                 # the buffer is not used: dropped
    assert "kahan_comp" not in plain.state[0]


@pytest.mark.parametrize("value,error,message", [
    (np.zeros(5000, F32), TypeError, r"params\[0\] 'kahan_comp': expected dtype bfloat16 \(the param's\)"),
    (np.zeros(4999, BF16), ValueError, r"params\[0\] 'kahan_comp': shape \(4999,\) does not match"),
])
def test_corrupt_kahan_buffer_is_refused_and_writes_nothing(value, error, message):
    ps, opt = _trained()
    before = opt.state_dict()
    bad = {k: dict(v) for k, v in before["state"].items()}
    bad[0]["kahan_comp"] = value
    with pytest.raises(error, match=message):
        opt.load_state_dict(dict(before, state=bad))
    after = opt.state_dict()["state"]
    for key, v in before["state"][0].items():
        assert np.asarray(v).tobytes() == np.asarray(after[0][key]).tobytes(), key


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(compensation="fp32"), ValueError, r"invalid compensation 'fp32': expected 'kahan', 'stochastic', 'none'"),
    (dict(compensation=None), TypeError, r"compensation must be a str, got NoneType"),
    (dict(state_dtype="float64"), ValueError, r"state_dtype='float64' does not fit params\[0\] of dtype bfloat16"),
])
def test_bad_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        fastopt.Adam([np.ones(10, BF16)], **kwargs)


@pytest.mark.parametrize("name", ["ASGD", "ScheduleFreeSGD"])
def test_optimizers_without_formats_refuse_bfloat16_params(name):
    with pytest.raises(ValueError, match=rf"{name} does not support bfloat16 params \(params\[1\]\)"):
        getattr(fastopt, name)([np.ones(10, F32), np.ones(10, BF16)])


def _step_refused(p, grad, error, message, **kw):
    opt = fastopt.Adam([p], lr=0.1, **kw)
    before = p.tobytes()
    with pytest.raises(error, match=message):
        opt.step([grad])
    assert p.tobytes() == before and not opt.state


@pytest.mark.parametrize("grad,error,message", [
    (np.ones(10), TypeError, r"grads\[0\]: expected dtype bfloat16 \(the dtype of params\[0\]\) or float32, got float64"),
    (np.ones(11, BF16), ValueError, r"grads\[0\]: shape \(11,\) does not match params\[0\] shape \(10,\)"),
    (np.ones(10, np.float16), TypeError, r"expected dtype bfloat16 .* got float16"),
])
def test_bad_gradients_are_refused_and_write_nothing(grad, error, message):
    _step_refused(np.ones(10, BF16), grad, error, message)


def test_float32_param_refuses_float64_gradient_naming_bfloat16():
    _step_refused(np.ones(10, F32), np.ones(10), TypeError,
                  r"expected dtype float32 \(the dtype of params\[0\]\) or bfloat16, got float64")


@pytest.mark.parametrize("bad", ["inf", "nan"])
def test_check_finite_reads_bfloat16_gradients(bad):
    g = np.ones(5000, BF16)
    g[1234] = float(bad)
    opt = fastopt.Adam([np.ones(5000, BF16)], lr=0.1)
    before = opt.params[0].tobytes()
    with pytest.raises(ValueError, match=r"grads\[0\] contains inf or NaN"):
        opt.step([g], check_finite=True)
    assert opt.params[0].tobytes() == before
    opt.step([np.ones(5000, BF16)], check_finite=True)
    assert opt.params[0].tobytes() != before


def test_param_layout_is_checked():
    p = np.ones((20, 20), BF16)
    with pytest.raises(ValueError, match=r"params\[0\] is written in place .* not C-contiguous"):
        fastopt.Adam([p.T])
    p.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] is written in place .* read-only"):
        fastopt.Adam([p])
    with pytest.raises(TypeError, match=r"params\[0\]: expected dtype float32 or float64, got float16"):
        fastopt.Adam([np.ones(3, np.float16)])


def test_changing_the_compensation_is_refused_and_writes_nothing():
    ps, opt = _trained()
    before = [p.tobytes() for p in ps]
    opt.param_groups[0]["compensation"] = "none"
    with pytest.raises(ValueError, match=r"differ from \(None, 4096, 'kahan'\), fixed when the group was added"):
        opt.step([np.ones(p.shape, F32) for p in ps])
    assert [p.tobytes() for p in ps] == before


def test_functional_forms_refuse_bfloat16():
    p = np.ones(10, BF16)
    with pytest.raises(TypeError, match=r"expected dtype float32 or float64, got bfloat16"):
        fastopt.functional.sgd_(p, np.ones(10, BF16), lr=0.1)


# ------------------------------------------------------------------------------------ stochastic bfloat16 state
def test_stochastic_compensation_rounds_bfloat16_state_stochastically():
    """float32 params, bfloat16 state, compensation="stochastic": each slot's new state is the float32 step's,
    rounded with the bits of seed mix64(param index) + slot + 1 (csrc/optim.h FO_COMP_*)."""
    rng = np.random.default_rng(5)
    shapes = [(5000,), (23, 300)]
    pf = [rng.standard_normal(s).astype(F32) for s in shapes]
    pr = [p.copy() for p in pf]
    fused = fastopt.Adam(pf, lr=0.01, state_dtype="bfloat16", compensation="stochastic")
    ref = fastopt.Adam(pr, lr=0.01)
    slots = [s.name for s in SPEC["Adam"].slots]
    for t in range(3):
        grads = [rng.standard_normal(s).astype(F32) for s in shapes]
        if t > 0:
            ref.load_state_dict(_decoded_state(fused, "bfloat16"))
        fused.step(grads)
        ref.step(grads)
        for i in range(len(pf)):
            assert pf[i].tobytes() == pr[i].tobytes(), (t, i)
            for key in ("exp_avg", "exp_avg_sq"):
                seed = int(_mix64(np.uint64(i))) + slots.index(key) + 1
                want = _stochastic(ref.state[i][key], seed % 2 ** 64, t + 1)
                assert fused.state[i][key].tobytes() == want.tobytes(), (t, i, key)


def test_stochastic_rounding_lets_bfloat16_state_decay():
    """One large gradient, then zeros: Adam's v decays as 0.999^t. Rounded to nearest, bfloat16 v never moves
    (0.999 v rounds back to v); rounded stochastically its mean follows float32's."""
    n, steps = 20000, 300
    vs = {}
    for name, kw in (("float32", {}), ("nearest", dict(state_dtype="bfloat16", compensation="kahan")),
                     ("stochastic", dict(state_dtype="bfloat16", compensation="stochastic"))):
        p = np.zeros(n, F32)
        opt = fastopt.Adam([p], lr=1e-3, **kw)
        opt.step([np.ones(n, F32)])
        first = opt.state[0]["exp_avg_sq"].astype(np.float64).mean()
        for _ in range(steps):
            opt.step([np.zeros(n, F32)])
        vs[name] = opt.state[0]["exp_avg_sq"].astype(np.float64).mean() / first
    assert vs["nearest"] == 1.0                                   # stalled
    assert abs(vs["stochastic"] / vs["float32"] - 1) < 2e-3, vs   # 0.999^300 = 0.741 on average
