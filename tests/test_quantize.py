"""fastopt.quantize and csrc/quantize.{h,c} (issue 12): blockwise int8 / int4 quantization.

The rule (csrc/quantize.h): v = x / absmax in float32, code = the nearest map value by float32 distances, ties to the
lower code. The tests check it against float32 and float64 NumPy references written here, the map values against
their published constructions, the layout, the special blocks, the argument errors, and -- where installed -- the
peers: bitsandbytes (8-bit maps, quantize_blockwise / dequantize_blockwise) and torchao (its 4-bit and 8-bit
optimizer-state quantizers).
"""
import numpy as np
import pytest

from fastopt import _quantize, quantize as q

MAPS = [(8, True), (8, False), (4, True), (4, False)]


def _blocks(n, block):
    return -(-n // block)


def _unpack4(codes, n):
    out = np.empty(2 * codes.size, dtype=np.uint8)
    out[0::2] = codes & 15
    out[1::2] = codes >> 4
    return out[:n]


def _codes_flat(codes, n, bits):
    return codes if bits == 8 else _unpack4(codes, n)


# ---- references written from the published rule ------------------------------------------------------------------
def reference_f32(x, bits, signed, block):
    """The rule of csrc/quantize.h in NumPy float32 arithmetic: absmax, v = x / absmax, l = the largest c with
    map[c] <= v (0 if none), l + 1 if |v - map[l+1]| < |v - map[l]| (float32)."""
    m = q.code_map(bits, signed)
    x = x.reshape(-1)
    n = x.size
    absmax = np.array([np.max(np.abs(x[b * block:(b + 1) * block])) for b in range(_blocks(n, block))],
                      dtype=np.float32)
    v = (x / np.repeat(absmax, block)[:n]).astype(np.float32)
    left = np.clip(np.searchsorted(m, v, side="right") - 1, 0, m.size - 1)
    right = np.minimum(left + 1, m.size - 1)
    up = (np.abs(v - m[right]) < np.abs(v - m[left])) & (right > left)
    return np.where(up, right, left).astype(np.uint8), absmax, v


def reference_f64(v, bits, signed):
    """The nearest map value in float64 (exact distances; ties to the lower code)."""
    m = q.code_map(bits, signed).astype(np.float64)
    v = np.asarray(v, dtype=np.float64)
    left = np.clip(np.searchsorted(m, v, side="right") - 1, 0, m.size - 1)
    right = np.minimum(left + 1, m.size - 1)
    return np.where((np.abs(v - m[right]) < np.abs(v - m[left])) & (right > left), right, left)


def dynamic_map_f64(signed, max_exponent_bits, total_bits):
    """Dettmers' dynamic map in float64 (midpoints of linspace(0.1, 1, F + 1) per decade, then 0 and 1)."""
    vals = []
    for i in range(max_exponent_bits):
        f = 2 ** (i + total_bits - 1 - max_exponent_bits + (0 if signed else 1))
        e = np.linspace(0.1, 1.0, f + 1)
        mids = (e[:-1] + e[1:]) / 2 * 10.0 ** (i - (max_exponent_bits - 1))
        vals += list(mids) + (list(-mids) if signed else [])
    return np.sort(np.array(vals + [0.0, 1.0]))


def sample(rng, n, signed, kind="normal"):
    x = rng.standard_normal(n).astype(np.float32)
    if kind == "heavy":                      # many values far below the block's absmax: the fine end of the map
        x = (x * np.exp(3 * rng.standard_normal(n))).astype(np.float32)
    return x if signed else (x * x).astype(np.float32)


# ---- the maps ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,signed", MAPS)
def test_map_shape_and_order(bits, signed):
    m = q.code_map(bits, signed)
    assert m.dtype == np.float32 and m.size == 2 ** bits
    assert np.all(np.diff(m) > 0)
    assert m[-1] == 1.0
    if bits == 8 or signed:
        assert 0.0 in m
    assert m[0] >= (-1.0 if signed else 0.0)


@pytest.mark.parametrize("bits,signed", MAPS)
def test_map_matches_construction_in_float64(bits, signed):
    """The generated float32 tables are the published constructions (float64 here) to float32 precision."""
    if bits == 4 and not signed:
        want = np.arange(1, 17) / 16.0
    else:
        want = dynamic_map_f64(signed, 7, 8) if bits == 8 else dynamic_map_f64(True, 3, 4)
    np.testing.assert_allclose(q.code_map(bits, signed).astype(np.float64), want, rtol=3e-7, atol=0)


def test_maps_file_is_generated():
    """csrc/quantize_maps.inc is what csrc/gen_quantize_maps.py writes (needs torch and the sources)."""
    import pathlib
    import subprocess
    import sys
    pytest.importorskip("torch")
    script = pathlib.Path(__file__).resolve().parent.parent / "csrc" / "gen_quantize_maps.py"
    if not script.exists():
        pytest.skip("csrc/ is not beside the tests")
    r = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- the fast path against the rule -----------------------------------------------------------------------------
@pytest.mark.parametrize("bits,signed", MAPS)
def test_fast_table_in_use(bits, signed):
    assert _quantize.qtable_fast(bits, signed) == 1


@pytest.mark.parametrize("bits,signed", MAPS)
def test_thresholds_exact(bits, signed):
    """T_k is the least float32 with code k: code(T_k) = k and code(the float below T_k) = k - 1, by both the fast
    path and the direct rule, and on both sides of every map value."""
    m = q.code_map(bits, signed)
    for k in range(1, 2 ** bits):
        t = np.float32(_quantize.qthreshold(bits, signed, k))
        below = np.nextafter(t, np.float32(-2))
        assert m[k - 1] < t <= m[k]
        assert _quantize.qcode(bits, signed, float(t)) == k == _quantize.qcode_reference(bits, signed, float(t))
        assert _quantize.qcode(bits, signed, float(below)) == k - 1 == _quantize.qcode_reference(bits, signed,
                                                                                               float(below))
        assert _quantize.qcode(bits, signed, float(m[k])) == k


@pytest.mark.parametrize("bits,signed", MAPS)
def test_codes_match_float32_reference(bits, signed):
    rng = np.random.default_rng(bits * 2 + signed)
    block = q.default_block_size(bits)
    for kind in ("normal", "heavy"):
        x = sample(rng, 50 * block + 37, True, kind)          # signed input for both maps (unsigned: code 0 < 0)
        codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
        want, want_absmax, _ = reference_f32(x, bits, signed, block)
        np.testing.assert_array_equal(absmax, want_absmax)
        np.testing.assert_array_equal(_codes_flat(codes, x.size, bits), want)


@pytest.mark.parametrize("bits,signed", MAPS)
def test_codes_match_float64_nearest(bits, signed):
    """Against the exact (float64) nearest map value of v: the same code but where float32 rounding of the two
    distances decides a near tie (then both codes are equally near to within float32 rounding)."""
    rng = np.random.default_rng(10 + bits * 2 + signed)
    x = sample(rng, 200_000, signed, "heavy")
    codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
    c = _codes_flat(codes, x.size, bits).astype(np.int64)
    _, _, v = reference_f32(x, bits, signed, q.default_block_size(bits))
    near = reference_f64(v, bits, signed)
    m = q.code_map(bits, signed).astype(np.float64)
    diff = c != near
    assert diff.mean() < 1e-4
    dv = v[diff].astype(np.float64)
    np.testing.assert_allclose(np.abs(dv - m[c[diff]]), np.abs(dv - m[near[diff]]), rtol=0, atol=2e-7)


@pytest.mark.parametrize("bits,signed", MAPS)
def test_strided_sweep_of_float32(bits, signed):
    """Fast path = direct rule on a sweep over every float32 in [-1, 1] with a prime stride."""
    u = np.arange(0, 0x3F800001, 104729, dtype=np.uint32)
    v = np.concatenate([u.view(np.float32), -u.view(np.float32), [1.0, -1.0, 0.0, -0.0]]).astype(np.float32)
    got = [_quantize.qcode(bits, signed, float(t)) for t in v]
    want = [_quantize.qcode_reference(bits, signed, float(t)) for t in v]
    assert got == want


# ---- round trips -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits,signed", MAPS)
def test_round_trip_error_bound(bits, signed):
    """|x - deq(x)| <= absmax * (half the largest map gap + 1 ulp), element-wise: half the gap around v's interval
    (and for v beyond the map's ends, the distance to the end: the signed 8-bit map stops at -0.99297)."""
    rng = np.random.default_rng(20 + bits * 2 + signed)
    block = q.default_block_size(bits)
    x = sample(rng, 100 * block + 5, signed, "heavy")
    codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
    y = q.dequantize_blockwise(codes, absmax, n=x.size, bits=bits, signed=signed)
    m = q.code_map(bits, signed).astype(np.float64)
    am = np.repeat(absmax, block)[:x.size].astype(np.float64)
    v = x / am
    i = np.clip(np.searchsorted(m, v, side="right") - 1, 0, m.size - 2)
    gap = np.where((v >= m[0]) & (v <= m[-1]), (m[i + 1] - m[i]) / 2, np.maximum(m[0] - v, v - m[-1]))
    err = np.abs(y.astype(np.float64) - x)
    assert np.all(err <= am * (gap + 2 ** -23) + 1e-30)
    # overall: half the largest gap, or the distance from the lowest possible v (-1 or 0) to map[0] if larger
    worst = max(np.max(np.diff(m)) / 2, m[0] - (-1.0 if signed else 0.0))
    assert np.all(err <= am * (worst + 2 ** -23))


@pytest.mark.parametrize("bits,signed", MAPS)
def test_absmax_exact_and_dequantize_formula(bits, signed):
    rng = np.random.default_rng(30 + bits)
    block = q.default_block_size(bits)
    x = sample(rng, 7 * block + 3, signed)
    codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
    for b in range(absmax.size):
        assert absmax[b] == np.max(np.abs(x[b * block:(b + 1) * block]))
    m = q.code_map(bits, signed)
    want = (m[_codes_flat(codes, x.size, bits)] * np.repeat(absmax, block)[:x.size]).astype(np.float32)
    np.testing.assert_array_equal(q.dequantize_blockwise(codes, absmax, n=x.size, bits=bits, signed=signed), want)
    # a block's largest positive element, when it is the absmax, comes back exactly (map value 1.0)
    y = q.dequantize_blockwise(codes, absmax, n=x.size, bits=bits, signed=signed)
    for b in range(absmax.size):
        j = b * block + int(np.argmax(x[b * block:(b + 1) * block]))
        assert x[j] != absmax[b] or y[j] == x[j]


@pytest.mark.parametrize("bits,signed", MAPS)
def test_zero_blocks(bits, signed):
    block = q.default_block_size(bits)
    x = np.zeros(3 * block, dtype=np.float32)
    x[block:2 * block] = np.linspace(-1, 1, block) if signed else np.linspace(0, 1, block)
    x[2 * block + 1] = -0.0
    codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
    assert absmax[0] == 0 and absmax[2] == 0 and absmax[1] == 1
    zero = int(np.argmin(np.abs(q.code_map(bits, signed))))
    c = _codes_flat(codes, x.size, bits)
    assert np.all(c[:block] == zero) and np.all(c[2 * block:] == zero)
    y = q.dequantize_blockwise(codes, absmax, n=x.size, bits=bits, signed=signed)
    assert np.all(y[:block] == 0) and np.all(y[2 * block:] == 0)


@pytest.mark.parametrize("bits,signed", MAPS)
@pytest.mark.parametrize("n", [1, 2, 3, 127, 128, 129, 255, 256, 257, 1000])
def test_partial_last_block(bits, signed, n):
    rng = np.random.default_rng(n)
    x = sample(rng, n, signed)
    block = q.default_block_size(bits)
    codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
    assert absmax.size == _blocks(n, block) and codes.size == (n if bits == 8 else (n + 1) // 2)
    want, want_absmax, _ = reference_f32(x, bits, signed, block)
    np.testing.assert_array_equal(absmax, want_absmax)
    np.testing.assert_array_equal(_codes_flat(codes, n, bits), want)
    if bits == 4 and n % 2:
        assert codes[-1] >> 4 == 0                      # the unused high nibble is 0
    y = q.dequantize_blockwise(codes, absmax, n=n, bits=bits, signed=signed)
    assert y.shape == (n,) and y.dtype == np.float32


def test_empty():
    codes, absmax = q.quantize_blockwise(np.zeros(0, np.float32))
    assert codes.size == 0 and absmax.size == 0
    assert q.dequantize_blockwise(codes, absmax, n=0).size == 0


def test_nibble_packing():
    """Element 2j in the low nibble of byte j, element 2j+1 in the high nibble."""
    m = q.code_map(4, True)
    x = np.array([m[3], m[12], m[15], m[0], m[7]], dtype=np.float32)      # absmax = map[15] = 1
    codes, absmax = q.quantize_blockwise(x, bits=4, signed=True)
    assert absmax[0] == 1.0
    assert codes.tolist() == [3 | (12 << 4), 15 | (0 << 4), 7]
    np.testing.assert_array_equal(q.dequantize_blockwise(codes, absmax, n=5, bits=4, signed=True), x)


def test_ties_go_to_the_lower_code():
    m = q.code_map(4, False)                           # k / 16: midpoints are exact in float32
    x = np.array([1.0, (m[0] + m[1]) / 2, (m[7] + m[8]) / 2], dtype=np.float32)
    codes, _ = q.quantize_blockwise(x, bits=4, signed=False)
    assert _unpack4(codes, 3).tolist() == [15, 0, 7]


def test_shapes_flatten_in_c_order():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 9, 11)).astype(np.float32)
    c1, a1 = q.quantize_blockwise(x)
    c2, a2 = q.quantize_blockwise(x.reshape(-1))
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(a1, a2)
    y = q.dequantize_blockwise(c1, a1, n=x.size).reshape(x.shape)
    assert np.max(np.abs(y - x)) <= np.max(a1) * 0.0071


