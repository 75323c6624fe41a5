from fastopt import _optim
from fastopt._validation import check_flag, check_nonnegative, check_range
from fastopt.optim.optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay
    (``torch.optim.SGD``).

    With :math:`g_t` the gradient (negated if ``maximize``), :math:`\mu` = momentum, :math:`\tau` = dampening,
    :math:`\lambda` = weight_decay, :math:`\gamma` = lr:

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        b_t &\leftarrow g_t \text{ at the first step, else } \mu b_{t-1} + (1 - \tau) g_t \qquad (\mu \ne 0) \\
        g_t &\leftarrow g_t + \mu b_t \text{ (nesterov) or } b_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma g_t

    State per param: ``momentum_buffer`` (when momentum != 0) and ``step``.
    """

    algo = _optim.SGD
    slots = ("momentum_buffer",)
    fresh_slot0 = True

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_nonnegative(g["momentum"], "momentum value")
        check_range(g["dampening"], "dampening value", -1e300, 1e300)
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_flag(g["maximize"], "maximize")
        if check_flag(g["nesterov"], "nesterov") and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening "
                             f"(momentum={g['momentum']}, dampening={g['dampening']})")

    def _kernel_args(self, g):
        flags = (_optim.MAXIMIZE if g["maximize"] else 0) | (_optim.NESTEROV if g["nesterov"] else 0)
        return (g["lr"], g["weight_decay"], 0.0, 0.0, 0.0, g["momentum"], g["dampening"], 0.0, 0.0, 0.0, flags)

    def _needed_slots(self, g):
        return 1 if g["momentum"] != 0 else 0
