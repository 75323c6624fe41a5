from fastopt import _optim
from fastopt._validation import check_betas, check_flag, check_nonnegative
from fastopt.optim.optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with optional AMSGrad, L2 or decoupled weight decay (``torch.optim.Adam``).

    With :math:`g_t` the gradient (negated if ``maximize``), :math:`\gamma` = lr, :math:`\lambda` = weight_decay:

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \quad\text{or, decoupled:}\quad
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat v_t &\leftarrow \max(\hat v_{t-1}, v_t) \text{ (amsgrad), else } v_t \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    State per param: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
    """

    algo = _optim.ADAM
    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))

    def _check_group(self, g):
        check_nonnegative(g["lr"], "learning rate")
        check_nonnegative(g["eps"], "epsilon value")
        check_betas(g["betas"])
        check_nonnegative(g["weight_decay"], "weight_decay value")
        check_flag(g["amsgrad"], "amsgrad")
        check_flag(g["maximize"], "maximize")
        if "decoupled_weight_decay" in g:
            check_flag(g["decoupled_weight_decay"], "decoupled_weight_decay")

    def _kernel_args(self, g):
        b1, b2 = g["betas"]
        flags = ((_optim.MAXIMIZE if g["maximize"] else 0) | (_optim.AMSGRAD if g["amsgrad"] else 0)
                 | (_optim.DECOUPLED if g.get("decoupled_weight_decay", self._decoupled) else 0))
        return (g["lr"], g["weight_decay"], g["eps"], b1, b2, 0.0, 0.0, 0.0, 0.0, 0.0, flags)

    def _needed_slots(self, g):
        return 7 if g["amsgrad"] else 3


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay (``torch.optim.AdamW``).

    .. math::
        \theta_{t-1} &\leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    with :math:`\hat v_t` as in :class:`Adam` (amsgrad). Default weight_decay 1e-2.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        Optimizer.__init__(self, params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                              amsgrad=amsgrad, maximize=maximize))
