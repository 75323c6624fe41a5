r"""``LBFGS``: limited-memory BFGS over the params concatenated into one flat vector (``torch.optim.LBFGS``'s
semantics), with an optional strong-Wolfe line search (``_line_search.py``)."""
import math
import numbers
import threading

import numpy as np

from fastopt.optim._line_search import strong_wolfe
from fastopt.optim.optimizer import SCHEDULE_KEYS, _ParamState
from fastopt._validation import (check_float_array, check_inplace_array, check_no_overlap, check_nonnegative,
                                 check_same_dtype, check_same_shape, is_integer)

LINE_SEARCH_FNS = (None, "strong_wolfe")
_KEYS = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn")
_HISTORY = ("old_dirs", "old_stps", "ro")


def _positive_int(value, what):
    if not is_integer(value):
        raise TypeError(f"Invalid {what}: expected an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"Invalid {what}: {value} (expected >= 1)")
    return int(value)


def checked_hypers(group, where):
    """The group's (lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn)."""
    unknown = set(group) - set(_KEYS) - SCHEDULE_KEYS - {"params"}
    if unknown:
        raise TypeError(f"{where}: unknown hyperparameter(s) {sorted(unknown)} for LBFGS; expected {sorted(_KEYS)}")
    missing = [k for k in _KEYS if k not in group]
    if missing:
        raise ValueError(f"{where} has no {missing[0]!r} (a hyperparameter of LBFGS)")
    search = group["line_search_fn"]
    if not (search is None or isinstance(search, str)) or search not in LINE_SEARCH_FNS:
        raise ValueError(f"Invalid line_search_fn: {search!r} (expected None or 'strong_wolfe')")
    return (check_nonnegative(group["lr"], "learning rate"), _positive_int(group["max_iter"], "max_iter"),
            _positive_int(group["max_eval"], "max_eval"),
            check_nonnegative(group["tolerance_grad"], "tolerance_grad"),
            check_nonnegative(group["tolerance_change"], "tolerance_change"),
            _positive_int(group["history_size"], "history_size"), search)


def _loss_value(loss):
    """The closure's loss as a float (as torch's ``float(closure())``); non-finite values are kept."""
    if isinstance(loss, np.ndarray) and loss.size == 1:
        loss = loss.reshape(()).item()
    if isinstance(loss, (bool, np.bool_)) or not isinstance(loss, numbers.Real):
        raise TypeError(f"closure must return (loss, grads) with a real loss, got loss {type(loss).__name__}")
    return float(loss)


def two_loop_direction(flat_grad, old_dirs, old_stps, ro, h_diag, scratch):
    """-H g by the L-BFGS two-loop recursion (N&W Alg. 7.4) over the stored pairs (y = old_dirs, s = old_stps,
    ro = 1 / y.s) with initial matrix ``h_diag`` I; ``scratch`` is a buffer of g's shape."""
    q = np.negative(flat_grad)
    al = [None] * len(old_dirs)
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q -= np.multiply(old_dirs[i], al[i], out=scratch)
    r = np.multiply(q, h_diag, out=q)
    for i in range(len(old_dirs)):
        be_i = old_dirs[i].dot(r) * ro[i]
        r += np.multiply(old_stps[i], al[i] - be_i, out=scratch)
    return r


class LBFGS:
    r"""L-BFGS (``torch.optim.LBFGS``'s names, defaults and iteration), one param group, ``step(closure)``.

    ``closure()`` evaluates the model at the params' current values (which the step writes in place) and returns
    ``(loss, grads)``, ``grads`` aligned with the params (a None gradient counts as zeros, as in torch). With
    :math:`x` the params concatenated, :math:`g_k` the gradient, :math:`s_i = x_{i+1} - x_i`,
    :math:`y_i = g_{i+1} - g_i` (pairs kept when :math:`y_i^T s_i > 10^{-10}`, the last ``history_size``),
    :math:`\rho_i = 1 / y_i^T s_i`, one step runs up to ``max_iter`` iterations of

    .. math::
        d_k &\leftarrow -g_k \text{ (first iteration ever)}, \text{ else } -H_k g_k
            \text{ (two-loop recursion, } H^0_k = \frac{s^T y}{y^T y} I \text{ of the last pair)} \\
        t_k &\leftarrow \gamma \min(1, 1 / \lVert g_k \rVert_1) \text{ (first ever), else } \gamma \\
        t_k &\leftarrow \text{a strong-Wolfe step from } t_k
            \text{ } (c_1 = 10^{-4}, c_2 = 0.9; \text{line\_search\_fn="strong\_wolfe"}) \\
        x_{k+1} &\leftarrow x_k + t_k d_k

    stopping as torch does: :math:`\max |g| \le` tolerance_grad, :math:`g^T d > -`tolerance_change,
    :math:`\max |t d| \le` tolerance_change, :math:`|f_{k+1} - f_k| <` tolerance_change, ``max_eval`` closure
    calls. Returns the loss of the first evaluation. A step is all or nothing: if the closure raises or returns
    a wrong gradient, the params are restored and the state is unchanged.

    State (``opt.state[params[0]]``, as torch keeps it): ``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``,
    ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``.
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if max_eval is None and is_integer(max_iter):
            max_eval = max_iter * 5 // 4
        self.defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                             tolerance_change=tolerance_change, history_size=history_size,
                             line_search_fn=line_search_fn)
        checked_hypers(self.defaults, "LBFGS")
        if isinstance(params, np.ndarray):
            raise TypeError("params must be a list of arrays or of dicts, not a single array; pass [array]")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if isinstance(groups[0], dict):
            if len(groups) != 1:
                raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
            group = {**self.defaults, **groups[0]}
        else:
            group = {**self.defaults, "params": groups}
        params = group["params"] = list([group["params"]] if isinstance(group["params"], np.ndarray)
                                        else group["params"])
        self._check_params(params)
        checked_hypers(group, "param group 0")
        self.param_groups, self._params, self._state = [group], params, {}
        self._views = [p.reshape(-1) for p in params]
        self._offsets = np.cumsum([0] + [p.size for p in params])
        self._lock = threading.Lock()
        self.state = _ParamState(self)

    @staticmethod
    def _check_params(params):
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(params):
            check_inplace_array(p, f"params[{i}]")
            check_same_dtype(params[0], p, "params[0]", f"params[{i}]")
        check_no_overlap(params, lambda i: f"params[{i}]")

    def add_param_group(self, param_group):
        raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    @property
    def params(self):
        return list(self._params)

    # ------------------------------------------------------------------ the flat vector
    def _flat_params(self):
        return np.concatenate(self._views)

    def _set_flat(self, x):
        for view, a, b in zip(self._views, self._offsets[:-1], self._offsets[1:]):
            np.copyto(view, x[a:b])

    def _add_(self, t, d):
        """params += t d (torch's ``_add_grad``), in place."""
        for view, a, b in zip(self._views, self._offsets[:-1], self._offsets[1:]):
            view += t * d[a:b]

    def _evaluate(self, closure):
        """(loss, flat gradient) from ``closure()``, checked: TypeError/ValueError naming what is wrong."""
        out = closure()
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"closure must return (loss, grads), got {type(out).__name__}")
        loss, grads = _loss_value(out[0]), out[1]
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"closure's grads must be a list of arrays aligned with the params, got "
                            f"{type(grads).__name__}")
        if len(grads) != len(self._params):
            raise ValueError(f"closure returned {len(grads)} gradients, expected {len(self._params)} "
                             "(one per param)")
        flat = []
        for i, (p, g) in enumerate(zip(self._params, grads)):
            if g is None:
                flat.append(np.zeros(p.size, p.dtype))
                continue
            check_float_array(g, f"grads[{i}]")
            check_same_dtype(p, g, f"params[{i}]", f"grads[{i}]")
            check_same_shape(p, g, f"params[{i}]", f"grads[{i}]")
            flat.append(g.reshape(-1))
        return loss, np.concatenate(flat)

    def _directional_evaluate(self, closure, x, t, d):
        self._add_(t, d)
        loss, flat_grad = self._evaluate(closure)
        self._set_flat(x)
        return loss, flat_grad

    # ------------------------------------------------------------------ step
    def step(self, closure):
        """Up to ``max_iter`` L-BFGS iterations (see the class docstring); returns the first loss."""
        if not callable(closure):
            raise TypeError(f"LBFGS.step needs a closure returning (loss, grads), got {type(closure).__name__}")
        with self._lock:
            hypers = checked_hypers(self.param_groups[0], "param_groups[0]")
            self._check_params(self.param_groups[0]["params"])
            if any(a is not b for a, b in zip(self.param_groups[0]["params"], self._params)) or len(
                    self.param_groups[0]["params"]) != len(self._params):
                raise ValueError("param_groups[0]['params'] was changed after construction: build a new optimizer")
            start = self._flat_params()
            state = dict(self._state.get(0, {}))
            for key in _HISTORY:
                if key in state:
                    state[key] = list(state[key])
            try:
                loss = self._iterate(closure, hypers, state)
            except BaseException:
                self._set_flat(start)
                raise
            self._state[0] = state
            return loss

    def _iterate(self, closure, hypers, state):
        """torch's step loop on ``state`` (a working copy, updated in place); returns the first loss."""
        lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn = hypers
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        loss, flat_grad = self._evaluate(closure)
        first_loss, evals = loss, 1
        state["func_evals"] += 1
        if np.abs(flat_grad).max() <= tolerance_grad:
            return first_loss
        d, t, prev_flat_grad = state.get("d"), state.get("t"), state.get("prev_flat_grad")
        for n_iter in range(1, max_iter + 1):
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = np.negative(flat_grad)
                state.update(old_dirs=[], old_stps=[], ro=[], H_diag=1)
            else:
                self._remember(state, flat_grad - prev_flat_grad, d * t, history_size)
                d = two_loop_direction(flat_grad, state["old_dirs"], state["old_stps"], state["ro"],
                                       state["H_diag"], np.empty_like(flat_grad))
            prev_flat_grad, prev_loss = flat_grad.copy(), loss
            t = min(1.0, 1.0 / np.abs(flat_grad).sum()) * lr if state["n_iter"] == 1 else lr
            gtd = flat_grad.dot(d)
            if gtd > -tolerance_change:
                break
            new_evals = 0
            if line_search_fn == "strong_wolfe":
                x = self._flat_params()
                loss, flat_grad, t, new_evals = strong_wolfe(
                    lambda step: self._directional_evaluate(closure, x, step, d), t, d, loss, flat_grad, gtd,
                    max_ls=max_eval - evals)
                self._add_(t, d)
                optimal = np.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_(t, d)
                if n_iter != max_iter:     # not re-evaluated after the last iteration, as torch
                    loss, flat_grad = self._evaluate(closure)
                    optimal = np.abs(flat_grad).max() <= tolerance_grad
                    new_evals = 1
            evals += new_evals
            state["func_evals"] += new_evals
            if n_iter == max_iter or evals >= max_eval or optimal:
                break
            if np.abs(d * t).max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break
        state.update(d=d, t=t, prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return first_loss

    @staticmethod
    def _remember(state, y, s, history_size):
        """Stores the pair (y, s) if y.s > 1e-10 (dropping the oldest beyond history_size) and rescales H_diag."""
        ys = y.dot(s)
        if ys > 1e-10:
            if len(state["old_dirs"]) == history_size:
                for key in _HISTORY:
                    state[key].pop(0)
            state["old_dirs"].append(y)
            state["old_stps"].append(s)
            state["ro"].append(1.0 / ys)
            state["H_diag"] = ys / y.dot(y)

    # ------------------------------------------------------------------ state_dict
    def state_dict(self):
        """``{"state": {0: {...}}, "param_groups": [{..., "params": [0, ..., n-1]}]}`` (the state of the whole
        vector under param 0, as torch): ints, floats, and NumPy copies; the history as 2-D arrays (one row a
        pair) and ``ro`` as a 1-D array."""
        group = {**{k: v for k, v in self.param_groups[0].items() if k != "params"},
                 "params": list(range(len(self._params)))}
        state = {}
        for key, value in self._state.get(0, {}).items():
            if key in ("old_dirs", "old_stps"):
                value = np.array(value, dtype=self._params[0].dtype).reshape(len(value), self._offsets[-1])
            elif key == "ro":
                value = np.array(value, dtype=self._params[0].dtype)
            elif isinstance(value, np.ndarray):
                value = value.copy()
            elif key in ("func_evals", "n_iter"):
                value = int(value)
            else:
                value = float(value)
            state[key] = value
        return {"state": {0: state} if state else {}, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        """Restores what ``state_dict()`` saved for params of the same total size and dtype; anything else is a
        ValueError/TypeError naming the key, and changes nothing."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with keys 'state' and 'param_groups'")
        groups = list(state_dict["param_groups"])
        if len(groups) != 1 or not isinstance(groups[0], dict) or "params" not in groups[0]:
            raise ValueError("loaded state dict must have one param group (a dict with 'params'), as LBFGS")
        if len(groups[0]["params"]) != len(self._params):
            raise ValueError(f"loaded state dict group 0 has {len(groups[0]['params'])} params, "
                             f"the optimizer has {len(self._params)}")
        group = {**{k: v for k, v in groups[0].items() if k != "params"}, "params": self._params}
        checked_hypers(group, "loaded state dict group 0")
        saved = state_dict["state"]
        if not isinstance(saved, dict) or len(saved) > 1:
            raise ValueError("loaded state dict 'state' must be a dict holding at most the entry of param 0")
        state = {0: self._loaded_state(next(iter(saved.values())))} if saved else {}
        with self._lock:
            self.param_groups[0].clear()
            self.param_groups[0].update(group)
            self._state = state

    def _loaded_state(self, st):
        where, n, dtype = "loaded LBFGS state", int(self._offsets[-1]), self._params[0].dtype
        allowed = {"func_evals", "n_iter", "d", "t", "H_diag", "prev_flat_grad", "prev_loss", *_HISTORY}
        if not isinstance(st, dict) or not {"func_evals", "n_iter"} <= set(st) <= allowed:
            raise ValueError(f"{where}: expected a dict with 'func_evals', 'n_iter' and some of {sorted(allowed)}, "
                             f"got {sorted(st) if isinstance(st, dict) else type(st).__name__}")
        out = {}
        for key in ("func_evals", "n_iter"):
            if not is_integer(st[key]) or st[key] < 0:
                raise ValueError(f"{where} {key!r}: expected an integer >= 0, got {st[key]!r}")
            out[key] = int(st[key])
        for key in ("t", "H_diag", "prev_loss"):
            if key in st:
                if isinstance(st[key], (bool, np.bool_)) or not isinstance(st[key], numbers.Real):
                    raise TypeError(f"{where} {key!r}: expected a real number, got {type(st[key]).__name__}")
                out[key] = float(st[key])
        k = len(st["ro"]) if "ro" in st and hasattr(st["ro"], "__len__") else 0
        shapes = {"d": (n,), "prev_flat_grad": (n,), "old_dirs": (k, n), "old_stps": (k, n), "ro": (k,)}
        for key, shape in shapes.items():
            if key in st:
                out[key] = _loaded_array(st[key], shape, dtype, f"{where} {key!r}")
        for key in _HISTORY:
            if key in out:
                out[key] = list(out[key])
        return out


def _loaded_array(value, shape, dtype, where):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}: expected a numpy.ndarray, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{where}: expected dtype {dtype} (the params'), got {value.dtype}")
    if value.shape != shape:
        raise ValueError(f"{where}: expected shape {shape}, got {value.shape}")
    return np.array(value, dtype=dtype, order="C", copy=True)
