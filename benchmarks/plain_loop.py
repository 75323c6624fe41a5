"""fastopt's step against the plain C loop of the same formula (issue 12, item 4: "the in-cache step at the limit").

Run (from /tmp, 1 thread):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 PYTHONPATH=/path/to/fastopt \\
        python /path/to/fastopt/benchmarks/plain_loop.py [--quick] [--rounds 21] [--opts adam rmsprop ...]

For each optimizer, a plain single-tensor C loop of its formula with at most one division per element (Adam:
m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p = p decay - step_size m / (sqrt(v) inv_bc2_sqrt + eps)), its
per-step scalars computed in double in the same C call, is compiled at run time with the system compiler
(``cc -O3 -march=native -fno-fast-math -fno-math-errno``: -fno-math-errno lets gcc vectorize sqrt, as in fastopt's
build, and changes no result) and called through ctypes. Before timing, a few steps of both from the same start
must agree (rtol 1e-4 float32, 1e-10 float64, param and state), so a wrong plain loop cannot give a good ratio.
Timing: fastopt.set_num_threads(1); alternating rounds, each timing fastopt's step and the plain loop once over
enough repetitions for about 5 ms; printed: the median over rounds of fastopt / plain, per optimizer, dtype and n,
for the whole step (both sides are called from Python once per step, so this includes fastopt's per-call overhead,
about 5 us, against ctypes' ~1 us) and for the kernels alone (each side's time at n = 16, timed in the same
rounds, subtracted). Skipped with a message when there is no C compiler.

Measured (2 shared cores, AMD EPYC znver3, avx2 path, 41 rounds, mean of two runs; before -> after the reciprocal
kernels), kernel ratio at n = 1e4 / 1e5 / 1e6, float32: Adam 1.39/1.33/1.20 -> 1.05/1.02/0.93, NAdam
1.75/1.69/1.48 -> 1.04/1.08/0.99; RMSprop, Adagrad, Adamax, SGD unchanged (<= 1.06 but SGD 1.12 at 1e4); Lion
1.19/1.15/1.08 (no FMA contraction, NaN-propagating sign). The whole step at n = 1e4 is 1.2-2x the plain loop:
fastopt's per-call cost (~2.8 us against ctypes' ~0.7 us at n = 16) is most of a 1e4 step.
"""
import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import fastopt

