"""The scheduler classes: torch's recursive ``get_lr`` for stepping, the pure functions for ``sched(step)``."""
import math
from bisect import bisect_right
from collections import Counter

from fastopt.schedules import _functions as F
from fastopt.schedules._base import LRScheduler, _groups_of


class StepLR(LRScheduler):
    r"""Decays the lr by ``gamma`` every ``step_size`` steps: :math:`\eta_t = \eta_0\gamma^{\lfloor t/s\rfloor}`."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1, *, base_lr=None):
        self.step_size = F._int(step_size, "step_size", 1)
        self.gamma = F._real(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch, base_lr)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _lr_at(self, step, base_lr):
        return F.step_lr(step, base_lr, self.step_size, self.gamma)


class MultiStepLR(LRScheduler):
    r"""Decays the lr by ``gamma`` at each milestone: :math:`\eta_t = \eta_0\gamma^{\#\{m \le t\}}`."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1, *, base_lr=None):
        self.milestones = Counter(F._milestones(milestones))
        self.gamma = F._real(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch, base_lr)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current_lrs()]

    def _lr_at(self, step, base_lr):
        return F.multistep_lr(step, base_lr, self.milestones.elements(), self.gamma)


class ExponentialLR(LRScheduler):
    r"""Decays the lr by ``gamma`` every step: :math:`\eta_t = \eta_0\gamma^t`."""

    def __init__(self, optimizer, gamma, last_epoch=-1, *, base_lr=None):
        self.gamma = F._real(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch, base_lr)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _lr_at(self, step, base_lr):
        return F.exponential_lr(step, base_lr, self.gamma)


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing to ``eta_min`` over ``T_max`` steps (SGDR without restarts):
    :math:`\eta_t = \eta_{min} + (\eta_0 - \eta_{min})(1 + \cos(\pi t/T_{max}))/2`, stepped by torch's recursion
    :math:`\eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min})\frac{1 + \cos(\pi t/T_{max})}{1 + \cos(\pi(t-1)/T_{max})}`."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1, *, base_lr=None):
        self.T_max = F._int(T_max, "T_max", 1)
        self.eta_min = F._real(eta_min, "eta_min", 0.0)
        super().__init__(optimizer, last_epoch, base_lr)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and self.last_epoch > 0:
            return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                    for base_lr in self.base_lrs]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base_lr, lr in zip(self.base_lrs, self._current_lrs())]
        return [(1 + math.cos(math.pi * self.last_epoch / self.T_max))
                / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max)) * (lr - self.eta_min) + self.eta_min
                for lr in self._current_lrs()]

    def _lr_at(self, step, base_lr):
        return F.cosine_annealing_lr(step, base_lr, self.T_max, self.eta_min)


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR): period :math:`T_0`, each next period :math:`T_{mult}` times
    longer; :math:`\eta = \eta_{min} + (\eta_0 - \eta_{min})(1 + \cos(\pi T_{cur}/T_i))/2`.

    ``step()`` advances one step; ``step(epoch)`` (a float allowed, e.g. ``epoch + i / iters`` per batch) jumps to
    that position, as torch."""

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1, *, base_lr=None):
        self.T_0 = F._int(T_0, "T_0", 1)
        self.T_i = self.T_0
        self.T_mult = F._int(T_mult, "T_mult", 1)
        self.eta_min = F._real(eta_min, "eta_min", 0.0)
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch, base_lr)

    def get_lr(self):
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
                for base_lr in self.base_lrs]

    def step(self, epoch=None):
        """One step, or (``epoch`` given, a real >= 0) a jump to position ``epoch``."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            F._real(epoch, "epoch", 0.0)
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        lrs = self.get_lr()
        for group, lr in zip(self.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.param_groups]

    def _lr_at(self, step, base_lr):
        return F.cosine_annealing_warm_restarts_lr(step, base_lr, self.T_0, self.T_mult, self.eta_min)

    def _update_lr(self, epoch):          # SequentialLR restarts a scheduler at its step 0
        self.step(epoch)


