"""Functional optimizer steps for users who keep their own state: one in-place update of one param.

Each ``<name>_`` of ``FUNCTIONS`` (one per element-wise optimizer of ``fastopt.optim``, made from its spec by
``fastopt.optim._spec``) updates ``param`` and its state arrays in place with the rule of the optimizer class of the
same name (see its docstring) and returns ``param``. ``step`` is the 1-based index of this update (bias corrections
use it). The hyperparameters are checked by the same compiled checks as the class's, with the same messages; then
every array (dtype, shape, layout, overlap); nothing is written if a check fails. A state array the step does not
use (``max_exp_avg_sq`` without amsgrad) may be None and is not touched.

Three optimizers that are not element-wise have a functional form too, calling the one update function
of their class (``update_`` in adafactor.py, sparse_adam.py, muon.py) after the class's own hyperparameter checks
and the same array checks (nothing is written if one fails): ``adafactor_``, ``sparse_adam_`` and ``muon_``.
LBFGS has none: its state is a history of flat vectors and its step calls a closure many times.
"""
import numpy as np

from fastopt._validation import (check_disjoint, check_inplace_array, check_same_dtype, check_same_shape,
                                 input_array, is_integer)
from fastopt.optim import adafactor as _adafactor, muon as _muon, sparse_adam as _sparse_adam
from fastopt.optim._spec import make_functional
from fastopt.optim.specs import SPECS

FUNCTIONS = {spec.functional_name: make_functional(spec) for spec in SPECS}
globals().update(FUNCTIONS)

_MAX_STEP = 2 ** 53


def _checked_step(step):
    """The 1-based index of this update (the spec-made forms' check and messages)."""
    if not is_integer(step):
        raise TypeError(f"Invalid step: expected an integer >= 1 (the index of this update), got "
                        f"{type(step).__name__} {step!r}")
    if not 1 <= step <= _MAX_STEP:
        raise ValueError(f"Invalid step: expected an integer in [1, 2**53] (the index of this update), got {step!r}")
    return int(step)


def _checked_state(param, states, shapes):
    """Each state array (``states``: {name: array}) written in place, of param's dtype and of ``shapes[name]``."""
    for name, a in states.items():
        check_inplace_array(a, name)
        check_same_dtype(param, a, "param", name)
        if a.shape != tuple(shapes[name]):
            raise ValueError(f"{name}: shape {a.shape} does not match the expected {tuple(shapes[name])} "
                             f"(param shape {param.shape})")


def _checked_dense(param, grad, states, shapes):
    """param, grad (itself or one contiguous copy) and state checked, memory overlap last; returns grad."""
    check_inplace_array(param, "param")
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"grad: expected a numpy.ndarray, got {type(grad).__name__}")
    check_same_dtype(param, grad, "param", "grad")
    check_same_shape(param, grad, "param's", "grad")
    grad = input_array(grad, "grad")
    _checked_state(param, states, shapes)
    check_disjoint([param, *states.values()], ["param", *states], [grad], ["grad"])
    return grad


def adafactor_(param, grad, *state, step, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0,
               maximize=False):
    r"""One Adafactor update of ``param`` in place (``fastopt.optim.Adafactor``'s rule, torch.optim.Adafactor's),
    with the caller's state: ``adafactor_(param, grad, row_var, col_var, step=t, ...)`` for a param of 2+ dims
    (``row_var`` of shape ``(..., rows, 1)``, ``col_var`` ``(..., 1, cols)``), ``adafactor_(param, grad,
    variance, step=t, ...)`` for 0 or 1 dims (``variance``: the param's shape); zeros before the first step.

    With :math:`t` = step, :math:`w_t = t^{\tau}` (:math:`\tau` = beta2_decay), :math:`\rho_t = \min(\gamma,
    1/\sqrt t)`, :math:`\alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta))\,\rho_t`: :math:`\theta \leftarrow
    \theta(1 - \gamma\lambda)`; the row and column means of :math:`g^2` are lerped into ``row_var``, ``col_var``
    by :math:`w_t` (0-1 dims: :math:`g^2` into ``variance``), :math:`\hat V` = row_var col_var / max(mean(row_var),
    :math:`\epsilon_1`); :math:`U = g / \sqrt{\max(\hat V, \epsilon_1^2)}`, :math:`\theta \leftarrow \theta -
    \alpha_t U / \max(1, \mathrm{RMS}(U)/d)` (see ``Adafactor``'s docstring). ``eps = (None, eps2)``: eps1 is
    the machine epsilon of param's dtype. Hyperparameters checked by the class's checks; arrays (dtype, shape,
    layout, overlap) and step next; nothing is written if a check fails. The same bits as ``Adafactor.step``.
    Returns ``param``."""
    hp = _adafactor.checked_hypers(dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                                        maximize=maximize), "adafactor_")
    step = _checked_step(step)
    check_inplace_array(param, "param")
    shapes = _adafactor.state_shapes(param)
    if len(state) != len(shapes):
        raise TypeError(f"adafactor_ takes the state {' and '.join(shapes)} for a param of {param.ndim} dims, got "
                        f"{len(state)} state array(s)")
    states = dict(zip(shapes, state))
    grad = _checked_dense(param, grad, states, shapes)
    if hp["eps1"] is None:
        hp["eps1"] = float(np.finfo(param.dtype).eps)
    _adafactor.update_(param, grad, states, step, hp)
    return param


