"""The ``Optimizer`` base class: parameter groups, lazily created state, ``step(grads)``, ``state_dict``.

Semantics follow ``torch.optim.Optimizer``: ``params`` is a list of arrays or of dicts (param groups with their
own hyperparameters); hyperparameters live in ``param_groups`` and are read at every step, so schedules may write
``group["lr"]``; state is created at a param's first step; a param whose gradient is ``None`` is skipped.

Each step makes one call into C per group (per dtype within a group): the compiled ``StepPlan`` of the group holds
pointers to params and state, and is rebuilt only when the group's params or state change.
"""
import math
from collections.abc import Mapping

import numpy as np

from fastopt import _optim
from fastopt._validation import check_inplace_array


class _ParamState(Mapping):
    """``opt.state[p]``: the state dict of param ``p`` (looked up by identity) or of flat param index ``i``."""

    def __init__(self, optimizer):
        self._opt = optimizer

    def _index(self, key):
        if isinstance(key, np.ndarray):
            for i, p in enumerate(self._opt._params):
                if p is key:
                    return i
            raise KeyError("this array is not a parameter of the optimizer")
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return int(key)
        raise KeyError(key)

    def __getitem__(self, key):
        return self._opt._state[self._index(key)]

    def __iter__(self):
        return iter(sorted(self._opt._state))

    def __len__(self):
        return len(self._opt._state)


# Group keys that lr schedules write beside the hyperparameters (as torch's schedulers do).
SCHEDULE_KEYS = frozenset({"initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"})


