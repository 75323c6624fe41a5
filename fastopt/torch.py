"""fastopt's optimizers as ``torch.optim.Optimizer`` subclasses that step CPU tensors in place.

``fastopt.torch.Adam(model.parameters(), lr=1e-3)`` behaves as ``torch.optim.Adam`` (``zero_grad``,
``step(closure=None)``, param groups that lr schedulers write, ``state_dict`` / ``load_state_dict`` in torch's
format, so that either library loads the other's checkpoints) but runs fastopt's compiled step: one call into C per
group and dtype for all tensors, with the GIL released. There are no copies: each parameter and gradient is seen
through a NumPy view of the tensor's own storage (``tensor.detach().numpy()``), so the update lands in the tensor.

One class per fastopt optimizer of ``fastopt.optim.__all__`` but SparseAdam, Muon and LBFGS (see ``__all__``
below), with the same constructor keywords and update rule (see the fastopt class's docstring): for each such
class ``C``, ``fastopt.torch.C(params, ...)`` steps ``params`` as ``C([p.detach().numpy() for p in params],
...).step([p.grad.numpy() ...])`` would.

Requirements, checked with the error named after the tensor: CPU tensors, strided layout, float32, float64 or
bfloat16 (seen as an ``ml_dtypes.bfloat16`` array: fastopt's bfloat16 params, ``compensation`` and all),
parameters C-contiguous (an in-place target is never copied; gradients may be strided and are then copied once
per step). The parameter's storage must stay where it was (``p.data = other`` after construction is an error at the
next step). ``opt.state[p]`` is a dict of tensors sharing memory with the optimizer's state. Torch is imported only
by this module: ``import fastopt`` does not need it.
"""
from collections.abc import Mapping

import numpy as np
import torch

from fastopt import optim as _optim
from fastopt.optim import _formats

_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def _numpy_view(t, what):
    """A NumPy array sharing ``t``'s storage (no copy), or TypeError / ValueError naming ``what``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{what}: expected dtype torch.float32, torch.float64 or torch.bfloat16, got {t.dtype}")
    if t.device.type != "cpu":
        raise ValueError(f"{what}: expected a CPU tensor, got one on {t.device} (keep float32 master weights "
                         "on the CPU and copy them to the device after the step)")
    if t.layout != torch.strided:
        raise ValueError(f"{what}: expected a strided (dense) tensor, got layout {t.layout}")
    if t.is_conj() or t.is_neg():
        raise ValueError(f"{what}: a tensor with a lazy conjugate or negation bit has no NumPy view; "
                         "call .resolve_conj() / .resolve_neg() first")
    if t.dtype == torch.bfloat16:         # NumPy has no bfloat16: ml_dtypes' dtype over an int16 view
        return t.detach().view(torch.int16).numpy().view(_formats.bfloat16())
    return t.detach().numpy()


def _tensor(a):
    """A tensor sharing the NumPy array ``a``'s memory (an ml_dtypes.bfloat16 one as torch.bfloat16)."""
    if _formats.is_bfloat16(a.dtype):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _array_copy(t, param):
    """A NumPy copy of state tensor ``t``: a floating one in the param's dtype (torch casts state so on load) but
    for bfloat16 (a bfloat16 param's state, or bfloat16 state) kept as it is, as are integer codes."""
    if param is not None and t.is_floating_point() and torch.bfloat16 not in (t.dtype, param.dtype):
        t = t.to(param.dtype)
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(_formats.bfloat16()).copy()
    return t.numpy().copy()


def _state_to_torch(st):
    """One param's fastopt state (``state_dict`` form) as torch's: arrays as tensors, ``step`` as a float tensor
    (torch's scalar dtype), other scalars as float64 tensors (so that a reload is exact)."""
    out = {}
    for name, value in st.items():
        if isinstance(value, np.ndarray):
            out[name] = _tensor(value)
        elif name == "step":
            out[name] = torch.tensor(float(value), dtype=torch.get_default_dtype())
        elif isinstance(value, float):
            out[name] = torch.tensor(value, dtype=torch.float64)
        else:
            out[name] = value
    return out


