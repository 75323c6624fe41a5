"""Functional optimizer steps for users who keep their own state: one fused, in-place update of one param.

Each ``<name>_`` updates ``param`` and its state arrays in place with the rule of the optimizer class of the same
name (see its docstring) and returns ``param``. ``step`` is the 1-based index of this update (bias corrections
use it). All arrays are checked first (dtype, shape, layout, overlap) and nothing is written if a check fails.
"""
import numpy as np

from fastopt import _optim
from fastopt._validation import (check_betas, check_flag, check_float_array, check_inplace_array,
                                 check_no_shared_memory, check_nonnegative, check_range, check_same_dtype,
                                 check_same_shape)

__all__ = ["sgd_", "adam_", "adamw_", "adamax_", "nadam_", "radam_", "rmsprop_", "adagrad_", "lion_"]


def _check_step(step):
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"Invalid step: expected an integer >= 1 (the index of this update), got {step!r}")
    return int(step)


def _run(algo, param, grad, states, args, *, step=1, aux=None, fresh=False, unused=()):
    """Validates and runs one single-tensor step. ``states``: (name, array) in slot order; a slot named in
    ``unused`` is not touched by this step and may be None."""
    check_inplace_array(param, "param")
    check_float_array(grad, "grad")
    check_same_dtype(param, grad, "param", "grad")
    check_same_shape(param, grad, "param", "grad")
    arrays, names = [param, grad], ["param", "grad"]
    for name, arr in states:
        if arr is None and name not in unused:
            raise ValueError(f"{name}: required, got None")
        if arr is not None:
            check_inplace_array(arr, name)
            check_same_dtype(param, arr, "param", name)
            check_same_shape(param, arr, "param", name)
            arrays.append(arr)
            names.append(name)
    check_no_shared_memory(arrays, names)
    step_counter = np.array(_check_step(step) - 1, dtype=np.int64)
    slot_arrays = tuple(arr for _, arr in states)
    plan = _optim.StepPlan(algo, [param], [0], [0], 1, [slot_arrays], [step_counter], [aux], [fresh])
    writes = [param] + [arr for arr in slot_arrays if arr is not None]
    plan.bind([grad], _optim.WriteSet(writes, lambda i: f"array {i}"))
    plan.run(*args)
    return param


def _flags(maximize=False, amsgrad=False, nesterov=False, centered=False, decoupled=False):
    return ((_optim.MAXIMIZE if check_flag(maximize, "maximize") else 0)
            | (_optim.AMSGRAD if check_flag(amsgrad, "amsgrad") else 0)
            | (_optim.NESTEROV if check_flag(nesterov, "nesterov") else 0)
            | (_optim.CENTERED if check_flag(centered, "centered") else 0)
            | (_optim.DECOUPLED if check_flag(decoupled, "decoupled_weight_decay") else 0))


def sgd_(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
         maximize=False, first_step=False):
    """In-place SGD step (:class:`fastopt.SGD`). ``momentum_buffer`` is required when momentum != 0; with
    ``first_step=True`` it is set to the gradient (torch's first-step rule) instead of being decayed."""
    lr = check_nonnegative(lr, "learning rate")
    momentum = check_nonnegative(momentum, "momentum value")
    dampening = check_range(dampening, "dampening value", -1e300, 1e300)
    weight_decay = check_nonnegative(weight_decay, "weight_decay value")
    if check_flag(nesterov, "nesterov") and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    args = (lr, weight_decay, 0.0, 0.0, 0.0, momentum, dampening, 0.0, 0.0, 0.0,
            _flags(maximize=maximize, nesterov=nesterov))
    return _run(_optim.SGD, param, grad, [("momentum_buffer", momentum_buffer if momentum != 0 else None)], args,
                fresh=check_flag(first_step, "first_step"), unused=() if momentum != 0 else ("momentum_buffer",))


def _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, amsgrad, max_exp_avg_sq,
          maximize, decoupled):
    lr = check_nonnegative(lr, "learning rate")
    eps = check_nonnegative(eps, "epsilon value")
    beta1, beta2 = check_betas((beta1, beta2))
    weight_decay = check_nonnegative(weight_decay, "weight_decay value")
    amsgrad = check_flag(amsgrad, "amsgrad")
    args = (lr, weight_decay, eps, beta1, beta2, 0.0, 0.0, 0.0, 0.0, 0.0,
            _flags(maximize=maximize, amsgrad=amsgrad, decoupled=decoupled))
    states = [("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq), ("max_exp_avg_sq", max_exp_avg_sq if amsgrad else None)]
    return _run(_optim.ADAM, param, grad, states, args, step=step, unused=() if amsgrad else ("max_exp_avg_sq",))


def adam_(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, amsgrad=False,
          max_exp_avg_sq=None, maximize=False, decoupled_weight_decay=False):
    """In-place Adam step (:class:`fastopt.Adam`); L2 weight decay unless ``decoupled_weight_decay``."""
    return _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, amsgrad,
                 max_exp_avg_sq, maximize, decoupled_weight_decay)


def adamw_(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay, amsgrad=False,
           max_exp_avg_sq=None, maximize=False):
    """In-place AdamW step (:class:`fastopt.AdamW`): decoupled weight decay."""
    return _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, amsgrad,
                 max_exp_avg_sq, maximize, True)


