"""Optimizer objects with torch.optim's names, defaults and update rules, over NumPy arrays.

Each element-wise class is made from its spec in ``fastopt/optim/specs.py`` (the one place such an optimizer is
declared); ``OPTIMIZERS`` maps lower-case names to those classes, in the registry's order.

Four optimizers have state, gradients or steps that are not element-wise: they are their own modules, outside
``SPECS`` / ``OPTIMIZERS`` (no native kernel or ZeroRedundancyOptimizer sharding; no ``step(check_finite=...)``),
listed in ``NOT_ELEMENTWISE`` and last in ``__all__``. Their functional forms (``adafactor_``, ``sparse_adam_``,
``muon_``; none for LBFGS) are in ``fastopt.functional.optim``, their estimator solvers ("adafactor", "muon",
"lbfgs"; SparseAdam is none: dense gradients) in ``fastopt.estimators._solvers``:

* ``Adafactor`` (``adafactor.py``: a factored second moment) and ``SparseAdam`` (``sparse_adam.py``: row-sparse
  ``(indices, rows)`` gradients), on ``NumpyOptimizer`` (``_numpy_optimizer.py``: the same groups, checks and
  state_dict, a step per param: Adafactor's in NumPy, SparseAdam's one native call, ``csrc/optim.c``);
* ``Muon`` (``muon.py``: momentum orthogonalised by Newton-Schulz matmuls, 2-D params; ``step(grads)``) and
  ``LBFGS`` (``lbfgs.py``: limited-memory BFGS with an optional strong-Wolfe line search; ``step(closure)``).
"""
from fastopt.optim._spec import make_class
from fastopt.optim.adafactor import Adafactor
from fastopt.optim.lbfgs import LBFGS
from fastopt.optim.muon import Muon
from fastopt.optim.optimizer import Optimizer
from fastopt.optim.schedulefree import ScheduleFreeOptimizer
from fastopt.optim.sparse_adam import SparseAdam
from fastopt.optim.specs import SPECS


def _classes():
    out = {}
    for spec in SPECS:
        base = Optimizer if spec.interpolation is None else ScheduleFreeOptimizer     # train() / eval()
        out[spec.name] = make_class(spec, out[spec.parent] if spec.parent else base)
    return out


OPTIMIZERS = {name.lower(): cls for name, cls in _classes().items()}
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

# Not element-wise, so not in SPECS / OPTIMIZERS (the native kernels and ZeroRedundancyOptimizer cover the
# spec-made classes only; functional forms and estimator solvers: see the module docstring).
NOT_ELEMENTWISE = (Adafactor, SparseAdam, Muon, LBFGS)

__all__ = ["Optimizer"] + [cls.__name__ for cls in OPTIMIZERS.values()] + [cls.__name__ for cls in NOT_ELEMENTWISE]
