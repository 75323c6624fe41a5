"""``ReduceLROnPlateau``: lowers the lr when a metric stops improving (torch semantics; no closed form)."""
import copy
import math
import numbers

import numpy as np

from fastopt.schedules import _functions as F
from fastopt.schedules._base import LRScheduler, _groups_of


class ReduceLROnPlateau(LRScheduler):
    r"""Multiplies each group's lr by ``factor`` once the metric has not improved for ``patience`` steps.

    ``step(metric)`` after each evaluation. Improvement of :math:`m` over the best :math:`b` (mode, threshold_mode):
    min/rel :math:`m < b(1 - \text{threshold})`, min/abs :math:`m < b - \text{threshold}`, max/rel
    :math:`m > b(1 + \text{threshold})`, max/abs :math:`m > b + \text{threshold}`. After more than ``patience``
    bad steps: :math:`\eta \leftarrow \max(\eta\,\text{factor}, \text{min\_lr})`, applied only if it lowers
    :math:`\eta` by more than ``eps``; then ``cooldown`` steps during which bad steps are not counted.

    No lr is written at construction (as torch). Standalone use: ``optimizer=None, base_lr=...``; there is no
    closed form (``sched(step)`` raises TypeError).
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8, *, base_lr=None):
        self.factor = F._real(factor, "factor", 0.0, 1.0, high_open=True)
        if optimizer is None:
            if base_lr is None:
                raise TypeError("ReduceLROnPlateau needs an optimizer, or optimizer=None and base_lr=<float>")
            self._own_groups = [{"lr": F._lr(base_lr)}]
        else:
            if base_lr is not None:
                raise ValueError("base_lr is only for a standalone schedule (optimizer=None)")
            _groups_of(optimizer)
            self._own_groups = None
        self.optimizer = optimizer
        n = len(self.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"expected {n} min_lrs, got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = [F._real(v, "min_lr", 0.0) for v in min_lr]
        else:
            self.default_min_lr = F._real(min_lr, "min_lr", 0.0)
            self.min_lrs = [min_lr] * n
        self.patience = F._int(patience, "patience", 0)
        self.cooldown = F._int(cooldown, "cooldown", 0)
        self.eps = F._real(eps, "eps", 0.0)
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in self.param_groups]
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise ValueError(f"Invalid mode: {mode!r} (expected 'min' or 'max')")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"Invalid threshold_mode: {threshold_mode!r} (expected 'rel' or 'abs')")
        self.threshold = F._real(threshold, "threshold", 0.0)
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold_mode = threshold_mode

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics):
        """Records one evaluation of the metric (a real number or a one-element array)."""
        if isinstance(metrics, np.ndarray) and metrics.size == 1:
            metrics = metrics.reshape(()).item()
        if isinstance(metrics, bool) or not isinstance(metrics, numbers.Real):
            raise TypeError(f"metrics: expected a real number, got {type(metrics).__name__} {metrics!r}")
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.param_groups]

    def _reduce_lr(self):
        groups = self.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"The number of param groups in the optimizer ({len(groups)}) differs from when "
                                   f"ReduceLROnPlateau was initialized ({len(self.min_lrs)}); set min_lrs to match")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, group in enumerate(groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def get_lr(self):
        return self._current_lrs()

    def __call__(self, step):
        raise TypeError("ReduceLROnPlateau depends on the metric sequence and has no closed form lr(step)")

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
