"""The ``Optimizer`` base class: parameter groups, lazily created state, ``step(grads)``, ``state_dict``.

Semantics follow ``torch.optim.Optimizer``: ``params`` is a list of arrays or of dicts (param groups with their
own hyperparameters); hyperparameters live in ``param_groups`` and are read at every step, so schedules may write
``group["lr"]``; state is created at a param's first step; a param whose gradient is ``None`` is skipped.

Each step makes one call into C per group (per dtype within a group): the compiled ``StepPlan`` of the group holds
pointers to params and state, and is rebuilt only when the group's params or state change.
"""
import math
import os
import threading
import weakref
from collections.abc import Mapping

import numpy as np

from fastopt import _optim
from fastopt._contract import IntervalSet
from fastopt._validation import check_inplace_array, check_no_overlap, check_range
from fastopt.optim import _formats
from fastopt.optim._formats import ABSMAX_SUFFIX, FORMAT_KEYS, KAHAN, KAHAN_KEY, NATIVE
from fastopt.optim._groups import new_group, param_groups_of
from fastopt.optim._spec import COPY_OF_PARAM


_LIVE = weakref.WeakSet()     # every optimizer of this process, for the fork handler below


def _renew_locks_after_fork():
    """In a fork()ed child, only the forking thread survives: a lock another thread held at the fork would never
    be released, and the child's first step would wait forever. Each optimizer gets a fresh lock; one caught
    mid-step (lock held) also drops the state that step created and rebuilds its plans at the next step."""
    for opt in list(_LIVE):
        if opt._lock.locked():
            opt._forget_created()
            opt._plans = [None] * len(opt._plans)
            opt._writeset = None
        opt._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_after_fork)


