"""Optimizer-step cases: fastopt against textbook NumPy, torch.optim (single-tensor, foreach, fused) or, where
torch has none, the spec's ``peer`` (the reference implementation, e.g. ``pytorch_optimizer``'s, when installed),
and a roofline probe with the same memory traffic.

Every optimizer of the registry (fastopt/optim/specs.py) is a case, stepped with its spec's ``bench``
hyperparameters; NumPy's hand-written rules and torch.optim join where they exist.

Bytes per step (counted once per array access, no write-allocate since every write is in place): read p, g and
each state slot, write p and each slot: (3 + 2 slots) x itemsize per element (Adam: p, g, m, v read and p, m, v
written, 7 x itemsize; SGD with momentum 5 x). The probe (``fastopt._probe.stream``) makes exactly those accesses
in one fused loop with trivial arithmetic.

Low-precision state (``state_dtype``, fastopt/optim/_formats.py): a case ``<name>[<format>]`` (``Adam[int8]``) per
optimizer with state formats (``OptimizerSpec.state_formats``) and format, float32 params; the default run has
Adam's (``--kernels`` names any). Its bytes per element: p read and written and g read (12 bytes) plus each state
array read and written at its stored size (bfloat16 2 bytes a slot, int8 1 + 4/256, int4 1/2 + 4/128; float32 in
params under ``min_quantized_size``); with a norm sweep (LARS, LAMB) over a tensor larger than a tile, plus that
sweep's reads: p and g again (LAMB: the state too, at its stored size), the block wrapper's first pass, which
stores nothing.
Its probe streams the same arrays as the float32 case over proportionally fewer elements: the same bytes.

bfloat16 params (issue 12): ``<name>[<params>]`` cases of ``PARAM_FORMAT_CASES``, e.g. ``Adam[bf16-kahan]`` (bfloat16
params, Kahan compensation, bfloat16 state: the default state of a bfloat16 param) and
``Adam[bf16-sr+bf16g+int8]`` (stochastic rounding, bfloat16 gradients, int8 state); their bytes: p read and
written at 2 bytes, g read at its size, the state (Kahan's buffer included) read and written at its stored size.
"""
from types import SimpleNamespace

import numpy as np

from fastopt import _optim, _probe
from fastopt.bench.core import Case, Impl, Probe, chosen_sizes, optional_import
from fastopt.optim import _formats, specs


def _traffic(cls, kwargs):
    """(arrays read, arrays written) per element of a step: p, g and the per-element state slots it uses."""
    p = np.zeros(2)
    opt = cls([p], **kwargs)
    opt.step([np.ones(2)])
    slots = sum(1 for k, v in opt.state[0].items()
                if k != cls.spec.aux and isinstance(v, np.ndarray) and v.shape == p.shape)   # aux: per param
    return 2 + slots, 1 + slots


def traffic(kernel, shapes):
    """(arrays read, arrays written) per element of a step over tensors of ``shapes`` (element counts): with a norm
    sweep, the arrays it reads again (the spec's ``norm_sweep``) count where a tensor is larger than a tile
    (``_optim.OPTIM_TILE``), whose second read comes from cache."""
    n_read, n_write = KERNELS[kernel][2]
    if _name(kernel) in NORM_SWEEP and max(shapes) > _optim.OPTIM_TILE:
        n_read += NORM_SWEEP[_name(kernel)]
    return n_read, n_write


def _name(kernel):
    """The optimizer of a case: ``"LAMB"`` of ``"LAMB[int8]"``."""
    return kernel.split("[", 1)[0]


def _kernels():
    import fastopt
    out = {}
    for spec in specs.SPECS:
        cls = getattr(fastopt, spec.name)
        out[spec.name] = (cls, dict(spec.bench), _traffic(cls, spec.bench))
    return out


# bfloat16-param cases: label -> (state_dtype, compensation, gradient dtype); the params are ml_dtypes.bfloat16.
PARAM_FORMAT_CASES = {"bf16-kahan": (None, "kahan", "float32"),
                      "bf16-sr+bf16g+int8": ("int8", "stochastic", "bfloat16")}


