from fastopt import _optim
from fastopt._validation import check_betas, check_flag, check_nonnegative
from fastopt.optim.optimizer import Optimizer


class Adamax(Optimizer):
    r"""Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2015, sec. 7; ``torch.optim.Adamax``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        u_t &\leftarrow \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \frac{m_t}{u_t}

    State per param: ``step``, ``exp_avg``, ``exp_inf``.
    """

    algo = _optim.ADAMAX
    slots = ("exp_avg", "exp_inf")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_nonnegative(g["eps"], "epsilon value")
        check_betas(g["betas"])
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_flag(g["maximize"], "maximize")

    def _kernel_args(self, g):
        b1, b2 = g["betas"]
        flags = _optim.MAXIMIZE if g["maximize"] else 0
        return (g["lr"], g["weight_decay"], g["eps"], b1, b2, 0.0, 0.0, 0.0, 0.0, 0.0, flags)