def _where(where):
    return f"param_groups[{where}]" if isinstance(where, int) else where


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
    """Base class of fastopt optimizers. A subclass is made from an ``OptimizerSpec`` (``spec``: hyperparameters,
    state slots, kernel; see fastopt/optim/_spec.py): the spec's ``HyperLayout`` checks a group's hyperparameters
    at every step, at C speed, and the kernel's rule (``HParams.required_slots``) says which state slots it uses.
    """

    spec = None

    @property
    def algo(self):
        return self.spec.algo_id

    @property
    def slots(self):
        return tuple(s.name for s in self.spec.slots)

    @property
    def uses_aux(self):
        return self.spec.aux is not None

    @property
    def fresh_slot0(self):
        return self.spec.fresh_slot0

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._params = []     # flat list, group order
        self._group_params = []   # per group: the tuple of its params as registered
        self._state = {}      # flat index -> {"step": 0-d int64 array, slot name -> array, ...}
        self._fresh = set()   # flat indices whose slot 0 holds no history yet
        self._plans = []      # per group: list of StepPlan (one per dtype), or None when stale
        self._group_formats = []  # per group: its (state_dtype, min_quantized_size, compensation), fixed when added
        self._writeset = None
        self._layout = type(self)._compiled_layout()
        self._created = []    # (index, slot name or None for the whole state) created by the current step
        self._lock = threading.Lock()     # one step at a time: plans hold bound gradients between bind and run
        _LIVE.add(self)
        self.state = _ParamState(self)
        for group in param_groups_of(params):
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Adds a group (dict with "params" and optional hyperparameters; missing ones take the defaults)."""
        with self._lock:
            self._add_param_group(param_group)

    def _add_param_group(self, param_group):
        group = new_group(param_group, self.defaults, len(self._params), bfloat16=True)
        params = group["params"]
        unknown = set(group) - set(self.defaults) - SCHEDULE_KEYS - {"params"}
        if unknown:
            raise TypeError(f"unknown hyperparameter(s) {sorted(unknown)} for {type(self).__name__}; "
                            f"expected {sorted(self.defaults)}")
        self._pack(group, f"param group {len(self.param_groups)}")
        formats = self._checked_formats(group, params, len(self._params), f"param group {len(self.param_groups)}")
        check_no_overlap(self._params + params, lambda i: f"params[{i}]")
        self.param_groups.append(group)
        self._group_params.append(tuple(params))
        self._params.extend(params)
        self._plans.append(None)
        self._group_formats.append(formats)
        self._writeset = None

    def _checked_formats(self, group, params, base, where):
        """The group's (state_dtype, min_quantized_size, compensation), checked against the optimizer and the
        params."""
        state_dtype = _formats.check_state_dtype(group["state_dtype"], where)
        min_size = _formats.check_min_quantized_size(group["min_quantized_size"], where)
        compensation = _formats.check_compensation(group["compensation"], where)
        bf16 = [k for k, p in enumerate(params) if _formats.is_bfloat16(p.dtype)]
        for what, used in ((f"state_dtype={state_dtype!r}", state_dtype in _formats.LOW_PRECISION),
                           (f"bfloat16 params (params[{base + bf16[0]}])" if bf16 else "", bool(bf16))):
            if used and not self.spec.state_formats:
                why = ("its update is not element-wise" if not (self.spec.elementwise or self.spec.norm_sweep) else
                       "its state holds no moments, only iterates, kept in the param's dtype")
                raise ValueError(f"{where}: {type(self).__name__} does not support {what}: {why}")
        for k, p in enumerate(params):
            want = "float64" if p.dtype == np.float64 else "float32"
            if state_dtype is not None and state_dtype != want and (state_dtype not in _formats.LOW_PRECISION
                                                                    or want == "float64"):
                raise ValueError(f"{where}: state_dtype={state_dtype!r} does not fit params[{base + k}] of dtype "
                                 f"{p.dtype}: low-precision state is for float32 and bfloat16 params; a float64 "
                                 "param takes state_dtype None or 'float64'")
        return state_dtype, min_size, compensation

    def _check_formats_unchanged(self, gi, group):
        """ValueError if the group's state_dtype, min_quantized_size or compensation differ from those its state
        was made with."""
        now = tuple(group.get(key) for key in FORMAT_KEYS)
        if now != self._group_formats[gi]:
            raise ValueError(f"param_groups[{gi}]: {', '.join(FORMAT_KEYS)} {now} differ from "
                             f"{self._group_formats[gi]}, fixed when the group was added; to change the state's "
                             "format, build a new optimizer with the new ones and load this one's state_dict()")

    def _slot_formats(self, gi, p):
        """The format of each state slot of param ``p`` of group ``gi`` (fastopt.optim._formats)."""
        state_dtype, min_size, _ = self._group_formats[gi]
        return tuple(_formats.slot_format(state_dtype, min_size, slot, p) for slot in self.spec.slots)

    def state_nbytes(self):
        """Bytes of the optimizer state: every state array (codes and absmax of low-precision slots included),
        the step counters (8 bytes a param) and the scalar state; not the padding to 64-byte boundaries."""
        return sum(v.nbytes for st in self._state.values() for v in st.values() if isinstance(v, np.ndarray))

    # ------------------------------------------------------------------ step
    def step(self, grads, *, check_finite=False):
        """Updates every param in place from ``grads`` (aligned with the params of all groups, in group order).

        ``grads[i]`` may be None (params[i] is skipped, as torch skips a param without .grad), read-only, or
        non-contiguous (copied once). With ``check_finite=True`` a gradient holding inf or NaN raises
        ``ValueError`` before anything is written; otherwise non-finite values propagate, as in torch.

        A step is all or nothing: every check runs before anything is written, and the kernels of all groups run
        in one compiled call that a KeyboardInterrupt cannot split. Steps on one optimizer from several threads
        run one at a time (a lock per optimizer); steps on different optimizers run concurrently, GIL released.
        """
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays aligned with the params, got {type(grads).__name__}")
        if len(grads) != len(self._params):
            raise ValueError(f"expected {len(self._params)} gradients (one per param, in group order), "
                             f"got {len(grads)}")
        if not isinstance(grads, list):
            grads = list(grads)
        with self._lock:
            runs = self._checked_runs(grads, check_finite)
            fresh = {i for i in self._fresh if grads[i] is None} if self._fresh else self._fresh
            _optim.run_plans(runs, self, fresh)

    def _checked_runs(self, grads, check_finite):
        """[(plans, packed hyperparameters)] of every group with the gradients bound; writes no array. On an
        error (or an interrupt) the state this step created is dropped again."""
        runs = []
        offset = 0
        self._created = []
        try:
            for gi, group in enumerate(self.param_groups):
                hp = self._pack(group, gi)        # every step: schedules and users write groups
                self._check_formats_unchanged(gi, group)
                plans = self._bound_plans(gi, group, grads, offset, hp.slots & _optim.SLOT_MASK)
                runs.append((plans, hp))
                offset += len(group["params"])
            if check_finite:
                for plans, _ in runs:
                    for plan in plans:
                        plan.check_finite()
        except BaseException:
            self._forget_created()
            raise
        return runs

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

    def _bound_plans(self, gi, group, grads, offset, needed):
        """The group's StepPlans, rebuilt if stale, with the gradients bound (checked, nothing written); ``needed``:
        bitmask of the state slots the step uses."""
        params = group["params"]
        plans = self._plans[gi]
        if not _optim.plans_current(plans, params, needed):
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
        self._check_group_params(gi, params, offset)
        for k, p in enumerate(params):
            check_inplace_array(p, f"params[{offset + k}]", bfloat16=True)
        missing = []
        for k, p in enumerate(params):
            i = offset + k
            if grads[i] is None and i not in self._state:
                continue
            if i not in self._state:
                self._state[i] = self._new_state(group, p, self._group_formats[gi][2])
                self._created.append((i, None))
            st = self._state[i]
            for s, name in enumerate(self.slots):
                if (needed >> s) & 1 and st.get(name) is None:
                    missing.append((i, p, name))
                    if s == 0 and self.fresh_slot0:
                        self._fresh.add(i)
        self._allocate_slots(group, missing, gi)
        self._writeset = None
        self._plans[gi] = self._make_plans(group, offset, gi)
        return self._plans[gi]

    def _check_group_params(self, gi, params, offset):
        """The params of group ``gi`` must still be the arrays the optimizer registered for it (its state, plans
        and overlap checks are built on them): an edit of ``group["params"]`` is a ValueError."""
        registered = self._group_params[gi]
        if not isinstance(params, list) or len(params) != len(registered) or any(
                a is not b for a, b in zip(params, registered)):
            raise ValueError(f"param_groups[{gi}]['params'] was changed after it was added (params[{offset}] to "
                             f"params[{offset + len(registered) - 1}]): add parameters with add_param_group(), "
                             "or build a new optimizer")

    def _make_plans(self, group, offset, gi):
        plans = []
        params = group["params"]
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            ks = [k for k, p in enumerate(params) if _formats.work_dtype(p) == dtype]
            if not ks:
                continue
            idx = [offset + k for k in ks]
            states = [self._slot_tuple(i) for i in idx]
            steps = [self._state[i]["step"] if i in self._state else None for i in idx]
            aux = [self._state[i].get(self.spec.aux) if i in self._state else None for i in idx]
            fresh = [i in self._fresh for i in idx]
            formats = [self._plan_formats(gi, params[k]) for k in ks]
            absmax = [self._absmax_tuple(i) for i in idx]
            stores = [self._store_info(gi, i) for i in idx]
            plans.append(_optim.StepPlan(self.algo, [params[k] for k in ks], idx, ks, len(params),
                                         states, steps, aux, fresh, formats, absmax, stores))
        return plans

    def _store_info(self, gi, i):
        """StepPlan's store entry of params[i]: (compensation code, Kahan buffer or None, rounding seed: the param's
        flat index)."""
        st = self._state.get(i) or {}
        return _optim.COMPENSATIONS[self._group_formats[gi][2]], st.get(KAHAN_KEY), i

    def _plan_formats(self, gi, p):
        """StepPlan's formats of param ``p``: None (all native) or (format code, signed) per slot."""
        fmts = self._slot_formats(gi, p)
        if all(f == NATIVE for f in fmts):
            return None
        return tuple((_formats.code(f), slot.quantize == "signed") for f, slot in zip(fmts, self.spec.slots))

    def _absmax_tuple(self, i):
        st = self._state.get(i)
        if st is None:
            return None
        return tuple(st.get(name + ABSMAX_SUFFIX) for name in self.slots)

    def _slot_tuple(self, i):
        st = self._state.get(i)
        if st is None:
            return None
        return tuple(st.get(name) for name in self.slots)

    def _make_writeset(self):
        arrays, names = list(self._params), [f"params[{i}]" for i in range(len(self._params))]
        for i, st in self._state.items():
            for name in self.slots + (KAHAN_KEY,):
                for key in (name, name + ABSMAX_SUFFIX):
                    if st.get(key) is not None:
                        arrays.append(st[key])
                        names.append(f"state of params[{i}] ({key})")
        return IntervalSet(arrays, names)

    def _new_state(self, group, p, compensation):
        state = {"step": np.zeros((), dtype=np.int64)}
        if _formats.is_bfloat16(p.dtype) and compensation == KAHAN:
            state[KAHAN_KEY] = np.zeros(p.shape, p.dtype)
        if self.uses_aux:
            initial = self.spec.aux_initial
            resolve = (lambda v: group[v] if isinstance(v, str) else v)
            value = [resolve(v) for v in initial] if isinstance(initial, tuple) else resolve(initial)
            state[self.spec.aux] = np.array(value, np.float64)
        return state

    def _allocate_slots(self, group, missing, gi):
        """Creates the state arrays ``missing`` [(index, param, slot name)] as views into one flat buffer per slot
        name, dtype and format, so that a group's state is contiguous in memory (many small params then stream
        like one large one); each view starts on a 64-byte boundary. A low-precision slot's absmax array
        (``<name>_absmax``) is a view of a second buffer."""
        by_kind = {}
        for i, p, name in missing:
            fmt = self._slot_formats(gi, p)[self.slots.index(name)]
            by_kind.setdefault((name, _formats.work_dtype(p), fmt), []).append((i, p))
        for (name, dtype, fmt), items in by_kind.items():
            initial = self._slot_initial_value(group, name)
            slot = self.spec.slots[self.slots.index(name)]
            if initial is COPY_OF_PARAM:
                views = _aligned_views([p.shape for _, p in items], dtype, 0.0)
                for (_, p), view in zip(items, views):
                    np.copyto(view, p)
            elif fmt == NATIVE:
                views = _aligned_views([p.shape for _, p in items], dtype, initial)
            else:
                views = self._constant_state(fmt, [p for _, p in items], initial, slot.quantize == "signed", name)
            for (i, p), view in zip(items, views):
                for key, array in (view if isinstance(view, dict) else {name: view}).items():
                    self._state[i][key] = array
                    self._created.append((i, key))

    @staticmethod
    def _constant_state(fmt, params, initial, signed, name):
        """Per param, {name: codes, name_absmax: absmax} of a slot holding ``initial`` everywhere in ``fmt``: each
        block of a constant encodes to the same codes and absmax, so one encoded block fills every buffer."""
        block = max(_optim.QUANT_BLOCKS.values())         # a whole block of every format
        codes, absmax = _formats.encode(fmt, np.full(block, initial, np.float32), signed)
        out = [{} for _ in params]
        dtypes_shapes = [_formats.layout(fmt, p) for p in params]
        code_views = _aligned_views([shape for _, shape, _ in dtypes_shapes], codes.dtype, codes.reshape(-1)[0])
        for d, view, p in zip(out, code_views, params):
            if fmt == _formats.INT4 and p.size % 2:
                view[-1] &= 0x0F              # an odd count's last high nibble is 0, as fo_quantize_block writes
            d[name] = view
        if absmax is not None:
            for d, view in zip(out, _aligned_views([(n,) for _, _, n in dtypes_shapes], np.float32, absmax[0])):
                d[name + ABSMAX_SUFFIX] = view
        return out

    def _slot_initial_value(self, group, name):
        """The initial value of slot ``name``: a number, a group hyperparameter's, or COPY_OF_PARAM (the param's
        value at the state's creation, copied by _allocate_slots: the one place that rule lives)."""
        initial = next(s.initial for s in self.spec.slots if s.name == name)
        return group[initial] if isinstance(initial, str) else initial

    # ------------------------------------------------------------------ hyperparameters
    @classmethod
    def _compiled_layout(cls):
        """The spec's HyperLayout, compiled once per class."""
        if "_layout_cache" not in cls.__dict__:
            cls._layout_cache = cls.spec.layout()
            cls._hyper_keys = tuple(h.name for h in cls.spec.hypers)
            cls._known_keys = frozenset(cls._hyper_keys) | SCHEDULE_KEYS | {"params"} | frozenset(FORMAT_KEYS)
        return cls._layout_cache

    def _pack(self, group, where):
        """The checked HParams of a group's hyperparameters (ValueError/TypeError naming the bad one). Checked by
        type and value at every call, at C speed: ``lr=True`` after ``lr=1.0`` is caught. A key the optimizer does
        not know (a typo) is a TypeError, not silently ignored as in torch. ``where``: the group's name in messages,
        or its index in param_groups."""
        if len(group) != len(self._hyper_keys) + 1 + len(FORMAT_KEYS) and group.keys() - self._known_keys:
            raise TypeError(f"{_where(where)}: unknown hyperparameter(s) {sorted(group.keys() - self._known_keys)} "
                            f"for {type(self).__name__}; expected {sorted(self.defaults)}")
        try:
            values = tuple([group[k] for k in self._hyper_keys])
        except KeyError as e:
            raise ValueError(f"{_where(where)} has no {e.args[0]!r} (a hyperparameter of "
                             f"{type(self).__name__})") from None
        return self._layout.pack(values)

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
                elif name == self.spec.aux:
                    out[name] = float(value) if value.ndim == 0 else value.copy()
                elif value is None:
                    out[name] = None
                else:
                    fresh = i in self._fresh and name in (self.slots[0], self.slots[0] + ABSMAX_SUFFIX)
                    out[name] = None if fresh else value.copy()
            state[i] = out
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores state and hyperparameters saved by ``state_dict()`` of an optimizer of the same class over
        params of the same count, shapes and dtypes. Anything else (a missing or unknown key, a step that is not an
        integer in [0, 2**53], a state array of another dtype or shape, a missing state array the step needs) is a
        ValueError/TypeError naming the key, and changes nothing.

        ``state_dtype`` and ``min_quantized_size`` stay this optimizer's: the saved group's (None and 4096 where it
        has none) say how the saved arrays are stored, and a state saved in another format is converted (float32
        state loaded into an int8 optimizer is quantized, bfloat16 state into a float32 one decoded); in the same
        format it is copied bit for bit."""
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict):
        if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        new_groups = [self._loaded_group(gi, saved) for gi, saved in enumerate(saved_groups)]
        saved_formats = [self._saved_formats(gi, saved) for gi, saved in enumerate(saved_groups)]
        saved_ids = [i for g in saved_groups for i in g["params"]]
        id_to_flat = {sid: flat for flat, sid in enumerate(saved_ids)}
        group_of = [gi for gi, g in enumerate(self.param_groups) for _ in g["params"]]
        saved_state = state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise TypeError(f"loaded state dict 'state': expected a dict, got {type(saved_state).__name__}")
        new_state, new_fresh = {}, set()
        for sid, st in saved_state.items():
            if sid not in id_to_flat:
                raise ValueError(f"loaded state dict has state for param {sid!r}, which no group lists")
            i = id_to_flat[sid]
            gi = group_of[i]
            new_state[i] = self._loaded_param_state(i, st, new_groups[gi][1], new_fresh, saved_formats[gi], gi)
        for group, (new, _) in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new)
        self._state = new_state
        self._fresh = new_fresh
        self._plans = [None] * len(self.param_groups)
        self._writeset = None

    def _loaded_group(self, gi, saved):
        """(group dict, checked HParams) of saved group ``gi``."""
        if not isinstance(saved, Mapping):
            raise TypeError(f"loaded state dict group {gi}: expected a dict, got {type(saved).__name__}")
        group = self.param_groups[gi]
        if "params" not in saved:
            raise ValueError(f"loaded state dict group {gi} has no 'params'")
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(f"loaded state dict group {gi} has {len(saved['params'])} params, "
                             f"the optimizer's has {len(group['params'])}")
        new = {k: v for k, v in saved.items() if k != "params"}
        unknown = set(new) - set(self.defaults) - SCHEDULE_KEYS
        if unknown:
            raise ValueError(f"loaded state dict group {gi} has hyperparameters {sorted(unknown)} unknown "
                             f"to {type(self).__name__}")
        new["params"] = group["params"]
        new.update(zip(FORMAT_KEYS, self._group_formats[gi]))       # the optimizer's own (see load_state_dict)
        return new, self._pack(new, f"loaded state dict group {gi}")

    @staticmethod
    def _saved_formats(gi, saved):
        """(state_dtype, min_quantized_size) of saved group ``gi``: how its arrays are stored."""
        where = f"loaded state dict group {gi}"
        return (_formats.check_state_dtype(saved.get("state_dtype"), where),
                _formats.check_min_quantized_size(saved.get("min_quantized_size",
                                                            _formats.DEFAULT_MIN_QUANTIZED_SIZE), where))

    def _loaded_param_state(self, i, st, hp, new_fresh, saved_formats, gi):
        """The state of params[i] from its saved entry ``st``, checked against the param and the slots the
        group's step needs (``hp``), converted from the saved formats to this optimizer's; a missing first slot of
        SGD is a first step to come (as torch)."""
        where = f"loaded state of params[{i}]"
        if not isinstance(st, Mapping):
            raise TypeError(f"{where}: expected a dict, got {type(st).__name__}")
        p = self._params[i]
        if "step" not in st:
            raise ValueError(f"{where} has no 'step'")
        out = {"step": np.array(_loaded_step(st["step"], where), dtype=np.int64)}
        aux = self.spec.aux
        if aux is not None:
            if aux not in st:
                raise ValueError(f"{where} has no {aux!r}")
            out[aux] = _loaded_aux(st[aux], self.spec.aux_size, f"{aux} in {where}")
        saved = tuple(_formats.slot_format(*saved_formats, slot, p) for slot in self.spec.slots)
        known = set(self.slots) | {n + ABSMAX_SUFFIX for n, f in zip(self.slots, saved) if f in _formats.QUANTIZED}
        known.add(KAHAN_KEY)
        extra = set(st) - known - {"step", aux}
        if extra:
            raise ValueError(f"{where} has unknown entries {sorted(extra)} for {type(self).__name__}")
        needed = hp.required_slots()
        for s, (slot, fmt, target) in enumerate(zip(self.spec.slots, saved, self._slot_formats(gi, p))):
            signed = slot.quantize == "signed"
            if st.get(slot.name) is None:
                if s == 0 and self.fresh_slot0 and (needed & 1):
                    out.update(_encoded(target, np.zeros(p.shape, _formats.work_dtype(p)), slot.name, signed))
                    new_fresh.add(i)
                elif (needed >> s) & 1:
                    raise ValueError(f"{where} has no {slot.name!r}, which {type(self).__name__} needs with these "
                                     "hyperparameters (it would restart from zeros)")
                continue
            codes, absmax = _loaded_slot(st, slot.name, fmt, p, where)
            if fmt == target:
                out[slot.name] = codes
                if absmax is not None:
                    out[slot.name + ABSMAX_SUFFIX] = absmax
            else:
                out.update(_encoded(target, _formats.decode(fmt, codes, absmax, p, signed), slot.name, signed))
        if _formats.is_bfloat16(p.dtype) and self._group_formats[gi][2] == KAHAN:
            saved_comp = st.get(KAHAN_KEY)
            out[KAHAN_KEY] = (np.zeros(p.shape, p.dtype) if saved_comp is None else
                              _loaded_array(saved_comp, p.dtype, p.shape, f"{where} {KAHAN_KEY!r}", "the param's"))
        return out

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """Pickles params, groups and state; the compiled step plans are rebuilt at the next step."""
        state = self.__dict__.copy()
        state.update(_plans=[None] * len(self._plans), _writeset=None, _created=[])
        del state["_layout"], state["_lock"], state["_group_params"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._layout = type(self)._compiled_layout()
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._group_params = [tuple(g["params"]) for g in self.param_groups]

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


def _aligned_views(shapes, dtype, fill):
    """Arrays of ``shapes``, filled with ``fill``, views into one flat buffer of ``dtype``, each starting on a
    64-byte boundary."""
    dtype = np.dtype(dtype)
    align = max(1, 64 // dtype.itemsize)
    sizes = [-(-int(np.prod(shape, dtype=np.int64)) // align) * align for shape in shapes]
    flat = np.full(sum(sizes) + align, fill, dtype=dtype)
    start = (-(flat.ctypes.data // dtype.itemsize)) % align      # first 64-byte boundary
    views = []
    for shape, size in zip(shapes, sizes):
        n = int(np.prod(shape, dtype=np.int64))
        views.append(flat[start:start + n].reshape(shape))
        start += size
    return views


# Largest step count accepted from a saved state: counts up to it are exact in the double the kernels compute with.
MAX_STEP = 2 ** 53


def _loaded_array(value, dtype, shape, what, whose):
    """A saved state array, checked (TypeError: not an ndarray or another dtype; ValueError: another shape; both
    naming ``whose`` the expected ones are) and copied C-contiguous."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{what}: expected a numpy.ndarray, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{what}: expected dtype {dtype} ({whose}), got {value.dtype}")
    if value.shape != tuple(shape):
        raise ValueError(f"{what}: shape {value.shape} does not match {whose} {tuple(shape)}")
    return np.array(value, dtype=dtype, order="C", copy=True)