def _format_kernels():
    """``<name>[<format>]`` of every spec with state formats and every low-precision format, and
    ``<name>[<params>]`` of every bfloat16-param case; and {case: gradient dtype} of the latter."""
    import fastopt
    out, bf16_params = {}, {}
    for spec in specs.SPECS:
        if spec.state_formats:
            cls = getattr(fastopt, spec.name)
            for fmt in _formats.LOW_PRECISION:
                out[f"{spec.name}[{fmt}]"] = (cls, dict(spec.bench, state_dtype=fmt), _traffic(cls, spec.bench))
            for label, (fmt, compensation, grad_dtype) in PARAM_FORMAT_CASES.items():
                kernel = f"{spec.name}[{label}]"
                out[kernel] = (cls, dict(spec.bench, state_dtype=fmt, compensation=compensation),
                               _traffic(cls, spec.bench))
                bf16_params[kernel] = grad_dtype
    return out, bf16_params


def state_bytes_per_element(kernel, shapes, kahan_buffer=True):
    """Bytes of state per element over params of ``shapes`` (element counts), float32, at the stored sizes: each slot
    the step uses in its format (fastopt.optim._formats; params under min_quantized_size keep float32), and a
    bfloat16 param's Kahan buffer unless ``kahan_buffer`` is False."""
    cls, kwargs, _ = KERNELS[kernel]
    p = np.zeros(2, np.float32)
    opt = cls([p], **dict(kwargs, compensation="none"))
    opt.step([np.ones_like(p)])
    used = [slot for slot in cls.spec.slots if slot.name in opt.state[0]]
    dtype = _formats.bfloat16() if kernel in BF16_PARAMS else np.dtype(np.float32)
    kahan = 2 if kahan_buffer and kernel in BF16_PARAMS and kwargs.get("compensation") == _formats.KAHAN else 0
    total = 0
    for n in shapes:
        like = SimpleNamespace(dtype=dtype, size=n)      # what slot_format reads of a param
        for slot in used:
            fmt = _formats.slot_format(kwargs["state_dtype"], _formats.DEFAULT_MIN_QUANTIZED_SIZE, slot, like)
            codes, blocks = _optim.format_sizes(_formats.code(fmt), n)
            total += codes * {"native": 4, "bfloat16": 2}.get(fmt, 1) + 4 * blocks
        total += kahan * n
    return total / sum(shapes)


def bytes_per_element(kernel, shapes, itemsize):
    """Bytes a step moves per element (see the module docstring)."""
    n_read, n_write = traffic(kernel, shapes)
    if kernel not in FORMAT_KERNELS:
        return (n_read + n_write) * itemsize
    p_bytes, g_bytes = (2, np.dtype(_grad_dtype(kernel)).itemsize) if kernel in BF16_PARAMS else (itemsize, itemsize)
    total = 2 * p_bytes + g_bytes + 2 * state_bytes_per_element(kernel, shapes)
    name = _name(kernel)
    if name in NORM_SWEEP and max(shapes) > _optim.OPTIM_TILE:      # the block wrapper's first pass (module doc)
        total += p_bytes + g_bytes
        if NORM_SWEEP[name] > 2:                                     # LAMB's sweep reads the moments
            total += state_bytes_per_element(kernel, shapes, kahan_buffer=False)
    return total


def _grad_dtype(kernel):
    name = BF16_PARAMS[kernel]
    return _formats.bfloat16() if name == "bfloat16" else np.dtype(name)


