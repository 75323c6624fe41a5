r"""The optimizers, each declared once: torch's names, defaults and checks; state slots; kernel; update rule.

Everything else derives from ``SPECS`` (see ``_spec.py``). In the formulas, :math:`g_t` is the gradient (negated if
``maximize``), :math:`\gamma` = lr, :math:`\lambda` = weight_decay, :math:`\theta` the param.
"""
from fastopt.optim._spec import (BETAS, BETAS3, COPY_OF_PARAM, FINITE, FLAG, NONNEG, OPTPOS, PAIR, UNIT, Hyper,
                                 OptimizerSpec, Slot)


def _lr(default):
    return Hyper("lr", default, NONNEG, "lr", "learning rate", functional_required=True)


def _betas(default, required=True):
    return Hyper("betas", default, BETAS, "beta1", functional_required=required)


def _eps(default, required=True):
    return Hyper("eps", default, NONNEG, "eps", "epsilon value", functional_required=required)


def _wd(default=0.0, required=False):
    return Hyper("weight_decay", default, NONNEG, "weight_decay", "weight_decay value",
                 functional_required=required)


def _flag(name, kwonly=False):
    return Hyper(name, False, FLAG, name, kwonly=kwonly)


MAXIMIZE = _flag("maximize", kwonly=True)


def _nesterov_rule(hp):
    d = hp.as_dict()
    if d["nesterov"] and (d["momentum"] <= 0 or d["dampening"] != 0):
        raise ValueError(f"Nesterov momentum requires a momentum and zero dampening "
                         f"(momentum={d['momentum']}, dampening={d['dampening']})")


