r"""Learning-rate schedules: torch.optim.lr_scheduler's classes over fastopt optimizers, and pure functions.

Two ways to use a schedule:

* **Attached to an optimizer** (torch's protocol): ``sched = CosineAnnealingLR(opt, T_max=100)``; call
  ``sched.step()`` after ``opt.step(grads)`` once per epoch (or per batch, as the schedule is meant); it writes
  ``group["lr"]`` of every param group (and ``group["initial_lr"]``, as torch), with torch's own formulas and
  update order, so the lr sequence equals torch's bit for bit. ``get_last_lr()``, ``state_dict()`` and
  ``load_state_dict()`` as torch; the constructor performs the first step (the lr of step 0).
  ``ReduceLROnPlateau.step(metric)`` takes the monitored metric.

* **As a function of the step** (optax style): ``lr = cosine_annealing_lr(step, base_lr=0.1, T_max=100)`` —
  one pure function per schedule, torch's closed forms, no state. A scheduler object is also callable:
  ``CosineAnnealingLR(None, T_max=100, base_lr=0.1)(7)`` gives the same float (with an optimizer,
  ``sched(step)`` gives a list, one lr per param group). ``optimizer=None`` with ``base_lr=`` also makes a
  standalone scheduler whose ``step()`` / ``get_last_lr()`` work without any optimizer. The closed forms
  agree with the stepped (recursive) sequences to rounding (~1e-15 relative).

=========================== =========================================== ========================================
class                       function                                     lr at step t
=========================== =========================================== ========================================
StepLR                      step_lr                                      base * gamma ** (t // step_size)
MultiStepLR                 multistep_lr                                 base * gamma ** #(milestones <= t)
ExponentialLR               exponential_lr                               base * gamma ** t
CosineAnnealingLR           cosine_annealing_lr                          eta_min + (base - eta_min)(1 + cos(pi t / T_max)) / 2
CosineAnnealingWarmRestarts cosine_annealing_warm_restarts_lr            as above with T_cur / T_i, restarts
PolynomialLR                polynomial_lr                                base * (1 - min(t, T) / T) ** power
LinearLR                    linear_lr                                    base * (s + (e - s) min(t, T) / T)
OneCycleLR                  one_cycle_lr                                 1cycle: warm up to max_lr, anneal down
SequentialLR                sequential_lr                                f_i(t - milestone_{i-1})
ReduceLROnPlateau           (none: depends on the metric)                factor * lr after patience bad steps
=========================== =========================================== ========================================
"""
from fastopt.schedules._base import LRScheduler
from fastopt.schedules._functions import (cosine_annealing_lr, cosine_annealing_warm_restarts_lr, exponential_lr,
                                          linear_lr, multistep_lr, one_cycle_lr, polynomial_lr, sequential_lr,
                                          step_lr)
from fastopt.schedules._plateau import ReduceLROnPlateau
from fastopt.schedules._schedulers import (CosineAnnealingLR, CosineAnnealingWarmRestarts, ExponentialLR, LinearLR,
                                           MultiStepLR, OneCycleLR, PolynomialLR, SequentialLR, StepLR)

__all__ = [
    "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
    "PolynomialLR", "LinearLR", "OneCycleLR", "SequentialLR", "ReduceLROnPlateau",
    "step_lr", "multistep_lr", "exponential_lr", "cosine_annealing_lr", "cosine_annealing_warm_restarts_lr",
    "polynomial_lr", "linear_lr", "one_cycle_lr", "sequential_lr",
]
