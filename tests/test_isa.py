"""Instruction-set paths: selection (set_isa, FASTOPT_ISA), bit-identical results across paths, the machine code
of each path (objdump), and the baseline path on an emulated CPU without AVX (qemu-x86_64 -cpu Nehalem).

Build flags forbid FMA contraction (-ffp-contract=off) and the kernels use only IEEE-exact operations
(+ - * / sqrt, compare), so every path must give the same bits, not just close values.
"""
import json
import os
import platform
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import _config, _runtime

from _isa_cases import CASES, DTYPES, SIZES, all_trajectories, bit_mismatches, trajectory

ALL_ISAS = ("baseline", "avx2", "avx512")
WIDE_ISAS = [isa for isa in fastopt.available_isas() if isa != "baseline"]
HERE = os.path.dirname(os.path.abspath(__file__))
# The directory that holds the imported fastopt package (the checkout or site-packages): children import the same.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__)))


@pytest.fixture
def restore_isa():
    before, threads = fastopt.get_isa(), fastopt.get_num_threads()
    yield
    fastopt.set_isa(before)
    fastopt.set_num_threads(threads)


def _child_env(**extra):
    env = dict(os.environ)
    env.pop("FASTOPT_ISA", None)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, HERE])
    env.update(extra)
    return env


def _run_child(code, env, prefix=(), timeout=120):
    return subprocess.run([*prefix, sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=HERE)


# ------------------------------------------------------------------ selection in-process

def test_available_isas_start_with_baseline():
    isas = fastopt.available_isas()
    assert isas[0] == "baseline"
    assert set(isas) <= set(ALL_ISAS)
    assert isas == [isa for isa in ALL_ISAS if isa in isas]      # narrowest first
    assert fastopt.get_isa() in isas
    assert fastopt.config()["isa"] == fastopt.get_isa()
    if not os.environ.get("FASTOPT_ISA"):
        assert fastopt.get_isa() == isas[-1]                      # the widest path is the default


@pytest.mark.parametrize("isa", fastopt.available_isas())
def test_set_isa_reaches_every_kernel_module(isa, restore_isa):
    fastopt.set_isa(isa)
    assert fastopt.get_isa() == isa
    assert _runtime.isa_active() == isa
    mods = _config._kernel_modules()
    assert {"fastopt._optim", "fastopt._reduce", "fastopt._batchnorm", "fastopt._loss"} <= {m.__name__ for m in mods}
    for mod in mods:                       # one runtime: no module keeps an instruction-set choice of its own
        assert not hasattr(mod, "_isa_active"), mod.__name__


def test_show_config_reports_active_isa(restore_isa, capsys):
    fastopt.set_isa("baseline")
    fastopt.show_config()
    out = capsys.readouterr().out
    assert re.search(r"^isa\s+: baseline$", out, re.M), out
    assert re.search(r"^isas_available\s+: baseline", out, re.M), out


@pytest.mark.parametrize("bad, message", [
    ("sse9", r"Invalid instruction set 'sse9'"),
    ("", r"Invalid instruction set ''"),
    ("AVX2", r"Invalid instruction set 'AVX2'"),
])
def test_set_isa_rejects_unknown_names(bad, message, restore_isa):
    before = fastopt.get_isa()
    with pytest.raises(ValueError, match=message):
        fastopt.set_isa(bad)
    assert fastopt.get_isa() == before


@pytest.mark.parametrize("bad", [None, 1, b"avx2"])
def test_set_isa_rejects_non_str(bad, restore_isa):
    before = fastopt.get_isa()
    with pytest.raises(TypeError, match=r"Invalid instruction set .*expected a str"):
        fastopt.set_isa(bad)
    assert fastopt.get_isa() == before


@pytest.mark.skipif(set(fastopt.available_isas()) == set(ALL_ISAS), reason="this CPU runs every path")
def test_set_isa_rejects_unsupported_path(restore_isa):
    missing = [isa for isa in ALL_ISAS if isa not in fastopt.available_isas()][0]
    before = fastopt.get_isa()
    with pytest.raises(ValueError, match="not supported here"):
        fastopt.set_isa(missing)
    assert fastopt.get_isa() == before


# ------------------------------------------------------------------ bit-identical results

@pytest.mark.skipif(not WIDE_ISAS, reason="only the baseline path runs on this CPU")
@pytest.mark.parametrize("isa", WIDE_ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_id, cls_name, kwargs", CASES, ids=[c[0] for c in CASES])
def test_paths_bit_identical_to_baseline(case_id, cls_name, kwargs, dtype, isa, restore_isa):
    fastopt.set_num_threads(2)       # SIZES total > parallel_min_elements: the split path runs too
    fastopt.set_isa("baseline")
    expected = trajectory(cls_name, kwargs, dtype)
    fastopt.set_isa(isa)
    got = trajectory(cls_name, kwargs, dtype)
    assert sorted(got) == sorted(expected)
    bad = {name: bit_mismatches(got[name], expected[name]) for name in expected}
    bad = {name: count for name, count in bad.items() if count}
    assert not bad, f"{isa} differs from baseline in {bad} (elements with other bits)"
    # the steps moved every param (kernels that did nothing would agree too)
    rng = np.random.default_rng(0)
    for i, n in enumerate(SIZES):
        init = rng.standard_normal(n).astype(dtype)
        if n >= 1000:
            assert np.mean(got[f"param{i}"] != init) > 0.5, i


@pytest.mark.skipif(not WIDE_ISAS, reason="only the baseline path runs on this CPU")
@pytest.mark.parametrize("isa", WIDE_ISAS)
def test_paths_bit_identical_with_nonfinite_gradients(isa, restore_isa):
    """NaN and inf in gradients propagate the same way on every path (amsgrad's max is NaN-propagating)."""
    results = {}
    for path in ("baseline", isa):
        fastopt.set_isa(path)
        for dtype in DTYPES:
            for cls_name, kwargs in [("Adam", dict(amsgrad=True)), ("SGD", dict(lr=0.1, momentum=0.9)),
                                     ("Adamax", {}), ("RMSprop", dict(centered=True)), ("Lion", {})]:
                p = np.linspace(-1, 1, 1003).astype(dtype)
                opt = getattr(fastopt, cls_name)([p], **kwargs)
                for step in range(3):
                    g = np.cos(np.arange(1003) + step).astype(dtype)
                    g[5 + step::17] = np.nan
                    g[9 + step::23] = np.inf
                    g[11 + step::29] = -np.inf
                    opt.step([g])
                results[path, dtype, cls_name] = p
    for (path, dtype, cls_name), p in results.items():
        if path == isa:
            ref = results["baseline", dtype, cls_name]
            assert np.isnan(p).any()
            assert bit_mismatches(p, ref) == 0, (cls_name, dtype)


# Reductions (gradient norms) are not bit-identical across paths: a wider vector sums in another order. Every path
# accumulates in double, so the stated tolerance is a relative 1e-12 (the float64 rounding bound for these sizes
# is ~n * 1.1e-16 = 5e-12 in the worst case; typical errors are ~1e-15); the inf-norm (a max) is exact.
# Elementwise passes (clip_grad_value_, the scale of clip_grad_norm_ given the same coefficient) are exact.
NORM_RTOL = 1e-12


def _grad_list(dtype, seed=3):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3)).astype(dtype) for n in (1, 7, 1000, 40001)]