def test_custom_block_size_and_float64_output():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(1000).astype(np.float32)
    codes, absmax = q.quantize_blockwise(x, bits=4, block_size=64)
    assert absmax.size == 16
    want, want_absmax, _ = reference_f32(x, 4, True, 64)
    np.testing.assert_array_equal(absmax, want_absmax)
    np.testing.assert_array_equal(_unpack4(codes, 1000), want)
    y32 = q.dequantize_blockwise(codes, absmax, n=1000, bits=4, block_size=64)
    y64 = q.dequantize_blockwise(codes, absmax, n=1000, bits=4, block_size=64, dtype=np.float64)
    assert y64.dtype == np.float64 and np.array_equal(y64, y32.astype(np.float64))


@pytest.mark.parametrize("bits,signed", MAPS)
def test_non_finite_blocks(bits, signed):
    block = q.default_block_size(bits)
    x = np.ones(3 * block, dtype=np.float32)
    x[5] = np.nan
    x[block + 7] = -np.inf
    x[2 * block + 1] = np.inf
    x[2 * block + 2] = np.nan
    codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
    assert np.isnan(absmax[0]) and absmax[1] == np.inf and np.isnan(absmax[2])
    zero = int(np.argmin(np.abs(q.code_map(bits, signed))))
    assert np.all(_codes_flat(codes, x.size, bits) == zero)
    y = q.dequantize_blockwise(codes, absmax, n=x.size, bits=bits, signed=signed)
    assert not np.any(np.isfinite(y))