def sparse_adam_(param, indices, rows, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 maximize=False):
    r"""One lazy-Adam update of the rows ``indices`` of the 2-D ``param`` in place (``fastopt.optim.SparseAdam``'s
    rule, torch.optim.SparseAdam's), from the row-sparse gradient ``(indices, rows)`` (integer indices of shape
    (k,) in [0, n_rows), rows (k, n_cols) of param's dtype; repeats summed first), with the caller's
    ``exp_avg`` and ``exp_avg_sq`` (param's shape, zeros before the first step) and ``step`` = t:

    .. math::
        m_I \leftarrow m_I + (1 - \beta_1)(g - m_I), \quad v_I \leftarrow v_I + (1 - \beta_2)(g^2 - v_I), \quad
        \theta_I \leftarrow \theta_I - \frac{\gamma \sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
            \frac{m_I}{\sqrt{v_I} + \epsilon}

    (:math:`g` negated if ``maximize``); rows not in ``indices`` are left as they are. Hyperparameters checked
    by the class's checks; arrays and step next; nothing is written if a check fails. The same bits as
    ``SparseAdam.step``. Returns ``param``."""
    hp = _sparse_adam.checked_hypers(dict(lr=lr, betas=betas, eps=eps, maximize=maximize), "sparse_adam_")
    step = _checked_step(step)
    check_inplace_array(param, "param")
    if param.ndim != 2:
        raise ValueError(f"param: sparse_adam_ steps 2-D params (rows indexed by the gradient), got shape "
                         f"{param.shape}")
    indices, rows = _sparse_adam.checked_sparse_grad(param, indices, rows, "grad", "param")
    states = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    _checked_state(param, states, {"exp_avg": param.shape, "exp_avg_sq": param.shape})
    check_disjoint([param, exp_avg, exp_avg_sq], ["param", "exp_avg", "exp_avg_sq"], [indices, rows],
                   ["grad indices", "grad rows"])
    _sparse_adam.update_(param, indices, rows, exp_avg, exp_avg_sq, step, hp)
    return param


def muon_(param, grad, momentum_buffer, *, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
          ns_coefficients=_muon.NS_COEFFICIENTS, eps=1e-7, ns_steps=5, adjust_lr_fn=None):
    r"""One Muon update of the 2-D ``param`` in place (``fastopt.optim.Muon``'s rule, torch.optim.Muon's), with the
    caller's ``momentum_buffer`` (param's shape, zeros before the first step): :math:`B \leftarrow B + (1 -
    \mu)(g - B)`; :math:`U = g + \mu(B - g)` (nesterov) or :math:`B`; :math:`O` = ``ns_steps`` Newton–Schulz
    iterations from :math:`U / \max(\lVert U \rVert_F, \epsilon)`; :math:`\theta \leftarrow \theta(1 -
    \gamma\lambda) - \gamma' O` with :math:`\gamma'` from ``adjust_lr_fn`` (see ``Muon``'s docstring).
    Hyperparameters checked by the class's checks; arrays next; nothing is written if a check fails. The same
    bits as ``Muon.step``. Returns ``param``."""
    hypers = _muon.checked_hypers(dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                       ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                                       adjust_lr_fn=adjust_lr_fn), "muon_")
    check_inplace_array(param, "param")
    if param.ndim != 2:
        raise ValueError(f"param has shape {param.shape}: muon_ steps 2-D params only")
    grad = _checked_dense(param, grad, {"momentum_buffer": momentum_buffer}, {"momentum_buffer": param.shape})
    _muon.update_(param, grad, momentum_buffer, hypers, _muon._Workspace(param.shape, param.dtype))
    return param


NOT_ELEMENTWISE = {"adafactor_": adafactor_, "sparse_adam_": sparse_adam_, "muon_": muon_}

__all__ = list(FUNCTIONS) + list(NOT_ELEMENTWISE)
