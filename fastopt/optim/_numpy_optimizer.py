"""``NumpyOptimizer``: the base of the optimizers whose state is not element-wise (Adafactor's factored second
moment, SparseAdam's row-sparse gradients), stepped one param at a time by the subclass's own update (NumPy
ufuncs and reductions for Adafactor, a native row kernel for SparseAdam) instead of the fused multi-tensor
element-wise kernels of ``Optimizer``.

The API is ``Optimizer``'s: ``param_groups`` (hyperparameters checked at construction and again at every step),
``add_param_group``, ``step(grads)`` (``None`` skips a param and its step count), ``state[p]`` (by param or flat
index), ``state_dict()`` / ``load_state_dict()`` (Python scalars and NumPy arrays; validated; bit-identical resume).
Every check of a step runs before anything is written. A subclass supplies:

- ``_checked_hypers(group, where)``: the group's hyperparameters, checked (TypeError/ValueError naming them);
- ``_checked_grad(i, param, grad, hypers)``: the gradient as its update reads it (dense arrays checked by
  ``dense_grad``), or None to skip, raising on a bad one; ``_grad_arrays(grad)`` the arrays it reads;
- ``_state_shapes(param)``: {state name: shape} of a param's arrays (dtype: the param's), besides ``step``;
- ``_update(i, param, grad, state, hypers)``: the step of one param (``state["step"]`` already advanced).
"""
import threading
from collections.abc import Mapping

import numpy as np

from fastopt._validation import (check_disjoint, check_inplace_array, check_no_overlap, check_same_dtype,
                                 check_same_shape, input_array)
from fastopt.optim._groups import new_group, param_groups_of
from fastopt.optim.optimizer import SCHEDULE_KEYS, _loaded_step, _ParamState