KERNELS = _kernels()     # name: (fastopt class, kwargs, (arrays read, arrays written) without a norm sweep)
FORMAT_KERNELS, BF16_PARAMS = _format_kernels()   # "Adam[int8]": the same, low-precision state; bfloat16 params
KERNELS.update(FORMAT_KERNELS)
DEFAULT_KERNELS = [k for k in KERNELS if k not in FORMAT_KERNELS or k.startswith("Adam[")]
NORM_SWEEP = {spec.name: spec.norm_sweep for spec in specs.SPECS if spec.norm_sweep}   # name: arrays read again
PEERS = {spec.name: spec.peer for spec in specs.SPECS if spec.peer}    # name: (module, class)
HYPERS = {spec.name: dict(spec.defaults(), **spec.bench) for spec in specs.SPECS}   # every hyperparameter's value
SIZES = {"1e3": [1000], "1e5": [100_000], "1e6": [1_000_000], "1e7": [10_000_000], "200x5000": [5000] * 200}
QUICK_SIZES = {"1e3": [1000], "1e5": [100_000], "20x500": [500] * 20}
# By name only (--sizes 5e7; 0.8 GiB of float32 Adam arrays): the low-precision formats' second size (issue 12).
NAMED_SIZES = {"5e7": [50_000_000]}


