"""Layers for NumPy training loops. :class:`BatchNorm`: torch ``nn.BatchNorm{1,2,3}d`` on fused C kernels.

>>> import numpy as np, fastopt
>>> bn = fastopt.nn.BatchNorm(num_features=64, axis=1)          # NCHW; axis=-1 for channels-last
>>> x = np.random.default_rng(0).standard_normal((8, 64, 4, 4), dtype=np.float32)
>>> y = bn.forward(x, training=True)                            # running_mean / running_var updated in place
>>> dx = bn.backward(np.ones_like(y))                           # fills bn.grad_gamma / bn.grad_beta in place
>>> opt = fastopt.Adam([bn.gamma, bn.beta]); opt.step([bn.grad_gamma, bn.grad_beta])
"""
import numbers

import numpy as np

from fastopt._contract import check_activation
from fastopt._validation import check_flag, check_nonnegative, check_range, is_integer, kernel_ready
from fastopt.functional.batchnorm import backward_plan, forward_plan, run_backward

__all__ = ["BatchNorm"]


class BatchNorm:
    """Batch normalization over every axis of x but ``axis`` (torch ``nn.BatchNorm{1,2,3}d`` semantics).

    y = (x - mean) / sqrt(var + eps) * gamma + beta per channel, with the batch mean and biased variance in
    training (running_mean / running_var then move towards them: r <- (1 - momentum) r + momentum stat, with the
    unbiased variance; ``momentum=None``: cumulative average, momentum = 1 / num_batches_tracked) and the running
    statistics in eval. ``track_running_stats=False``: no running statistics, batch statistics always (as torch).
    ``affine=False``: no gamma / beta. ``activation="relu"``: y = max(bn(x), 0), fused, its mask applied in
    :meth:`backward`. Formulas and layouts: :mod:`fastopt.functional.batchnorm`.

    Attributes (NumPy arrays of ``dtype``, updated in place so optimizers and callers may hold them):
    ``gamma``, ``beta`` (None if not affine), ``grad_gamma``, ``grad_beta`` (written by :meth:`backward`),
    ``running_mean``, ``running_var`` (None if not tracked), ``num_batches_tracked`` (an int).

    Buffers: by default every :meth:`forward` / :meth:`backward` returns a fresh array. With
    ``reuse_buffers=True`` the layer keeps one y and one dx buffer per input shape and layout and returns them:
    faster for big inputs (no page faults on a fresh array), but the returned array is overwritten by the next
    call — copy it if you need it longer.

    :meth:`backward` uses the x of the last :meth:`forward` (a reference, not a copy): do not modify it in between.
    """

    def __init__(self, num_features, axis=1, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 activation=None, dtype=np.float32, reuse_buffers=False):
        if not is_integer(num_features):
            raise TypeError(f"Invalid num_features: expected an integer >= 1, got {num_features!r}")
        if num_features < 1:
            raise ValueError(f"Invalid num_features: expected an integer >= 1, got {num_features!r}")
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"Invalid axis: expected an integer, got {axis!r}")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"Invalid dtype: expected float32 or float64, got {dtype}")
        self.num_features = int(num_features)
        self.axis = int(axis)
        self.eps = check_nonnegative(eps, "eps")
        self.momentum = None if momentum is None else check_range(momentum, "momentum", 0.0, 1.0)
        self.affine = check_flag(affine, "affine")
        self.track_running_stats = check_flag(track_running_stats, "track_running_stats")
        check_activation(activation)
        self.activation = activation
        self.dtype = dtype
        self.reuse_buffers = check_flag(reuse_buffers, "reuse_buffers")
        self.training = True
        C = self.num_features
        if self.affine:
            self.gamma, self.beta = np.ones(C, dtype), np.zeros(C, dtype)
            self.grad_gamma, self.grad_beta = np.zeros(C, dtype), np.zeros(C, dtype)
        else:
            self.gamma = self.beta = self.grad_gamma = self.grad_beta = None
        if self.track_running_stats:
            self.running_mean, self.running_var = np.zeros(C, dtype), np.ones(C, dtype)
        else:
            self.running_mean = self.running_var = None
        self.num_batches_tracked = 0
        self._buffers = {}
        self._plans = (None, None)      # (forward, backward) plans of the last call, reused while they match

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        """Sets training mode (batch statistics) or eval mode (running statistics); returns self."""
        self.training = check_flag(mode, "mode")
        return self

    def eval(self):
        return self.train(False)

    def parameters(self):
        """[gamma, beta] (empty if not affine), in the order of :meth:`gradients`."""
        return [self.gamma, self.beta] if self.affine else []

    def gradients(self):
        return [self.grad_gamma, self.grad_beta] if self.affine else []

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked = 0

    # ------------------------------------------------------------------ passes
    def _buffer(self, key, x):
        """The reusable output buffer for x (reuse_buffers=True), laid out as the kernels will run on x."""
        if not self.reuse_buffers:
            return None
        cached = self._buffers.get(key)
        if cached is not None:
            buf = cached[1]
            if buf.shape == x.shape and buf.strides == x.strides and buf.dtype == x.dtype and x.flags.aligned:
                return buf       # the buffer the key below would find: same geometry, run in place alike
        if _runs_in_place(x, self.axis):
            k = (key, x.shape, x.dtype.str, x.strides)
            make = lambda: np.empty_like(x, order="K")           # noqa: E731  (same memory order as x)
        else:
            k = (key, x.shape, x.dtype.str, None)
            make = lambda: np.empty(x.shape, x.dtype.newbyteorder("="))   # noqa: E731  (x is copied C-contiguous)
        buf = self._buffers.get(key)
        if buf is None or buf[0] != k:
            buf = self._buffers[key] = (k, make())
        return buf[1]

    def forward(self, x, training=None):
        """Normalizes x; ``training`` overrides the layer's mode for this call (None: ``self.training``)."""
        training = self.training if training is None else check_flag(training, "training")
        batch_stats = training or not self.track_running_stats
        update = training and self.track_running_stats
        if isinstance(x, np.ndarray) and x.dtype != self.dtype and x.dtype.newbyteorder("=") != self.dtype:
            raise TypeError(f"x: expected dtype {self.dtype} (the layer's dtype), got {x.dtype}")
        momentum = self.momentum
        if update and momentum is None:
            momentum = 1.0 / (self.num_batches_tracked + 1)
        momentum = 0.0 if momentum is None else momentum
        stats = update or not batch_stats
        rm, rv = (self.running_mean, self.running_var) if stats else (None, None)
        out = self._buffer("y", x) if isinstance(x, np.ndarray) else None
        plan = self._plans[0]
        if plan is not None and plan.matches(x, out, self.gamma, self.beta, rm, rv, batch_stats):
            plan.momentum = momentum
        else:
            plan = forward_plan(x, self.gamma, self.beta, rm, rv, training=batch_stats, momentum=momentum,
                                eps=self.eps, axis=self.axis, out=out, activation=self.activation, keep_stats=True)
            self._plans = (plan, None)
        y = plan.run()[0]
        if update:
            self.num_batches_tracked += 1
        return y

    __call__ = forward

    def backward(self, dy):
        """dx for the last :meth:`forward`; writes grad_gamma / grad_beta in place (overwriting, not adding)."""
        fwd, plan = self._plans
        if fwd is None:
            raise RuntimeError("backward() called before forward()")
        dx_out = self._buffer("dx", fwd.x)
        if plan is None or not plan.matches(fwd.x, self.gamma, self.beta, fwd.save_mean, fwd.save_invstd, dx_out,
                                            self.grad_gamma, self.grad_beta):
            plan = backward_plan(fwd.x, self.gamma, fwd.save_mean, fwd.save_invstd, axis=self.axis,
                                 training=fwd.training, activation=self.activation, beta=self.beta, dx_out=dx_out,
                                 dgamma_out=self.grad_gamma, dbeta_out=self.grad_beta)
            self._plans = (fwd, plan)
        return run_backward(plan, dy)[0]

    def __getstate__(self):
        """Arrays and settings; plans and buffers are rebuilt at the next call."""
        state = dict(self.__dict__)
        state["_plans"], state["_buffers"] = (None, None), {}
        return state

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """torch's keys: weight, bias (if affine), running_mean, running_var, num_batches_tracked (if tracked);
        copies, savable with np.savez or pickle."""
        state = {}
        if self.affine:
            state["weight"], state["bias"] = self.gamma.copy(), self.beta.copy()
        if self.track_running_stats:
            state["running_mean"], state["running_var"] = self.running_mean.copy(), self.running_var.copy()
            state["num_batches_tracked"] = int(self.num_batches_tracked)
        return state

    def load_state_dict(self, state):
        """Copies a :meth:`state_dict` (or a torch BatchNorm's, converted to NumPy) into the layer's arrays in place.

        Every entry is checked (keys, shapes, dtypes castable to the layer's) before anything is written."""
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state).__name__}")
        names = {"weight": "gamma", "bias": "beta", "running_mean": "running_mean", "running_var": "running_var"}
        expected = (["weight", "bias"] if self.affine else []) + \
                   (["running_mean", "running_var", "num_batches_tracked"] if self.track_running_stats else [])
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        values = {}
        for key in expected:
            if key == "num_batches_tracked":
                n = state[key]
                n = n.item() if isinstance(n, np.ndarray) and n.ndim == 0 else n
                if not is_integer(n):
                    raise TypeError(f"load_state_dict: num_batches_tracked must be an integer >= 0, got {n!r}")
                if n < 0:
                    raise ValueError(f"load_state_dict: num_batches_tracked must be an integer >= 0, got {n!r}")
                values[key] = int(n)
                continue
            a = np.asarray(state[key])
            if a.shape != (self.num_features,):
                raise ValueError(f"load_state_dict: {key} has shape {a.shape}, expected ({self.num_features},)")
            if a.dtype.kind != "f":
                raise TypeError(f"load_state_dict: {key} has dtype {a.dtype}, expected a float array")
            values[key] = a
        for key, a in values.items():
            if key == "num_batches_tracked":
                self.num_batches_tracked = a
            else:
                np.copyto(getattr(self, names[key]), a, casting="same_kind")

    def __repr__(self):
        return (f"BatchNorm({self.num_features}, axis={self.axis}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}, "
                f"activation={self.activation!r}, dtype={self.dtype})")


def _runs_in_place(x, axis):
    """True if the kernels read x's memory directly: C-contiguous, or C-contiguous in the other layout."""
    if x.ndim < 2 or not (x.flags.aligned and x.dtype.isnative):
        return False
    if kernel_ready(x):
        return True
    ax = axis + x.ndim if axis < 0 else axis
    if x.ndim < 3 or ax not in (1, x.ndim - 1):
        return False
    move = (x.ndim - 1, 1) if ax == x.ndim - 1 else (1, x.ndim - 1)
    return np.moveaxis(x, *move).flags.c_contiguous
