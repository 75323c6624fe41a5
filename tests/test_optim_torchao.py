"""4-bit optimizer state and bfloat16 stochastic rounding against torchao's CPU optimizers (torchao.optim).

1. 4-bit AdamW. fastopt's ``AdamW(..., state_dtype="int4", min_quantized_size=4096)`` against
   ``torchao.optim.AdamW4bit`` (block_size 128, its default), 100 steps from the same params on the gradients of a
   fixed quadratic plus seeded noise (the same function of the params on both sides, so a difference feeds back):
   one param of 64 x 128 elements (4-bit state in both) and one of 300 (float32 state in both).

   What torchao 0.18 does on CPU (optim/adam.py ``_AdamBase.step`` -> ``single_param_adam`` under torch.compile,
   optim/subclass_4bit.py ``OptimState4bit``): p = p - lr wd p; the moments dequantized, m = lerp(m, g, 1 - beta1),
   v = lerp(v, g^2, 1 - beta2) in float32; the param updated from these float32 moments, with denominator
   sqrt(v) / sqrt(1 - beta2^t) + eps; then the moments quantized again. That is fastopt's int4 step
   (fastopt/optim/_formats.py: decode the block, the float32 kernel, encode), and the formats are the same:
   blocks of 128 of the flattened tensor, scale = absmax of the block, exp_avg in the signed dynamic map
   ``create_dynamic_map(True, 3, 4)``, exp_avg_sq in the unsigned linear map ``linspace(0, 1, 17)[1:]`` (no zero;
   the second moment itself, not its square root), the code of the nearest map value.

   What cannot match, and what it does here:

   * Ties: torchao rounds a tie up (residual >= half the gap), fastopt to the lower code (tests/test_quantize.py).
     A code can part only where x / absmax is within float32 rounding of a tie; measured: none after step 1.
   * Which tensors keep float32 state: torchao quantizes a tensor of >= 4096 elements *whose size is a multiple
     of its block size*; fastopt one of >= ``min_quantized_size`` elements of any size (its last block partial).
     A param of, say, 4100 elements has float32 state in torchao, int4 in fastopt; the params here avoid that.
   * torchao's scale is clipped at 1e-12 (an all-zero block); fastopt's absmax of such a block is 0. Not reached.
   * Code packing: torchao puts element 2j in the high nibble, fastopt in the low one; the tests compare codes
     unpacked, and decoded state.
   * Float32 operation order (lerp vs beta m + (1 - beta) g, torch.compile's fusion): the states' scales differ by
     up to 1 float32 ulp after step 1, the params by up to 1 ulp of theta_0 (bound: 2 ulps + 2e-6 of the step).

   Measured (x86-64, seeds 0-2 of theta_0), the relative trajectory deviation max_t ||theta_fastopt,t -
   theta_torchao,t|| / ||theta_torchao,t - theta_0|| over the 4-bit param: 3.1e-6-3.6e-6 (tolerance 1e-5), while
   fastopt int4 against fastopt float32 state (the quantization's own effect) is 0.26-0.27: the two
   implementations of one scheme part at float32 rounding only (asserted: below 1e-3 of the int4-vs-float32
   deviation; measured 1.1e-5-1.4e-5). The float32-state param (float32 operation order alone): 2.4e-6-3.5e-6
   (tolerance 1e-5).

2. bfloat16 stochastic rounding. fastopt's ``AdamW`` on an ``ml_dtypes.bfloat16`` param with
   ``compensation="stochastic"``, ``state_dtype="float32"`` against ``torchao.optim._AdamW(...,
   bf16_stochastic_round=True)`` on a torch.bfloat16 param: both step in float32 and store the new value rounded
   away from zero with probability (low 16 bits of x) / 2^16 (torchao: ``_fp32_to_bf16_sr``, bits from
   torch.randint; fastopt: ``(bits(x) + r) >> 16``, r from a counter-based hash of the param's index, the step and
   the element). The random bits differ, so the test compares statistics.

   What cannot match: torchao's ``_AdamW`` keeps a bfloat16 param's moments in bfloat16 (``zeros_like(p)``) rounded
   to nearest; fastopt's bfloat16 state under ``compensation="stochastic"`` is rounded stochastically, and there
   is no fastopt option for nearest-rounded state with stochastically rounded params. So both keep float32 state:
   torchao's is put in ``optimizer.state`` before the first step (its initialisation runs only on an empty state).
   (Measured once with torchao's own bfloat16 state: its bias moves by under 4e-5 (0.1 SE), its rms error 0.2%.)

   The problem: p0 ~ U(1, 2) in bfloat16 (ulp 2^-7), gradients a fixed +-U(0.5, 1.5) per element plus seeded
   noise, independent of the params, the same bfloat16 arrays for every run; lr = 1e-3, weight decay 1 (each
   step moves p by about 1e-3, under half an ulp: round to nearest, fastopt's ``compensation="none"``, stalls).
   The moments then do not depend on the params and the update is affine in p, so an unbiased rounding gives a
   final param whose mean over the rounding is exactly the float32-param run's (fastopt float32 params, the
   master weights). Over the 8192 elements, e = theta_bf16,T - theta_float32,T is independent across elements:
   its mean is compared with its standard error std(e) / sqrt(n). Measured (problem seeds 0-3): fastopt's bias
   z = mean / SE 2.1, 2.2, 2.4, 0.0, torchao's -0.2, -1.7, -0.2, -1.2; asserted |z| < 5. fastopt's bits are
   those of param index 0 in every seed, and their 200 x 8192 16-bit draws happen to average 0.50049 of 2^16,
   2.2 standard errors above 1/2: a chance of that fixed sample (the same run with the param at indices 0-99:
   z's mean 0.02, sd 0.94, as for an unbiased rounding).
   Nearest rounding: z 145. fastopt's rms error over torchao's: 0.982-1.003 (asserted within 5% of 1).

Every test name contains "torchao" (the ASan run deselects ``-k "not torchao"``). torchao compiles its step with
torch.compile, once per kind of param: three compilations (the 4-bit and the float32-state param, the bfloat16
param), each run once in a module-scoped fixture. Measured on 2 cores: 29 s for the file with an empty inductor
cache, most of it compiling.
"""
import numpy as np
import pytest