def _state_from_torch(st, param, aux=None):
    """One param's state from torch's form: 0-d tensors as Python scalars, others as NumPy copies in the param's
    dtype (as torch casts them on load), but the scalar state ``aux`` (Schedule-Free's float64 pair) as saved; a
    missing ``step`` (torch's SGD keeps none) is 0."""
    out = {"step": 0}
    for name, value in st.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.ndim == 0:
                value = int(value.item()) if name == "step" else float(value.item())
            elif name == aux:
                value = value.numpy().copy()
            else:
                value = _array_copy(value, param)
        out[name] = value
    return out


class _TensorState(Mapping):
    """``opt.state[p]``: the state of param tensor ``p`` as a dict of tensors that share the optimizer's memory."""

    def __init__(self, optimizer):
        self._opt = optimizer

    def __getitem__(self, p):
        i = self._opt._flat_index(p)
        if i is None:
            raise KeyError("this tensor is not a parameter of the optimizer")
        state = self._opt._inner.state
        if i not in state:
            return {}
        return {name: _tensor(v) if isinstance(v, np.ndarray) and v.ndim else
                (torch.tensor(float(v)) if name == "step" else v) for name, v in state[i].items()}

    def __iter__(self):
        return (self._opt._params[i] for i in self._opt._inner.state)

    def __len__(self):
        return len(self._opt._inner.state)


