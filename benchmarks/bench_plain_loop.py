"""Smoke case of benchmarks/plain_loop.py (fastopt's step against the plain C loop of the same formula): the
plain loops compile, agree with fastopt, and one quick comparison runs. Skipped without a C compiler.

    pytest benchmarks/bench_plain_loop.py --benchmark-only [--quick]

The measurement itself is the script: ``python benchmarks/plain_loop.py`` (see its docstring).
"""
import io
import tempfile

import numpy as np
import pytest

import plain_loop


def test_plain_loop_comparison(benchmark, request):
    if plain_loop.compiler() is None:
        pytest.skip("no C compiler (cc, gcc, clang) on PATH")
    quick = request.config.getoption("--quick")
    names = ("adam", "sgd") if quick else tuple(plain_loop._OPTS)
    with tempfile.TemporaryDirectory() as tmp:
        lib = plain_loop.build(tmp, names)
        for name in names:
            for dtype in (np.float32, np.float64):
                plain_loop.check(lib, name, dtype)
    out = io.StringIO()
    benchmark.group = "plain_loop"
    benchmark.pedantic(plain_loop.run, args=(names, (1000,) if quick else (100_000,)),
                       kwargs=dict(rounds=3 if quick else 11, target=2e-4 if quick else 5e-3, out=out),
                       rounds=1, iterations=1)
    text = out.getvalue()
    assert all(name in text for name in names), text
