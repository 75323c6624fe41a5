"""Optimizer objects with torch.optim's names, defaults and update rules, over NumPy arrays.

Each element-wise class is made from its spec in ``fastopt/optim/specs.py`` (the one place such an optimizer is
declared); ``OPTIMIZERS`` maps lower-case names to those classes, in the registry's order. Two optimizers whose step
is not element-wise are their own modules, outside the registry (``__all__`` lists them last): ``Muon``
(``muon.py``: momentum orthogonalised by Newton-Schulz matmuls, 2-D params; ``step(grads)``) and ``LBFGS``
(``lbfgs.py``: limited-memory BFGS with an optional strong-Wolfe line search; ``step(closure)``).
"""
from fastopt.optim._spec import make_class
from fastopt.optim.optimizer import Optimizer
from fastopt.optim.lbfgs import LBFGS
from fastopt.optim.muon import Muon
from fastopt.optim.specs import SPECS


def _classes():
    out = {}
    for spec in SPECS:
        out[spec.name] = make_class(spec, out[spec.parent] if spec.parent else Optimizer)
    return out


OPTIMIZERS = {name.lower(): cls for name, cls in _classes().items()}
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

__all__ = ["Optimizer"] + [cls.__name__ for cls in OPTIMIZERS.values()] + ["Muon", "LBFGS"]