class NumpyOptimizer:
    """Param groups, state and state_dict of an optimizer stepped in NumPy (see the module docstring).
    ``counts_steps``: each param's state holds its ``step`` count (False: torch keeps none, as for Muon)."""

    counts_steps = True

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._params = []
        self._group_params = []
        self._state = {}
        self._scratch = {}    # work buffers of the step (never part of the state), made by the subclass
        self._lock = threading.Lock()
        self.state = _ParamState(self)
        for group in param_groups_of(params):
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Adds a group (dict with "params" and optional hyperparameters; missing ones take the defaults)."""
        with self._lock:
            group = new_group(param_group, self.defaults, len(self._params))
            params, base = group["params"], len(self._params)
            for k, p in enumerate(params):
                self._check_param(p, f"params[{base + k}]")
            self._checked_hypers(group, f"param group {len(self.param_groups)}")
            check_no_overlap(self._params + params, lambda i: f"params[{i}]")
            self.param_groups.append(group)
            self._group_params.append(tuple(params))
            self._params.extend(params)

    def _check_param(self, p, where):
        """Raises if the optimizer cannot step ``p`` (any float array by default)."""

    def _known_keys(self, group, where):
        unknown = set(group) - set(self.defaults) - SCHEDULE_KEYS - {"params"}
        if unknown:
            raise TypeError(f"{where}: unknown hyperparameter(s) {sorted(unknown)} for {type(self).__name__}; "
                            f"expected {sorted(self.defaults)}")
        missing = set(self.defaults) - set(group)
        if missing:
            raise ValueError(f"{where} has no {sorted(missing)[0]!r} (a hyperparameter of {type(self).__name__})")

    # ------------------------------------------------------------------ step
    def step(self, grads):
        """Updates every param with a gradient in place (``grads`` aligned with the params of all groups, in group
        order; None skips a param). All checks (hyperparameters, gradients, memory overlap) run first: an error
        leaves params and state unchanged. Steps on one optimizer from several threads run one at a time."""
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list aligned with the params, got {type(grads).__name__}")
        if len(grads) != len(self._params):
            raise ValueError(f"expected {len(self._params)} gradients (one per param, in group order), "
                             f"got {len(grads)}")
        with self._lock:
            work = self._checked_work(grads)
            for i, p, g, hp in work:
                if i not in self._state:
                    self._state[i] = self._new_state(p)
                st = self._state[i]
                if self.counts_steps:
                    st["step"][...] = st["step"] + 1
                self._update(i, p, g, st, hp)

    def _checked_work(self, grads):
        """[(index, param, checked gradient, hyperparameters)] of the params to step; writes nothing."""
        work, offset = [], 0
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            registered = self._group_params[gi]
            if not isinstance(params, list) or len(params) != len(registered) or any(
                    a is not b for a, b in zip(params, registered)):
                raise ValueError(f"param_groups[{gi}]['params'] was changed after it was added: add parameters "
                                 "with add_param_group(), or build a new optimizer")
            hp = self._checked_hypers(group, f"param_groups[{gi}]")
            for k, p in enumerate(params):
                i = offset + k
                check_inplace_array(p, f"params[{i}]")
                if grads[i] is not None:
                    g = self._checked_grad(i, p, grads[i], hp)
                    if g is not None:
                        work.append((i, p, g, hp))
            offset += len(params)
        writes, wnames = list(self._params), [f"params[{i}]" for i in range(len(self._params))]
        for i, st in self._state.items():
            for name, value in st.items():
                if name != "step":
                    writes.append(value)
                    wnames.append(f"state of params[{i}] ({name})")
        reads, rnames = [], []
        for i, _, g, _ in work:
            for a in self._grad_arrays(g):
                reads.append(a)
                rnames.append(f"grads[{i}]")
        check_disjoint(writes, wnames, reads, rnames)
        return work

    @staticmethod
    def dense_grad(i, p, grad):
        """``grad`` for ``params[i]``: an ndarray of the param's dtype and shape (TypeError/ValueError naming
        ``grads[i]``), itself or one contiguous copy (a strided or byte-swapped gradient)."""
        name = f"grads[{i}]"
        if not isinstance(grad, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray, got {type(grad).__name__}")
        check_same_dtype(p, grad, f"params[{i}]", name)
        check_same_shape(p, grad, f"params[{i}]'s", name)
        return input_array(grad, name)

    def _grad_arrays(self, grad):
        return (grad,)

    def _new_state(self, p):
        state = {"step": np.zeros((), dtype=np.int64)} if self.counts_steps else {}
        for name, shape in self._state_shapes(p).items():
            state[name] = np.zeros(shape, dtype=p.dtype)
        return state

    # ------------------------------------------------------------------ state_dict
    def state_dict(self):
        """``{"state": {i: {"step": int, name: array copy, ...}}, "param_groups": [{..., "params": [i, ...]}]}``
        with flat param indices in group order."""
        groups, offset = [], 0
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            g["params"] = list(range(offset, offset + len(group["params"])))
            offset += len(group["params"])
            groups.append(g)
        state = {i: {name: int(v) if name == "step" else v.copy() for name, v in st.items()}
                 for i, st in sorted(self._state.items())}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores what ``state_dict()`` saved for params of the same count, shapes and dtypes; anything else
        (a missing or unknown key, a bad step, an array of another dtype or shape) raises naming the key and
        changes nothing."""
        with self._lock:
            if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
                raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
            saved_groups = list(state_dict["param_groups"])
            if len(saved_groups) != len(self.param_groups):
                raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                                 f"the optimizer has {len(self.param_groups)}")
            new_groups = [self._loaded_group(gi, saved) for gi, saved in enumerate(saved_groups)]
            id_to_flat = {sid: flat for flat, sid in enumerate(i for g in saved_groups for i in g["params"])}
            saved_state = state_dict["state"]
            if not isinstance(saved_state, Mapping):
                raise TypeError(f"loaded state dict 'state': expected a dict, got {type(saved_state).__name__}")
            new_state = {}
            for sid, st in saved_state.items():
                if sid not in id_to_flat:
                    raise ValueError(f"loaded state dict has state for param {sid!r}, which no group lists")
                i = id_to_flat[sid]
                new_state[i] = self._loaded_param_state(i, st)
            for group, new in zip(self.param_groups, new_groups):
                group.clear()
                group.update(new)
            self._state = new_state

    def _loaded_group(self, gi, saved):
        where = f"loaded state dict group {gi}"
        if not isinstance(saved, Mapping):
            raise TypeError(f"{where}: expected a dict, got {type(saved).__name__}")
        group = self.param_groups[gi]
        if "params" not in saved:
            raise ValueError(f"{where} has no 'params'")
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(f"{where} has {len(saved['params'])} params, the optimizer's has "
                             f"{len(group['params'])}")
        new = {k: v for k, v in saved.items() if k != "params"}
        new["params"] = group["params"]
        self._checked_hypers(new, where)
        return new

    def _loaded_param_state(self, i, st):
        where = f"loaded state of params[{i}]"
        if not isinstance(st, Mapping):
            raise TypeError(f"{where}: expected a dict, got {type(st).__name__}")
        p = self._params[i]
        shapes = self._state_shapes(p)
        expected = (["step"] if self.counts_steps else []) + sorted(shapes)
        if self.counts_steps and "step" not in st:
            raise ValueError(f"{where} has no 'step'")
        extra = set(st) - set(expected)
        if extra:
            raise ValueError(f"{where} has unknown entries {sorted(extra)} for {type(self).__name__} "
                             f"(expected {expected})")
        out = {"step": np.array(_loaded_step(st["step"], where), dtype=np.int64)} if self.counts_steps else {}
        for name, shape in shapes.items():
            value = st.get(name)
            if value is None:
                raise ValueError(f"{where} has no {name!r}")
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{where} '{name}': expected a numpy.ndarray, got {type(value).__name__}")
            if value.dtype != p.dtype:
                raise TypeError(f"{where} '{name}': expected dtype {p.dtype} (the param's), got {value.dtype}")
            if value.shape != tuple(shape):
                raise ValueError(f"{where} '{name}': shape {value.shape} does not match the expected "
                                 f"{tuple(shape)}")
            out[name] = np.array(value, dtype=p.dtype, order="C", copy=True)
        return out

    # ------------------------------------------------------------------ pickling, misc
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"], state["_group_params"]
        state["_scratch"] = {}            # work buffers (not state): made again at the next step
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._group_params = [tuple(g["params"]) for g in self.param_groups]

    @property
    def params(self):
        """All params, flat, in group order (the order ``grads`` follows)."""
        return list(self._params)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for gi, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {gi}")
            lines.extend(f"    {key}: {group[key]}" for key in sorted(group) if key != "params")
        lines.append(")")
        return "\n".join(lines)
