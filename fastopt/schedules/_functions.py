r"""Learning-rate schedules as pure functions of the step: ``lr = f(step, base_lr, ...)``, torch's closed forms.

Each function validates its arguments (ValueError/TypeError naming the argument and the bad value) and returns a
float. ``step`` is the number of completed scheduler steps (torch's ``last_epoch``): an int >= 0.
"""
import math
import numbers
from bisect import bisect_right

__all__ = ["step_lr", "multistep_lr", "exponential_lr", "cosine_annealing_lr", "cosine_annealing_warm_restarts_lr",
           "polynomial_lr", "linear_lr", "one_cycle_lr", "sequential_lr"]


# ---------------------------------------------------------------- argument checks (shared with the classes)
def _int(value, what, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"Invalid {what}: {value!r} (expected an integer >= {low})")
    return int(value)


def _real(value, what, low=-math.inf, high=math.inf, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Invalid {what}: expected a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    ok = not math.isnan(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"Invalid {what}: {value!r} (expected a value in {lo}{low}, {high}{hi})")
    return value


def _milestones(milestones, what="milestones"):
    if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
        raise TypeError(f"Invalid {what}: expected a list of integers, got {type(milestones).__name__}")
    out = list(milestones)
    for m in out:
        _int(m, f"{what} entry", 0)
    return out


def _step(step):
    return _int(step, "step", 0)


def _lr(base_lr, what="base_lr"):
    return _real(base_lr, what, 0.0)


# ---------------------------------------------------------------- closed forms
def step_lr(step, base_lr, step_size, gamma=0.1):
    r""":math:`\eta_t = \eta_0\,\gamma^{\lfloor t / \text{step\_size} \rfloor}` (``torch.optim.lr_scheduler.StepLR``)."""
    _step(step), _lr(base_lr), _int(step_size, "step_size", 1), _real(gamma, "gamma", 0.0)
    return base_lr * gamma ** (step // step_size)


def multistep_lr(step, base_lr, milestones, gamma=0.1):
    r""":math:`\eta_t = \eta_0\,\gamma^{\#\{m \in \text{milestones} : m \le t\}}` (``MultiStepLR``; repeated
    milestones count repeatedly)."""
    _step(step), _lr(base_lr), _real(gamma, "gamma", 0.0)
    ms = sorted(_milestones(milestones))
    return base_lr * gamma ** bisect_right(ms, step)


def exponential_lr(step, base_lr, gamma):
    r""":math:`\eta_t = \eta_0\,\gamma^t` (``ExponentialLR``)."""
    _step(step), _lr(base_lr), _real(gamma, "gamma", 0.0)
    return base_lr * gamma ** step


def cosine_annealing_lr(step, base_lr, T_max, eta_min=0.0):
    r""":math:`\eta_t = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi t / T_{max})}{2}` (``CosineAnnealingLR``;
    past ``T_max`` the cosine continues, rising back to :math:`\eta_0` at :math:`2T_{max}`, as torch)."""
    _step(step), _lr(base_lr), _int(T_max, "T_max", 1), _real(eta_min, "eta_min", 0.0)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * step / T_max)) / 2


def _warm_restart_position(step, T_0, T_mult):
    """(T_cur, T_i) after ``step`` integer steps, by exact integer arithmetic."""
    T_cur, T_i = step, T_0
    while T_cur >= T_i:
        T_cur -= T_i
        T_i *= T_mult
    return T_cur, T_i


def cosine_annealing_warm_restarts_lr(step, base_lr, T_0, T_mult=1, eta_min=0.0):
    r""":math:`\eta_t = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi T_{cur} / T_i)}{2}` with restarts (SGDR,
    ``CosineAnnealingWarmRestarts``): the first period lasts :math:`T_0` steps, each next one :math:`T_{mult}` times
    longer; :math:`T_{cur}` counts steps since the last restart."""
    _step(step), _lr(base_lr), _int(T_0, "T_0", 1), _int(T_mult, "T_mult", 1), _real(eta_min, "eta_min", 0.0)
    T_cur, T_i = _warm_restart_position(step, T_0, T_mult)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2


def polynomial_lr(step, base_lr, total_iters=5, power=1.0):
    r""":math:`\eta_t = \eta_0\,(1 - \min(t, T) / T)^{p}` (``PolynomialLR``)."""
    _step(step), _lr(base_lr), _int(total_iters, "total_iters", 1), _real(power, "power", 0.0)
    return base_lr * (1.0 - min(total_iters, step) / total_iters) ** power