def test_thread_count_does_not_change_results():
    import fastopt
    rng = np.random.default_rng(7)
    x = rng.standard_normal(3_000_001).astype(np.float32)
    before = fastopt.get_num_threads()
    try:
        fastopt.set_num_threads(1)
        c1, a1 = q.quantize_blockwise(x)
        fastopt.set_num_threads(max(2, before))
        c2, a2 = q.quantize_blockwise(x)
        y2 = q.dequantize_blockwise(c2, a2, n=x.size)
    finally:
        fastopt.set_num_threads(before)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(y2, q.dequantize_blockwise(c1, a1, n=x.size))


# ---- errors: name the argument, write nothing ---------------------------------------------------------------------
def test_quantize_errors_name_the_argument():
    x = np.ones(10, np.float32)
    cases = [
        (dict(x=[1.0]), TypeError, "x"),
        (dict(x=np.ones(10)), TypeError, "x"),
        (dict(x=np.ones(10, np.float32).astype(">f4")), TypeError, "x"),
        (dict(x=np.ones((4, 4), np.float32)[:, 1]), ValueError, "x"),
        (dict(x=x, bits=3), ValueError, "bits"),
        (dict(x=x, bits=8.0), TypeError, "bits"),
        (dict(x=x, bits=True), TypeError, "bits"),
        (dict(x=x, signed=1), TypeError, "signed"),
        (dict(x=x, block_size=0), ValueError, "block_size"),
        (dict(x=x, block_size=2.0), TypeError, "block_size"),
        (dict(x=x, bits=4, block_size=3), ValueError, "block_size"),
    ]
    for kw, exc, name in cases:
        xx = kw.pop("x")
        with pytest.raises(exc, match=rf"^{name}\b"):
            q.quantize_blockwise(xx, **kw)


