"""Optimizer objects with torch.optim's names, defaults and update rules, over NumPy arrays.

Each class is made from its spec in ``fastopt/optim/specs.py`` (the one place an optimizer is declared); ``OPTIMIZERS``
maps lower-case names to the classes, in the registry's order.
"""
from fastopt.optim._spec import make_class
from fastopt.optim.adafactor import Adafactor
from fastopt.optim.optimizer import Optimizer
from fastopt.optim.sparse_adam import SparseAdam
from fastopt.optim.specs import SPECS


def _classes():
    out = {}
    for spec in SPECS:
        out[spec.name] = make_class(spec, out[spec.parent] if spec.parent else Optimizer)
    return out


OPTIMIZERS = {name.lower(): cls for name, cls in _classes().items()}
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

# Not element-wise, so not in SPECS / OPTIMIZERS (the native kernels, the functional forms, the estimators'
# solvers and ZeroRedundancyOptimizer cover the spec-made classes only): stepped in NumPy, see _numpy_optimizer.py.
NUMPY_OPTIMIZERS = (Adafactor, SparseAdam)

__all__ = ["Optimizer"] + [cls.__name__ for cls in OPTIMIZERS.values()] + [cls.__name__ for cls in NUMPY_OPTIMIZERS]