def linear_lr(step, base_lr, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
    r""":math:`\eta_t = \eta_0\,\big(s + (e - s)\min(t, T)/T\big)` (``LinearLR``; warm-up when s < e)."""
    _step(step), _lr(base_lr)
    _real(start_factor, "start_factor", 0.0, 1.0, low_open=True)
    _real(end_factor, "end_factor", 0.0, 1.0)
    _int(total_iters, "total_iters", 1)
    return base_lr * (start_factor + (end_factor - start_factor) * min(total_iters, step) / total_iters)


def _anneal(strategy, start, end, pct):
    if strategy == "cos":
        cos_out = math.cos(math.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out
    return (end - start) * pct + start


def _one_cycle_phases(total_steps, pct_start, three_phase):
    """(end_step, start key, end key) per phase, keys into {initial, max, min}; as torch's ``_schedule_phases``."""
    if three_phase:
        return [(float(pct_start * total_steps) - 1, "initial", "max"),
                (float(2 * pct_start * total_steps) - 2, "max", "initial"),
                (total_steps - 1, "initial", "min")]
    return [(float(pct_start * total_steps) - 1, "initial", "max"), (total_steps - 1, "max", "min")]


def _one_cycle_check(total_steps, pct_start, anneal_strategy, div_factor, final_div_factor):
    _int(total_steps, "total_steps", 1)
    _real(pct_start, "pct_start", 0.0, 1.0)
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(f"Invalid anneal_strategy: {anneal_strategy!r} (expected 'cos' or 'linear')")
    _real(div_factor, "div_factor", 0.0, low_open=True)
    _real(final_div_factor, "final_div_factor", 0.0, low_open=True)


def _one_cycle_value(step, values, phases, strategy, total_steps):
    """The annealed value at ``step`` between ``values[start key]`` and ``values[end key]`` (torch's get_lr)."""
    if step > total_steps:
        raise ValueError(f"Tried to step {step} times. The specified number of total steps is {total_steps}")
    start_step = 0.0
    for i, (end_step, start, end) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step)
            return _anneal(strategy, values[start], values[end], pct)
        start_step = end_step
    raise AssertionError("unreachable")


def one_cycle_lr(step, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
                 final_div_factor=1e4, three_phase=False):
    r"""The 1cycle policy (``OneCycleLR``): from :math:`\eta_{init} = \text{max\_lr}/\text{div\_factor}` up to
    ``max_lr`` over the first ``pct_start`` of ``total_steps``, then down to
    :math:`\eta_{min} = \eta_{init}/\text{final\_div\_factor}` (``three_phase``: back to :math:`\eta_{init}` over a
    second equal stretch, then to :math:`\eta_{min}`). Each phase anneals from a to b with
    :math:`b + (a - b)(1 + \cos \pi\,\text{pct})/2` ("cos") or :math:`a + (b - a)\,\text{pct}` ("linear"),
    pct the fraction of the phase done. ``step`` may not exceed ``total_steps`` (ValueError, as torch)."""
    _step(step), _lr(max_lr, "max_lr")
    _one_cycle_check(total_steps, pct_start, anneal_strategy, div_factor, final_div_factor)
    initial = max_lr / div_factor
    values = {"initial": initial, "max": max_lr, "min": initial / final_div_factor}
    phases = _one_cycle_phases(total_steps, pct_start, bool(three_phase))
    return _one_cycle_value(step, values, phases, anneal_strategy, total_steps)


def sequential_lr(step, schedules, milestones):
    r"""Runs ``schedules[i]`` (callables ``step -> lr``) from ``milestones[i-1]`` on, restarted at its own step 0
    (``SequentialLR``): :math:`\eta_t = f_i(t - m_{i-1})` for :math:`m_{i-1} \le t < m_i` (:math:`m_{-1} = 0`)."""
    _step(step)
    schedules = list(schedules)
    ms = _milestones(milestones)
    if not schedules:
        raise ValueError("sequential_lr expects at least one schedule")
    if len(ms) != len(schedules) - 1:
        raise ValueError(f"sequential_lr expects len(milestones) == len(schedules) - 1, got {len(ms)} milestones "
                         f"for {len(schedules)} schedules")
    idx = bisect_right(ms, step)
    return schedules[idx](step - (ms[idx - 1] if idx > 0 else 0))
