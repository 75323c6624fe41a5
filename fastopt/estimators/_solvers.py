"""The estimators' solvers (``optimizer=``) beyond the element-wise ``fastopt.optim.OPTIMIZERS``: one place that
says which optimizer steps which params and how.

- ``"adafactor"``: ``fastopt.optim.Adafactor`` on every param (factored second moment for the weight matrices,
  a full one for biases and batch-norm scales), lr = ``learning_rate``.
- ``"muon"``: ``fastopt.optim.Muon`` steps only 2-D params. As torch.optim.Muon documents, the others are given to a
  standard optimizer: the weight matrices go to ``Muon(lr=learning_rate, **optimizer_params)``, the biases and
  batch-norm scales and shifts to ``AdamW(lr=learning_rate)`` (torch's defaults otherwise), stepped together by
  ``RoleOptimizer`` (one ``step(grads)``, one ``param_groups`` list, so lr schedules scale both).
- ``"lbfgs"``: full-batch ``fastopt.optim.LBFGS`` as scikit-learn's ``solver="lbfgs"`` (see ``fit_lbfgs``).

Adam's ``optimizer_params`` take one more key, ``eps_placement``: ``"torch"`` (the default, ``fastopt.optim.Adam``:
``m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``) or ``"sklearn"`` (scikit-learn's ``AdamOptimizer``:
``lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)``, eps added to the uncorrected root). The two differ
where sqrt(v) is not much larger than eps (rarely-active weights: digits' constant pixels). ``"sklearn"`` steps the
same kernel with eps / sqrt(1 - beta2^t) at step t, which is scikit-learn's update exactly (up to rounding).

``SparseAdam`` is not a solver: it steps row-sparse ``(indices, rows)`` gradients, and an MLP's are dense.
"""
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from fastopt import optim
from fastopt.regularize import add_penalty_grad_

STOCHASTIC = dict(optim.OPTIMIZERS, adafactor=optim.Adafactor, muon=optim.Muon)
SOLVERS = dict(STOCHASTIC, lbfgs=optim.LBFGS)
NOT_SOLVERS = {"sparseadam": "SparseAdam is not a solver: it steps row-sparse (indices, rows) gradients (an "
                             "embedding table's), and an MLP's gradients are dense; use 'adam' (or 'adamw')"}


def solver_name(optimizer):
    """The lower-case solver name of ``optimizer`` (a name or an optimizer class), or None for another class (an
    element-wise ``Optimizer`` subclass of the user's); ValueError for what is not a solver."""
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name in NOT_SOLVERS:
            raise ValueError(f"optimizer={optimizer!r}: {NOT_SOLVERS[name]}")
        if name not in SOLVERS:
            raise ValueError(f"optimizer must be one of {sorted(SOLVERS)} or an optimizer class, got {optimizer!r}")
        return name
    if optimizer is optim.SparseAdam:
        raise ValueError(f"optimizer=SparseAdam: {NOT_SOLVERS['sparseadam']}")
    for name, cls in SOLVERS.items():
        if optimizer is cls:
            return name
    if isinstance(optimizer, type) and issubclass(optimizer, optim.Optimizer):
        return None
    raise ValueError(f"optimizer must be one of {sorted(SOLVERS)} or a fastopt optimizer class, got {optimizer!r}")


class RoleOptimizer:
    """Several optimizers over disjoint params of one list, stepped as one: ``parts`` is [(optimizer, indices)],
    ``indices`` the positions of its params in the list. ``step(grads)`` gives each its gradients;
    ``param_groups`` lists the groups of all parts (the same dicts), which is what lr schedules read and write."""

    def __init__(self, parts):
        self.parts = [(opt, list(idx)) for opt, idx in parts if idx]

    @property
    def param_groups(self):
        return [g for opt, _ in self.parts for g in opt.param_groups]

    def step(self, grads):
        for opt, idx in self.parts:
            opt.step([grads[i] for i in idx])