def _data(kernel, shapes, dtype, seed=0):
    """Params and gradients of ``shapes`` (element counts); matrices of 100 columns for an optimizer with a norm
    sweep (its trust ratio adapts only params of 2+ dimensions)."""
    rng = np.random.default_rng(seed)
    dims = [(n // 100, 100) if _name(kernel) in NORM_SWEEP and n % 100 == 0 else (n,) for n in shapes]
    params = [rng.standard_normal(d).astype(dtype) for d in dims]
    grads = [rng.standard_normal(d).astype(dtype) for d in dims]
    return params, grads


class FastoptStep:
    def __init__(self, kernel, shapes, dtype):
        cls, kwargs, _ = KERNELS[kernel]
        self.params, self.grads = _data(kernel, shapes, dtype)
        if kernel in BF16_PARAMS:
            self.params = [p.astype(_formats.bfloat16()) for p in self.params]
            self.grads = [g.astype(_grad_dtype(kernel)) for g in self.grads]
        self.opt = cls(self.params, **kwargs)

    def run(self):
        self.opt.step(self.grads)

    def result(self):
        return self.params


class NumpyStep:
    """The update rules written as NumPy expressions with temporaries (what a NumPy user writes by hand), for
    ``RULES``."""

    RULES = ("Adam", "AdamW", "SGD", "RMSprop")

    def __init__(self, kernel, shapes, dtype):
        self.kernel = kernel
        self.hp = HYPERS[kernel]
        self.params, self.grads = _data(kernel, shapes, dtype)
        self.s1 = [np.zeros_like(p) for p in self.params]
        self.s2 = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def run(self):
        self.t += 1
        hp, t = self.hp, self.t
        lr = hp["lr"]
        for p, g, a, b in zip(self.params, self.grads, self.s1, self.s2):
            if self.kernel in ("Adam", "AdamW"):
                (b1, b2), eps = hp["betas"], hp["eps"]
                if self.kernel == "AdamW":
                    p *= 1 - lr * hp["weight_decay"]
                a[...] = b1 * a + (1 - b1) * g
                b[...] = b2 * b + (1 - b2) * g * g
                p -= lr * (a / (1 - b1 ** t)) / (np.sqrt(b / (1 - b2 ** t)) + eps)
            elif self.kernel == "SGD":
                a[...] = g if t == 1 else hp["momentum"] * a + g
                p -= lr * a
            else:
                a[...] = hp["alpha"] * a + (1 - hp["alpha"]) * g * g
                p -= lr * g / (np.sqrt(a) + hp["eps"])

    def result(self):
        return self.params


def _torch_class(torch, kernel):
    """torch.optim's class of that name, else the spec's peer (None where neither is importable)."""
    if hasattr(torch.optim, kernel):
        return getattr(torch.optim, kernel)
    peer = PEERS.get(kernel)
    module = peer and optional_import(peer[0])
    return getattr(module, peer[1], None) if module else None


def _train_mode(opt):
    """schedulefree's optimizers step only after train()."""
    if callable(getattr(opt, "train", None)):
        opt.train()


class TorchStep:
    def __init__(self, torch, kernel, shapes, dtype, mode):
        _, kwargs, _ = KERNELS[kernel]
        params, grads = _data(kernel, shapes, dtype)
        self.params = [torch.from_numpy(p) for p in params]
        for p, g in zip(self.params, grads):
            p.requires_grad_(True)
            p.grad = torch.from_numpy(g)
        flags = {"single": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[mode]
        self.opt = _torch_class(torch, kernel)(self.params, **kwargs, **flags)
        _train_mode(self.opt)

    def run(self):
        self.opt.step()

    def result(self):
        return [p.detach().numpy() for p in self.params]


class ProbeStep(Probe):
    def __init__(self, kernel, shapes, dtype):
        n_read, n_write = traffic(kernel, shapes)
        n = int(sum(shapes))
        if kernel in FORMAT_KERNELS:          # the same streams over fewer elements: the case's bytes
            n = int(round(n * bytes_per_element(kernel, shapes, 4) / ((n_read + n_write) * 4)))
        self.arrays = [np.ones(n, dtype=dtype) for _ in range(n_read)]
        self.writes = [self.arrays[0]] + self.arrays[2:2 + n_write - 1]   # p and the state arrays, in place

    def run(self):
        _probe.stream(self.arrays, self.writes)


def _torch_supports(torch, kernel, mode, dtype):
    """Whether that class steps in that mode, and leaves the gradient as it found it (some peers negate p.grad in
    place, copy their momentum buffer into it, or divide it by its RMS (schedulefree's AdamW): stepped again on the
    same gradient, they would compute something else, so such a mode is left out)."""
    cls = _torch_class(torch, kernel)
    if cls is None or (mode == "fused" and kernel in PEERS):      # a peer takes fused=True and ignores it
        return False
    p = torch.zeros(2, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    g0 = torch.tensor([0.5, 3.0], dtype=p.dtype)     # not all ones: a gradient divided by its own RMS stays 1
    p.grad = g0.clone()
    flags = {"single": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[mode]
    try:
        opt = cls([p], **KERNELS[kernel][1], **flags)
        _train_mode(opt)
        for _ in range(2):         # twice: a momentum buffer copied into p.grad equals it after one step
            opt.step()
            if not bool((p.grad == g0).all()):
                return False
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def cases(sizes=None, threads=(1, 2), dtypes=("float32",), kernels=None, quick=False, peers=True):
    torch = optional_import("torch") if peers else None
    chosen = chosen_sizes(sizes, quick, {**SIZES, **NAMED_SIZES} if sizes else SIZES, QUICK_SIZES)
    out = []
    for kernel in kernels or DEFAULT_KERNELS:
        for size, shapes in chosen:
            for dtype in dtypes:
                if kernel in FORMAT_KERNELS and dtype != "float32":
                    continue                  # low-precision state is for float32 params
                numel = int(sum(shapes))
                itemsize = np.dtype(dtype).itemsize
                impls = [Impl("fastopt", lambda k=kernel, s=shapes, d=dtype: FastoptStep(k, s, d))]
                if peers and kernel in NumpyStep.RULES:
                    impls.append(Impl("numpy", lambda k=kernel, s=shapes, d=dtype: NumpyStep(k, s, d)))
                if torch is not None and kernel not in FORMAT_KERNELS:
                    source = PEERS[kernel][0] if kernel in PEERS else "torch"     # whose implementation
                    for mode in ("single", "foreach", "fused"):
                        if _torch_supports(torch, kernel, mode, dtype):
                            impls.append(Impl(f"{source}-{mode}", lambda k=kernel, s=shapes, d=dtype, m=mode:
                                              TorchStep(torch, k, s, d, m)))
                impls.append(Impl("roofline", lambda k=kernel, s=shapes, d=dtype: ProbeStep(k, s, d), is_probe=True))
                for t in threads:
                    out.append(Case("optim", kernel, size, numel, dtype, t,
                                    bytes_per_element(kernel, shapes, itemsize) * numel,
                                    impls, rtol=2e-4 if dtype == "float32" else 1e-9,
                                    atol=2e-5 if dtype == "float32" else 1e-12))
    return out
