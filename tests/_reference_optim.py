"""float64 NumPy reference of every optimizer, written from the published algorithms (the formulas in the
torch.optim documentation, the Adam/AdamW/NAdam/RAdam/Lion/Adadelta/Rprop/ASGD/
AdEMAMix/Adan/LARS/LAMB papers, Defazio et al. 2024 for Schedule-Free). Used only by tests and benchmarks.

``reference_step(name, hp, p, g, state)`` updates the float64 array ``p`` and the ``state`` dict for one step.
"""
import numpy as np


def _wd_grad(hp, p, g):
    """Gradient after maximize and L2 weight decay; decoupled decay is applied to p by the caller."""
    g = -g if hp.get("maximize", False) else g
    if hp.get("weight_decay", 0.0) and not hp.get("decoupled_weight_decay", False):
        g = g + hp["weight_decay"] * p
    return g


def _decouple(hp, p):
    if hp.get("weight_decay", 0.0) and hp.get("decoupled_weight_decay", False):
        p *= 1.0 - hp["lr"] * hp["weight_decay"]


def sgd(hp, p, g, st):
    g = _wd_grad(hp, p, g)
    mu, damp = hp.get("momentum", 0.0), hp.get("dampening", 0.0)
    if mu != 0:
        if "momentum_buffer" not in st:
            st["momentum_buffer"] = g.copy()
        else:
            st["momentum_buffer"] = mu * st["momentum_buffer"] + (1 - damp) * g
        b = st["momentum_buffer"]
        g = g + mu * b if hp.get("nesterov", False) else b
    p -= hp["lr"] * g