def test_dequantize_errors_name_the_argument():
    x = np.random.default_rng(0).standard_normal(300).astype(np.float32)
    codes, absmax = q.quantize_blockwise(x)
    c4, a4 = q.quantize_blockwise(x, bits=4)
    ok = dict(n=300)
    cases = [
        ((codes.astype(np.int16), absmax), ok, TypeError, "codes"),
        ((list(codes), absmax), ok, TypeError, "codes"),
        ((codes[:-1], absmax), ok, ValueError, "codes"),
        ((codes.reshape(3, 100), absmax), ok, ValueError, "codes"),
        ((np.repeat(codes, 2)[::2], absmax), ok, ValueError, "codes"),
        ((codes, absmax.astype(np.float64)), ok, TypeError, "absmax"),
        ((codes, absmax[:1]), ok, ValueError, "absmax"),
        ((codes, np.repeat(absmax, 2)[::2]), ok, ValueError, "absmax"),
        ((c4, a4), dict(n=300, bits=4, block_size=64), ValueError, "absmax"),
        ((c4, a4), dict(n=299 - 2, bits=4), ValueError, "codes"),
        ((codes, absmax), dict(n=-1), ValueError, "n"),
        ((codes, absmax), dict(n=300.0), TypeError, "n"),
        ((codes, absmax), dict(n=300, bits=5), ValueError, "bits"),
        ((codes, absmax), dict(n=300, signed="yes"), TypeError, "signed"),
        ((codes, absmax), dict(n=300, dtype=np.int32), TypeError, "dtype"),
        ((codes, absmax), dict(n=300, dtype="nonsense"), TypeError, "dtype"),
    ]
    keep = (codes.copy(), absmax.copy())
    for args, kw, exc, name in cases:
        with pytest.raises(exc, match=rf"^{name}\b"):
            q.dequantize_blockwise(*args, **kw)
    np.testing.assert_array_equal(codes, keep[0])
    np.testing.assert_array_equal(absmax, keep[1])