def _loaded_slot(st, name, fmt, p, where):
    """(codes, absmax or None) of saved slot ``name`` stored in ``fmt`` (the saved group's format), checked
    against param ``p``: dtype, shape, the absmax's block count."""
    dtype, shape, blocks = _formats.layout(fmt, p)
    whose = "the param's" if fmt == NATIVE else f"state_dtype {fmt!r} codes'"
    codes = _loaded_array(st[name], dtype, shape, f"{where} '{name}'", whose)
    if blocks == 0:
        return codes, None
    key = name + ABSMAX_SUFFIX
    if st.get(key) is None:
        raise ValueError(f"{where} has no {key!r}, the block scales of {fmt} state {name!r}")
    return codes, _loaded_array(st[key], np.dtype(np.float32), (blocks,), f"{where} '{key}'",
                                f"one float32 per block of {fmt} state:")


def _encoded(fmt, x, name, signed):
    """{name: codes[, name_absmax: absmax]} of float32 values ``x`` in ``fmt``."""
    codes, absmax = _formats.encode(fmt, np.ascontiguousarray(x), signed)
    out = {name: np.array(codes, order="C", copy=True)}
    if absmax is not None:
        out[name + ABSMAX_SUFFIX] = absmax
    return out


def _loaded_step(step, where):
    """A saved step count as an int in [0, MAX_STEP]: an int, a NumPy integer, an integral float (torch saves
    float tensors) or a 0-d array of one; a bool is a TypeError."""
    if isinstance(step, np.ndarray) and step.ndim == 0:
        step = step.item()
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer, float, np.floating)):
        raise TypeError(f"{where}: invalid step {step!r}: expected an integer, got {type(step).__name__}")
    if not (0 <= step <= MAX_STEP and float(step).is_integer()):
        raise ValueError(f"{where}: invalid step {step!r}: expected an integer in [0, 2**53]")
    return int(step)


def _loaded_aux(value, size, what):
    """A saved ``aux``: a float (size 0) or ``size`` floats (a sequence or 1-d array), each checked; a new float64
    array."""
    if size == 0:
        value = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
        return np.array(check_range(value, what, -math.inf, math.inf, True, True), dtype=np.float64)
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__") or len(value) != size \
            or (isinstance(value, np.ndarray) and value.ndim != 1):
        raise ValueError(f"{what}: expected {size} floats, got {value!r}")
    return np.array([check_range(v.item() if isinstance(v, np.generic) else v, f"{what} [{k}]", -math.inf,
                                 math.inf, True, True) for k, v in enumerate(value)], dtype=np.float64)
