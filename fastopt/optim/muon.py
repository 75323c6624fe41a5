r"""``Muon``: momentum orthogonalised by Newton–Schulz iterations, for 2-D params (``torch.optim.Muon``'s semantics).

Not a spec-driven optimizer (its step is not element-wise): the momentum, decay and final update are in-place
NumPy ufuncs and one fused fastopt kernel, the orthogonalisation is BLAS matmuls (NumPy ``@``) on buffers kept
between steps.
"""
import math
import threading

import numpy as np

from fastopt.optim.optimizer import SCHEDULE_KEYS, _ParamState
from fastopt._validation import (check_disjoint, check_flag, check_float_array, check_inplace_array,
                                 check_no_overlap, check_nonnegative, check_range, check_same_dtype,
                                 check_same_shape, input_array, is_integer)

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)     # torch's (Keller Jordan's) quintic
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
MAX_NS_STEPS = 100                                 # torch: "must be less than 100"


def adjusted_lr(lr, adjust_lr_fn, shape):
    """torch's ``_adjust_lr``: the lr that makes the orthogonalised update's RMS consistent across shapes."""
    rows, cols = shape
    if adjust_lr_fn == "match_rms_adamw":
        return lr * (0.2 * math.sqrt(max(rows, cols)))
    return lr * math.sqrt(max(1, rows / cols))


def checked_hypers(group, where):
    """(lr, weight_decay, momentum, nesterov, (a, b, c), eps, ns_steps, adjust_lr_fn) of a group, checked;
    ValueError/TypeError with the bad value otherwise."""
    unknown = set(group) - set(_DEFAULTS) - SCHEDULE_KEYS - {"params"}
    if unknown:
        raise TypeError(f"{where}: unknown hyperparameter(s) {sorted(unknown)} for Muon; expected "
                        f"{sorted(_DEFAULTS)}")
    missing = [k for k in _DEFAULTS if k not in group]
    if missing:
        raise ValueError(f"{where} has no {missing[0]!r} (a hyperparameter of Muon)")
    coefficients = group["ns_coefficients"]
    if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
        raise ValueError(f"Invalid ns_coefficients: expected a tuple of 3 floats, got {coefficients!r}")
    steps = group["ns_steps"]
    if not is_integer(steps):
        raise TypeError(f"Invalid ns_steps: expected an integer, got {type(steps).__name__} {steps!r}")
    if not 0 <= steps < MAX_NS_STEPS:
        raise ValueError(f"Invalid ns_steps: {steps} (expected 0 <= ns_steps < {MAX_NS_STEPS})")
    adjust = group["adjust_lr_fn"]
    if not (adjust is None or isinstance(adjust, str)) or adjust not in ADJUST_LR_FNS:
        raise ValueError(f"Invalid adjust_lr_fn: {adjust!r} (expected None, 'original' or 'match_rms_adamw')")
    return (check_nonnegative(group["lr"], "learning rate"),
            check_nonnegative(group["weight_decay"], "weight_decay value"),
            check_nonnegative(group["momentum"], "momentum value"),
            check_flag(group["nesterov"], "nesterov"),
            tuple(check_range(v, f"ns_coefficients (element {i})", -math.inf, math.inf, True, True)
                  for i, v in enumerate(coefficients)),
            check_nonnegative(group["eps"], "epsilon value"), int(steps), adjust)


_DEFAULTS = dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=NS_COEFFICIENTS,
                 eps=1e-7, ns_steps=5, adjust_lr_fn=None)


def lerp_(start, end, weight, out, scratch):
    """``out = torch.lerp(start, end, weight)`` with torch's two formulas (the one exact at its end);
    ``out`` is ``start`` or ``scratch``, ``scratch`` is distinct from ``start`` and ``end``."""
    np.subtract(end, start, out=scratch)
    if weight < 0.5:
        np.multiply(scratch, start.dtype.type(weight), out=scratch)
        np.add(start, scratch, out=out)
    else:
        np.multiply(scratch, 1 - start.dtype.type(weight), out=scratch)
        np.subtract(end, scratch, out=out)
    return out