def test_quantize_error_writes_nothing():
    x = np.ones(10, np.float32)
    snapshot = x.copy()
    with pytest.raises(ValueError):
        q.quantize_blockwise(x, bits=4, block_size=3)
    np.testing.assert_array_equal(x, snapshot)


def test_readonly_input_is_fine():
    x = np.linspace(-1, 1, 512, dtype=np.float32)
    x.flags.writeable = False
    codes, absmax = q.quantize_blockwise(x)
    assert absmax.tolist() == [1.0, 1.0]


def test_exported():
    import fastopt
    assert fastopt.quantize is q
    assert q.default_block_size(8) == 256 and q.default_block_size(4) == 128


# ---- peers ---------------------------------------------------------------------------------------------------------
def _near_tie(v, m, a, b, tol):
    """|v - m[a]| and |v - m[b]| equal to within tol (float64)."""
    v = v.astype(np.float64)
    m = m.astype(np.float64)
    return np.abs(np.abs(v - m[a]) - np.abs(v - m[b])) <= tol


@pytest.fixture(scope="module")
def bnb():
    pytest.importorskip("torch")
    return pytest.importorskip("bitsandbytes.functional")


@pytest.fixture(scope="module")
def torchao_quant():
    pytest.importorskip("torch")
    return pytest.importorskip("torchao.optim.quant_utils")