import fastopt.optim as fo
from fastopt import quantize

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")
ao = pytest.importorskip("torchao.optim")
ml_dtypes = pytest.importorskip("ml_dtypes")

BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.float32

# ---- 4-bit AdamW ---------------------------------------------------------------------------------------------------
SHAPES = [(64, 128), (30, 10)]      # 64 blocks of 128 (4-bit state in both); 300 elements (float32 state in both)
MIN_SIZE = 4096                     # torchao's: >= 4096 elements (and a multiple of 128)
BLOCK = 128
STEPS = 100
ADAMW = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
SLOTS = [("exp_avg", True), ("exp_avg_sq", False)]
TOL_4BIT = 1e-5                     # measured 3.1e-6-3.6e-6 (seeds 0-2): 2.8x
MAX_RATIO_TO_FLOAT32 = 1e-3         # int4 vs AdamW4bit over int4 vs float32 state: measured 1.1e-5-1.4e-5
SMALL_DEVIATION = 1e-5              # the float32-state param: measured 2.4e-6-3.5e-6 (seeds 0-2): 2.9x


def _initial(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(F32) for s in SHAPES]


_CURVATURE = [np.random.default_rng(1).uniform(0.5, 2.0, s).astype(F32) for s in SHAPES]


def _grads(t, params):
    """The gradient at step t of sum(c p^2) / 2 plus noise seeded by t: the same function of the params on both
    sides."""
    rng = np.random.default_rng(1000 + t)
    return [(c * p + F32(0.5) * rng.standard_normal(p.shape)).astype(F32) for c, p in zip(_CURVATURE, params)]


