"""Optimizer objects with torch.optim's names, defaults and update rules, over NumPy arrays.

Each class is made from its spec in ``fastopt/optim/specs.py`` (the one place an optimizer is declared); ``OPTIMIZERS``
maps lower-case names to the classes, in the registry's order.
"""
from fastopt.optim._spec import make_class
from fastopt.optim.optimizer import Optimizer
from fastopt.optim.schedulefree import ScheduleFreeOptimizer
from fastopt.optim.specs import SPECS


def _classes():
    out = {}
    for spec in SPECS:
        base = Optimizer if spec.interpolation is None else ScheduleFreeOptimizer     # train() / eval()
        out[spec.name] = make_class(spec, out[spec.parent] if spec.parent else base)
    return out


OPTIMIZERS = {name.lower(): cls for name, cls in _classes().items()}
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

__all__ = ["Optimizer"] + [cls.__name__ for cls in OPTIMIZERS.values()]
