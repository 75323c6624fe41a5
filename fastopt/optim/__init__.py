"""Optimizer objects with torch.optim's names, defaults and update rules, over NumPy arrays.

Each class is made from its spec in ``fastopt/optim/specs.py`` (the one place an optimizer is declared); ``OPTIMIZERS``
maps lower-case names to the classes, in the registry's order.

``Adafactor`` (a factored second moment) and ``SparseAdam`` (row-sparse ``(indices, rows)`` gradients) have state
or gradients that are not element-wise: they are written as their own modules (``adafactor.py``,
``sparse_adam.py``) on ``NumpyOptimizer`` (``_numpy_optimizer.py``: the same groups, checks and state_dict, a step in
NumPy) and listed in ``NUMPY_OPTIMIZERS``, not in ``SPECS`` / ``OPTIMIZERS`` (no functional form, estimator solver or
ZeroRedundancyOptimizer sharding); both are in ``__all__``. ``step(check_finite=...)`` is not offered by them.
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