class SklearnEpsAdam(optim.Adam):
    """``fastopt.optim.Adam`` with scikit-learn's eps placement: before step t each group's eps is set to
    eps / sqrt(1 - beta2^t) (eps: the group's value at construction), so that the kernel's
    m / (sqrt(v) / sqrt(1 - beta2^t) + eps_t) equals sqrt(1 - beta2^t) * m / (sqrt(v) + eps)."""

    def __init__(self, params, **options):
        super().__init__(params, **options)
        self._sklearn_eps = [float(g["eps"]) for g in self.param_groups]
        self._sklearn_t = 0

    def step(self, grads, **kwargs):
        t = self._sklearn_t + 1
        for group, eps in zip(self.param_groups, self._sklearn_eps):
            group["eps"] = eps / np.sqrt(1.0 - float(group["betas"][1]) ** t)
        result = super().step(grads, **kwargs)
        self._sklearn_t = t
        return result


EPS_PLACEMENTS = ("torch", "sklearn")


def make_optimizer(name, cls, params, lr, options):
    """The optimizer of a stochastic solver (``name`` from ``solver_name``, ``cls`` a user's class when None)."""
    if "eps_placement" in options:
        options = dict(options)
        placement = options.pop("eps_placement")
        if name != "adam":
            raise ValueError(f"optimizer_params: eps_placement is an option of optimizer='adam' only, got "
                             f"optimizer={name or cls!r}")
        if placement not in EPS_PLACEMENTS:
            raise ValueError(f"optimizer_params: eps_placement must be one of {EPS_PLACEMENTS}, got {placement!r}")
        if placement == "sklearn":
            return SklearnEpsAdam(params, lr=lr, **options)
    if name == "muon":
        matrices = [i for i, p in enumerate(params) if p.ndim == 2]
        others = [i for i, p in enumerate(params) if p.ndim != 2]
        parts = [(optim.Muon([params[i] for i in matrices], lr=lr, **options), matrices)]
        if others:
            parts.append((optim.AdamW([params[i] for i in others], lr=lr), others))
        return RoleOptimizer(parts)
    cls = STOCHASTIC[name] if name is not None else cls
    return cls(params, lr=lr, **options)


LBFGS_DEFAULTS = dict(lr=1.0, max_eval=15000, history_size=10, line_search_fn="strong_wolfe")


def fit_lbfgs(est, X, Y):
    """Full-batch L-BFGS, as scikit-learn's ``solver="lbfgs"``: one ``LBFGS.step`` whose closure computes the loss
    (mean over all of X, plus the l1/l2 penalties) and its gradients on the whole training set, with
    ``max_iter`` L-BFGS iterations (``n_iter_``), ``tol`` as scipy's ``gtol`` (sklearn's use: stop when
    max |gradient| <= tol, torch's ``tolerance_grad``), at most 15000 loss evaluations (sklearn's ``max_fun``),
    history 10 (scipy's ``maxcor``), a strong-Wolfe line search from a step of 1 (``learning_rate`` is not
    used, as in sklearn); ``optimizer_params`` overrides any of these. The batch-size, schedule, clipping,
    shuffling and early-stopping parameters do not apply. Dropout masks are fixed during the fit (a fixed
    seed: the same objective at every evaluation). Batch norm normalizes with the full batch's statistics; its
    running statistics are updated at every evaluation. ``comm`` is not supported. Ctrl-C raises
    KeyboardInterrupt at once, leaving the weights as they were before the step (``LBFGS.step`` is all or
    nothing). ``loss_curve_`` gets the loss of every evaluation, ``loss_``
    the loss at the params the fit ends on."""
    net, n = est._net, X.shape[0]
    idx = np.arange(n)
    buffers = (np.empty_like(X), np.empty_like(Y), np.empty((n, est.n_outputs_), X.dtype))
    l1, l2 = est._penalties(n)
    options = {**LBFGS_DEFAULTS, "tolerance_grad": float(est.tol), **(est.optimizer_params or {})}
    opt = optim.LBFGS(net.params, max_iter=int(est.max_iter), **options)
    losses = []

    def closure():
        loss = est._forward_backward(X, Y, idx, n, buffers)
        if l1 or l2:
            loss += add_penalty_grad_(net.weight_grads, net.weights, l1, l2)
        losses.append(float(loss))
        return loss, net.grads

    opt.step(closure)
    iterations = int(opt.state[net.params[0]].get("n_iter", 0))
    est.n_iter_ += iterations
    est.loss_ = closure()[0]               # at the params the step ended on (its last evaluation may be a trial)
    est.loss_curve_.extend(losses)
    if iterations >= est.max_iter:
        warnings.warn(f"lbfgs failed to converge after {iterations} iterations (max_iter reached); increase "
                      "max_iter or scale the data", ConvergenceWarning)