def run_fastopt(state_dtype, steps=STEPS):
    """(the params after each step, the optimizer)."""
    params = _initial()
    opt = fo.AdamW(params, **ADAMW, state_dtype=state_dtype, min_quantized_size=MIN_SIZE)
    trajectory = []
    for t in range(steps):
        opt.step(_grads(t, params))
        trajectory.append([p.copy() for p in params])
    return trajectory, opt


def _unpack_torchao(state):
    """An OptimState4bit's codes, one per element (torchao packs element 2j in the high nibble), and its scale."""
    codes = state.codes.numpy()
    return np.stack([codes >> 4, codes & 15], axis=-1).reshape(-1), state.scale.numpy().copy()


@pytest.fixture(scope="module")
def torchao_4bit():
    """torchao's AdamW4bit over STEPS steps: the params after each step, and after step 1 each param's state:
    {slot: (codes, scale, decoded)} of a 4-bit one, {slot: float32 array} of a float32 one."""
    tensors = [torch.from_numpy(p) for p in _initial()]
    opt = ao.AdamW4bit(tensors, **ADAMW)
    trajectory, first_state = [], None
    for t in range(STEPS):
        for x, g in zip(tensors, _grads(t, [x.numpy() for x in tensors])):
            x.grad = torch.from_numpy(g)
        opt.step()
        trajectory.append([x.numpy().copy() for x in tensors])
        if t == 0:
            first_state = [_torchao_state(opt.state[x]) for x in tensors]
    return trajectory, first_state


def _torchao_state(state):
    out = {}
    for key, _ in SLOTS:
        s = state[key]
        if isinstance(s, ao.subclass_4bit.OptimState4bit):
            out[key] = (*_unpack_torchao(s), s.dequantize().numpy().reshape(-1).copy())
        else:
            assert s.dtype == torch.float32, key
            out[key] = s.numpy().copy()
    return out


def deviation(a, b, i):
    """max over steps t of ||a_t,i - b_t,i|| / ||b_t,i - theta_0,i||: the part of the distance travelled that
    differs."""
    p0 = _initial()[i]
    return max(float(np.linalg.norm(a[t][i] - b[t][i]) / np.linalg.norm(b[t][i] - p0)) for t in range(len(a)))


def _check_first_step_params(ours, theirs):
    """The same float32 step, to float32 rounding of theta_0 and of the update (the new state is quantized after
    the param update on both sides). Measured: at most 1 ulp of theta_0 (half the bound)."""
    for i, (p0, a, b) in enumerate(zip(_initial(), ours, theirs)):
        bound = 2 * np.spacing(np.maximum(np.abs(p0), np.abs(b))) + 2e-6 * np.abs(b - p0)
        assert np.all(np.abs(a - b) <= bound), f"params[{i}]: {np.max(np.abs(a - b) / bound):.3g} of the bound"


def _check_4bit_slot(where, exact, codes, absmax, theirs, signed):
    """One 4-bit slot after step 1; ``exact`` the float32 state before quantization (fastopt's float32-state run),
    ``theirs`` torchao's (codes, scale, decoded). The same scale to 1 ulp (measured: 0-1 ulp); the same codes
    except at a tie of exact / absmax between two neighbouring codes (measured: none differ); decoded states
    within 2 ulps of the block's absmax of each other (measured: 1 ulp, the scales' difference)."""
    tcodes, tscale, tdecoded = theirs
    n = exact.size
    np.testing.assert_allclose(absmax, tscale, rtol=2.5e-7, atol=0, err_msg=f"{where} absmax")
    m = quantize.code_map(4, signed).astype(np.float64)
    ours = quantize.dequantize_blockwise(codes, absmax, n=n, bits=4, signed=signed)
    c = np.stack([codes & 15, codes >> 4], axis=-1).reshape(-1)[:n].astype(np.int64)
    ct = tcodes[:n].astype(np.int64)
    differ = c != ct
    v = exact.reshape(-1).astype(np.float64) / np.repeat(absmax, BLOCK)[:n]
    tie = np.abs(v - (m[c] + m[ct]) / 2) <= 1e-6
    assert np.all(tie[differ] & (np.abs(c - ct)[differ] == 1)), f"{where}: codes differ off a tie"
    am = np.repeat(absmax, BLOCK)[:n].astype(np.float64)
    rel = np.abs(ours - tdecoded) / am
    assert np.max(rel[~differ]) <= 2 * 2.0 ** -23, f"{where}: decoded states {np.max(rel):.3g} of absmax apart"
    return differ.sum()