class FastoptTorchOptimizer(torch.optim.Optimizer):
    """Base of the torch-facing classes: a torch Optimizer whose ``step`` runs the fastopt optimizer
    ``fastopt_class`` over NumPy views of the parameters and gradients."""

    fastopt_class = None

    def __init__(self, params, *args, **kwargs):
        # hyperparameters checked by fastopt (its error messages), defaults read from the instance it builds
        probe = self.fastopt_class([np.zeros(1, np.float32)], *args, **kwargs)
        self._inner = None
        self._params, self._ids, self._ptrs = [], {}, []
        super().__init__(params, dict(probe.defaults))
        offsets = np.cumsum([0] + [len(g["params"]) for g in self.param_groups])
        self._inner = self.fastopt_class([self._fastopt_group(g, int(o)) for g, o in zip(self.param_groups, offsets)],
                                         *args, **kwargs)
        for group in self.param_groups:
            self._register(group)
        self.state = _TensorState(self)

    # ------------------------------------------------------------------ groups
    def _fastopt_group(self, group, offset):
        """The fastopt group of a torch group: views of its tensors and the hyperparameters fastopt knows."""
        views = [_numpy_view(p, f"params[{offset + k}]") for k, p in enumerate(group["params"])]
        return {"params": views, **{k: group[k] for k in self.defaults}}

    def _register(self, group):
        base = len(self._params)
        for k, p in enumerate(group["params"]):
            self._ids[id(p)] = base + k
            self._params.append(p)
            self._ptrs.append(p.data_ptr())
        self._grad_tensors = [None] * len(self._params)
        self._grad_views = [None] * len(self._params)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if self._inner is None:          # torch's __init__ adding the first groups
            return
        group = self.param_groups[-1]
        try:
            self._inner.add_param_group(self._fastopt_group(group, len(self._params)))
        except BaseException:
            self.param_groups.pop()
            raise
        self._register(group)

    def _flat_index(self, p):
        i = self._ids.get(id(p))
        return i if i is not None and self._params[i] is p else None

    # ------------------------------------------------------------------ step
    def _grads(self):
        """NumPy views of the gradients (None where ``p.grad`` is None), cached while ``p.grad`` is the same
        tensor; raises if a parameter's storage moved since construction."""
        grads = []
        cached_t, cached_v, ptrs = self._grad_tensors, self._grad_views, self._ptrs
        for i, p in enumerate(self._params):
            if p.data_ptr() != ptrs[i]:
                raise ValueError(f"params[{i}]: the tensor's storage changed since the optimizer was built "
                                 "(p.data reassigned?); its updates would be lost. Build a new optimizer.")
            g = p.grad
            if g is not cached_t[i]:
                view = None if g is None else _numpy_view(g, f"params[{i}].grad")
                cached_t[i], cached_v[i] = g, view
            grads.append(cached_v[i])
        return grads

    def step(self, closure=None):
        """One update of every parameter with a gradient; ``closure`` (re-evaluates the model and returns the
        loss) is called first, with grad enabled, and its loss returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = self._grads()
        keys = self.defaults
        for tg, fg in zip(self.param_groups, self._inner.param_groups):
            for k in keys:                     # lr schedulers write torch's groups
                fg[k] = tg[k]
        self._inner.step(grads)
        return loss

    def zero_grad(self, set_to_none=True):
        super().zero_grad(set_to_none)
        if set_to_none:                        # drop the cached views so that the old gradients can be freed
            self._grad_tensors = [None] * len(self._params)
            self._grad_views = [None] * len(self._params)

    # ------------------------------------------------------------------ state_dict
    def state_dict(self):
        """torch's format: ``{"state": {i: {"step": tensor, "exp_avg": tensor, ...}}, "param_groups": [{...,
        "params": [i, ...]}]}`` with flat indices in group order; tensors are copies."""
        inner = self._inner.state_dict()
        groups = []
        for tg, saved in zip(self.param_groups, inner["param_groups"]):
            groups.append({**{k: v for k, v in tg.items() if k != "params"}, "params": saved["params"]})
        extra = {"train_mode": inner["train_mode"]} if "train_mode" in inner else {}
        return {"state": {i: _state_to_torch(st) for i, st in inner["state"].items()}, "param_groups": groups,
                **extra}

    def load_state_dict(self, state_dict):
        """Loads a ``state_dict`` of this class or of the torch.optim class of the same algorithm (torch-only
        group keys such as ``foreach`` are kept in ``param_groups`` and ignored by the step). Checked by fastopt:
        a mismatch raises and changes nothing."""
        if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        ids = [i for g in saved_groups for i in g["params"]]
        flat = {sid: k for k, sid in enumerate(ids)}
        state = {}
        for sid, st in dict(state_dict["state"]).items():
            p = self._params[flat[sid]] if sid in flat and flat[sid] < len(self._params) else None
            state[sid] = _state_from_torch(st, p, self.fastopt_class.spec.aux)
        groups = [{**{k: cur[k] for k in self.defaults}, **{k: g[k] for k in self.defaults if k in g},
                   "params": g["params"]} for g, cur in zip(saved_groups, self.param_groups)]
        if len(saved_groups) != len(self.param_groups):
            groups = saved_groups                # fastopt names the mismatch
        extra = {"train_mode": state_dict.get("train_mode")} if hasattr(self._inner, "train_mode") else {}
        self._inner.load_state_dict({"state": state, "param_groups": groups, **extra})
        for tg, saved in zip(self.param_groups, saved_groups):
            tg.update({k: v for k, v in saved.items() if k not in ("params", "param_names")})


class _ModeSwitch:
    """``train()`` / ``eval()`` of a Schedule-Free optimizer: the fastopt optimizer's, which move the tensors
    themselves (its params are views of their storage); ``train_mode`` and ``state_dict()['train_mode']`` as
    fastopt's. As schedulefree's classes, the mode must be train for ``step`` (else RuntimeError)."""

    def train(self):
        self._inner.train()

    def eval(self):
        self._inner.eval()

    @property
    def train_mode(self):
        return self._inner.train_mode


def _make(name):
    cls = getattr(_optim, name)
    doc = (f"``{name}`` over CPU tensors, a ``torch.optim.Optimizer``: the update of "
           f":class:`fastopt.optim.{name}` (same keywords) run in place on the tensors' storage.\n\n"
           + (cls.__doc__ or ""))
    switches = issubclass(cls, _optim.ScheduleFreeOptimizer)      # train() / eval()
    bases = (_ModeSwitch, FastoptTorchOptimizer) if switches else (FastoptTorchOptimizer,)
    return type(name, bases, {"fastopt_class": cls, "__doc__": doc, "__module__": __name__})


# Left out: SparseAdam, whose gradients are (indices, rows) pairs, not dense tensors (torch.optim.SparseAdam takes
# torch's sparse COO gradients); Muon and LBFGS, whose steps are not the dense step(grads) rule this wraps (Muon
# takes 2-D params only, LBFGS a closure), and which torch.optim has.
NOT_WRAPPED = ("Optimizer", "SparseAdam", "Muon", "LBFGS")
__all__ = [name for name in _optim.__all__ if name not in NOT_WRAPPED]
globals().update({name: _make(name) for name in __all__})
__all__ += ["FastoptTorchOptimizer"]