def adamax_(param, grad, exp_avg, exp_inf, *, step, lr, beta1, beta2, eps, weight_decay=0.0, maximize=False):
    """In-place Adamax step (:class:`fastopt.Adamax`)."""
    beta1, beta2 = check_betas((beta1, beta2))
    args = (check_nonnegative(lr, "learning rate"), check_nonnegative(weight_decay, "weight_decay value"),
            check_nonnegative(eps, "epsilon value"), beta1, beta2, 0.0, 0.0, 0.0, 0.0, 0.0, _flags(maximize))
    return _run(_optim.ADAMAX, param, grad, [("exp_avg", exp_avg), ("exp_inf", exp_inf)], args, step=step)


def nadam_(param, grad, exp_avg, exp_avg_sq, mu_product, *, step, lr, beta1, beta2, eps, weight_decay=0.0,
           momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False):
    """In-place NAdam step (:class:`fastopt.NAdam`). ``mu_product`` is a 0-d float64 array holding
    :math:`\\prod_{i<t} \\mu_i` (1.0 before the first step), updated in place."""
    beta1, beta2 = check_betas((beta1, beta2))
    if not (isinstance(mu_product, np.ndarray) and mu_product.shape == () and mu_product.dtype == np.float64
            and mu_product.flags.writeable):
        raise TypeError("mu_product: expected a writeable 0-d float64 numpy array (1.0 before the first step)")
    args = (check_nonnegative(lr, "learning rate"), check_nonnegative(weight_decay, "weight_decay value"),
            check_nonnegative(eps, "epsilon value"), beta1, beta2, 0.0, 0.0, 0.0, 0.0,
            check_nonnegative(momentum_decay, "momentum_decay value"),
            _flags(maximize=maximize, decoupled=decoupled_weight_decay))
    return _run(_optim.NADAM, param, grad, [("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)], args, step=step,
                aux=mu_product)


def radam_(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay=0.0,
           decoupled_weight_decay=False, maximize=False):
    """In-place RAdam step (:class:`fastopt.RAdam`)."""
    beta1, beta2 = check_betas((beta1, beta2))
    args = (check_nonnegative(lr, "learning rate"), check_nonnegative(weight_decay, "weight_decay value"),
            check_nonnegative(eps, "epsilon value"), beta1, beta2, 0.0, 0.0, 0.0, 0.0, 0.0,
            _flags(maximize=maximize, decoupled=decoupled_weight_decay))
    return _run(_optim.RADAM, param, grad, [("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)], args, step=step)


def rmsprop_(param, grad, square_avg, *, lr, alpha, eps, weight_decay=0.0, momentum=0.0, centered=False,
             momentum_buffer=None, grad_avg=None, maximize=False):
    """In-place RMSprop step (:class:`fastopt.RMSprop`); ``momentum_buffer`` is required when momentum > 0 and
    ``grad_avg`` when centered."""
    momentum = check_nonnegative(momentum, "momentum value")
    centered = check_flag(centered, "centered")
    args = (check_nonnegative(lr, "learning rate"), check_nonnegative(weight_decay, "weight_decay value"),
            check_nonnegative(eps, "epsilon value"), 0.0, 0.0, momentum, 0.0,
            check_range(alpha, "alpha value", 0.0, 1.0), 0.0, 0.0, _flags(maximize=maximize, centered=centered))
    states = [("square_avg", square_avg), ("momentum_buffer", momentum_buffer if momentum > 0 else None),
              ("grad_avg", grad_avg if centered else None)]
    unused = (() if momentum > 0 else ("momentum_buffer",)) + (() if centered else ("grad_avg",))
    return _run(_optim.RMSPROP, param, grad, states, args, unused=unused)


def adagrad_(param, grad, state_sum, *, step, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False):
    """In-place Adagrad step (:class:`fastopt.Adagrad`); ``state_sum`` starts at initial_accumulator_value."""
    args = (check_nonnegative(lr, "learning rate"), check_nonnegative(weight_decay, "weight_decay value"),
            check_nonnegative(eps, "epsilon value"), 0.0, 0.0, 0.0, 0.0, 0.0,
            check_nonnegative(lr_decay, "lr_decay value"), 0.0, _flags(maximize))
    return _run(_optim.ADAGRAD, param, grad, [("state_sum", state_sum)], args, step=step)


def lion_(param, grad, exp_avg, *, lr, beta1=0.9, beta2=0.99, weight_decay=0.0, maximize=False):
    """In-place Lion step (:class:`fastopt.Lion`)."""
    beta1, beta2 = check_betas((beta1, beta2))
    args = (check_nonnegative(lr, "learning rate"), check_nonnegative(weight_decay, "weight_decay value"), 0.0,
            beta1, beta2, 0.0, 0.0, 0.0, 0.0, 0.0, _flags(maximize))
    return _run(_optim.LION, param, grad, [("exp_avg", exp_avg)], args)
