"""File-backed parameters: np.memmap params (mode r+) are updated in place like in-memory arrays; read-only memmaps
serve as gradients."""
import numpy as np
import pytest

import fastopt

SHAPES = [(1000,), (37, 41)]


def _files(tmp_path, arrays, prefix):
    maps = []
    for i, a in enumerate(arrays):
        path = tmp_path / f"{prefix}{i}.bin"
        a.tofile(path)
        maps.append((path, a.dtype, a.shape))
    return maps


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Lion"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_memmap_params_match_in_memory_run(tmp_path, name, dtype):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(5)]
    gfiles = [_files(tmp_path, gs, f"g{k}_") for k, gs in enumerate(grads)]
    pfiles = _files(tmp_path, init, "p")

    memory = [p.copy() for p in init]
    ref = getattr(fastopt, name)(memory, lr=1e-2)
    params = [np.memmap(path, dtype=dt, mode="r+", shape=sh) for path, dt, sh in pfiles]
    opt = getattr(fastopt, name)(params, lr=1e-2)
    for gs, gf in zip(grads, gfiles):
        ref.step(gs)
        opt.step([np.memmap(path, dtype=dt, mode="r", shape=sh) for path, dt, sh in gf])   # read-only grads
    for p in params:
        p.flush()
    del opt, params
    reopened = [np.fromfile(path, dtype=dt).reshape(sh) for path, dt, sh in pfiles]
    for a, b in zip(reopened, memory):
        np.testing.assert_array_equal(a, b)


def test_readonly_memmap_param_is_rejected(tmp_path):
    a = np.ones(10, np.float32)
    a.tofile(tmp_path / "p.bin")
    ro = np.memmap(tmp_path / "p.bin", dtype=np.float32, mode="r", shape=(10,))
    with pytest.raises(ValueError, match=r"params\[0\].*read-only"):
        fastopt.SGD([ro], lr=1.0)


def test_memmap_gradient_for_functional_and_clip(tmp_path):
    g = np.linspace(-3, 3, 64)
    g.tofile(tmp_path / "g.bin")
    gm = np.memmap(tmp_path / "g.bin", dtype=np.float64, mode="r", shape=(64,))
    assert fastopt.get_total_norm([gm]) == pytest.approx(np.linalg.norm(g), rel=1e-14)
    p, buf = np.zeros(64), np.zeros(64)
    fastopt.functional.sgd_(p, gm, buf, lr=0.5, momentum=0.9)
    np.testing.assert_array_equal(p, -0.5 * g)
