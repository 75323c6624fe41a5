from fastopt import _optim
from fastopt._validation import check_betas, check_flag, check_nonnegative
from fastopt.optim.optimizer import Optimizer


class RAdam(Optimizer):
    r"""RAdam: rectified Adam (Liu et al., 2020; ``torch.optim.RAdam``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \quad\text{or, decoupled:}\quad
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
            v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
            \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma \frac{m_t}{1 - \beta_1^t}
            \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}\, r_t \quad (\rho_t > 5), \qquad
            \theta_{t-1} - \gamma \frac{m_t}{1 - \beta_1^t} \quad\text{otherwise}

    State per param: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    algo = _optim.RADAM
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_nonnegative(g["eps"], "epsilon value")
        check_betas(g["betas"])
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_flag(g["decoupled_weight_decay"], "decoupled_weight_decay")
        check_flag(g["maximize"], "maximize")

    def _kernel_args(self, g):
        b1, b2 = g["betas"]
        flags = (_optim.MAXIMIZE if g["maximize"] else 0) | (_optim.DECOUPLED if g["decoupled_weight_decay"] else 0)
        return (g["lr"], g["weight_decay"], g["eps"], b1, b2, 0.0, 0.0, 0.0, 0.0, 0.0, flags)
