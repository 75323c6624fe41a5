"""Parameter groups as both optimizer bases take them (torch.optim's rules): one rule for the ``params`` argument,
one for a group dict. The hyperparameter checks stay with each base (compiled for the fused kernels)."""
import numpy as np

from fastopt._validation import check_inplace_array


def param_groups_of(params):
    """The group dicts of an optimizer's ``params`` argument: a list of arrays (one group) or of dicts."""
    if isinstance(params, np.ndarray):
        raise TypeError("params must be a list of arrays or of dicts, not a single array; pass [array]")
    groups = list(params)
    if not groups:
        raise ValueError("optimizer got an empty parameter list")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    return groups


def new_group(param_group, defaults, first_index, bfloat16=False):
    """A copy of ``param_group`` with its ``params`` a list of in-place arrays (named ``params[first_index + k]``
    in errors; ``bfloat16``: ml_dtypes' bfloat16 ones too) and every default the group leaves out filled in.
    Raises TypeError before anything is kept."""
    if not isinstance(param_group, dict):
        raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
    group = dict(param_group)
    params = group.get("params")
    if isinstance(params, np.ndarray):
        params = [params]
    elif params is None or isinstance(params, (set, dict, str)):
        raise TypeError("param group 'params' must be a list of arrays")
    group["params"] = params = list(params)
    for k, p in enumerate(params):
        check_inplace_array(p, f"params[{first_index + k}]", bfloat16)
    for name, value in defaults.items():
        group.setdefault(name, value)
    return group
