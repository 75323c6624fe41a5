"""Batch norm, training forward + backward, float32: fastopt against NumPy, torch and a roofline probe.

Peers, each one training step (forward with batch statistics and running-statistics update, then backward giving
dx, dgamma, dbeta) on the same data:
  numpy            tests/_reference_batchnorm.py computed in float32 (work=np.float32)
  torch            F.batch_norm under autograd, contiguous tensors (NCHW / (N, C))
  torch_cl         the same on channels_last tensors (4-d shapes)
  fastopt          fastopt.nn.BatchNorm(reuse_buffers=True) on the NCHW array (axis=1)
  fastopt_cl       the same on channels-last memory: the NumPy view of a torch channels_last tensor
                   (shape NCHW, memory NHWC, axis=1), i.e. the kernels' row layout
  fastopt_fresh    fastopt with a fresh y and dx every call (reuse_buffers=False, the layer's default)
  roofline         fastopt._bench.stream passes with the same memory traffic as the kernels' model (below)

How bytes are counted (B = x.nbytes): the kernels' traffic model is 8 B per step —
  forward:  statistics pass reads x (1 B); normalization pass reads x, writes y (2 B)
  backward: sums pass reads dy, x (2 B); dx pass reads dy, x, writes dx (3 B)
The roofline probe runs that traffic as three fused passes of ``stream(reads, writes)``, each counted
(len(reads) + len(writes)) B:  stream([x], [y]) (2 B) + stream([x, dy], [dx]) (3 B) + stream([w, dy], [w]) (3 B),
the last standing in for the three read-only streams (stream needs an output, so it reads w and dy and writes w in
place: 2 reads + 1 write-back in DRAM against the kernels' 3 reads). % of roofline = t(probe) / t(peer).
With NCHW the kernels run each channel's two passes back to back, so the second pass of a channel finds it in
cache (x of one channel: 64 x 3136 x 4 B = 0.8 MB) and the DRAM traffic is nearer 5 B than 8 B: the percentage can
pass 100% there. Write-allocate reads of y / dx are not counted (they happen in both the kernels and the probe).

Run as a pytest-benchmark suite (one peer after another):
    python -m pytest benchmarks/bench_batchnorm.py --benchmark-only -q
or as a script that alternates the peers in short rounds and prints medians, ratios and % of roofline
(the machine's speed drifts; only ratios within one run are meaningful):
    python benchmarks/bench_batchnorm.py [--rounds 15] [--threads 2]
"""
import argparse
import os
import sys

import numpy as np
import pytest

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(_ROOT, "tests"))
if __name__ == "__main__":
    sys.path.insert(0, _ROOT)            # run as a script from a source checkout: the in-place build

import fastopt  # noqa: E402
from fastopt import _bench  # noqa: E402

from _reference_batchnorm import backward as np_backward  # noqa: E402
from _reference_batchnorm import forward as np_forward  # noqa: E402

try:
    import torch
except ImportError:      # pragma: no cover
    torch = None

SHAPES = {"nc_256x1024": (256, 1024), "nchw_64x64x56x56": (64, 64, 56, 56)}
THREADS = 2