def adam(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    b1, b2 = hp.get("betas", (0.9, 0.999))
    _decouple(hp, p)
    g = _wd_grad(hp, p, g)
    m = st["exp_avg"] = b1 * st.get("exp_avg", 0.0) + (1 - b1) * g
    v = st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
    if hp.get("amsgrad", False):
        v = st["max_exp_avg_sq"] = np.maximum(st.get("max_exp_avg_sq", 0.0), v)
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    p -= hp["lr"] * m_hat / (np.sqrt(v_hat) + hp.get("eps", 1e-8))


def adamw(hp, p, g, st):
    adam(dict(hp, decoupled_weight_decay=True), p, g, st)


def adamax(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    b1, b2 = hp.get("betas", (0.9, 0.999))
    g = _wd_grad(hp, p, g)
    m = st["exp_avg"] = b1 * st.get("exp_avg", 0.0) + (1 - b1) * g
    u = st["exp_inf"] = np.maximum(b2 * st.get("exp_inf", 0.0), np.abs(g) + hp.get("eps", 1e-8))
    p -= hp["lr"] / (1 - b1 ** t) * m / u


def nadam(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    b1, b2 = hp.get("betas", (0.9, 0.999))
    psi = hp.get("momentum_decay", 4e-3)
    _decouple(hp, p)
    g = _wd_grad(hp, p, g)
    mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
    prod = st["mu_product"] = st.get("mu_product", 1.0) * mu_t
    m = st["exp_avg"] = b1 * st.get("exp_avg", 0.0) + (1 - b1) * g
    v = st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
    denom = np.sqrt(v / (1 - b2 ** t)) + hp.get("eps", 1e-8)
    p -= hp["lr"] * (1 - mu_t) / (1 - prod) * g / denom
    p -= hp["lr"] * mu_next / (1 - prod * mu_next) * m / denom


def radam(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    b1, b2 = hp.get("betas", (0.9, 0.999))
    _decouple(hp, p)
    g = _wd_grad(hp, p, g)
    m = st["exp_avg"] = b1 * st.get("exp_avg", 0.0) + (1 - b1) * g
    v = st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
    if rho_t > 5:
        r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        adaptive = np.sqrt(1 - b2 ** t) / (np.sqrt(v) + hp.get("eps", 1e-8))
        p -= hp["lr"] * m_hat * adaptive * r
    else:
        p -= hp["lr"] * m_hat


def rmsprop(hp, p, g, st):
    st["step"] = st.get("step", 0) + 1
    alpha, eps, mu = hp.get("alpha", 0.99), hp.get("eps", 1e-8), hp.get("momentum", 0.0)
    g = _wd_grad(hp, p, g)
    s = st["square_avg"] = alpha * st.get("square_avg", 0.0) + (1 - alpha) * g * g
    if hp.get("centered", False):
        a = st["grad_avg"] = alpha * st.get("grad_avg", 0.0) + (1 - alpha) * g
        d = np.sqrt(s - a * a) + eps
    else:
        d = np.sqrt(s) + eps
    if mu > 0:
        b = st["momentum_buffer"] = mu * st.get("momentum_buffer", 0.0) + g / d
        p -= hp["lr"] * b
    else:
        p -= hp["lr"] * g / d


def adagrad(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    g = _wd_grad(hp, p, g)
    clr = hp["lr"] / (1 + (t - 1) * hp.get("lr_decay", 0.0))
    s = st["sum"] = st.get("sum", hp.get("initial_accumulator_value", 0.0)) + g * g
    p -= clr * g / (np.sqrt(s) + hp.get("eps", 1e-10))


def lion(hp, p, g, st):
    st["step"] = st.get("step", 0) + 1
    b1, b2 = hp.get("betas", (0.9, 0.99))
    g = -g if hp.get("maximize", False) else g
    m = st.get("exp_avg", 0.0)
    c = b1 * m + (1 - b1) * g
    p -= hp["lr"] * (np.sign(c) + hp.get("weight_decay", 0.0) * p)
    st["exp_avg"] = b2 * m + (1 - b2) * g


def adadelta(hp, p, g, st):
    st["step"] = st.get("step", 0) + 1
    rho, eps = hp.get("rho", 0.9), hp.get("eps", 1e-6)
    g = _wd_grad(hp, p, g)
    s = st["square_avg"] = rho * st.get("square_avg", 0.0) + (1 - rho) * g * g
    u = st.get("acc_delta", 0.0)
    delta = np.sqrt(u + eps) / np.sqrt(s + eps) * g
    st["acc_delta"] = rho * u + (1 - rho) * delta * delta
    p -= hp["lr"] * delta


def rprop(hp, p, g, st):
    st["step"] = st.get("step", 0) + 1
    etaminus, etaplus = hp.get("etas", (0.5, 1.2))
    smin, smax = hp.get("step_sizes", (1e-6, 50.0))
    g = -g if hp.get("maximize", False) else g
    prev = st.get("prev", np.zeros_like(p))
    c = np.sign(g * prev)
    f = np.where(c > 0, etaplus, np.where(c < 0, etaminus, 1.0))
    step = st["step_size"] = np.clip(st.get("step_size", np.full_like(p, hp["lr"])) * f, smin, smax)
    g = np.where(c < 0, 0.0, g)
    p -= np.sign(g) * step
    st["prev"] = g


def asgd(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    lr, lambd, alpha, t0 = hp["lr"], hp.get("lambd", 1e-4), hp.get("alpha", 0.75), hp.get("t0", 1e6)
    eta = st.get("eta", lr)
    mu = 1.0 if t == 1 else 1.0 / max(1.0, t - 1 - t0)
    g = _wd_grad(hp, p, g)
    p *= 1 - lambd * eta
    p -= eta * g
    st["ax"] = p.copy() if mu == 1 else st["ax"] + (p - st["ax"]) * mu
    st["eta"] = lr / (1 + lambd * lr * t) ** alpha


def ademamix(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    b1, b2, b3 = hp.get("betas", (0.9, 0.999, 0.9999))
    alpha, T, wd = hp.get("alpha", 5.0), hp.get("t_alpha_beta3"), hp.get("weight_decay", 0.0)
    g = -g if hp.get("maximize", False) else g
    if wd and hp.get("weight_decouple", False):
        p *= 1 - wd * (1.0 if hp.get("fixed_decay", False) else hp["lr"])
    elif wd:
        g = g + wd * p
    alpha_t = alpha if T is None else min(t * alpha / T, alpha)
    b3_t = b3 if T is None else min(np.exp(np.log(b1) * np.log(b3) / ((1 - t / T) * np.log(b3) + t / T * np.log(b1))),
                                    b3)
    m = st["exp_avg"] = b1 * st.get("exp_avg", 0.0) + (1 - b1) * g
    v = st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
    s = st["exp_avg_slow"] = b3_t * st.get("exp_avg_slow", 0.0) + (1 - b3_t) * g
    p -= hp["lr"] * (m / (1 - b1 ** t) + alpha_t * s) / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + hp.get("eps", 1e-8))


def adan(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    b1, b2, b3 = hp.get("betas", (0.98, 0.92, 0.99))
    lr, wd = hp["lr"], hp.get("weight_decay", 0.0)
    g = -g if hp.get("maximize", False) else g
    d = g - st["previous_grad"] if t > 1 else np.zeros_like(g)
    m = st["exp_avg"] = b1 * st.get("exp_avg", 0.0) + (1 - b1) * g
    n = st["exp_avg_diff"] = b2 * st.get("exp_avg_diff", 0.0) + (1 - b2) * d
    v = st["exp_avg_sq"] = b3 * st.get("exp_avg_sq", 0.0) + (1 - b3) * (g + b2 * d) ** 2
    st["previous_grad"] = g.copy()
    den = np.sqrt(v) / np.sqrt(1 - b3 ** t) + hp.get("eps", 1e-8)
    if hp.get("weight_decouple", False):
        p *= 1 - lr * wd
    p -= lr / (1 - b1 ** t) * m / den + lr * b2 / (1 - b2 ** t) * n / den
    if not hp.get("weight_decouple", False):
        p /= 1 + lr * wd


def lars(hp, p, g, st):
    mu, wd = hp.get("momentum", 0.9), hp.get("weight_decay", 0.0)
    g = -g if hp.get("maximize", False) else g
    if p.ndim > 1:
        pn, gn = np.linalg.norm(p), np.linalg.norm(g)
        den = gn + wd * pn
        ratio = hp.get("trust_coefficient", 1e-3) * pn / den if pn > 0 and den > 0 else 1.0
        g = (g + wd * p) * ratio
    if mu > 0:
        b = st["momentum_buffer"] = mu * st.get("momentum_buffer", 0.0) + (1 - hp.get("dampening", 0.0)) * g
        g = g + mu * b if hp.get("nesterov", False) else b
    p -= hp["lr"] * g


def lamb(hp, p, g, st):
    t = st["step"] = st.get("step", 0) + 1
    b1, b2 = hp["betas"]
    lr, wd, eps = hp["lr"], hp["weight_decay"], hp["eps"]
    g = -g if hp["maximize"] else g
    m = st["exp_avg"] = b1 * st.get("exp_avg", 0.0) + (1 - b1 if hp["grad_averaging"] else 1.0) * g
    v = st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
    if hp["weight_decouple"]:
        p *= 1 - wd * (1.0 if hp["fixed_decay"] else lr)
    u = m / (np.sqrt(v) + eps) + (0.0 if hp["weight_decouple"] else wd * p)
    wn, un = min(np.linalg.norm(p), 10.0), np.linalg.norm(u)
    ratio = 1.0 if hp["adam"] or wn == 0 or un == 0 else wn / (un + eps)
    p -= (lr if hp["adam_debias"] else lr / (1 - b1 ** t)) * ratio * u


def _schedule_free(hp, p, g, st, beta, adaptive):
    """The paper's form (Defazio et al. 2024, Algorithm 1 with the released code's warm-up and weights): z and x
    are kept, y = (1 - beta) z + beta x is where the gradient was taken (the param), and the param is set to the
    next y."""
    if "z" not in st:
        st["z"], st["averages"] = p.copy(), {"x": p.copy(), "lr_max": -1.0, "weight_sum": 0.0}
    avg = st["averages"]
    k = st.get("step", 0)
    st["step"] = k + 1
    warmup = hp["warmup_steps"]
    lr = hp["lr"] * ((k + 1) / warmup if k < warmup else 1.0)
    avg["lr_max"] = max(lr, avg["lr_max"])
    weight = (k + 1) ** hp["r"] * avg["lr_max"] ** hp["weight_lr_power"]
    avg["weight_sum"] += weight
    c = weight / avg["weight_sum"] if avg["weight_sum"] != 0 else 0.0
    y = p.copy()
    if adaptive:
        b2 = hp["betas"][1]
        v = st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", 0.0) + (1 - b2) * g * g
        g = g / (np.sqrt(v / (1 - b2 ** (k + 1))) + hp["eps"])
    g = g + hp["weight_decay"] * y
    z = st["z"] = st["z"] - lr * g
    x = avg["x"] = (1 - c) * avg["x"] + c * z
    p[...] = (1 - beta) * z + beta * x


def schedulefree_adamw(hp, p, g, st):
    _schedule_free(hp, p, g, st, hp["betas"][0], True)


def schedulefree_sgd(hp, p, g, st):
    _schedule_free(hp, p, g, st, hp["momentum"], False)


def schedulefree_x(beta, p, st):
    """The evaluation point x of a Schedule-Free param p (y) with state st (the reference's x, or p if no step)."""
    return st["averages"]["x"] if "averages" in st else p


REFERENCE = {
    "SGD": sgd, "Adam": adam, "AdamW": adamw, "Adamax": adamax, "NAdam": nadam, "RAdam": radam,
    "RMSprop": rmsprop, "Adagrad": adagrad, "Lion": lion, "Adadelta": adadelta, "Rprop": rprop, "ASGD": asgd,
    "AdEMAMix": ademamix, "Adan": adan, "LARS": lars, "LAMB": lamb,
    "ScheduleFreeAdamW": schedulefree_adamw, "ScheduleFreeSGD": schedulefree_sgd,
}


def reference_step(name, hp, p, g, state):
    REFERENCE[name](hp, p, g, state)


def reference_hparams(name, kwargs):
    """The hyperparameters the reference needs: the optimizer's defaults overridden by ``kwargs``."""
    import inspect

    import fastopt
    sig = inspect.signature(getattr(fastopt, name).__init__)
    hp = {k: v.default for k, v in sig.parameters.items() if v.default is not inspect.Parameter.empty}
    hp.update(kwargs)
    if name == "AdamW":
        hp["decoupled_weight_decay"] = True
    return hp
