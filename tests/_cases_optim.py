"""Every option combination of every optimizer, as (name, kwargs) pairs shared by the parity tests."""
import itertools


def _grid(**axes):
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, values))


def optimizer_cases():
    cases = []
    for kw in _grid(momentum=[0.0, 0.9], dampening=[0.0, 0.1], nesterov=[False, True],
                    weight_decay=[0.0, 0.01], maximize=[False, True]):
        if kw["momentum"] == 0 and (kw["dampening"] or kw["nesterov"]):
            continue
        if kw["nesterov"] and kw["dampening"]:
            continue
        cases.append(("SGD", dict(lr=0.05, **kw)))
    for kw in _grid(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True],
                    decoupled_weight_decay=[False, True]):
        cases.append(("Adam", dict(lr=0.01, **kw)))
    for kw in _grid(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True]):
        cases.append(("AdamW", dict(lr=0.01, **kw)))
    cases.append(("Adam", dict(lr=0.01, betas=(0.3, 0.5))))          # 1 - beta1 >= 0.5: the other lerp branch
    for kw in _grid(weight_decay=[0.0, 0.1], maximize=[False, True]):
        cases.append(("Adamax", dict(lr=0.01, **kw)))
    for kw in _grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True]):
        cases.append(("NAdam", dict(lr=0.01, **kw)))
    cases.append(("NAdam", dict(lr=0.01, momentum_decay=0.1)))
    for kw in _grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True]):
        cases.append(("RAdam", dict(lr=0.01, **kw)))
    for kw in _grid(centered=[False, True], momentum=[0.0, 0.5], weight_decay=[0.0, 0.1], maximize=[False, True]):
        cases.append(("RMSprop", dict(lr=0.01, **kw)))
    cases.append(("RMSprop", dict(lr=0.01, alpha=0.3, centered=True)))
    for kw in _grid(lr_decay=[0.0, 0.1], weight_decay=[0.0, 0.1], initial_accumulator_value=[0.0, 0.1],
                    maximize=[False, True]):
        cases.append(("Adagrad", dict(lr=0.05, **kw)))
    for kw in _grid(weight_decay=[0.0, 0.1], maximize=[False, True]):
        cases.append(("Lion", dict(lr=0.01, **kw)))
    for kw in _grid(weight_decay=[0.0, 0.1], maximize=[False, True]):
        cases.append(("Adadelta", dict(lr=1.0, **kw)))
    cases.append(("Adadelta", dict(lr=0.5, rho=0.3, eps=1e-3)))
    for kw in _grid(maximize=[False, True]):
        cases.append(("Rprop", dict(lr=0.01, **kw)))
    cases.append(("Rprop", dict(lr=0.01, etas=(0.3, 1.5), step_sizes=(1e-3, 0.02))))   # both clamps bind
    for kw in _grid(weight_decay=[0.0, 0.1], maximize=[False, True]):
        cases.append(("ASGD", dict(lr=0.01, **kw)))
    cases.append(("ASGD", dict(lr=0.05, lambd=0.01, alpha=0.5, t0=2.0)))              # the averaging runs
    for kw in _grid(weight_decay=[0.0, 0.1], weight_decouple=[False, True], fixed_decay=[False, True],
                    maximize=[False, True]):
        if kw["fixed_decay"] and not kw["weight_decouple"]:
            continue
        cases.append(("AdEMAMix", dict(lr=0.01, **kw)))
    cases.append(("AdEMAMix", dict(lr=0.01, t_alpha_beta3=5.0, alpha=2.0)))        # warm-up ends within the run
    cases.append(("AdEMAMix", dict(lr=0.01, betas=(0.3, 0.9, 0.4), t_alpha_beta3=50.0)))  # other lerp branches
    for kw in _grid(weight_decay=[0.0, 0.1], weight_decouple=[False, True], maximize=[False, True]):
        cases.append(("Adan", dict(lr=0.01, **kw)))
    cases.append(("Adan", dict(lr=0.01, betas=(0.3, 0.4, 0.9), eps=1e-3)))            # the other lerp branches
    for kw in _grid(momentum=[0.0, 0.9], nesterov=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True]):
        if kw["nesterov"] and not kw["momentum"]:
            continue
        cases.append(("LARS", dict(lr=0.1, trust_coefficient=0.02, **kw)))
    cases.append(("LARS", dict(lr=0.1, dampening=0.5, weight_decay=0.01)))
    for kw in _grid(weight_decay=[0.0, 0.1], weight_decouple=[False, True], adam_debias=[False, True],
                    maximize=[False, True]):
        cases.append(("LAMB", dict(lr=0.01, **kw)))
    for kw in _grid(fixed_decay=[False, True], grad_averaging=[False, True], adam=[False, True]):
        cases.append(("LAMB", dict(lr=0.002, weight_decay=0.1, **kw)))   # m without (1 - b1) is 10x larger
    cases.append(("LAMB", dict(lr=0.01, betas=(0.3, 0.5), eps=1e-3)))
    # Schedule-Free (foreach is the reference's implementation switch: not an argument here)
    for kw in _grid(warmup_steps=[0, 5], weight_decay=[0.0, 0.1], r=[0.0, 1.0], weight_lr_power=[2.0, 0.0]):
        cases.append(("ScheduleFreeAdamW", dict(lr=0.01, **kw)))
    cases.append(("ScheduleFreeAdamW", dict(lr=0.01, betas=(0.3, 0.5), eps=1e-3, warmup_steps=40)))
    for kw in _grid(warmup_steps=[0, 5], weight_decay=[0.0, 0.1], r=[0.0, 1.0], weight_lr_power=[2.0, 0.0]):
        cases.append(("ScheduleFreeSGD", dict(lr=0.05, **kw)))
    cases.append(("ScheduleFreeSGD", dict(lr=0.05, momentum=0.3, warmup_steps=40, r=0.5)))
    return cases


def case_id(case):
    name, kw = case
    parts = [name] + [f"{k}={v}" for k, v in kw.items() if k != "lr"]
    return "-".join(parts)


CASES = optimizer_cases()
IDS = [case_id(c) for c in CASES]


def norm_sums(opt):
    """Per param (flat index), the two sums of its last step's norm sweep (LARS, LAMB: fo_tensor.coef[4], coef[5])
    as float64 bytes: the trust ratio's inputs, compared bit for bit (a difference in their last bit would rarely
    show in the float32 params)."""
    out = {}
    for plans in opt._plans:
        for plan in plans or ():
            for i, coefs in zip(plan.index, plan.coefs()):
                out[i] = coefs[32:48]
    return out
