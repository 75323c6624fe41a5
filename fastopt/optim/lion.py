from fastopt import _optim
from fastopt._validation import check_betas, check_flag, check_nonnegative
from fastopt.optim.optimizer import Optimizer


class Lion(Optimizer):
    r"""Lion, evolved sign momentum (Chen et al., 2023, Algorithm 2; ``optax.lion``).

    .. math::
        c_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,(\operatorname{sign}(c_t) + \lambda \theta_{t-1}) \\
        m_t &\leftarrow \beta_2 m_{t-1} + (1 - \beta_2) g_t

    with sign(0) = 0. Use a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger.
    State per param: ``step``, ``exp_avg``.
    """

    algo = _optim.LION
    slots = ("exp_avg",)

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_betas(g["betas"])
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_flag(g["maximize"], "maximize")

    def _kernel_args(self, g):
        b1, b2 = g["betas"]
        flags = _optim.MAXIMIZE if g["maximize"] else 0
        return (g["lr"], g["weight_decay"], 0.0, b1, b2, 0.0, 0.0, 0.0, 0.0, 0.0, flags)