@pytest.mark.skipif(not WIDE_ISAS, reason="only the baseline path runs on this CPU")
@pytest.mark.parametrize("isa", WIDE_ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_reductions_agree_across_paths(isa, dtype, threads, restore_isa):
    clip = pytest.importorskip("fastopt.clip")
    fastopt.set_num_threads(threads)
    got = {}
    for path in ("baseline", isa):
        fastopt.set_isa(path)
        norms = {p: clip.get_total_norm(_grad_list(dtype), p) for p in (1.0, 2.0, 3.0, np.inf)}
        clamped = _grad_list(dtype)
        clip.clip_grad_value_(clamped, 0.5)
        scaled = _grad_list(dtype)
        clip.clip_grad_norm_(scaled, 1.0)
        got[path] = norms, clamped, scaled
    (n_ref, c_ref, s_ref), (n_isa, c_isa, s_isa) = got["baseline"], got[isa]
    for p in n_ref:
        if p == np.inf:
            assert n_isa[p] == n_ref[p]
        else:
            assert n_isa[p] == pytest.approx(n_ref[p], rel=NORM_RTOL, abs=0), p
    for a, b in zip(c_isa, c_ref):
        assert bit_mismatches(a, b) == 0
        assert np.abs(a).max() <= 0.5
    # the clipping coefficient max_norm / (norm + 1e-6) inherits the norm's relative error, then is rounded
    # to the dtype: the scaled gradients agree to a few units in the last place
    eps = np.finfo(dtype).eps
    for a, b in zip(s_isa, s_ref):
        np.testing.assert_allclose(a, b, rtol=4 * eps, atol=0)


# ------------------------------------------------------------------ FASTOPT_ISA in a fresh process

@pytest.mark.parametrize("isa", fastopt.available_isas())
def test_fastopt_isa_environment_is_honoured(isa):
    code = "import fastopt; print(fastopt.get_isa()); print(fastopt.__file__)"
    res = _run_child(code, _child_env(FASTOPT_ISA=isa))
    assert res.returncode == 0, res.stderr
    got_isa, got_file = res.stdout.split()
    assert got_isa == isa
    assert os.path.samefile(got_file, fastopt.__file__)      # the child imported this same fastopt
    assert "FASTOPT_ISA" not in res.stderr


@pytest.mark.parametrize("value", ["sse9", "AVX512", "baseline,avx2"]
                         + [isa for isa in ALL_ISAS if isa not in fastopt.available_isas()])
def test_fastopt_isa_bad_value_warns_and_falls_back(value):
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import fastopt; print(fastopt.get_isa()); print(fastopt.available_isas()[-1])")
    res = _run_child(code, _child_env(FASTOPT_ISA=value))
    assert res.returncode == 0, res.stderr
    active, widest = res.stdout.split()
    assert active == widest                                   # default choice kept
    assert "RuntimeWarning" in res.stderr and "FASTOPT_ISA ignored" in res.stderr, res.stderr
    assert repr(value) in res.stderr


def test_fastopt_isa_empty_is_default():
    res = _run_child("import fastopt; print(fastopt.get_isa(), fastopt.available_isas()[-1])",
                     _child_env(FASTOPT_ISA="  "))
    assert res.returncode == 0, res.stderr
    active, widest = res.stdout.split()
    assert active == widest and res.stderr == ""


# ------------------------------------------------------------------ machine code of each path

def _objects_by_source(so_path):
    """{source file name: [(start, end) of each local function]} from the .so's symbol table, or None."""
    res = subprocess.run(["readelf", "-sW", so_path], capture_output=True, text=True, check=True)
    groups, current = {}, None
    for line in res.stdout.splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].endswith(":"):
            continue
        if f[3] == "FILE":
            current = f[7]
            groups.setdefault(current, [])
        elif f[3] == "FUNC" and f[4] == "LOCAL" and current is not None:
            size = int(f[2], 16) if f[2].startswith("0x") else int(f[2])    # readelf writes big sizes in hex
            if size > 0:
                start = int(f[1], 16)
                groups[current].append((start, start + size))
    return groups or None