SGD = OptimizerSpec(
    "SGD", "sgd",
    (_lr(1e-3), Hyper("momentum", 0.0, NONNEG, "momentum", "momentum value"),
     Hyper("dampening", 0.0, FINITE, "dampening", "dampening value"), _wd(), _flag("nesterov"), MAXIMIZE),
    (Slot("momentum_buffer", optional=True, quantize="signed"),),
    r"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay
    (``torch.optim.SGD``).

    With :math:`\mu` = momentum, :math:`\tau` = dampening:

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        b_t &\leftarrow g_t \text{ at the first step, else } \mu b_{t-1} + (1 - \tau) g_t \qquad (\mu \ne 0) \\
        g_t &\leftarrow g_t + \mu b_t \text{ (nesterov) or } b_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma g_t

    State per param: ``momentum_buffer`` (when momentum != 0) and ``step``.
    """,
    fresh_slot0=True, uses_step=False, cross_check=_nesterov_rule, bench={"lr": 1e-2, "momentum": 0.9},
    functional_doc="``momentum_buffer`` is required when momentum != 0; with ``first_step=True`` it is set to the "
                   "gradient (torch's first-step rule) instead of being decayed.")

_ADAM_DOC = r"""Adam (Kingma & Ba, 2015) with optional AMSGrad, L2 or decoupled weight decay (``torch.optim.Adam``).

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
_ADAM_SLOTS = (Slot("exp_avg", quantize="signed"), Slot("exp_avg_sq", quantize="unsigned"),
               Slot("max_exp_avg_sq", keyword=True, optional=True, quantize="unsigned"))
_ADAM_FDOC = "``max_exp_avg_sq`` is required when amsgrad."

ADAM = OptimizerSpec(
    "Adam", "adam",
    (_lr(1e-3), _betas((0.9, 0.999)), _eps(1e-8), _wd(0.0, required=True), _flag("amsgrad"), MAXIMIZE,
     _flag("decoupled_weight_decay", kwonly=True)),
    _ADAM_SLOTS, _ADAM_DOC, functional_doc=_ADAM_FDOC + " L2 weight decay unless ``decoupled_weight_decay``.")

ADAMW = OptimizerSpec(
    "AdamW", "adam",
    (_lr(1e-3), _betas((0.9, 0.999)), _eps(1e-8), _wd(1e-2, required=True), _flag("amsgrad"), MAXIMIZE),
    _ADAM_SLOTS,
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay (``torch.optim.AdamW``).

    .. math::
        \theta_{t-1} &\leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    with :math:`\hat v_t` as in :class:`Adam` (amsgrad). Default weight_decay 1e-2.
    """,
    fixed={"decoupled_weight_decay": True}, parent="Adam", functional_doc=_ADAM_FDOC)

ADAMAX = OptimizerSpec(
    "Adamax", "adamax", (_lr(2e-3), _betas((0.9, 0.999)), _eps(1e-8), _wd(), MAXIMIZE),
    (Slot("exp_avg", quantize="signed"), Slot("exp_inf", quantize="unsigned")),
    r"""Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2015, sec. 7; ``torch.optim.Adamax``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        u_t &\leftarrow \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \frac{m_t}{u_t}

    State per param: ``step``, ``exp_avg``, ``exp_inf``.
    """)

NADAM = OptimizerSpec(
    "NAdam", "nadam",
    (_lr(2e-3), _betas((0.9, 0.999)), _eps(1e-8), _wd(),
     Hyper("momentum_decay", 4e-3, NONNEG, "momentum_decay", "momentum_decay value"),
     _flag("decoupled_weight_decay"), MAXIMIZE),
    (Slot("exp_avg", quantize="signed"), Slot("exp_avg_sq", quantize="unsigned")),
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
    """,
    aux="mu_product",
    functional_doc=r"``mu_product`` is a 0-d float64 array holding :math:`\prod_{i<t} \mu_i` (1.0 before the first "
                   "step), updated in place.")

RADAM = OptimizerSpec(
    "RAdam", "radam", (_lr(1e-3), _betas((0.9, 0.999)), _eps(1e-8), _wd(), _flag("decoupled_weight_decay"), MAXIMIZE),
    (Slot("exp_avg", quantize="signed"), Slot("exp_avg_sq", quantize="unsigned")),
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
    """)

RMSPROP = OptimizerSpec(
    "RMSprop", "rmsprop",
    (_lr(1e-2), Hyper("alpha", 0.99, UNIT, "alpha", "alpha value", functional_required=True), _eps(1e-8), _wd(),
     Hyper("momentum", 0.0, NONNEG, "momentum", "momentum value"), _flag("centered"), MAXIMIZE),
    (Slot("square_avg", quantize="unsigned"), Slot("momentum_buffer", keyword=True, optional=True, quantize="signed"),
     Slot("grad_avg", keyword=True, optional=True, quantize="signed")),
    r"""RMSprop (Hinton, 2012; centered form of Graves, 2013; ``torch.optim.RMSprop``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        s_t &\leftarrow \alpha s_{t-1} + (1 - \alpha) g_t^2 \\
        a_t &\leftarrow \alpha a_{t-1} + (1 - \alpha) g_t, \qquad
            d_t = \sqrt{s_t - a_t^2} + \epsilon \text{ (centered), else } \sqrt{s_t} + \epsilon \\
        b_t &\leftarrow \mu b_{t-1} + g_t / d_t, \qquad \theta_t \leftarrow \theta_{t-1} - \gamma b_t
            \quad (\mu > 0), \qquad \text{else } \theta_t \leftarrow \theta_{t-1} - \gamma g_t / d_t

    State per param: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).
    """,
    uses_step=False,
    functional_doc="``momentum_buffer`` is required when momentum > 0 and ``grad_avg`` when centered.")

ADAGRAD = OptimizerSpec(
    "Adagrad", "adagrad",
    (_lr(1e-2), Hyper("lr_decay", 0.0, NONNEG, "lr_decay", "lr_decay value"), _wd(),
     Hyper("initial_accumulator_value", 0.0, NONNEG), _eps(1e-10, required=False), MAXIMIZE),
    (Slot("sum", arg="state_sum", initial="initial_accumulator_value", quantize="unsigned"),),
    r"""Adagrad (Duchi et al., 2011; ``torch.optim.Adagrad``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        \tilde\gamma &= \gamma / (1 + (t - 1)\eta) \\
        s_t &\leftarrow s_{t-1} + g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \tilde\gamma\, g_t / (\sqrt{s_t} + \epsilon)

    with :math:`\eta` = lr_decay and :math:`s_0` = initial_accumulator_value. State per param: ``step``, ``sum``.
    """,
    functional_doc="``state_sum`` starts at initial_accumulator_value.")

LION = OptimizerSpec(
    "Lion", "lion", (_lr(1e-4), _betas((0.9, 0.99), required=False), _wd(), MAXIMIZE),
    (Slot("exp_avg", quantize="signed"),),
    r"""Lion, evolved sign momentum (Chen et al., 2023, Algorithm 2; ``optax.lion``).

    .. math::
        c_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,(\operatorname{sign}(c_t) + \lambda \theta_{t-1}) \\
        m_t &\leftarrow \beta_2 m_{t-1} + (1 - \beta_2) g_t

    with sign(0) = 0. Use a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger.
    State per param: ``step``, ``exp_avg``.
    """,
    uses_step=False)

ADADELTA = OptimizerSpec(
    "Adadelta", "adadelta",
    (_lr(1.0), Hyper("rho", 0.9, UNIT, "rho", "rho value"), _eps(1e-6, required=False), _wd(), MAXIMIZE),
    (Slot("square_avg", quantize="unsigned"), Slot("acc_delta", quantize="unsigned")),
    r"""Adadelta (Zeiler, 2012; ``torch.optim.Adadelta``).

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        s_t &\leftarrow \rho s_{t-1} + (1 - \rho) g_t^2 \\
        \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{s_t + \epsilon}}\, g_t \\
        u_t &\leftarrow \rho u_{t-1} + (1 - \rho) \Delta_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma \Delta_t

    State per param: ``step``, ``square_avg``, ``acc_delta``.
    """,
    uses_step=False)


def _eta_rule(hp):
    d = hp.as_dict()
    if not 0.0 < d["etaminus"] < 1.0 < d["etaplus"]:
        raise ValueError(f"Invalid eta values: {d['etaminus']}, {d['etaplus']}")


RPROP = OptimizerSpec(
    "Rprop", "rprop",
    (_lr(1e-2), Hyper("etas", (0.5, 1.2), PAIR, "etaminus", "eta values"),
     Hyper("step_sizes", (1e-6, 50.0), PAIR, "step_size_min", "step_sizes"), MAXIMIZE),
    (Slot("prev", quantize="signed"), Slot("step_size", initial="lr", quantize="unsigned")),
    r"""Rprop, resilient backpropagation (Riedmiller & Braun, 1993; ``torch.optim.Rprop``).

    With :math:`\eta^-, \eta^+` = etas and :math:`\Gamma_{\min}, \Gamma_{\max}` = step_sizes, element by element:

    .. math::
        c_t &= \operatorname{sign}(g_t\, g_{t-1}), \qquad
            f_t = \eta^+ \ (c_t > 0), \quad \eta^- \ (c_t < 0), \quad 1 \ (c_t = 0) \\
        \Gamma_t &\leftarrow \operatorname{clamp}(\Gamma_{t-1} f_t, \Gamma_{\min}, \Gamma_{\max}) \\
        g_t &\leftarrow 0 \text{ where } c_t < 0 \\
        \theta_t &\leftarrow \theta_{t-1} - \operatorname{sign}(g_t)\, \Gamma_t

    with :math:`\Gamma_0` = lr (the step size before the first step) and :math:`g_{t-1}` the previous step's
    :math:`g` after the zeroing (``prev``, 0 at first). sign(NaN) = 0, as torch's. State per param: ``step``,
    ``prev``, ``step_size``.
    """,
    uses_step=False, cross_check=_eta_rule,
    functional_doc="``step_size`` starts at lr (``np.full_like(param, lr)``), ``prev`` at 0.")

ASGD = OptimizerSpec(
    "ASGD", "asgd",
    (_lr(1e-2), Hyper("lambd", 1e-4, NONNEG, "lambd", "lambd value"),
     Hyper("alpha", 0.75, FINITE, "alpha", "alpha value"), Hyper("t0", 1e6, FINITE, "t0", "t0 value"), _wd(),
     MAXIMIZE),
    (Slot("ax"),),
    r"""Averaged SGD (Polyak & Juditsky, 1992; the step rule of ``torch.optim.ASGD``).

    With :math:`\lambda_d` = lambd, :math:`\alpha`, :math:`t_0`, and :math:`\eta_1 = \gamma`:

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        \theta_t &\leftarrow \theta_{t-1} (1 - \lambda_d \eta_t) - \eta_t g_t \\
        \mu_t &= 1 \ (t = 1), \qquad \frac{1}{\max(1,\ t - 1 - t_0)} \ (t > 1) \\
        \bar\theta_t &\leftarrow \bar\theta_{t-1} + (\theta_t - \bar\theta_{t-1})\, \mu_t
            \ (\mu_t \ne 1), \qquad \theta_t \ (\mu_t = 1) \\
        \eta_{t+1} &= \frac{\gamma}{(1 + \lambda_d \gamma t)^{\alpha}}

    :math:`\bar\theta` (``ax``) is the averaged iterate: evaluate with it. :math:`\eta` is kept as a float64 scalar
    (torch keeps it, and :math:`\mu`, as float32 scalars unless its default dtype is float64); :math:`\mu` is a
    function of the step. State per param: ``step``, ``eta``, ``ax``.
    """,
    aux="eta", aux_initial="lr",
    functional_doc=r"``eta`` is a 0-d float64 array holding :math:`\eta_t` (lr before the first step), advanced in "
                   "place to the next step's.")

ADEMAMIX = OptimizerSpec(
    "AdEMAMix", "ademamix",
    (_lr(1e-3), Hyper("betas", (0.9, 0.999, 0.9999), BETAS3, "beta1", functional_required=True), _wd(),
     Hyper("weight_decouple", False, FLAG, "decoupled_weight_decay"), Hyper("fixed_decay", False, FLAG, "fixed_decay"),
     Hyper("alpha", 5.0, NONNEG, "alpha", "alpha value"),
     Hyper("t_alpha_beta3", None, OPTPOS, "t_alpha_beta3", "t_alpha_beta3 value"), _eps(1e-8), MAXIMIZE),
    (Slot("exp_avg", quantize="signed"), Slot("exp_avg_sq", quantize="unsigned"),
     Slot("exp_avg_slow", quantize="signed")),
    r"""AdEMAMix: Adam with a mixture of a fast and a slow momentum (Pagliardini et al., 2024;
    ``pytorch_optimizer.AdEMAMix``).

    With :math:`T` = t_alpha_beta3 (None: no warm-up, :math:`\alpha_t = \alpha`, :math:`\beta_{3,t} = \beta_3`):

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \quad\text{or, weight_decouple:}\quad
            \theta_{t-1} \leftarrow \theta_{t-1}(1 - \lambda\gamma) \ (\lambda \text{ if fixed_decay}) \\
        \alpha_t &= \min(t\alpha / T,\ \alpha), \qquad
            \beta_{3,t} = \min\left(\exp\frac{\ln\beta_1 \ln\beta_3}{(1 - t/T)\ln\beta_3 + (t/T)\ln\beta_1},
            \ \beta_3\right) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
            v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad
            s_t \leftarrow \beta_{3,t} s_{t-1} + (1 - \beta_{3,t}) g_t \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,
            \frac{m_t / (1 - \beta_1^t) + \alpha_t s_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    State per param: ``step``, ``exp_avg``, ``exp_avg_sq``, ``exp_avg_slow``.
    """, peer=("pytorch_optimizer", "AdEMAMix"))

ADAN = OptimizerSpec(
    "Adan", "adan",
    (_lr(1e-3), Hyper("betas", (0.98, 0.92, 0.99), BETAS3, "beta1", functional_required=True), _wd(),
     Hyper("weight_decouple", False, FLAG, "decoupled_weight_decay"), _eps(1e-8), MAXIMIZE),
    (Slot("exp_avg", quantize="signed"), Slot("exp_avg_sq", quantize="unsigned"),
     Slot("exp_avg_diff", quantize="signed"), Slot("previous_grad", quantize="signed")),
    r"""Adan: adaptive Nesterov momentum (Xie et al., 2022; ``pytorch_optimizer.Adan``'s semantics).

    With :math:`d_t = g_t - g_{t-1}` (0 at the first step):

    .. math::
        m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
            n_t \leftarrow \beta_2 n_{t-1} + (1 - \beta_2) d_t \\
        v_t &\leftarrow \beta_3 v_{t-1} + (1 - \beta_3) (g_t + \beta_2 d_t)^2, \qquad
            \delta_t = \sqrt{v_t} / \sqrt{1 - \beta_3^t} + \epsilon \\
        \theta_{t-1} &\leftarrow \theta_{t-1} (1 - \gamma\lambda) \quad\text{(weight_decouple)} \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \frac{m_t}{\delta_t}
            - \frac{\gamma \beta_2}{1 - \beta_2^t} \frac{n_t}{\delta_t}, \qquad
            \theta_t \leftarrow \theta_t / (1 + \gamma\lambda) \quad\text{(otherwise: the proximal decay)}

    State per param: ``step``, ``exp_avg``, ``exp_avg_sq``, ``exp_avg_diff``, ``previous_grad`` (:math:`g_{t-1}`,
    negated if ``maximize``). pytorch_optimizer's ``max_grad_norm`` (a global clip before the step) is not an
    argument: clip with :func:`fastopt.clip_grad_norm_` first (its divisor is ``norm + 1e-6``, not ``norm + eps``).
    """, peer=("pytorch_optimizer", "Adan"))

LARS = OptimizerSpec(
    "LARS", "lars",
    (_lr(1e-3), _wd(), Hyper("momentum", 0.9, NONNEG, "momentum", "momentum value"),
     Hyper("dampening", 0.0, FINITE, "dampening", "dampening value"),
     Hyper("trust_coefficient", 1e-3, NONNEG, "trust_coefficient", "trust_coefficient value"), _flag("nesterov"),
     MAXIMIZE),
    (Slot("momentum_buffer", optional=True, quantize="signed"),),
    r"""LARS: layer-wise adaptive rate scaling (You et al., 2017; ``pytorch_optimizer.LARS``'s semantics).

    For a param of 2 or more dimensions, with :math:`\eta` = trust_coefficient and the norms of the param and of
    the gradient computed in the same call (a first sweep; the same bits at any thread count):

    .. math::
        r &= rac{\eta \lVert	heta_{t-1}
Vert}{\lVert g_t
Vert + \lambda \lVert	heta_{t-1}
Vert}
            \ (1 	ext{ if } \lVert	heta_{t-1}
Vert = 0 	ext{ or the denominator is } 0), \qquad
            g_t \leftarrow r (g_t + \lambda 	heta_{t-1}) \
        b_t &\leftarrow \mu b_{t-1} + (1 - 	au) g_t \ (b_0 = 0,\ \mu 
e 0), \qquad
            g_t \leftarrow g_t + \mu b_t 	ext{ (nesterov) or } b_t \
        	heta_t &\leftarrow 	heta_{t-1} - \gamma g_t

    Params of 0 or 1 dimensions (biases, norms' scales) take neither the ratio nor the weight decay, as in the
    reference. State per param: ``momentum_buffer`` (momentum != 0) and ``step``.
    """, uses_step=False, elementwise=False, norm_sweep=2, peer=("pytorch_optimizer", "LARS"),
    bench={"lr": 1e-2})

LAMB = OptimizerSpec(
    "LAMB", "lamb",
    (_lr(1e-3), _betas((0.9, 0.999)), _wd(), Hyper("weight_decouple", True, FLAG, "decoupled_weight_decay"),
     Hyper("fixed_decay", False, FLAG, "fixed_decay"), Hyper("grad_averaging", True, FLAG, "grad_averaging"),
     Hyper("adam", False, FLAG, "adam"), Hyper("adam_debias", False, FLAG, "adam_debias"), _eps(1e-6), MAXIMIZE),
    (Slot("exp_avg", quantize="signed"), Slot("exp_avg_sq", quantize="unsigned")),
    r"""LAMB: Adam's update scaled by a trust ratio per tensor (You et al., 2019; ``pytorch_optimizer.Lamb``'s
    semantics: the paper's version 3, the second moment without bias correction).

    With :math:`\beta_3 = 1 - \beta_1` (grad_averaging) or 1, and the two norms computed in the same call (a first
    sweep that also updates the moments; the same bits at any thread count):

    .. math::
        m_t &\leftarrow \beta_1 m_{t-1} + \beta_3 g_t, \qquad v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_{t-1} &\leftarrow \theta_{t-1}(1 - \gamma\lambda) \ (\lambda \text{ if fixed_decay})
            \quad\text{(weight_decouple)} \\
        u_t &= \frac{m_t}{\sqrt{v_t} + \epsilon} \ (+ \lambda \theta_{t-1} \text{ without weight_decouple}),
            \qquad r_t = \frac{\min(\lVert\theta_{t-1}\rVert, 10)}{\lVert u_t\rVert + \epsilon}
            \ (1 \text{ if either norm is 0, or with adam}) \\
        \theta_t &\leftarrow \theta_{t-1} - s_t r_t u_t, \qquad
            s_t = \gamma / (1 - \beta_1^t) \text{, or } \gamma \text{ with adam_debias}

    Every param takes the ratio, whatever its dimensions. State per param: ``step``, ``exp_avg``, ``exp_avg_sq``.
    Not arguments: the peer's ``rectify`` (use :class:`RAdam`'s rule without a ratio) and ``pre_norm`` /
    ``max_grad_norm`` (a global clip before the step: :func:`fastopt.clip_grad_norm_` first, whose divisor
    ``norm + 1e-6`` is the peer's ``norm + eps`` at the default eps).
    """, elementwise=False, norm_sweep=3, peer=("pytorch_optimizer", "Lamb"))

def _schedulefree_hypers():
    return (Hyper("warmup_steps", 0, NONNEG, "warmup_steps", "warmup_steps value"),
            Hyper("r", 0.0, FINITE, "r", "r value"),
            Hyper("weight_lr_power", 2.0, FINITE, "weight_lr_power", "weight_lr_power value"))


def _momentum_exclusive(hp):
    momentum = hp.as_dict()["momentum"]
    if not 0.0 < momentum < 1.0:
        raise ValueError(f"Invalid momentum value: {momentum} (Schedule-Free momentum must be between 0 and 1 "
                         "exclusive)")


_SCHEDULEFREE_DOC = r"""
    The param holds :math:`y_t`, where the gradient is taken; :math:`x_t`, the point to evaluate, is implied:
    ``eval()`` moves the params to :math:`x` (:math:`p \leftarrow \mathrm{lerp}(p, z, 1 - 1/\beta)`), ``train()``
    back to :math:`y` (:math:`p \leftarrow \mathrm{lerp}(p, z, 1 - \beta)`); a step in eval mode is a RuntimeError
    that writes nothing. With :math:`k` = step - 1, :math:`W` = warmup_steps, :math:`\beta` = {beta}:

    .. math::
        \gamma_k &= \gamma \min(1, (k + 1)/W) \ (\gamma \text{ if } W = 0), \qquad
            \gamma_{\max} \leftarrow \max(\gamma_k, \gamma_{\max}) \ (\gamma_{\max} = -1 \text{ at first}) \\
        w_k &= (k + 1)^r \gamma_{\max}^{\text{weight_lr_power}}, \qquad S \leftarrow S + w_k, \qquad
            c_{k+1} = w_k / S \ (0 \text{ if } S = 0) \\
        {update}
        g_t &\leftarrow g_t + \lambda y_t \qquad\text{(the decay taken at } y\text{)} \\
        y_{t+1} &= \mathrm{lerp}(y_t, z_t, c_{k+1}) + \gamma_k (\beta (1 - c_{k+1}) - 1) g_t, \qquad
            z_{t+1} = z_t - \gamma_k g_t

    which is :math:`z_{t+1} = z_t - \gamma_k g_t`, :math:`x_{t+1} = (1 - c_{k+1}) x_t + c_{k+1} z_{t+1}`,
    :math:`y_{t+1} = (1 - \beta) z_{t+1} + \beta x_{t+1}` (Defazio et al., 2024). ``z`` starts as a copy of the
    param. State per param: ``step`` (:math:`k`), {state}``z`` and ``lr_max_weight_sum``, the float64 pair
    :math:`(\gamma_{\max}, S)` (the reference keeps :math:`k`, :math:`\gamma_{\max}`, :math:`S` per group: the
    same values whenever every param of the group is stepped at every step). The mode is saved in
    ``state_dict()['train_mode']``; a new optimizer is in train mode (the reference needs ``train()`` first). See
    ``fastopt.optim.schedulefree`` for the differences from the reference.
    """

SCHEDULEFREE_ADAMW = OptimizerSpec(
    "ScheduleFreeAdamW", "sfadamw",
    (_lr(0.0025), _betas((0.9, 0.999)), _eps(1e-8), _wd()) + _schedulefree_hypers(),
    (Slot("z", initial=COPY_OF_PARAM), Slot("exp_avg_sq", quantize="unsigned")),
    r"""Schedule-Free AdamW (Defazio et al., 2024; ``schedulefree.AdamWScheduleFree``: no first moment, no lr
    schedule; warmup_steps and the averaging weights in its place).
    """ + _SCHEDULEFREE_DOC.replace("{beta}", r"beta1").replace("{state}", r"``exp_avg_sq``, ").replace(
        "{update}", r"""v_t &\leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad
            g_t \leftarrow g_t / \left(\sqrt{v_t / (1 - \beta_2^{k+1})} + \epsilon\right) \\
        """),
    aux="lr_max_weight_sum", aux_initial=(-1.0, 0.0), interpolation=lambda group: group["betas"][0],
    peer=("schedulefree", "AdamWScheduleFree"), bench={"lr": 1e-3},
    functional_doc=r"``z`` must start as a copy of the param; ``lr_max_weight_sum`` is a float64 array of 2, "
                   "(-1.0, 0.0) before the first step, advanced in place; ``step`` is the 1-based step (k + 1). The "
                   "param holds y: the functional form has no train/eval (x = lerp(y, z, 1 - 1/beta1)).")

SCHEDULEFREE_SGD = OptimizerSpec(
    "ScheduleFreeSGD", "sfsgd",
    (_lr(1.0), Hyper("momentum", 0.9, NONNEG, "momentum", "momentum value"), _wd()) + _schedulefree_hypers(),
    (Slot("z", initial=COPY_OF_PARAM),),
    r"""Schedule-Free SGD (Defazio et al., 2024; ``schedulefree.SGDScheduleFree``: momentum through the
    interpolation, no lr schedule; momentum in (0, 1) exclusive, as the reference checks).
    """ + _SCHEDULEFREE_DOC.replace("{beta}", r"momentum").replace("{state}", "").replace("{update}", ""),
    aux="lr_max_weight_sum", aux_initial=(-1.0, 0.0), interpolation=lambda group: group["momentum"],
    cross_check=_momentum_exclusive, peer=("schedulefree", "SGDScheduleFree"), bench={"lr": 1e-2},
    functional_doc=r"``z`` must start as a copy of the param; ``lr_max_weight_sum`` is a float64 array of 2, "
                   "(-1.0, 0.0) before the first step, advanced in place; ``step`` is the 1-based step (k + 1). The "
                   "param holds y: the functional form has no train/eval (x = lerp(y, z, 1 - 1/momentum)).")

# Registry order: the order of every __all__ and of the estimators' solver names.
SPECS = (SGD, ADAM, ADAMW, ADAMAX, NADAM, RADAM, RMSPROP, ADAGRAD, LION, ADADELTA, RPROP, ASGD, ADEMAMIX, ADAN, LARS,
         LAMB, SCHEDULEFREE_ADAMW, SCHEDULEFREE_SGD)
