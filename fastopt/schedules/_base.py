"""``LRScheduler``: torch's scheduler protocol over a fastopt (or any) optimizer's ``param_groups``, or standalone."""
import copy
import math

from fastopt.schedules._functions import _int, _lr


def _groups_of(optimizer):
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) and "lr" in g for g in groups):
        raise TypeError(f"{type(optimizer).__name__} is not an optimizer: expected an object whose param_groups is "
                        "a non-empty list of dicts with an 'lr' entry")
    return groups


class LRScheduler:
    """Base class of fastopt's learning-rate schedulers (torch's ``LRScheduler`` protocol).

    ``optimizer``: an optimizer whose ``param_groups`` (list of dicts) hold ``"lr"``; the scheduler writes
    ``group["lr"]`` and, as torch, ``group["initial_lr"]`` (set once, when ``last_epoch == -1``). Or ``None``
    with ``base_lr=`` given: a standalone schedule with one learning rate (``get_last_lr()[0]``).

    Stepping: the constructor performs the first step (the lr of step 0); each ``step()`` advances ``last_epoch``
    by one and writes the new lrs, computed with torch's own (recursive, "chainable") formula, so a sequence
    equals torch's bit for bit. ``get_last_lr()`` returns the lrs the last step wrote.

    Pure use: ``sched(step)`` is the closed form at ``step`` (the ``fastopt.schedules.*_lr`` function of the
    class): a float for a standalone schedule, a list (one per param group) with an optimizer. It reads nothing
    but the base lrs and the hyperparameters, and changes nothing. Recursive and closed forms agree to rounding.

    ``state_dict()`` / ``load_state_dict()``: plain Python values (no optimizer); a scheduler built over the same
    optimizer and loaded continues exactly as the saved one would have.
    """

    _is_initial = False

    def __init__(self, optimizer, last_epoch=-1, base_lr=None):
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"Invalid last_epoch: {last_epoch!r} (expected an integer >= -1)")
        if optimizer is None:
            if base_lr is None:
                raise TypeError(f"{type(self).__name__} needs an optimizer, or optimizer=None and base_lr=<float> "
                                "for a standalone schedule")
            base = _lr(base_lr)
            self._own_groups = [self._own_group(base)]
        else:
            if base_lr is not None:
                raise ValueError("base_lr is only for a standalone schedule (optimizer=None); with an optimizer "
                                 "the base lrs are its groups' 'lr' (or 'initial_lr')")
            _groups_of(optimizer)
            self._own_groups = None
        self.optimizer = optimizer
        groups = self.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming a "
                                   f"scheduler with last_epoch={last_epoch}: load the optimizer's state first")
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_epoch = last_epoch
        self._initial_step()

    # ------------------------------------------------------------------ protocol
    @property
    def param_groups(self):
        """The groups whose "lr" this scheduler writes (the optimizer's, or its own single group)."""
        return self._own_groups if self.optimizer is None else self.optimizer.param_groups

    def _own_group(self, base_lr):
        """The single group of a standalone schedule."""
        return {"lr": base_lr, "initial_lr": base_lr}

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self):
        """Advances one step (epoch or batch, as the schedule is meant) and writes the new lrs into the groups."""
        self._step_count += 1
        self._update_lr(None)

    def _update_lr(self, epoch):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._closed_form()
        groups = self.param_groups
        if len(values) != len(groups):
            raise ValueError(f"{type(self).__name__}: the optimizer has {len(groups)} param groups, the scheduler "
                             f"{len(values)} base lrs (groups added after the scheduler was built?)")
        for group, lr in zip(groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in groups]

    def get_last_lr(self):
        """The lrs (one per group) written by the last step."""
        return list(self._last_lr)

    def get_lr(self):
        """The next lrs by torch's recursive formula (reads the groups' current "lr"); subclasses define it."""
        raise NotImplementedError

    def _lr_at(self, step, base_lr):
        """Closed form at ``step`` for one base lr; subclasses define it."""
        raise NotImplementedError

    def _closed_form(self):
        return [self._lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def __call__(self, step):
        """Closed-form lr at ``step`` (float if standalone, else a list per group); changes nothing."""
        _int(step, "step", 0)
        values = [self._lr_at(step, base_lr) for base_lr in self.base_lrs]
        return values[0] if self.optimizer is None else values

    def _current_lrs(self):
        return [group["lr"] for group in self.param_groups]

    # ------------------------------------------------------------------ state
    _NOT_STATE = ("optimizer", "_own_groups", "_schedulers")

    def state_dict(self):
        """Every attribute but the optimizer (plain Python values), plus the standalone group's lr if standalone."""
        state = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k not in self._NOT_STATE}
        state["_class"] = type(self).__name__
        if self.optimizer is None:
            state["_own_groups"] = copy.deepcopy(self._own_groups)
        return state

    def load_state_dict(self, state_dict):
        """Restores a ``state_dict()`` of a scheduler of the same class over as many param groups."""
        if not isinstance(state_dict, dict) or state_dict.get("_class") != type(self).__name__:
            got = state_dict.get("_class") if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"state_dict is not a {type(self).__name__} state (got {got!r})")
        missing = set(LRScheduler.state_dict(self)) - set(state_dict)
        if missing:
            raise ValueError(f"{type(self).__name__} state_dict lacks {sorted(missing)}")
        n_groups = len(self.param_groups)
        for key in ("base_lrs", "_last_lr", "min_lrs"):
            if key in state_dict and len(state_dict[key]) != n_groups:
                raise ValueError(f"state_dict has {len(state_dict[key])} entries in {key!r}, the scheduler's "
                                 f"optimizer {n_groups} param groups")
        for k, v in state_dict.items():
            if k == "_class":
                continue
            if k == "_own_groups":
                if self.optimizer is None:
                    self._own_groups = copy.deepcopy(v)
                continue
            setattr(self, k, copy.deepcopy(v))


def _check_finite_lr(values, what):
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"Invalid {what}: {v!r}")