def test_torchao_4bit_first_step_gives_the_same_params_and_state(torchao_4bit):
    trajectory, first_state = torchao_4bit
    (ours,), opt = run_fastopt("int4", steps=1)
    _, exact = run_fastopt(None, steps=1)
    _check_first_step_params(ours, trajectory[0])
    flips = 0
    for i, theirs in enumerate(first_state):
        for key, signed in SLOTS:
            where = f"params[{i}] {key}"
            if np.prod(SHAPES[i]) >= MIN_SIZE:
                assert opt.state[i][key].dtype == np.uint8 and isinstance(theirs[key], tuple), where
                flips += _check_4bit_slot(where, exact.state[i][key], opt.state[i][key],
                                          opt.state[i][key + "_absmax"], theirs[key], signed)
            else:           # float32 state in both
                assert opt.state[i][key].dtype == np.float32, where
                np.testing.assert_allclose(opt.state[i][key], theirs[key], rtol=1e-6, atol=1e-30, err_msg=where)
    print(f"\nint4 vs AdamW4bit after step 1: {flips} codes differ")


def test_torchao_4bit_trajectory_stays_near_fastopt_int4(torchao_4bit):
    """See the module docstring for the measured deviations."""
    theirs, _ = torchao_4bit
    ours, _ = run_fastopt("int4")
    full, _ = run_fastopt(None)
    to_4bit, to_float32 = deviation(ours, theirs, 0), deviation(ours, full, 0)
    small = deviation(ours, theirs, 1)
    print(f"\nint4 vs torchao AdamW4bit {to_4bit:.3g}, int4 vs float32 state {to_float32:.3g} "
          f"(ratio {to_4bit / to_float32:.3g}), float32-state param vs torchao {small:.3g}")
    assert to_4bit <= TOL_4BIT, f"int4 vs AdamW4bit {to_4bit:.3g} > {TOL_4BIT}"
    assert to_4bit <= MAX_RATIO_TO_FLOAT32 * to_float32, "int4 is not much nearer AdamW4bit than float32 state"
    assert small <= SMALL_DEVIATION, f"float32-state param {small:.3g} > {SMALL_DEVIATION}"


# ---- bfloat16 stochastic rounding ----------------------------------------------------------------------------------
BF16_SHAPE = (64, 128)
BF16_STEPS = 200
BF16_ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1.0)
MAX_Z = 5.0                         # |bias| / standard error: measured fastopt 0.0-2.4, torchao 0.2-1.7
MAX_RMS_RATIO = 1.05                # fastopt's rms error over torchao's, and back: measured 0.982-1.003


def _bf16_problem(seed=0):
    """(p0 in bfloat16, the gradient of each step in bfloat16): gradients that do not depend on the params."""
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(1, 2, BF16_SHAPE).astype(BF16)
    c = (rng.choice([-1, 1], BF16_SHAPE) * rng.uniform(0.5, 1.5, BF16_SHAPE)).astype(F32)
    grads = [(c + F32(0.5) * np.random.default_rng(1000 + t).standard_normal(BF16_SHAPE)).astype(BF16)
             for t in range(BF16_STEPS)]
    return p0, grads