def _vector_registers(so_path, ranges):
    found = set()
    for start, end in ranges:
        res = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                              f"--stop-address={end:#x}", so_path], capture_output=True, text=True, check=True)
        found |= set(re.findall(r"%([xyz]mm)\d+", res.stdout))
    return found


@pytest.mark.skipif(platform.machine() != "x86_64" or not sys.platform.startswith("linux"),
                    reason="ELF on x86-64 only")
@pytest.mark.skipif(not (shutil.which("objdump") and shutil.which("readelf")), reason="binutils absent")
def test_each_path_uses_its_vector_width():
    """Every kernels_<isa>.c object (in fastopt._runtime, which holds every family's kernels): avx512 uses zmm,
    avx2 ymm but no zmm, baseline neither (SSE2 xmm only)."""
    checked = 0
    for mod in [_runtime] + _config._kernel_modules():
        groups = _objects_by_source(mod.__file__)
        if groups is None:
            pytest.skip(f"{mod.__file__} has no symbol table (stripped)")
        for source, ranges in groups.items():
            m = re.fullmatch(r"\w+_(baseline|avx2|avx512)\.c", source)
            if not m or not ranges:
                continue
            regs = _vector_registers(mod.__file__, ranges)
            isa = m.group(1)
            if isa == "avx512":
                assert "zmm" in regs, source
            elif isa == "avx2":
                assert "ymm" in regs and "zmm" not in regs, (source, regs)
            else:
                assert "xmm" in regs and not regs & {"ymm", "zmm"}, (source, regs)
            checked += 1
    assert checked >= 3                                   # kernels_baseline.c, kernels_avx2.c, kernels_avx512.c


# ------------------------------------------------------------------ baseline on a CPU without AVX

QEMU = shutil.which("qemu-x86_64")
_no_qemu = pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64",
                              reason="qemu-x86_64 (Debian qemu-user) not installed")


def needs_qemu(test):
    """Skipped without qemu-x86_64; slow (an emulated CPU): deselected by -m "not slow"."""
    return pytest.mark.slow(_no_qemu(test))


def _qemu_env(**extra):
    # NumPy's bundled OpenBLAS picks its kernels from CPUID (misread under qemu) or from OPENBLAS_CORETYPE,
    # which may name an AVX core (this machine sets Haswell): pin a core type the emulated CPU has.
    return _child_env(OPENBLAS_CORETYPE="Nehalem", **extra)


@needs_qemu
def test_baseline_runs_on_cpu_without_avx(tmp_path, restore_isa):
    """The built extension, run by qemu-user as a Nehalem (SSE4.2, no AVX) CPU, chooses the baseline path and
    gives bit for bit the results every path gives on this machine."""
    out = tmp_path / "nehalem.npz"
    res = subprocess.run([QEMU, "-cpu", "Nehalem", sys.executable, os.path.join(HERE, "_isa_cases.py"), str(out)],
                         env=_qemu_env(), capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["isa"] == "baseline" and info["available"] == ["baseline"], info
    with np.load(out) as saved:
        emulated = {name: saved[name] for name in saved.files}
    for isa in fastopt.available_isas():
        fastopt.set_isa(isa)
        native = all_trajectories()
        assert sorted(native) == sorted(emulated)
        bad = {name: n for name in native if (n := bit_mismatches(native[name], emulated[name]))}
        assert not bad, f"native {isa} differs from emulated baseline: {bad}"


@needs_qemu
def test_fastopt_isa_unsupported_on_emulated_cpu_falls_back():
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import fastopt; print(fastopt.get_isa())")
    res = _run_child(code, _qemu_env(FASTOPT_ISA="avx512"), prefix=(QEMU, "-cpu", "Nehalem"), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["baseline"]
    assert "FASTOPT_ISA ignored" in res.stderr and "not supported here" in res.stderr, res.stderr