@pytest.mark.parametrize("signed", [True, False])
def test_bitsandbytes_map_is_identical(bnb, signed):
    np.testing.assert_array_equal(bnb.create_dynamic_map(signed).numpy(), q.code_map(8, signed))


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("kind", ["normal", "heavy"])
def test_bitsandbytes_quantize_blockwise(bnb, signed, kind):
    """bitsandbytes.functional.quantize_blockwise(x, code=create_dynamic_map(signed), blocksize=256) on CPU: the
    same absmax bit for bit; codes mostly the same. bitsandbytes' CPU float32 kernel (0.50) does not search the map:
    it rounds v to a uniform 65536-point grid on [-1, 1] and takes the grid point's nearest code, so where the map
    is finer than the grid (|v| below ~1e-3) or v is within a grid step of a boundary, its code can be another one.
    fastopt's code is then always at least as near to v, and bitsandbytes' within two grid steps of as near."""
    import torch
    rng = np.random.default_rng(40 + signed)
    n = 1 << 20
    x = sample(rng, n, signed, kind)
    codes, absmax = q.quantize_blockwise(x, signed=signed)
    qb, state = bnb.quantize_blockwise(torch.from_numpy(x.copy()), code=bnb.create_dynamic_map(signed),
                                       blocksize=256)
    np.testing.assert_array_equal(state.absmax.numpy(), absmax)
    cb = qb.numpy().reshape(-1).astype(np.int64)
    c = codes.astype(np.int64)
    m = q.code_map(8, signed).astype(np.float64)
    v = x.astype(np.float64) / np.repeat(absmax, 256)[:n]
    diff = c != cb
    ours, theirs = np.abs(v - m[c]), np.abs(v - m[cb])
    assert np.all(ours[diff] <= theirs[diff] + 1e-7)
    assert np.all(theirs <= ours + 2 * 2 / 65535 + 1e-7)
    y = q.dequantize_blockwise(codes, absmax, n=n, signed=signed)
    yb = bnb.dequantize_blockwise(qb, state).numpy().reshape(-1)
    am = np.repeat(absmax, 256)[:n].astype(np.float64)
    rel = np.abs(y - yb) / am
    excess = (np.abs(x - yb.astype(np.float64)) - np.abs(x - y.astype(np.float64))) / am
    print(f"\nbitsandbytes signed={signed} {kind}: codes differ {diff.mean():.4%} ({diff.sum()} of {n}), "
          f"max code distance {np.max(np.abs(c - cb))}, max |deq_fastopt - deq_bnb| / absmax {rel.max():.3g}, "
          f"max (|x - deq_bnb| - |x - deq_fastopt|) / absmax {excess.max():.3g}, min {excess.min():.3g}")
    assert excess.min() >= -1e-6 and excess.max() <= 2 * 2 / 65535 + 1e-6
    if kind == "normal":
        assert diff.mean() < (0.005 if signed else 0.05)
    assert rel.max() <= np.max(np.diff(m)) + 1e-7                   # at most the map's largest step