class _Workspace:
    """The buffers of one step of a (rows, cols) param: ``update`` (the param's shape), the iterate ``x`` and
    its successor ``y`` (short side first, as torch transposes tall matrices), ``gram`` and ``poly`` (short x
    short). Kept between steps: fresh buffers cost a page fault per 4 KiB."""

    def __init__(self, shape, dtype):
        short, long = sorted(shape)
        self.update = np.empty(shape, dtype)
        self.x, self.y = np.empty((short, long), dtype), np.empty((short, long), dtype)
        self.gram, self.poly = np.empty((short, short), dtype), np.empty((short, short), dtype)


def orthogonalize(update, coefficients, steps, eps, work):
    """torch's ``_zeropower_via_newtonschulz`` in ``update``'s own dtype (torch casts to bfloat16): ``steps``
    iterations of X <- aX + (bA + cA^2)X, A = XX^T, from X = U / max(||U||_F, eps), U transposed if tall.
    Returns a view of ``work.x`` or ``work.y`` with ``update``'s shape."""
    a, b, c = coefficients
    tall = update.shape[0] > update.shape[1]
    source = update.T if tall else update
    x, y, gram, poly = work.x, work.y, work.gram, work.poly
    np.divide(source, max(np.linalg.norm(source), eps), out=x)
    for _ in range(steps):
        np.matmul(x, x.T, out=gram)
        np.matmul(gram, gram, out=poly)
        np.multiply(poly, c, out=poly)
        np.multiply(gram, b, out=gram)
        np.add(poly, gram, out=poly)                     # torch.addmm(gram, gram, gram, beta=b, alpha=c)
        np.matmul(poly, x, out=y)
        np.multiply(x, a, out=x)
        np.add(y, x, out=y)                              # torch.addmm(x, poly, x, beta=a)
        x, y = y, x
    return x.T if tall else x


def update_(p, g, buf, hypers, work):
    """The Muon update of one 2-D param (the class docstring's rule), in place on ``p`` and its momentum buffer
    ``buf``: ``hypers`` from ``checked_hypers``, ``work`` a ``_Workspace`` of p's shape and dtype. Checks
    nothing: the class and ``fastopt.functional.muon_`` check first. The one update of both."""
    lr, weight_decay, momentum, nesterov, coefficients, eps, steps, adjust = hypers
    lerp_(buf, g, 1 - momentum, out=buf, scratch=work.update)
    update = lerp_(g, buf, momentum, out=work.update, scratch=work.update) if nesterov else buf
    ortho = orthogonalize(update, coefficients, steps, eps, work)
    if lr * weight_decay != 0:
        np.multiply(p, 1 - lr * weight_decay, out=p)
    from fastopt.functional import sgd_       # here: fastopt.functional imports fastopt.optim
    sgd_(p, ortho, lr=adjusted_lr(lr, adjust, p.shape))