class PolynomialLR(LRScheduler):
    r"""Polynomial decay to 0 over ``total_iters`` steps: :math:`\eta_t = \eta_0(1 - \min(t, T)/T)^p`."""

    def __init__(self, optimizer, total_iters=5, power=1.0, last_epoch=-1, *, base_lr=None):
        self.total_iters = F._int(total_iters, "total_iters", 1)
        self.power = F._real(power, "power", 0.0)
        super().__init__(optimizer, last_epoch, base_lr)

    def get_lr(self):
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        decay_factor = ((1.0 - self.last_epoch / self.total_iters)
                        / (1.0 - (self.last_epoch - 1) / self.total_iters)) ** self.power
        return [lr * decay_factor for lr in self._current_lrs()]

    def _lr_at(self, step, base_lr):
        return F.polynomial_lr(step, base_lr, self.total_iters, self.power)


class LinearLR(LRScheduler):
    r"""Linear change of the lr factor from ``start_factor`` to ``end_factor`` over ``total_iters`` steps (warm-up):
    :math:`\eta_t = \eta_0(s + (e - s)\min(t, T)/T)`."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1, *,
                 base_lr=None):
        self.start_factor = F._real(start_factor, "start_factor", 0.0, 1.0, low_open=True)
        self.end_factor = F._real(end_factor, "end_factor", 0.0, 1.0)
        self.total_iters = F._int(total_iters, "total_iters", 1)
        super().__init__(optimizer, last_epoch, base_lr)

    def get_lr(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        return [lr * (1.0 + (self.end_factor - self.start_factor)
                      / (self.total_iters * self.start_factor
                         + (self.last_epoch - 1) * (self.end_factor - self.start_factor)))
                for lr in self._current_lrs()]

    def _lr_at(self, step, base_lr):
        return F.linear_lr(step, base_lr, self.start_factor, self.end_factor, self.total_iters)


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin), stepped per batch; see :func:`fastopt.schedules.one_cycle_lr`.

    As torch it writes ``initial_lr`` (= max_lr / div_factor), ``max_lr`` and ``min_lr`` into each group and, with
    ``cycle_momentum``, anneals ``momentum`` (or ``betas[0]``) inversely between ``max_momentum`` and
    ``base_momentum``. Standalone (``optimizer=None``) it needs only ``max_lr`` (a float) and cycles no momentum.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
            total_steps = F._int(epochs, "epochs", 1) * F._int(steps_per_epoch, "steps_per_epoch", 1)
        F._one_cycle_check(total_steps, pct_start, anneal_strategy, div_factor, final_div_factor)
        self.total_steps = int(total_steps)
        self.pct_start = pct_start
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.three_phase = bool(three_phase)
        self._anneal_func_type = anneal_strategy
        self._phases = F._one_cycle_phases(self.total_steps, pct_start, self.three_phase)
        groups = [{"lr": 0.0}] if optimizer is None else _groups_of(optimizer)
        max_lrs = self._per_group("max_lr", max_lr, len(groups))
        if optimizer is None:
            cycle_momentum = False
            base = max_lrs[0] / div_factor
            standalone = {"base_lr": base}
        else:
            standalone = {}
        self.cycle_momentum = bool(cycle_momentum)
        if optimizer is not None and last_epoch == -1:
            for m, group in zip(max_lrs, groups):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        if self.cycle_momentum:
            defaults = getattr(optimizer, "defaults", {})
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
            self.use_beta1 = "betas" in defaults
            max_ms = self._per_group("max_momentum", max_momentum, len(groups), low=0.0)
            base_ms = self._per_group("base_momentum", base_momentum, len(groups), low=0.0)
            if last_epoch == -1:
                for m, b, group in zip(max_ms, base_ms, groups):
                    if self.use_beta1:
                        group["betas"] = (m, *group["betas"][1:])
                    else:
                        group["momentum"] = m
                    group["max_momentum"] = m
                    group["base_momentum"] = b
        self.max_lrs = max_lrs
        super().__init__(optimizer, last_epoch, **standalone)

    def _own_group(self, base_lr):
        return {"lr": base_lr, "initial_lr": base_lr, "max_lr": self.max_lrs[0],
                "min_lr": base_lr / self.final_div_factor}

    @staticmethod
    def _per_group(name, value, n, low=0.0):
        values = list(value) if isinstance(value, (list, tuple)) else [value] * n
        if len(values) != n:
            raise ValueError(f"{name} must have the same length as optimizer.param_groups. "
                             f"{name} has {len(values)} values, param_groups has {n}.")
        return [F._real(v, name, low) for v in values]

    def get_lr(self):
        lrs = []
        for group in self.param_groups:
            values = {"initial": group["initial_lr"], "max": group["max_lr"], "min": group["min_lr"]}
            lrs.append(F._one_cycle_value(self.last_epoch, values, self._phases, self._anneal_func_type,
                                          self.total_steps))
            if self.cycle_momentum:
                moms = {"initial": group["max_momentum"], "max": group["base_momentum"], "min": group["max_momentum"]}
                m = F._one_cycle_value(self.last_epoch, moms, self._phases, self._anneal_func_type, self.total_steps)
                if self.use_beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m
        return lrs

    def _closed_form(self):
        return self.get_lr()              # torch's get_lr is already a closed form of last_epoch

    def __call__(self, step):
        F._int(step, "step", 0)
        values = [F.one_cycle_lr(step, m, self.total_steps, self.pct_start, self._anneal_func_type,
                                 self.div_factor, self.final_div_factor, self.three_phase) for m in self.max_lrs]
        return values[0] if self.optimizer is None else values


class SequentialLR(LRScheduler):
    """Runs ``schedulers[i]`` from ``milestones[i-1]`` on (the next one restarted at its step 0), as torch.

    All schedulers must drive the same optimizer (or all be standalone, with ``optimizer=None``); ReduceLROnPlateau
    is not allowed (it needs a metric). ``sched(step)`` is :func:`fastopt.schedules.sequential_lr` of theirs."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        schedulers = list(schedulers)
        if len(schedulers) < 1:
            raise ValueError("SequentialLR expects at least one scheduler, but got no scheduler.")
        from fastopt.schedules._plateau import ReduceLROnPlateau
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"SequentialLR does not support ReduceLROnPlateau (it needs a metric at each step), "
                                 f"got one at index {i}")
            if not isinstance(s, LRScheduler):
                raise TypeError(f"SequentialLR: schedulers[{i}] is not a fastopt scheduler: {type(s).__name__}")
            if s.optimizer is not optimizer:
                raise ValueError(f"SequentialLR expects all schedulers to belong to the same optimizer, but "
                                 f"schedulers[{i}] ({type(s).__name__}) has a different one")
        milestones = F._milestones(milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("Sequential Schedulers expects number of schedulers provided to be one more than the "
                             f"number of milestone points, but got number of schedulers {len(schedulers)} and the "
                             f"number of milestones to be equal to {len(milestones)}")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"Invalid last_epoch: {last_epoch!r} (expected an integer >= -1)")
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        self._own_groups = None
        for s in schedulers:                 # reset learning rates back to initial values
            for group in s.param_groups:
                group["lr"] = group["initial_lr"]
        self.base_lrs = list(schedulers[0].base_lrs)
        self._recursive_undo()
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = schedulers[idx].get_last_lr()

    def _recursive_undo(self, sched=None):
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for s in scheds._schedulers:
                self._recursive_undo(s)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self):
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    @property
    def param_groups(self):
        return self._schedulers[bisect_right(self._milestones, max(self.last_epoch, 0))].param_groups

    def __call__(self, step):
        F._int(step, "step", 0)
        idx = bisect_right(self._milestones, step)
        return self._schedulers[idx](step - (self._milestones[idx - 1] if idx > 0 else 0))

    def state_dict(self):
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        if not isinstance(state_dict, dict) or "_schedulers" not in state_dict:
            raise ValueError("state_dict is not a SequentialLR state (no '_schedulers')")
        subs = state_dict["_schedulers"]
        if len(subs) != len(self._schedulers):
            raise ValueError(f"state_dict has {len(subs)} schedulers, this SequentialLR {len(self._schedulers)}")
        for s, sd in zip(self._schedulers, subs):   # validate all before loading any
            if not isinstance(sd, dict) or sd.get("_class") != type(s).__name__:
                raise ValueError(f"state_dict scheduler {sd.get('_class') if isinstance(sd, dict) else sd!r} "
                                 f"does not match {type(s).__name__}")
        rest = {k: v for k, v in state_dict.items() if k != "_schedulers"}
        super().load_state_dict(rest)
        for s, sd in zip(self._schedulers, subs):
            s.load_state_dict(sd)
