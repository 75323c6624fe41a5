"""Extension modules of fastopt. Metadata lives in pyproject.toml.

Every fastopt/_<name>.pyx is one extension module. The build rule, one line each:
- fastopt._runtime (its header: `# csrc-sources: runtime.c kernels_baseline.c kernels_avx2.c kernels_avx512.c`)
  is the only extension compiled with csrc/runtime.c and with the kernels: it owns the one runtime state
  (instruction-set path and its kernel tables, serial threshold, fork rule) and exports it in a capsule.
  csrc/kernels_<isa>.c sets one target pragma and instantiates every family's kernels (csrc/<family>_isa.inc).
- Every other module names the kernel families whose drivers it owns (`# csrc-families: optim`, or several:
  `# csrc-families: loss regularize`) and is compiled with csrc/<family>*.c of each, plus csrc/runtime_client.c
  (the pointer to the runtime state, set at import); its drivers reach their kernels through the runtime's tables.
- Each family is owned by exactly one module (a family named twice is a build error): no C is compiled twice,
  with one exception: fastopt._optim names csrc/quantize.c (owned by fastopt._quantize) in its csrc-sources, since
  its low-precision optimizer state calls the blockwise quantization primitives per block and an extension cannot
  call another extension's C functions; quantize.c keeps no state two modules could disagree on (each copy builds
  the same tables from the same maps).
OpenMP is used when the compiler has it (FASTOPT_NO_OPENMP=1 forces a single-threaded build). Kernels are
compiled for the baseline target and, with target pragmas, for AVX2 and AVX-512, chosen at run time — never
-march=native.
"""
import glob
import os
import re
import sys
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler

CSRC = "csrc"
BASE_FLAGS = [
    "-O3",
    "-fno-math-errno",       # lets gcc vectorize sqrt; no result changes
    "-ffp-contract=off",     # no FMA contraction: every ISA path gives the same bits
    "-fopenmp-simd",
    "-fvisibility=hidden",
    "-Wno-unused-function",
    "-g0",                   # no debug info: 5x smaller extensions (Python's default CFLAGS say -g)
]


def openmp_flags():
    """-fopenmp if the C compiler can build and link an OpenMP program, else [] (with a warning)."""
    if os.environ.get("FASTOPT_NO_OPENMP", "0") not in ("", "0"):
        print("fastopt: FASTOPT_NO_OPENMP set, building without OpenMP")
        return []
    if sys.platform == "win32":
        return ["/openmp"]
    cc = new_compiler()
    customize_compiler(cc)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            objs = cc.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            cc.link_executable(objs, os.path.join(tmp, "omp_probe"), extra_postargs=["-fopenmp"])
        except (CompileError, LinkError):
            warnings.warn("fastopt: the C compiler has no OpenMP; building single-threaded kernels")
            return []
    return ["-fopenmp"]


def sanitize_flags():
    """FASTOPT_SANITIZE=address,undefined (or thread) adds -fsanitize=... to compile and link flags (.ci/sanitize.sh)."""
    kinds = os.environ.get("FASTOPT_SANITIZE", "").strip()
    if not kinds:
        return []
    print(f"fastopt: FASTOPT_SANITIZE={kinds}, building with -fsanitize={kinds}")
    return [f"-fsanitize={kinds}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g"]


def header_list(pyx, key):
    """The words of the `# <key>: ...` line in the first lines of `pyx` ([] if none)."""
    with open(pyx) as f:
        head = f.read(2000)
    m = re.search(rf"^# {key}:(.*)$", head, re.M)
    return m.group(1).split() if m else []


def c_sources(pyx, owners):
    """The C sources and dependencies of one extension (see the module docstring); `owners` maps each family
    to the module that compiles it."""
    name = "fastopt." + os.path.splitext(os.path.basename(pyx))[0]
    own = header_list(pyx, "csrc-sources")
    sources = [os.path.join(CSRC, f) for f in own] or [os.path.join(CSRC, "runtime_client.c")]
    # headers and the .inc kernel bodies: editing one rebuilds the extension (distutils only sees sources)
    depends = sorted(glob.glob(os.path.join(CSRC, "*.h")) + glob.glob(os.path.join(CSRC, "*.inc")))
    for family in header_list(pyx, "csrc-families"):
        if owners.setdefault(family, name) != name:
            raise SystemExit(f"setup.py: C family {family!r} is claimed by {owners[family]} and {name}")
        sources += sorted(glob.glob(os.path.join(CSRC, family + "*.c")))
    return name, sources, depends


def extensions():
    flags = openmp_flags() + sanitize_flags()
    exts = []
    owners = {}
    for pyx in sorted(glob.glob(os.path.join("fastopt", "_*.pyx"))):
        name, sources, depends = c_sources(pyx, owners)
        exts.append(Extension(
            name,
            sources=[pyx] + sources,
            depends=depends,
            include_dirs=[CSRC, numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
            extra_compile_args=BASE_FLAGS + flags,
            extra_link_args=flags,
        ))
    return cythonize(exts, compiler_directives={"language_level": "3"}, include_path=["fastopt"],
                     nthreads=os.cpu_count() or 1)


class ParallelBuildExt(build_ext):
    """Compiles the C sources of the extensions on every core (``build_ext --parallel`` by default)."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


# The C that Cython generates goes into the sdist (as extension sources) but not into wheels: it is 2 MB of
# nothing an installed package needs.
setup(ext_modules=extensions(), cmdclass={"build_ext": ParallelBuildExt},
      exclude_package_data={"fastopt": ["*.c"]})