class Muon:
    r"""Muon (Jordan et al. 2024; ``torch.optim.Muon``'s names, defaults, checks and update order) for 2-D params.

    With :math:`\gamma` = lr, :math:`\lambda` = weight_decay, :math:`\mu` = momentum, :math:`(a, b, c)` =
    ns_coefficients, :math:`K` = ns_steps, :math:`\epsilon` = eps, a param :math:`\theta` of shape (A, B):

    .. math::
        B_t &\leftarrow B_{t-1} + (1 - \mu)(g_t - B_{t-1}) \qquad (B_0 = 0) \\
        U_t &\leftarrow g_t + \mu (B_t - g_t) \text{ (nesterov), else } B_t \\
        X_0 &\leftarrow U_t / \max(\lVert U_t \rVert_F, \epsilon) \quad (U_t^T \text{ if } A > B) \\
        X_{k+1} &\leftarrow a X_k + (b M_k + c M_k^2) X_k, \quad M_k = X_k X_k^T, \quad k < K \\
        O_t &\leftarrow X_K \quad (X_K^T \text{ if } A > B) \\
        \theta_t &\leftarrow \theta_{t-1} (1 - \gamma\lambda) - \gamma' O_t, \quad
            \gamma' = \gamma \sqrt{\max(1, A / B)} \text{ (adjust\_lr\_fn None, "original")}
            \text{ or } 0.2 \gamma \sqrt{\max(A, B)} \text{ ("match\_rms\_adamw")}

    The Newton–Schulz iterations run in the param's dtype (float32 or float64) through BLAS; torch runs them
    in bfloat16 (on the CPU too), whose rounding moves its update by up to ~3% of an element. Params must be
    2-D: put biases, norms and other params in a second optimizer, e.g. ``fastopt.AdamW``.

    State per param: ``momentum_buffer``.
    """

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=NS_COEFFICIENTS, eps=1e-7, ns_steps=5, adjust_lr_fn=None):
        self.defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                             ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                             adjust_lr_fn=adjust_lr_fn)
        checked_hypers(self.defaults, "Muon")
        self.param_groups, self._params, self._group_params, self._state, self._work = [], [], [], {}, {}
        self._lock = threading.Lock()
        self.state = _ParamState(self)
        if isinstance(params, np.ndarray):
            raise TypeError("params must be a list of arrays or of dicts, not a single array; pass [array]")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        for group in groups if isinstance(groups[0], dict) else [{"params": groups}]:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Adds a group (dict with "params" and optional hyperparameters; missing ones take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        group = {**self.defaults, **param_group}
        params = group.get("params")
        params = [params] if isinstance(params, np.ndarray) else params
        if params is None or isinstance(params, (set, dict, str)):
            raise TypeError("param group 'params' must be a list of arrays")
        params = list(params)
        with self._lock:
            base = len(self._params)
            for k, p in enumerate(params):
                check_inplace_array(p, f"params[{base + k}]")
                if p.ndim != 2:
                    raise ValueError(f"params[{base + k}] has shape {p.shape}: Muon steps 2-D params only; put "
                                     "the others (biases, norms, ...) in a second optimizer, e.g. fastopt.AdamW")
            checked_hypers(group, f"param group {len(self.param_groups)}")
            check_no_overlap(self._params + params, lambda i: f"params[{i}]")
            group["params"] = params
            self.param_groups.append(group)
            self._group_params.append(tuple(params))
            self._params.extend(params)

    @property
    def params(self):
        """All params, flat, in group order (the order ``grads`` follows)."""
        return list(self._params)

    def step(self, grads):
        """Updates every param in place from ``grads`` (aligned with the params of all groups, in group order;
        ``grads[i]`` None skips params[i]). Every check runs before anything is written."""
        with self._lock:
            work = self._checked_work(grads)
            for i, p, g, hypers in work:
                if i not in self._state:
                    self._state[i] = {"momentum_buffer": np.zeros_like(p)}
                self._update(p, g, self._state[i]["momentum_buffer"], hypers)

    def _checked_work(self, grads):
        """[(index, param, gradient as read, checked hyperparameters)] of the params with a gradient."""
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays aligned with the params, got {type(grads).__name__}")
        if len(grads) != len(self._params):
            raise ValueError(f"expected {len(self._params)} gradients (one per param, in group order), "
                             f"got {len(grads)}")
        work, offset = [], 0
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            if not isinstance(params, list) or tuple(map(id, params)) != tuple(map(id, self._group_params[gi])):
                raise ValueError(f"param_groups[{gi}]['params'] was changed after it was added: add parameters "
                                 "with add_param_group(), or build a new optimizer")
            hypers = checked_hypers(group, f"param_groups[{gi}]")
            for k, p in enumerate(params):
                i, g = offset + k, grads[offset + k]
                if g is not None:
                    check_float_array(g, f"grads[{i}]")
                    check_same_dtype(p, g, f"params[{i}]", f"grads[{i}]")
                    check_same_shape(p, g, f"params[{i}]", f"grads[{i}]")
                    work.append((i, p, input_array(g, f"grads[{i}]"), hypers))
            offset += len(params)
        writes = self._params + [st["momentum_buffer"] for st in self._state.values()]
        names = [f"params[{i}]" for i in range(len(self._params))]
        names += [f"state of params[{i}] (momentum_buffer)" for i in self._state]
        check_disjoint(writes, names, [g for _, _, g, _ in work], [f"grads[{i}]" for i, _, _, _ in work])
        return work

    def _workspace(self, p):
        key = (p.shape, p.dtype)
        if key not in self._work:
            self._work[key] = _Workspace(p.shape, p.dtype)
        return self._work[key]

    def _update(self, p, g, buf, hypers):
        update_(p, g, buf, hypers, self._workspace(p))

    # ------------------------------------------------------------------ state_dict
    def state_dict(self):
        """``{"state": {i: {"momentum_buffer": array}}, "param_groups": [{..., "params": [i, ...]}]}``: Python
        scalars and NumPy copies, indices in flat param order (torch's layout)."""
        groups, offset = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(offset, offset + n))})
            offset += n
        state = {i: {"momentum_buffer": st["momentum_buffer"].copy()} for i, st in sorted(self._state.items())}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores what ``state_dict()`` saved, for params of the same count, shapes and dtypes; anything else
        is a ValueError/TypeError naming the key, and changes nothing."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        groups = [self._loaded_group(gi, saved) for gi, saved in enumerate(saved_groups)]
        flat = {sid: i for i, sid in enumerate(sid for g in saved_groups for sid in g["params"])}
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise TypeError(f"loaded state dict 'state': expected a dict, got {type(saved_state).__name__}")
        state = {}
        for sid, st in saved_state.items():
            if sid not in flat:
                raise ValueError(f"loaded state dict has state for param {sid!r}, which no group lists")
            state[flat[sid]] = self._loaded_param_state(flat[sid], st)
        with self._lock:
            for group, new in zip(self.param_groups, groups):
                group.clear()
                group.update(new)
            self._state = state

    def _loaded_group(self, gi, saved):
        if not isinstance(saved, dict) or "params" not in saved:
            raise ValueError(f"loaded state dict group {gi}: expected a dict with 'params', got {saved!r:.80}")
        params = self.param_groups[gi]["params"]
        if len(saved["params"]) != len(params):
            raise ValueError(f"loaded state dict group {gi} has {len(saved['params'])} params, "
                             f"the optimizer's has {len(params)}")
        group = {**{k: v for k, v in saved.items() if k != "params"}, "params": params}
        checked_hypers(group, f"loaded state dict group {gi}")
        return group

    def _loaded_param_state(self, i, st):
        where = f"loaded state of params[{i}]"
        if not isinstance(st, dict) or set(st) != {"momentum_buffer"}:
            raise ValueError(f"{where}: expected a dict with the one key 'momentum_buffer', got "
                             f"{sorted(st) if isinstance(st, dict) else type(st).__name__}")
        buf, p = st["momentum_buffer"], self._params[i]
        if not isinstance(buf, np.ndarray):
            raise TypeError(f"{where} 'momentum_buffer': expected a numpy.ndarray, got {type(buf).__name__}")
        if buf.dtype != p.dtype:
            raise TypeError(f"{where} 'momentum_buffer': expected dtype {p.dtype} (the param's), got {buf.dtype}")
        if buf.shape != p.shape:
            raise ValueError(f"{where} 'momentum_buffer': shape {buf.shape} does not match the param's {p.shape}")
        return {"momentum_buffer": np.array(buf, dtype=p.dtype, order="C", copy=True)}

    # ------------------------------------------------------------------ pickling, repr
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"], state["_work"], state["_group_params"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock, self._work = threading.Lock(), {}
        self._group_params = [tuple(g["params"]) for g in self.param_groups]

    def __repr__(self):
        lines = ["Muon ("]
        for gi, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {gi}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines + [")"])
