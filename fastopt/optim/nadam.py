from fastopt import _optim
from fastopt._validation import check_betas, check_flag, check_nonnegative
from fastopt.optim.optimizer import Optimizer


class NAdam(Optimizer):
    r"""NAdam: Adam with Nesterov momentum (Dozat, 2016; ``torch.optim.NAdam``), with momentum decay.

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \quad\text{or, decoupled:}\quad
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
        \mu_t &= \beta_1 \left(1 - \tfrac12\, 0.96^{t\,\psi}\right), \qquad
            \mu_{t+1} = \beta_1 \left(1 - \tfrac12\, 0.96^{(t+1)\psi}\right) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
            v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        d_t &= \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma \frac{1 - \mu_t}{1 - \prod_{i \le t} \mu_i} \frac{g_t}{d_t}
            - \gamma \frac{\mu_{t+1}}{1 - \prod_{i \le t+1} \mu_i} \frac{m_t}{d_t}

    with :math:`\psi` = momentum_decay. State per param: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``.
    """

    algo = _optim.NADAM
    slots = ("exp_avg", "exp_avg_sq")
    uses_aux = True

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_nonnegative(g["eps"], "epsilon value")
        check_betas(g["betas"])
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_nonnegative(g["momentum_decay"], "momentum_decay value")
        check_flag(g["decoupled_weight_decay"], "decoupled_weight_decay")
        check_flag(g["maximize"], "maximize")

    def _kernel_args(self, g):
        b1, b2 = g["betas"]
        flags = (_optim.MAXIMIZE if g["maximize"] else 0) | (_optim.DECOUPLED if g["decoupled_weight_decay"] else 0)
        return (g["lr"], g["weight_decay"], g["eps"], b1, b2, 0.0, 0.0, 0.0, 0.0, g["momentum_decay"], flags)