@pytest.mark.parametrize("signed", [True, False])
def test_bitsandbytes_dequantize_blockwise(bnb, signed):
    """bitsandbytes.functional.dequantize_blockwise of fastopt's codes and absmax: bit for bit fastopt's values."""
    import torch
    rng = np.random.default_rng(50 + signed)
    n = 100 * 256 + 77
    x = sample(rng, n, signed, "heavy")
    codes, absmax = q.quantize_blockwise(x, signed=signed)
    yb = bnb.dequantize_blockwise(torch.from_numpy(codes), absmax=torch.from_numpy(absmax),
                                  code=bnb.create_dynamic_map(signed), blocksize=256).numpy()
    np.testing.assert_array_equal(q.dequantize_blockwise(codes, absmax, n=n, signed=signed), yb)


@pytest.mark.parametrize("signed", [True, False])
def test_torchao_maps_are_identical(torchao_quant, signed):
    sub4 = pytest.importorskip("torchao.optim.subclass_4bit")
    want = sub4.get_qmap_signed() if signed else sub4.get_qmap_unsigned()
    np.testing.assert_array_equal(np.array(want, dtype=np.float32), q.code_map(4, signed))
    # torchao's 8-bit optimizer state uses the bitsandbytes dynamic map too
    np.testing.assert_array_equal(np.array(torchao_quant.create_dynamic_map(signed), dtype=np.float32),
                                  q.code_map(8, signed))


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("kind", ["normal", "heavy"])
def test_torchao_quantize(torchao_quant, bits, signed, kind):
    """torchao.optim.quant_utils: scale_tensor(x, block) then quantize_4bit_with_qmap / quantize_8bit_with_qmap
    (what torchao's OptimState4bit / OptimState8bit store; 4 bits: block 128, 8 bits: block 256). Same scale (= our
    absmax) and the same codes except at float32 ties: torchao rounds a tie up (residual >= half the gap), fastopt
    down. dequant_with_qmap of fastopt's codes gives fastopt's values bit for bit."""
    import torch
    rng = np.random.default_rng(60 + 4 * bits + 2 * signed + (kind == "heavy"))
    block = q.default_block_size(bits)
    n = block * 4096
    x = sample(rng, n, signed, kind)
    codes, absmax = q.quantize_blockwise(x, bits=bits, signed=signed)
    qmap = torch.from_numpy(q.code_map(bits, signed))
    xs, scale = torchao_quant.scale_tensor(torch.from_numpy(x.copy()), block)
    fn = torchao_quant.quantize_4bit_with_qmap if bits == 4 else torchao_quant.quantize_8bit_with_qmap
    ct = fn(xs, qmap).numpy().astype(np.int64)
    np.testing.assert_array_equal(scale.numpy(), absmax)
    c = _codes_flat(codes, n, bits).astype(np.int64)
    diff = c != ct
    print(f"\ntorchao {bits}-bit signed={signed} {kind}: codes differ {diff.mean():.5%} ({diff.sum()} of {n})")
    assert diff.mean() <= 1e-4
    assert np.all(_near_tie(xs.numpy()[diff], q.code_map(bits, signed), c[diff], ct[diff], 1e-7))
    yt = torchao_quant.dequant_with_qmap(torch.from_numpy(c.astype(np.uint8)), qmap, scale).numpy()
    np.testing.assert_array_equal(q.dequantize_blockwise(codes, absmax, n=n, bits=bits, signed=signed), yt)


def test_torchao_rounds_ties_up(torchao_quant):
    import torch
    m = q.code_map(4, False)
    v = np.array([1.0, (m[0] + m[1]) / 2, (m[7] + m[8]) / 2], dtype=np.float32)
    ct = torchao_quant.quantize_4bit_with_qmap(torch.from_numpy(v), torch.from_numpy(m)).numpy()
    codes, _ = q.quantize_blockwise(v, bits=4, signed=False)
    assert ct.tolist() == [15, 1, 8] and _unpack4(codes, 3).tolist() == [15, 0, 7]