class Optimizer:
    """Base class of fastopt optimizers. Subclasses define:

    ``algo`` (kernel id), ``slots`` (state names in kernel slot order), ``_check_group(group)`` (validates and
    normalizes hyperparameters, raising ValueError/TypeError with the value), ``_kernel_args(group)`` (the tuple
    passed to ``StepPlan.run``), ``_needed_slots(group)`` (bitmask of slots the next step uses) and, where
    state starts at another value than zero, ``_slot_initial_value(group, name)``.
    """

    algo = None
    slots = ()
    uses_aux = False          # NAdam keeps a per-param scalar (mu_product)
    fresh_slot0 = False       # SGD: the momentum buffer takes the gradient itself at its first step

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._params = []     # flat list, group order
        self._state = {}      # flat index -> {"step": 0-d int64 array, slot name -> array, ...}
        self._fresh = set()   # flat indices whose slot 0 holds no history yet
        self._plans = []      # per group: list of StepPlan (one per dtype), or None when stale
        self._writeset = None
        self._checked = {}    # group index -> kernel args last validated by _check_group
        self._created = []    # (index, slot name or None for the whole state) created by the current step
        self.state = _ParamState(self)
        if isinstance(params, np.ndarray):
            raise TypeError("params must be a list of arrays or of dicts, not a single array; pass [array]")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Adds a group (dict with "params" and optional hyperparameters; missing ones take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, np.ndarray):
            params = [params]
        elif params is None or isinstance(params, (set, dict, str)):
            raise TypeError("param group 'params' must be a list of arrays")
        params = list(params)
        base = len(self._params)
        for k, p in enumerate(params):
            check_inplace_array(p, f"params[{base + k}]")
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        unknown = set(group) - set(self.defaults) - SCHEDULE_KEYS - {"params"}
        if unknown:
            raise TypeError(f"unknown hyperparameter(s) {sorted(unknown)} for {type(self).__name__}; "
                            f"expected {sorted(self.defaults)}")
        self._check_group(group)
        everything = self._params + params
        _optim.check_no_overlap(everything, lambda i: f"params[{i}]")
        group["params"] = params
        self.param_groups.append(group)
        self._params.extend(params)
        self._plans.append(None)
        self._writeset = None

    # ------------------------------------------------------------------ step
    def step(self, grads, *, check_finite=False):
        """Updates every param in place from ``grads`` (aligned with the params of all groups, in group order).

        ``grads[i]`` may be None (params[i] is skipped, as torch skips a param without .grad), read-only, or
        non-contiguous (copied once). With ``check_finite=True`` a gradient holding inf or NaN raises
        ``ValueError`` before anything is written; otherwise non-finite values propagate, as in torch.
        """
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays aligned with the params, got {type(grads).__name__}")
        if len(grads) != len(self._params):
            raise ValueError(f"expected {len(self._params)} gradients (one per param, in group order), "
                             f"got {len(grads)}")
        if not isinstance(grads, list):
            grads = list(grads)
        runs = []
        offset = 0
        checked = self._checked
        self._created = []
        try:
            for gi, group in enumerate(self.param_groups):
                args = self._kernel_args(group)
                if checked.get(gi) != args:          # hyperparameters changed since last validated
                    self._check_group(group)
                    checked[gi] = args
                plans = self._bound_plans(gi, group, grads, offset)
                runs.append((plans, args))
                offset += len(group["params"])
            if check_finite:
                for plans, _ in runs:
                    for plan in plans:
                        plan.check_finite()
        except BaseException:
            self._forget_created()
            raise
        for plans, args in runs:
            for plan in plans:
                plan.run(*args)
        if self._fresh:
            self._fresh = {i for i in self._fresh if grads[i] is None}

    def _forget_created(self):
        """Undoes the state a failed step created, so that the optimizer is exactly as before the call."""
        if self._created:
            for i, name in reversed(self._created):
                if name is None:
                    self._state.pop(i, None)
                else:
                    self._state[i].pop(name, None)
                self._fresh.discard(i)
            self._plans = [None] * len(self.param_groups)
            self._writeset = None
        self._created = []

    def _bound_plans(self, gi, group, grads, offset):
        """The group's StepPlans, rebuilt if stale, with the gradients bound (checked, nothing written)."""
        params = group["params"]
        plans = self._plans[gi]
        needed = self._needed_slots(group)
        if plans is None or not all(plan.matches(params) and plan.has_slots(needed) for plan in plans):
            plans = self._rebuild(gi, group, grads, offset, needed)
        if self._writeset is None:
            self._writeset = self._make_writeset()
        for plan in plans:
            if not plan.bind(grads, self._writeset):          # a param got its first gradient
                plans = self._rebuild(gi, group, grads, offset, needed)
                self._writeset = self._make_writeset()
                for again in plans:
                    again.bind(grads, self._writeset)
                break
        return plans

    def _rebuild(self, gi, group, grads, offset, needed):
        params = group["params"]
        for k, p in enumerate(params):
            check_inplace_array(p, f"params[{offset + k}]")
        missing = []
        for k, p in enumerate(params):
            i = offset + k
            if grads[i] is None and i not in self._state:
                continue
            if i not in self._state:
                self._state[i] = self._new_state(group, p)
                self._created.append((i, None))
            st = self._state[i]
            for s, name in enumerate(self.slots):
                if (needed >> s) & 1 and st.get(name) is None:
                    missing.append((i, p, name))
                    if s == 0 and self.fresh_slot0:
                        self._fresh.add(i)
        self._allocate_slots(group, missing)
        self._writeset = None
        self._plans[gi] = self._make_plans(group, offset)
        return self._plans[gi]

    def _make_plans(self, group, offset):
        plans = []
        params = group["params"]
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            ks = [k for k, p in enumerate(params) if p.dtype == dtype]
            if not ks:
                continue
            idx = [offset + k for k in ks]
            states = [self._slot_tuple(i) for i in idx]
            steps = [self._state[i]["step"] if i in self._state else None for i in idx]
            aux = [self._state[i].get("mu_product") if i in self._state else None for i in idx]
            fresh = [i in self._fresh for i in idx]
            plans.append(_optim.StepPlan(self.algo, [params[k] for k in ks], idx, ks, len(params),
                                         states, steps, aux, fresh))
        return plans

    def _slot_tuple(self, i):
        st = self._state.get(i)
        if st is None:
            return None
        return tuple(st.get(name) for name in self.slots)

    def _make_writeset(self):
        arrays, names = list(self._params), [f"params[{i}]" for i in range(len(self._params))]
        for i, st in self._state.items():
            for name in self.slots:
                if st.get(name) is not None:
                    arrays.append(st[name])
                    names.append(f"state of params[{i}] ({name})")
        return _optim.WriteSet(arrays, names)

    def _new_state(self, group, p):
        state = {"step": np.zeros((), dtype=np.int64)}
        if self.uses_aux:
            state["mu_product"] = np.ones((), dtype=np.float64)
        return state

    def _allocate_slots(self, group, missing):
        """Creates the state arrays ``missing`` [(index, param, slot name)] as views into one flat buffer per slot
        name and dtype, so that a group's state is contiguous in memory (many small params then stream like one
        large one); each view starts on a 64-byte boundary."""
        by_kind = {}
        for i, p, name in missing:
            by_kind.setdefault((name, p.dtype), []).append((i, p))
        for (name, dtype), items in by_kind.items():
            align = max(1, 64 // dtype.itemsize)
            sizes = [-(-p.size // align) * align for _, p in items]
            flat = np.full(sum(sizes) + align, self._slot_initial_value(group, name), dtype=dtype)
            start = (-(flat.ctypes.data // dtype.itemsize)) % align      # first 64-byte boundary
            for (i, p), size in zip(items, sizes):
                self._state[i][name] = flat[start:start + p.size].reshape(p.shape)
                self._created.append((i, name))
                start += size

    def _slot_initial_value(self, group, name):
        return 0.0

    # ------------------------------------------------------------------ state_dict
    def state_dict(self):
        """``{"state": {i: {...}}, "param_groups": [{..., "params": [i, ...]}]}`` with Python scalars and NumPy
        arrays (copies), indices in flat param order; fits pickle and ``np.savez(..., allow_pickle)``."""
        groups = []
        offset = 0
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = list(range(offset, offset + len(group["params"])))
            offset += len(group["params"])
            groups.append(g)
        state = {}
        for i, st in sorted(self._state.items()):
            out = {}
            for name, value in st.items():
                if name == "step":
                    out[name] = int(value)
                elif name == "mu_product":
                    out[name] = float(value)
                elif value is None:
                    out[name] = None
                else:
                    out[name] = None if (name == self.slots[0] and i in self._fresh) else value.copy()
            state[i] = out
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores state and hyperparameters saved by ``state_dict()`` of an optimizer of the same class over
        params of the same count, shapes and dtypes; raises ValueError/TypeError (and changes nothing) otherwise."""
        if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict group {gi} has {len(saved['params'])} params, "
                                 f"the optimizer's has {len(group['params'])}")
            new = {k: v for k, v in saved.items() if k != "params"}
            unknown = set(new) - set(self.defaults) - SCHEDULE_KEYS
            if unknown:
                raise ValueError(f"loaded state dict group {gi} has hyperparameters {sorted(unknown)} unknown "
                                 f"to {type(self).__name__}")
            new["params"] = group["params"]
            self._check_group(new)
            new_groups.append(new)
        saved_ids = [i for g in saved_groups for i in g["params"]]
        id_to_flat = {sid: flat for flat, sid in enumerate(saved_ids)}
        new_state, new_fresh = {}, set()
        for sid, st in dict(state_dict["state"]).items():
            if sid not in id_to_flat:
                raise ValueError(f"loaded state dict has state for param {sid!r}, which no group lists")
            i = id_to_flat[sid]
            p = self._params[i]
            out = {}
            if "step" not in st:
                raise ValueError(f"loaded state of params[{i}] has no 'step'")
            step = st["step"]
            if isinstance(step, np.ndarray):
                step = step.item()
            if not float(step).is_integer() or step < 0:
                raise ValueError(f"loaded state of params[{i}]: invalid step {step!r}")
            out["step"] = np.array(int(step), dtype=np.int64)
            if self.uses_aux:
                if "mu_product" not in st:
                    raise ValueError(f"loaded state of params[{i}] has no 'mu_product'")
                mu_product = float(np.asarray(st["mu_product"]))
                if not math.isfinite(mu_product):
                    raise ValueError(f"loaded state of params[{i}]: invalid mu_product {mu_product!r}")
                out["mu_product"] = np.array(mu_product, dtype=np.float64)
            extra = set(st) - set(self.slots) - {"step", "mu_product"}
            if extra:
                raise ValueError(f"loaded state of params[{i}] has unknown entries {sorted(extra)} "
                                 f"for {type(self).__name__}")
            for name in self.slots:
                value = st.get(name)
                if value is None:
                    if name in st and name == self.slots[0] and self.fresh_slot0:
                        out[name] = np.zeros_like(p)
                        new_fresh.add(i)
                    continue
                if not isinstance(value, np.ndarray):
                    raise TypeError(f"loaded state of params[{i}] '{name}': expected a numpy.ndarray, "
                                    f"got {type(value).__name__}")
                if value.dtype != p.dtype:
                    raise TypeError(f"loaded state of params[{i}] '{name}': expected dtype {p.dtype} (the "
                                    f"param's), got {value.dtype}")
                if value.shape != p.shape:
                    raise ValueError(f"loaded state of params[{i}] '{name}': shape {value.shape} does not "
                                     f"match the param's {p.shape}")
                out[name] = np.array(value, dtype=p.dtype, order="C", copy=True)
            new_state[i] = out
        for group, new in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new)
        self._state = new_state
        self._fresh = new_fresh
        self._plans = [None] * len(self.param_groups)
        self._writeset = None
        self._checked = {}

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """Pickles params, groups and state; the compiled step plans are rebuilt at the next step."""
        state = self.__dict__.copy()
        state.update(_plans=[None] * len(self._plans), _writeset=None, _checked={}, _created=[])
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # ------------------------------------------------------------------ misc
    @property
    def params(self):
        """All params, flat, in group order (the order ``grads`` follows)."""
        return list(self._params)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for gi, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {gi}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    # ------------------------------------------------------------------ subclass hooks
    def _check_group(self, group):
        raise NotImplementedError

    def _kernel_args(self, group):
        raise NotImplementedError

    def _needed_slots(self, group):
        return (1 << len(self.slots)) - 1
