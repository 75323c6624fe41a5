"""Smoke case of benchmarks/accuracy_formats.py (the accuracy study of the optimizer-state formats): its --quick
run finishes and its tables list float32 and every format, for every optimizer, at both min_quantized_size, and
float32 params and bfloat16 ones with every compensation.

    pytest benchmarks/bench_accuracy_formats.py --benchmark-only [--quick]

The study itself is the script: ``python benchmarks/accuracy_formats.py`` (see its docstring). Its numbers are
not checked here (one seed, 3 epochs: they mean nothing); this only keeps the script from rotting.
"""
import io

import pytest

import accuracy_formats


def test_accuracy_formats_quick(benchmark, tmp_path):
    pytest.importorskip("ml_dtypes")             # state_dtype="bfloat16"
    pytest.importorskip("matplotlib")
    out = io.StringIO()
    png = tmp_path / "formats.png"
    benchmark.group = "accuracy_formats"
    benchmark.pedantic(accuracy_formats.main, args=(["--quick", "--plot", str(png)],), kwargs=dict(out=out),
                       rounds=1, iterations=1)
    text = out.getvalue()
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    mlp = {(r[1].strip(), r[2].strip(), r[3].strip()) for r in rows if len(r) == 10}
    logistic = {(r[1].strip(), r[2].strip(), r[3].strip()) for r in rows if len(r) == 9}
    for fmt, size in accuracy_formats.settings():
        state, size = accuracy_formats.label(fmt), "-" if fmt is None else str(size)
        for opt in accuracy_formats.MLP_OPTIMIZERS:
            assert (opt, state, size) in mlp, text
        for wd in accuracy_formats.LOGISTIC_WEIGHT_DECAYS:
            assert (f"{wd:g}", state, size) in logistic, text
    for opt in accuracy_formats.LSQ_OPTIMIZERS:
        for comp in accuracy_formats.LSQ_RUNS:
            assert (opt, "float32" if comp is None else "bfloat16", comp or "-") in logistic, text
    assert png.stat().st_size > 0
