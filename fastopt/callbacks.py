r"""Training-loop callbacks: ``EarlyStopping``.

>>> stopper = EarlyStopping(patience=5, min_delta=1e-4)
>>> for epoch in range(100):                        # doctest: +SKIP
...     train_one_epoch(params, opt)
...     if stopper.step(validation_loss(params), params):
...         break                                     # params now hold the best weights (restore_best=True)
"""
import math
import numbers

import numpy as np

from fastopt._validation import check_flag, check_nonnegative, is_integer

__all__ = ["EarlyStopping"]


def _metric_value(metric):
    if isinstance(metric, np.ndarray) and metric.size == 1:
        metric = metric.reshape(()).item()
    if isinstance(metric, (bool, np.bool_)) or not isinstance(metric, numbers.Real):
        raise TypeError(f"metric: expected a real number, got {type(metric).__name__} {metric!r}")
    return float(metric)


class EarlyStopping:
    r"""Stops training when a monitored metric has stopped improving, and restores the best parameters in place.

    After each epoch call ``stop = stopper.step(metric, params)``. With :math:`b` the best metric so far
    (:math:`+\infty` for ``mode="min"``, :math:`-\infty` for ``"max"`` before the first step), the metric
    :math:`m` is an improvement when

    .. math:: m < b - \text{min\_delta}\ \ (\text{mode}=\text{"min"}),\qquad
              m > b + \text{min\_delta}\ \ (\text{mode}=\text{"max"})

    (a NaN metric never improves). On an improvement ``best = m``, the count of bad steps resets to 0 and, if
    ``restore_best``, every array of ``params`` is copied into a snapshot buffer (allocated at the first
    snapshot, then reused with ``np.copyto``). Otherwise the count grows by one; when it reaches ``patience``
    ``step`` returns True (and keeps returning True), first copying the snapshot back into ``params`` in place if
    ``restore_best``. ``patience=0`` stops at the first step without improvement.

    params: the same list of arrays at every call (count, shapes and dtypes are checked; ValueError otherwise);
    they are updated in place by ``restore`` so they must be writeable.

    Attributes: ``best`` (best metric), ``best_step`` (0-based index of the step that set it, -1 before),
    ``num_bad_steps``, ``steps`` (calls so far), ``stopped``.
    """

    def __init__(self, patience, min_delta=0.0, mode="min", restore_best=True):
        if not is_integer(patience):
            raise TypeError(f"Invalid patience: {patience!r} (expected an integer >= 0)")
        if patience < 0:
            raise ValueError(f"Invalid patience: {patience!r} (expected an integer >= 0)")
        if mode not in ("min", "max"):
            raise ValueError(f"Invalid mode: {mode!r} (expected 'min' or 'max')")
        self.patience = int(patience)
        self.min_delta = check_nonnegative(min_delta, "min_delta")
        self.mode = mode
        self.restore_best = check_flag(restore_best, "restore_best")
        self._snapshot = None
        self.reset()

    def reset(self):
        """Forgets the best metric, the counters and the snapshot contents (buffers are kept for reuse)."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step = -1
        self.num_bad_steps = 0
        self.steps = 0
        self.stopped = False
        self._has_snapshot = False

    def _improved(self, m):
        if self.mode == "min":
            return m < self.best - self.min_delta
        return m > self.best + self.min_delta

    def _check_params(self, params, writeable):
        if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
            raise TypeError(f"params must be a list of arrays, got {type(params).__name__}")
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"params[{i}]: expected a numpy.ndarray, got {type(p).__name__}")
            if writeable and not p.flags.writeable:
                raise ValueError(f"params[{i}] is restored in place and must be writeable; it is read-only")
        if self._has_snapshot:
            if len(params) != len(self._snapshot):
                raise ValueError(f"expected {len(self._snapshot)} params (as at the first snapshot), "
                                 f"got {len(params)}")
            for i, (p, s) in enumerate(zip(params, self._snapshot)):
                if p.shape != s.shape:
                    raise ValueError(f"params[{i}]: shape {p.shape} does not match the snapshot's {s.shape}")
                if p.dtype != s.dtype:
                    raise TypeError(f"params[{i}]: dtype {p.dtype} does not match the snapshot's {s.dtype}")

    def step(self, metric, params=None):
        """Records ``metric`` for the epoch just finished; returns True when training should stop.

        ``params`` (list of arrays) is required when ``restore_best`` is True; it is snapshotted on improvement
        and restored in place on stopping. Everything is checked before anything is copied.
        """
        m = _metric_value(metric)
        if self.restore_best:
            if params is None:
                raise ValueError("params is required when restore_best=True")
            self._check_params(params, writeable=True)
        if self.stopped:
            return True
        improved = self._improved(m)
        if improved:
            self.best = m
            self.best_step = self.steps
            self.num_bad_steps = 0
            if self.restore_best:
                self._take_snapshot(params)
        else:
            self.num_bad_steps += 1
        self.steps += 1
        if not improved and self.num_bad_steps >= self.patience:
            self.stopped = True
            if self.restore_best and self._has_snapshot:
                self.restore(params)
        return self.stopped

    def _take_snapshot(self, params):
        reuse = self._snapshot is not None and len(self._snapshot) == len(params) and all(
            s.shape == p.shape and s.dtype == p.dtype for s, p in zip(self._snapshot, params))
        if not reuse:
            self._snapshot = [np.array(p, copy=True, order="C") for p in params]
        else:
            for s, p in zip(self._snapshot, params):
                np.copyto(s, p)
        self._has_snapshot = True

    def restore(self, params):
        """Copies the best snapshot into ``params`` in place (same count, shapes and dtypes, writeable)."""
        if not self._has_snapshot:
            raise RuntimeError("EarlyStopping has no snapshot to restore (no improvement recorded yet"
                               + (", or restore_best=False)" if not self.restore_best else ")"))
        self._check_params(params, writeable=True)
        for s, p in zip(self._snapshot, params):
            np.copyto(p, s)

    @property
    def best_params(self):
        """The snapshot arrays (read them, do not keep them: they are overwritten at the next improvement)."""
        return list(self._snapshot) if self._has_snapshot else None

    def state_dict(self):
        """Plain scalars plus copies of the snapshot arrays (or None); fits pickle / np.savez(allow_pickle)."""
        return {
            "patience": self.patience, "min_delta": self.min_delta, "mode": self.mode,
            "restore_best": self.restore_best, "best": self.best, "best_step": self.best_step,
            "num_bad_steps": self.num_bad_steps, "steps": self.steps, "stopped": self.stopped,
            "snapshot": [s.copy() for s in self._snapshot] if self._has_snapshot else None,
        }

    def load_state_dict(self, state_dict):
        """Restores a ``state_dict()``; ValueError/TypeError (changing nothing) if it is malformed."""
        keys = {"patience", "min_delta", "mode", "restore_best", "best", "best_step", "num_bad_steps", "steps",
                "stopped", "snapshot"}
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict with keys {sorted(keys)}, got {type(state_dict).__name__}")
        if set(state_dict) != keys:
            raise ValueError(f"state_dict must be a dict with keys {sorted(keys)}")
        new = EarlyStopping(state_dict["patience"], state_dict["min_delta"], state_dict["mode"],
                            state_dict["restore_best"])
        new.best = _metric_value(state_dict["best"])
        for name in ("best_step", "num_bad_steps", "steps"):
            v = state_dict[name]
            if not is_integer(v):
                raise TypeError(f"state_dict[{name!r}]: expected an integer, got {type(v).__name__} {v!r}")
            if v < (-1 if name == "best_step" else 0):
                raise ValueError(f"state_dict[{name!r}]: invalid value {v!r}")
            setattr(new, name, int(v))
        new.stopped = check_flag(state_dict["stopped"], "state_dict['stopped']")
        snap = state_dict["snapshot"]
        if snap is not None:
            if not isinstance(snap, (list, tuple)) or not all(isinstance(s, np.ndarray) for s in snap):
                raise TypeError("state_dict['snapshot'] must be a list of arrays or None")
            new._snapshot = [np.array(s, copy=True, order="C") for s in snap]
            new._has_snapshot = True
        self.__dict__.update(new.__dict__)