def _fastopt_bf16(p, grads, **kw):
    opt = fo.AdamW([p], **BF16_ADAMW, **kw)
    for g in grads:
        opt.step([g.astype(p.dtype)])
    return p.astype(F32)


def _torchao_bf16(p0, grads):
    """torchao's _AdamW with bf16_stochastic_round on a torch.bfloat16 param, float32 state put in beforehand."""
    torch.manual_seed(0)
    q = torch.from_numpy(p0.astype(F32)).bfloat16()
    opt = ao._AdamW([q], **BF16_ADAMW, bf16_stochastic_round=True)
    opt.state[q] = dict(step=torch.tensor(0.0), exp_avg=torch.zeros(BF16_SHAPE), exp_avg_sq=torch.zeros(BF16_SHAPE))
    for g in grads:
        q.grad = torch.from_numpy(g.astype(F32)).bfloat16()
        opt.step()
    assert q.dtype == torch.bfloat16 and opt.state[q]["exp_avg"].dtype == torch.float32
    return q.float().numpy()


@pytest.fixture(scope="module")
def torchao_bf16_runs():
    """p0 and the final params (float32 values) of: fastopt float32 params (the master weights), fastopt bfloat16
    with stochastic rounding, with round to nearest, torchao with stochastic rounding."""
    p0, grads = _bf16_problem()
    return p0.astype(F32), {
        "float32": _fastopt_bf16(p0.astype(F32), grads),
        "fastopt": _fastopt_bf16(p0.copy(), grads, compensation="stochastic", state_dtype="float32"),
        "nearest": _fastopt_bf16(p0.copy(), grads, compensation="none", state_dtype="float32"),
        "torchao": _torchao_bf16(p0, grads)}


def _bias_z(x, ref):
    e = (x - ref).astype(np.float64).reshape(-1)
    return e.mean() / (e.std() / np.sqrt(e.size))


def test_torchao_and_fastopt_stochastic_rounding_move_where_nearest_stalls(torchao_bf16_runs):
    """Each step is under half an ulp: round to nearest stays at p0 (measured: 99.8% of the elements, a mean move
    of 0.07% of float32's), both stochastic roundings travel float32's mean distance to within 1% (measured:
    0.3%, 0.0%)."""
    p0, runs = torchao_bf16_runs
    moved = {k: float(np.mean(np.abs(x - p0))) for k, x in runs.items()}
    print(f"\nmean |theta_T - theta_0|: {moved}")
    assert moved["nearest"] < 0.01 * moved["float32"], moved
    for k in ("fastopt", "torchao"):
        assert abs(moved[k] / moved["float32"] - 1) < 0.01, (k, moved)


def test_torchao_and_fastopt_stochastic_rounding_are_unbiased(torchao_bf16_runs):
    """The mean final param of each stochastic rounding is float32's to within MAX_Z standard errors; round to
    nearest is not (so the test can tell)."""
    _, runs = torchao_bf16_runs
    z = {k: float(_bias_z(runs[k], runs["float32"])) for k in ("fastopt", "torchao", "nearest")}
    print(f"\nbias / standard error: {z}")
    assert abs(z["fastopt"]) < MAX_Z and abs(z["torchao"]) < MAX_Z, z
    assert abs(z["nearest"]) > 20 * MAX_Z, z


def test_torchao_and_fastopt_stochastic_rounding_errors_are_alike(torchao_bf16_runs):
    """The same rounding distribution gives the same spread about float32's params (rms over the elements)."""
    _, runs = torchao_bf16_runs
    rms = {k: float(np.sqrt(np.mean((runs[k] - runs["float32"]).astype(np.float64) ** 2)))
           for k in ("fastopt", "torchao")}
    ratio = rms["fastopt"] / rms["torchao"]
    print(f"\nrms error vs float32 params: {rms}, ratio {ratio:.4f}")
    assert 1 / MAX_RMS_RATIO < ratio < MAX_RMS_RATIO, rms
