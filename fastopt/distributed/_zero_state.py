"""The full optimizer state of a ``ZeroRedundancyOptimizer``: consolidated from the shards on one rank, and
loaded (resharded) from a full state onto any number of ranks.

The full format is ``optimizer_class``'s own ``state_dict()`` format: state arrays of each param's full shape,
``step`` and the per-param scalar state (``aux``: a float, or Schedule-Free's float64 pair) as saved by one process,
and a Schedule-Free optimizer's ``train_mode``. A shard's slot array of param i covers its flat elements [a, b);
the rest is the same in every shard of a param (each shard is stepped at every step of the param).
"""
from collections.abc import Mapping

import numpy as np


def consolidate(zero, to):
    """The full state dict on rank ``to`` (None on the others), gathered with one pickled MPI gather."""
    local = zero._local.state_dict()
    payload = [(zero._pieces[j][1], st) for j, st in local["state"].items()]
    gathered = zero.comm.gather(payload, root=to)
    if zero.rank != to:
        return None
    params, slots = zero._full._params, _slot_names(zero)
    full = {}
    for piece, st in (item for part in gathered for item in part):
        entry = full.setdefault(piece.index, {})
        p = params[piece.index]
        for name, value in st.items():
            if name in slots:
                arr = entry.setdefault(name, np.empty(p.shape, p.dtype))
                arr.reshape(-1)[piece.a:piece.b] = value
            else:
                entry[name] = value
    out = zero._full.state_dict()              # the groups, in the full format (it holds no state)
    out["state"] = {i: full[i] for i in sorted(full)}
    if "train_mode" in local:
        out["train_mode"] = local["train_mode"]
    return out


def _slot_names(zero):
    """The state entries that are arrays of the param's elements (sharded); every other entry is per param."""
    return {slot.name for slot in zero.optimizer_class.spec.slots}


def _check_arrays(zero, state_dict):
    """Flat index -> saved state entry, with every state array checked against its param (dtype, shape)."""
    if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
    saved_groups = list(state_dict["param_groups"])
    groups = zero._full.param_groups
    if len(saved_groups) != len(groups):
        raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, the optimizer has "
                         f"{len(groups)}")
    for gi, (saved, group) in enumerate(zip(saved_groups, groups)):
        if not isinstance(saved, Mapping) or len(saved.get("params", ())) != len(group["params"]):
            raise ValueError(f"loaded state dict group {gi} does not list {len(group['params'])} params")
    flat_of = {sid: i for i, sid in enumerate(sid for g in saved_groups for sid in g["params"])}
    if not isinstance(state_dict["state"], Mapping):
        raise TypeError("loaded state dict 'state': expected a dict")
    params, slots, out = zero._full._params, _slot_names(zero), {}
    for sid, st in state_dict["state"].items():
        if sid not in flat_of:
            raise ValueError(f"loaded state dict has state for param {sid!r}, which no group lists")
        i = flat_of[sid]
        if not isinstance(st, Mapping):
            raise TypeError(f"loaded state of params[{i}]: expected a dict, got {type(st).__name__}")
        for name, value in st.items():
            if name in slots and isinstance(value, np.ndarray):
                if value.dtype != params[i].dtype:
                    raise TypeError(f"loaded state of params[{i}] {name!r}: expected dtype {params[i].dtype} "
                                    f"(the param's), got {value.dtype}")
                if value.shape != params[i].shape:
                    raise ValueError(f"loaded state of params[{i}] {name!r}: shape {value.shape} does not match "
                                     f"the param's {params[i].shape}")
        out[i] = st
    return saved_groups, out


def load(zero, state_dict):
    """Checks ``state_dict`` against the full params and groups, then loads this rank's slices of it into the
    local optimizer and the saved hyperparameters into ``param_groups``."""
    saved_groups, state = _check_arrays(zero, state_dict)
    slots = _slot_names(zero)
    new_groups = [zero._full._loaded_group(gi, g)[0] for gi, g in enumerate(saved_groups)]
    local_state = {}
    for j, (_, piece) in enumerate(zero._pieces):
        st = state.get(piece.index)
        if st is not None:
            local_state[j] = {name: (np.ascontiguousarray(v).reshape(-1)[piece.a:piece.b]
                                     if name in slots and isinstance(v, np.ndarray) else v)
                              for name, v in st.items()}
    local_groups, j = [], 0
    for new, local in zip(new_groups, zero._local.param_groups):
        g = {k: v for k, v in new.items() if k != "params"}
        g["params"] = list(range(j, j + len(local["params"])))
        j += len(local["params"])
        local_groups.append(g)
    local = {"state": local_state, "param_groups": local_groups}
    if "train_mode" in state_dict:
        local["train_mode"] = state_dict["train_mode"]
    zero._local.load_state_dict(local)
    for group, new in zip(zero._full.param_groups, new_groups):
        group.clear()
        group.update(new)
