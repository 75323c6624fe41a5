"""fastopt's Adam with int8 state against bitsandbytes' CPU ``Adam8bit`` (and torch's fused float32 Adam), one
float32 tensor of n elements, in alternating rounds (issue 12's target: >= 20x bitsandbytes at n = 1e6 and 1e7).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bnb_adam8bit.py [--sizes 1e6 1e7]
        [--threads 2] [--rounds 9] [--quick]

Every library runs on ``--threads`` threads (fastopt.set_num_threads, torch.set_num_threads). Each round times
one step of each, in turn; the table gives the medians and the ratios of the medians. Before timing, one step of
each from the same state is compared (fastopt's int8 trajectory against bitsandbytes' after 1 step: the same
blockwise scheme, so the params agree to a few float32 ulps of the update), so that a broken step cannot time well.
"""
import argparse
import time

import numpy as np

import fastopt


def _args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="n = 1e5, 2 rounds (a smoke run)")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.rounds = [1e5], 2
    return a


def _cases(n, torch, bnb):
    """name -> step(): each library steps its own copy of the same param and gradient."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    p = p0.copy()
    ours = fastopt.Adam([p], lr=1e-3, state_dtype="int8")
    cases = {"fastopt Adam int8": (lambda: ours.step([g]), lambda: p)}
    if torch is not None:
        tg = torch.from_numpy(g)
        tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        tp.grad = tg
        fused = torch.optim.Adam([tp], lr=1e-3, fused=True)
        cases["torch Adam fused f32"] = (fused.step, lambda: tp.detach().numpy())
        if bnb is not None:
            bp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
            bp.grad = tg
            eight = bnb.optim.Adam8bit([bp], lr=1e-3)
            cases["bitsandbytes Adam8bit"] = (eight.step, lambda: bp.detach().numpy())
    return cases


def _check(cases):
    """One step of each from the same start: params within a few percent of one Adam update of lr (1e-3)."""
    with np.errstate(all="ignore"):
        outs = {}
        for name, (step, value) in cases.items():
            before = value().copy()
            step()
            outs[name] = value() - before
    ref = outs["fastopt Adam int8"]
    for name, delta in outs.items():
        worst = float(np.max(np.abs(delta - ref)))
        assert worst < 1e-4, f"{name}: its first step differs from fastopt's int8 step by {worst:.3g}"


def main():
    a = _args()
    fastopt.set_num_threads(a.threads)
    try:
        import torch
        torch.set_num_threads(a.threads)
    except ImportError:
        torch = None
    try:
        import bitsandbytes as bnb
    except ImportError:
        bnb = None
    print(f"threads {a.threads}, rounds {a.rounds}; torch {'absent' if torch is None else torch.__version__}, "
          f"bitsandbytes {'absent' if bnb is None else bnb.__version__}")
    for n in (int(s) for s in a.sizes):
        cases = _cases(n, torch, bnb)
        _check(cases)
        times = {name: [] for name in cases}
        for _ in range(a.rounds):
            for name, (step, _) in cases.items():
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
        med = {name: float(np.median(ts)) for name, ts in times.items()}
        ours = med["fastopt Adam int8"]
        for name, m in med.items():
            print(f"n={n:.0e}  {name:24s} median {m * 1e3:9.3f} ms   {m / ours:7.2f}x fastopt int8's time")


if __name__ == "__main__":
    main()
