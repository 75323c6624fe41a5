from fastopt import _optim
from fastopt._validation import check_flag, check_nonnegative, check_range
from fastopt.optim.optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012; centered form of Graves, 2013; ``torch.optim.RMSprop``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        s_t &\leftarrow \alpha s_{t-1} + (1 - \alpha) g_t^2 \\
        a_t &\leftarrow \alpha a_{t-1} + (1 - \alpha) g_t, \qquad
            d_t = \sqrt{s_t - a_t^2} + \epsilon \text{ (centered), else } \sqrt{s_t} + \epsilon \\
        b_t &\leftarrow \mu b_{t-1} + g_t / d_t, \qquad \theta_t \leftarrow \theta_{t-1} - \gamma b_t
            \quad (\mu > 0), \qquad \text{else } \theta_t \leftarrow \theta_{t-1} - \gamma g_t / d_t

    State per param: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).
    """

    algo = _optim.RMSPROP
    slots = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_nonnegative(g["eps"], "epsilon value")
        check_range(g["alpha"], "alpha value", 0.0, 1.0)
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_nonnegative(g["momentum"], "momentum value")
        check_flag(g["centered"], "centered")
        check_flag(g["maximize"], "maximize")

    def _kernel_args(self, g):
        flags = (_optim.MAXIMIZE if g["maximize"] else 0) | (_optim.CENTERED if g["centered"] else 0)
        return (g["lr"], g["weight_decay"], g["eps"], 0.0, 0.0, g["momentum"], 0.0, g["alpha"], 0.0, 0.0, flags)

    def _needed_slots(self, g):
        return 1 | (2 if g["momentum"] > 0 else 0) | (4 if g["centered"] else 0)