# name: (fastopt class, kwargs, plain hparams h[], number of state arrays, C body, torch state names to compare)
# The C body sees: p, g, s0, s1 (REAL *), n, h (hparams), t (this step, double), SQRT; it declares its scalars.
_OPTS = {
    "adam": ("Adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), [1e-3, 0.9, 0.999, 1e-8, 0.0], 2, """
    const REAL b1 = h[1], w1 = 1.0 - h[1], b2 = h[2], w2 = 1.0 - h[2], eps = h[3];
    const REAL step_size = h[0] / (1.0 - pow(h[1], t)), inv = 1.0 / sqrt(1.0 - pow(h[2], t)), decay = 1.0 - h[0] * h[4];
    for (i = 0; i < n; ++i) {
        s0[i] = b1 * s0[i] + w1 * g[i];
        s1[i] = b2 * s1[i] + w2 * g[i] * g[i];
        p[i] = p[i] * decay - step_size * s0[i] / (SQRT(s1[i]) * inv + eps);
    }""", ("exp_avg", "exp_avg_sq")),
    "adamw": ("AdamW", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
              [1e-3, 0.9, 0.999, 1e-8, 1e-2], 2, None, ("exp_avg", "exp_avg_sq")),
    "rmsprop": ("RMSprop", dict(lr=1e-2, alpha=0.99, eps=1e-8), [1e-2, 0.99, 1e-8], 1, """
    const REAL al = h[1], w = 1.0 - h[1], eps = h[2], lr = h[0];
    (void)t;
    for (i = 0; i < n; ++i) {
        s0[i] = al * s0[i] + w * g[i] * g[i];
        p[i] = p[i] - lr * g[i] / (SQRT(s0[i]) + eps);
    }""", ("square_avg",)),
    "adagrad": ("Adagrad", dict(lr=1e-2, eps=1e-10), [1e-2, 0.0, 1e-10], 1, """
    const REAL clr = h[0] / (1.0 + (t - 1.0) * h[1]), eps = h[2];
    for (i = 0; i < n; ++i) {
        s0[i] = s0[i] + g[i] * g[i];
        p[i] = p[i] - clr * g[i] / (SQRT(s0[i]) + eps);
    }""", ("sum",)),
    "adamax": ("Adamax", dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8), [2e-3, 0.9, 0.999, 1e-8], 2, """
    const REAL b1 = h[1], w1 = 1.0 - h[1], b2 = h[2], eps = h[3], clr = h[0] / (1.0 - pow(h[1], t));
    for (i = 0; i < n; ++i) {
        const REAL a = (g[i] < 0 ? -g[i] : g[i]) + eps, u = b2 * s1[i];
        s0[i] = b1 * s0[i] + w1 * g[i];
        s1[i] = u > a ? u : a;
        p[i] = p[i] - clr * s0[i] / s1[i];
    }""", ("exp_avg", "exp_inf")),
    "nadam": ("NAdam", dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, momentum_decay=4e-3),
              [2e-3, 0.9, 0.999, 1e-8, 4e-3], 2, """
    const double mu = h[1] * (1.0 - 0.5 * pow(0.96, t * h[4])), mu1 = h[1] * (1.0 - 0.5 * pow(0.96, (t + 1.0) * h[4]));
    const double prod = (aux[0] = (t == 1.0 ? 1.0 : aux[0]) * mu);
    const REAL b1 = h[1], w1 = 1.0 - h[1], b2 = h[2], w2 = 1.0 - h[2], eps = h[3];
    const REAL cg = -h[0] * (1.0 - mu) / (1.0 - prod), cm = -h[0] * mu1 / (1.0 - prod * mu1);
    const REAL inv = 1.0 / sqrt(1.0 - pow(h[2], t));
    for (i = 0; i < n; ++i) {
        s0[i] = b1 * s0[i] + w1 * g[i];
        s1[i] = b2 * s1[i] + w2 * g[i] * g[i];
        p[i] = p[i] + (cg * g[i] + cm * s0[i]) / (SQRT(s1[i]) * inv + eps);
    }""", ("exp_avg", "exp_avg_sq")),
    "sgd": ("SGD", dict(lr=1e-2, momentum=0.9), [1e-2, 0.9], 1, """
    const REAL lr = h[0], mu = h[1];
    (void)t;
    for (i = 0; i < n; ++i) {
        s0[i] = mu * s0[i] + g[i];
        p[i] = p[i] - lr * s0[i];
    }""", ("momentum_buffer",)),
    "lion": ("Lion", dict(lr=1e-4, betas=(0.9, 0.99)), [1e-4, 0.9, 0.99], 1, """
    const REAL lr = h[0], b1 = h[1], w1 = 1.0 - h[1], b2 = h[2], w2 = 1.0 - h[2];
    (void)t;
    for (i = 0; i < n; ++i) {
        const REAL c = b1 * s0[i] + w1 * g[i];
        p[i] = p[i] - lr * (REAL)((c > 0) - (c < 0));
        s0[i] = b2 * s0[i] + w2 * g[i];
    }""", ("exp_avg",)),
}
_OPTS["adamw"] = _OPTS["adamw"][:4] + (_OPTS["adam"][4],) + _OPTS["adamw"][5:]

_HEAD = "#include <math.h>\n#include <stdint.h>\n"
_FUNC = """
void {name}_{sfx}(void **a, int64_t n, const double *h, int64_t *k, double *aux)
{{
    REAL *restrict p = (REAL *)a[0];
    const REAL *restrict g = (const REAL *)a[1];
    REAL *restrict s0 = (REAL *)a[2], *restrict s1 = (REAL *)a[3];
    const double t = (double)++*k;
    int64_t i;
    (void)s1; (void)aux;
    {{{body}
    }}
}}
"""
_DTYPES = {np.float32: ("f32", "float", "sqrtf"), np.float64: ("f64", "double", "sqrt")}


def compiler():
    """The C compiler on PATH (cc, gcc or clang), or None."""
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def build(tmpdir, names=tuple(_OPTS)):
    """ctypes library of the plain loops of `names` (both dtypes), compiled in `tmpdir`; None without a compiler."""
    cc = compiler()
    if cc is None:
        return None
    src = [_HEAD]
    for dtype, (sfx, real, sqrt) in _DTYPES.items():
        src.append(f"#define REAL {real}\n#define SQRT {sqrt}\n")
        src += [_FUNC.format(name=nm, sfx=sfx, body=_OPTS[nm][4]) for nm in names]
        src.append("#undef REAL\n#undef SQRT\n")
    c, so = os.path.join(tmpdir, "plain.c"), os.path.join(tmpdir, "plain.so")
    with open(c, "w") as f:
        f.write("".join(src))
    cmd = [cc, "-O3", "-march=native", "-fno-fast-math", "-fno-math-errno", "-shared", "-fPIC", "-o", so, c, "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    lib = ctypes.CDLL(so)
    for dtype, (sfx, _, _) in _DTYPES.items():
        for nm in names:
            fn = getattr(lib, f"{nm}_{sfx}")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            fn.restype = None
    return lib


class Plain:
    """One tensor stepped by the plain loop: p, g, two state arrays, the step count and scratch aux."""

    def __init__(self, lib, name, p, g):
        dtype = p.dtype.type
        self.p, self.g = p, g
        self.s = [np.zeros_like(p), np.zeros_like(p)]
        self.h = np.array(_OPTS[name][2], np.float64)
        self.k, self.aux = np.zeros(1, np.int64), np.zeros(1, np.float64)
        self._ptrs = (ctypes.c_void_p * 4)(p.ctypes.data, g.ctypes.data, self.s[0].ctypes.data, self.s[1].ctypes.data)
        fn = getattr(lib, f"{name}_{_DTYPES[dtype][0]}")
        args = (ctypes.addressof(self._ptrs), p.size, self.h.ctypes.data, self.k.ctypes.data, self.aux.ctypes.data)
        self.step = lambda _keep=self: fn(*args)     # _keep: the arrays live as long as the step


def _problem(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), (0.1 * rng.standard_normal(n)).astype(dtype)


def make_pair(lib, name, n, dtype):
    """(fastopt step, plain step, fastopt optimizer, Plain) on the same start, state created by one step each."""
    cls, kwargs = _OPTS[name][0], _OPTS[name][1]
    p, g = _problem(n, dtype)
    q = p.copy()
    opt = getattr(fastopt, cls)([p], **kwargs)
    grads = [g]
    plain = Plain(lib, name, q, g)
    opt.step(grads)
    plain.step()
    return (lambda: opt.step(grads)), plain.step, opt, plain


def check(lib, name, dtype, n=1003, steps=5):
    """Raises AssertionError unless the plain loop and fastopt agree after `steps` steps (param and state)."""
    fo_step, pl_step, opt, plain = make_pair(lib, name, n, dtype)
    for _ in range(steps - 1):
        fo_step()
        pl_step()
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(plain.p, opt.param_groups[0]["params"][0], rtol=rtol, atol=rtol * 1e-2,
                               err_msg=f"{name} {dtype.__name__}: param")
    for j, key in enumerate(_OPTS[name][5]):
        np.testing.assert_allclose(plain.s[j], opt.state[0][key], rtol=rtol, atol=rtol * 1e-4,
                                   err_msg=f"{name} {dtype.__name__}: {key}")


def _time(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def ratio(lib, name, n, dtype, rounds, target=5e-3):
    """(step, kernel): medians over `rounds` alternating rounds of fastopt's step time / the plain loop's, and the
    same with each side's per-call time at n = 16 (measured in the same rounds) subtracted: the kernels alone."""
    fo_step, pl_step, _, _ = make_pair(lib, name, n, dtype)
    fo_tiny, pl_tiny, _, _ = make_pair(lib, name, 16, dtype)
    reps = max(1, int(target / max(_time(pl_step, 3), 1e-7)))
    reps_tiny = max(1, int(target / max(_time(pl_tiny, 3), 1e-7)))
    step, kernel = [], []
    for r in range(rounds):
        order = (fo_step, pl_step, fo_tiny, pl_tiny) if r % 2 == 0 else (pl_tiny, fo_tiny, pl_step, fo_step)
        t = {id(fn): _time(fn, reps if fn in (fo_step, pl_step) else reps_tiny) for fn in order}
        step.append(t[id(fo_step)] / t[id(pl_step)])
        kernel.append((t[id(fo_step)] - t[id(fo_tiny)]) / (t[id(pl_step)] - t[id(pl_tiny)]))
    return float(np.median(step)), float(np.median(kernel))


def run(names=tuple(_OPTS), sizes=(10_000, 100_000, 1_000_000), dtypes=(np.float32, np.float64), rounds=21,
        target=5e-3, out=sys.stdout):
    """{(name, dtype name, n): (step ratio, kernel ratio)}; None (after a message) when there is no C compiler."""
    if compiler() is None:
        print("plain_loop: no C compiler (cc, gcc, clang) on PATH: skipped", file=out)
        return None
    before = fastopt.get_num_threads()
    fastopt.set_num_threads(1)
    res = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lib = build(tmp, names)
            for name in names:
                for dtype in dtypes:
                    check(lib, name, dtype)
            cols = "".join(f"{f'n={n:.0e}':>10}" for n in sizes)
            w = 10 * len(sizes)
            print(f"{'':<19}{'step (incl. per-call)':^{w}} | {'kernel (n=16 time subtracted)':^{w}}", file=out)
            print(f"{'optimizer':<10} {'dtype':<8}{cols} |{cols}", file=out)
            for name in names:
                for dtype in dtypes:
                    row = [ratio(lib, name, n, dtype, rounds, target) for n in sizes]
                    res.update({(name, dtype.__name__, n): r for n, r in zip(sizes, row)})
                    print(f"{name:<10} {dtype.__name__:<8}" + "".join(f"{r[0]:9.2f}x" for r in row) + " |"
                          + "".join(f"{r[1]:9.2f}x" for r in row), file=out, flush=True)
    finally:
        fastopt.set_num_threads(before)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: n = 1e3, 3 rounds of ~0.2 ms")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--opts", nargs="+", default=list(_OPTS), choices=list(_OPTS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    args = ap.parse_args(argv)
    if args.quick:
        run(args.opts, (1000,), rounds=3, target=2e-4)
        return
    print(f"fastopt {fastopt.__version__}, isa {fastopt.get_isa()}, 1 thread; {args.rounds} alternating rounds of "
          f"~5 ms each; median of fastopt step time / plain C loop time")
    run(args.opts, tuple(args.sizes), rounds=args.rounds)


if __name__ == "__main__":
    main()
