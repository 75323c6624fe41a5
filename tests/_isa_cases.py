"""Optimizer trajectories that compare instruction-set paths (tests/test_isa.py and its qemu child process).

Imports only numpy and fastopt, so that ``python _isa_cases.py OUT.npz`` also runs under an emulated CPU
(``qemu-x86_64 -cpu Nehalem``) where importing pytest would only cost time. Every case runs a few steps of one
optimizer over tensors whose sizes cover the vector bodies, their remainders, one-element tensors and, past
``fastopt.parallel_min_elements()``, the two-thread split (tensors then start at unaligned offsets of a chunk).
Gradients include exact zeros and subnormal values.
"""
import json
import sys

import numpy as np

import fastopt

SIZES = (1, 7, 33, 1000, 40001)
STEPS = 8          # RAdam switches from its SGD-like branch to the rectified one at step 6 with beta2=0.999
DTYPES = ("float32", "float64")

# (id, optimizer class name in fastopt, keyword arguments)
CASES = [
    ("sgd", "SGD", dict(lr=0.1)),
    ("sgd-momentum-wd", "SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd-nesterov-max", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("adam", "Adam", dict(lr=1e-2)),
    ("adam-amsgrad-l2-max", "Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.01, maximize=True)),
    ("adam-lowbeta1", "Adam", dict(lr=1e-2, betas=(0.3, 0.9))),
    ("adamw-amsgrad", "AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("adamax", "Adamax", dict(lr=1e-2)),
    ("adamax-wd", "Adamax", dict(lr=1e-2, weight_decay=0.01, maximize=True)),
    ("nadam", "NAdam", dict(lr=1e-2)),
    ("nadam-decoupled", "NAdam", dict(lr=1e-2, weight_decay=0.01, decoupled_weight_decay=True)),
    ("radam", "RAdam", dict(lr=1e-2)),
    ("radam-wd", "RAdam", dict(lr=1e-2, weight_decay=0.01)),
    ("rmsprop", "RMSprop", dict(lr=1e-2)),
    ("rmsprop-centered-momentum-wd", "RMSprop", dict(lr=1e-2, centered=True, momentum=0.9, weight_decay=0.01)),
    ("adagrad", "Adagrad", dict(lr=1e-2, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.01)),
    ("lion", "Lion", dict(lr=1e-3)),
    ("lion-wd-max", "Lion", dict(lr=1e-3, weight_decay=0.1, maximize=True)),
    ("adadelta-wd-max", "Adadelta", dict(lr=1.0, weight_decay=0.01, maximize=True)),
    ("rprop", "Rprop", dict(lr=1e-2, etas=(0.3, 1.5), step_sizes=(1e-4, 0.05))),
    ("asgd-averaging", "ASGD", dict(lr=1e-2, lambd=0.01, t0=1.0, weight_decay=0.01)),
    ("adan-wd-max", "Adan", dict(lr=1e-2, weight_decay=0.01, maximize=True)),
    ("adan-decoupled", "Adan", dict(lr=1e-2, weight_decay=0.01, weight_decouple=True, betas=(0.3, 0.4, 0.9))),
    ("lars-nesterov-wd", "LARS", dict(lr=1e-2, weight_decay=0.01, nesterov=True, trust_coefficient=0.02)),
    ("lamb-coupled-max", "LAMB", dict(lr=1e-2, weight_decay=0.01, weight_decouple=False, maximize=True)),
    ("lamb-decoupled", "LAMB", dict(lr=1e-2, weight_decay=0.01, grad_averaging=False)),
    ("ademamix-warmup-decoupled", "AdEMAMix", dict(lr=1e-2, t_alpha_beta3=10.0, weight_decay=0.01,
                                                   weight_decouple=True)),
    ("schedulefree-adamw-warmup-wd", "ScheduleFreeAdamW", dict(lr=1e-2, warmup_steps=3, weight_decay=0.01, r=1.0)),
    ("schedulefree-sgd-lowmomentum", "ScheduleFreeSGD", dict(lr=1e-2, momentum=0.3, weight_decay=0.01)),
]


def _gradient(rng, n, dtype):
    g = rng.standard_normal(n)
    g[50::97] = 0.0
    g[3::89] *= 1e-39 if dtype == "float32" else 1e-310     # subnormal in the dtype
    return g.astype(dtype)


def trajectory(cls_name, kwargs, dtype, sizes=SIZES, steps=STEPS, seed=0):
    """Runs `steps` steps of fastopt.<cls_name>(**kwargs) on fresh params of `sizes`; returns every param and
    state array afterwards as {name: array}."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    opt = getattr(fastopt, cls_name)(params, **kwargs)
    for _ in range(steps):
        opt.step([_gradient(rng, n, dtype) for n in sizes])
    out = {}
    for i, p in enumerate(params):
        out[f"param{i}"] = p.copy()
        for key, value in opt.state[i].items():
            if isinstance(value, np.ndarray) and value.shape == p.shape:
                out[f"state{i}.{key}"] = value.copy()
    return out


def all_trajectories(sizes=SIZES, steps=STEPS):
    """{"<case>/<dtype>/<array>": array} for every case and dtype, on the active instruction-set path."""
    out = {}
    for case_id, cls_name, kwargs in CASES:
        for dtype in DTYPES:
            for name, arr in trajectory(cls_name, kwargs, dtype, sizes, steps).items():
                out[f"{case_id}/{dtype}/{name}"] = arr
    return out


def bit_mismatches(a, b):
    """Number of elements whose bits differ (shape or dtype mismatch counts every element)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return max(a.size, b.size)
    kind = np.uint32 if a.dtype == np.float32 else np.uint64
    return int(np.count_nonzero(a.view(kind) != b.view(kind)))


if __name__ == "__main__":
    # Child mode: python _isa_cases.py OUT.npz -> saves all trajectories and prints the configuration as JSON.
    np.savez(sys.argv[1], **all_trajectories())
    print(json.dumps({"isa": fastopt.get_isa(), "available": fastopt.available_isas(),
                      "openmp": fastopt.config()["openmp"]}))
