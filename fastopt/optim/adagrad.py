from fastopt import _optim
from fastopt._validation import check_flag, check_nonnegative
from fastopt.optim.optimizer import Optimizer


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011; ``torch.optim.Adagrad``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        \tilde\gamma &= \gamma / (1 + (t - 1)\eta) \\
        s_t &\leftarrow s_{t-1} + g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \tilde\gamma\, g_t / (\sqrt{s_t} + \epsilon)

    with :math:`\eta` = lr_decay and :math:`s_0` = initial_accumulator_value. State per param: ``step``, ``sum``.
    """

    algo = _optim.ADAGRAD
    slots = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_nonnegative(g["lr_decay"], "lr_decay value")
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_nonnegative(g["initial_accumulator_value"], "initial_accumulator_value")
        check_nonnegative(g["eps"], "epsilon value")
        check_flag(g["maximize"], "maximize")

    def _kernel_args(self, g):
        flags = _optim.MAXIMIZE if g["maximize"] else 0
        return (g["lr"], g["weight_decay"], g["eps"], 0.0, 0.0, 0.0, 0.0, 0.0, g["lr_decay"], 0.0, flags)

    def _slot_initial_value(self, group, name):
        return group["initial_accumulator_value"]
