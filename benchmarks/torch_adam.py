"""``fastopt.torch.Adam`` against ``torch.optim.Adam(fused=True)`` on CPU tensors (issue 16's targets):

    python benchmarks/torch_adam.py [--rounds 15] [--steps 20]

Cases: the parameters of a 12-layer ``torch.nn.TransformerEncoder`` at d_model 64 and 256 (144 tensors), and one
tensor of 1e7 float32 elements. Gradients are fixed random tensors (the step's cost does not depend on their values);
each round times ``--steps`` steps of each optimizer, alternating; the table gives median time per step and the ratio
torch / fastopt (> 1: fastopt is faster). Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for a measurement run.
"""
import argparse
import sys
import time

import numpy as np
import torch

import fastopt.torch as ft


def encoder_params(d_model):
    layer = torch.nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=4 * d_model)
    return list(torch.nn.TransformerEncoder(layer, num_layers=12, enable_nested_tensor=False).parameters())


def cases():
    yield "encoder d_model 64", lambda: encoder_params(64)
    yield "encoder d_model 256", lambda: encoder_params(256)
    yield "one tensor 1e7", lambda: [torch.nn.Parameter(torch.randn(10_000_000))]


def clone(params, grads):
    out = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, g in zip(out, grads):
        p.grad = g.clone()
    return out


def time_steps(opt, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.rounds} rounds")
    print(f"{'case':<22} {'tensors':>7} {'elements':>10} {'fastopt':>10} {'torch fused':>12} {'ratio':>6}")
    for name, make in cases():
        base = make()
        grads = [torch.randn_like(p) * 1e-2 for p in base]
        a, b = clone(base, grads), clone(base, grads)
        opts = {"fastopt": ft.Adam(a, lr=1e-3), "torch": torch.optim.Adam(b, lr=1e-3, fused=True)}
        for opt in opts.values():
            time_steps(opt, 2)                       # state allocated, plans built
        times = {k: [] for k in opts}
        for _ in range(args.rounds):
            for k, opt in opts.items():
                times[k].append(time_steps(opt, args.steps))
        for p, q in zip(a, b):                       # the same updates, checked after timing
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
        med = {k: float(np.median(v)) for k, v in times.items()}
        n = sum(p.numel() for p in base)
        print(f"{name:<22} {len(base):>7} {n:>10.3g} {1e3 * med['fastopt']:>8.3f}ms {1e3 * med['torch']:>10.3f}ms "
              f"{med['torch'] / med['fastopt']:>5.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
