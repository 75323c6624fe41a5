"""The base of the Schedule-Free optimizers (Defazio et al. 2024, "The Road Less Scheduled"; ``schedulefree``'s
``AdamWScheduleFree`` / ``SGDScheduleFree``): the param holds y, the point gradients are taken at, while training,
and x, the average to evaluate, after ``eval()``.

With :math:`\\beta` the spec's interpolation (AdamW: beta1, SGD: momentum) and z the state slot 0,
:math:`y = (1 - \\beta) z + \\beta x`: ``eval()`` sets ``p <- lerp(p, z, 1 - 1/beta)`` (y to x) and ``train()``
``p <- lerp(p, z, 1 - beta)`` (x to y), in place, in the param's dtype, with torch.lerp's two formulas (the
reference's ``p.lerp_``). Both are idempotent: only a change of mode moves the params, and a param without
state yet (no step taken) is left as is. The round trip eval-then-train gives y back to rounding (a few ulps), not
bit for bit, as in the reference.

Differences from the reference, on purpose: a new optimizer is in train mode (the reference starts in eval mode
and needs ``train()`` before the first step; with no state both modes hold the same params, so only the
error is gone); the mode is one per optimizer (the reference keeps one per group but checks group 0's); a step
in eval mode is a RuntimeError raised before anything is written (the reference raises ``Exception``). The
reference's group values ``k``, ``lr_max`` and ``weight_sum`` are per param here (``step`` and the float64
``aux`` pair ``lr_max_weight_sum``): the same numbers whenever every param of a group is stepped at every step;
a param skipped at some steps (no gradient) counts only its own steps.
"""
from collections.abc import Mapping

import numpy as np

from fastopt.optim.optimizer import Optimizer


def lerp_(p, end, weight):
    """``p <- torch.lerp(p, end, weight)`` in place, in p's dtype: ``p + w (end - p)`` for ``|w| < 0.5``, else
    ``end - (end - p)(1 - w)``."""
    dt = p.dtype.type
    w = dt(weight)
    d = np.subtract(end, p, out=np.empty_like(p))
    if abs(w) < 0.5:
        np.multiply(d, w, out=d)
        np.add(p, d, out=p)
    else:
        np.multiply(d, dt(1) - w, out=d)
        np.subtract(end, d, out=p)


class ScheduleFreeOptimizer(Optimizer):
    """An optimizer whose spec has an ``interpolation``: ``train()``, ``eval()``, ``train_mode``; the mode is saved
    by ``state_dict()`` (key ``"train_mode"``) and restored by ``load_state_dict()`` (which moves no param: the
    params hold what they held when it was saved)."""

    _train_mode = True        # a new optimizer (the class's __init__ is Optimizer's, see make_class)

    @property
    def train_mode(self):
        """True while the params hold y (steps allowed), False after ``eval()`` (they hold x)."""
        return self._train_mode

    def train(self):
        """Sets every param with state from x to y (no-op in train mode)."""
        with self._lock:
            if not self._train_mode:
                self._swap(lambda beta: 1.0 - beta)
                self._train_mode = True

    def eval(self):
        """Sets every param with state from y to x, the point to evaluate (no-op in eval mode)."""
        with self._lock:
            if self._train_mode:
                self._swap(lambda beta: 1.0 - 1.0 / beta)
                self._train_mode = False

    def checked_betas(self):
        """Each group's interpolation beta, checked as a switch of modes needs it (ValueError otherwise)."""
        betas = []
        for gi, group in enumerate(self.param_groups):
            beta = float(self.spec.interpolation(group))
            if not 0.0 < beta < 1.0:
                raise ValueError(f"param_groups[{gi}]: the interpolation beta must be in (0, 1) to switch modes, "
                                 f"got {beta}")
            betas.append(beta)
        return betas

    def _swap(self, weight):
        z_name = self.spec.slots[0].name
        work, offset = [], 0
        for group, beta in zip(self.param_groups, self.checked_betas()):   # every weight first: an error moves nothing
            w = weight(beta)
            for k, p in enumerate(group["params"]):
                z = self._state.get(offset + k, {}).get(z_name)
                if z is not None:
                    work.append((p, z, w))
            offset += len(group["params"])
        for p, z, w in work:
            lerp_(p, z, w)

    def _checked_runs(self, grads, check_finite):
        if not self._train_mode:
            raise RuntimeError(f"{type(self).__name__}.step() called in eval mode (the params hold x): call "
                               "train() first; nothing was written")
        return super()._checked_runs(grads, check_finite)

    def state_dict(self):
        out = super().state_dict()
        out["train_mode"] = self._train_mode
        return out

    def _load_state_dict(self, state_dict):
        mode = state_dict.get("train_mode") if isinstance(state_dict, Mapping) else None
        if not isinstance(mode, (bool, np.bool_)):
            raise ValueError(f"loaded state dict of {type(self).__name__} needs 'train_mode' (True or False), got "
                             f"{mode!r}")
        super()._load_state_dict(state_dict)
        self._train_mode = bool(mode)