def make_peers(shape, seed=0):
    """{name: zero-argument callable doing one training forward + backward}."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    C = shape[1]
    peers = {}

    gamma, beta = np.ones(C, np.float32), np.zeros(C, np.float32)
    state = {"rm": np.zeros(C, np.float32), "rv": np.ones(C, np.float32)}

    def numpy_step():
        y, mean, invstd, state["rm"], state["rv"] = np_forward(x, gamma, beta, state["rm"], state["rv"],
                                                               training=True, work=np.float32)
        return np_backward(dy, x, gamma, beta, mean, invstd, work=np.float32)
    peers["numpy"] = numpy_step

    bn = fastopt.nn.BatchNorm(C, axis=1, reuse_buffers=True)
    peers["fastopt"] = lambda: (bn.forward(x), bn.backward(dy))
    bn_fresh = fastopt.nn.BatchNorm(C, axis=1)
    peers["fastopt_fresh"] = lambda: (bn_fresh.forward(x), bn_fresh.backward(dy))

    if len(shape) == 4:
        x_cl = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
        dy_cl = np.moveaxis(np.ascontiguousarray(np.moveaxis(dy, 1, -1)), -1, 1)
        bn_cl = fastopt.nn.BatchNorm(C, axis=1, reuse_buffers=True)
        peers["fastopt_cl"] = lambda: (bn_cl.forward(x_cl), bn_cl.backward(dy_cl))

    if torch is not None:
        def torch_peer(memory_format):
            tx = torch.from_numpy(x).contiguous(memory_format=memory_format).requires_grad_(True)
            tdy = torch.from_numpy(dy).contiguous(memory_format=memory_format)
            w = torch.ones(C, requires_grad=True)
            b = torch.zeros(C, requires_grad=True)
            rm, rv = torch.zeros(C), torch.ones(C)

            def step():
                tx.grad = w.grad = b.grad = None
                y = torch.nn.functional.batch_norm(tx, rm, rv, w, b, True, 0.1, 1e-5)
                y.backward(tdy)
            return step
        peers["torch"] = torch_peer(torch.contiguous_format)
        if len(shape) == 4:
            peers["torch_cl"] = torch_peer(torch.channels_last)

    n = x.size
    px, pdy, py, pdx = (rng.standard_normal(n, dtype=np.float32) for _ in range(4))
    pw = rng.standard_normal(n, dtype=np.float32)

    def roofline():
        _bench.stream([px], [py])
        _bench.stream([px, pdy], [pdx])
        _bench.stream([pw, pdy], [pw])
    peers["roofline"] = roofline
    return peers


def bytes_moved(shape):
    return 8 * int(np.prod(shape)) * 4


def _set_threads(n):
    fastopt.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = fastopt.get_num_threads()
    _set_threads(THREADS)
    yield
    fastopt.set_num_threads(before)


_PEER_NAMES = ["numpy", "torch", "torch_cl", "fastopt", "fastopt_cl", "fastopt_fresh", "roofline"]


@pytest.mark.parametrize("peer", _PEER_NAMES)
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_bn_train_step(benchmark, shape_name, peer):
    shape = SHAPES[shape_name]
    peers = make_peers(shape)
    if peer not in peers:
        pytest.skip(f"{peer} not available for {shape_name}")
    benchmark.group = f"batchnorm fwd+bwd f32 {shape_name}"
    benchmark.extra_info["bytes_model"] = bytes_moved(shape)
    rounds = 30 if len(shape) == 2 else 10
    benchmark.pedantic(peers[peer], rounds=rounds, iterations=1 if len(shape) == 4 else 20, warmup_rounds=1)


def main(argv=None):
    import time
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=THREADS)
    args = ap.parse_args(argv)
    _set_threads(args.threads)
    print(f"threads={args.threads} isa={fastopt.get_isa()} torch={'yes' if torch else 'no'}")
    for name, shape in SHAPES.items():
        peers = make_peers(shape)
        reps = 20 if len(shape) == 2 else 1
        times = {p: [] for p in peers}
        for f in peers.values():
            f()
        for _ in range(args.rounds):              # alternate the peers in short rounds
            for p, f in peers.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    f()
                times[p].append((time.perf_counter() - t0) / reps)
        med = {p: float(np.median(t)) for p, t in times.items()}
        gbs = bytes_moved(shape) / 1e9
        print(f"\n{name} {shape}: model {gbs * 1e3:.0f} MB per step")
        print(f"{'peer':<15}{'median':>12}{'GB/s(model)':>13}{'vs torch':>10}{'vs torch_cl':>12}{'% roofline':>12}")
        for p, t in med.items():
            vt = f"{med['torch'] / t:.2f}x" if "torch" in med else "-"
            vc = f"{med['torch_cl'] / t:.2f}x" if "torch_cl" in med else "-"
            print(f"{p:<15}{t * 1e3:>10.3f}ms{gbs / t:>13.1f}{vt:>10}{vc:>12}{100 * med['roofline'] / t:>11.0f}%")


if __name__ == "__main__":
    main()
