"""Functional optimizer steps for users who keep their own state: one fused, in-place update of one param.

Each ``<name>_`` (one per optimizer of ``fastopt.optim``, made from its spec by ``fastopt.optim._spec``) updates
``param`` and its state arrays in place with the rule of the optimizer class of the same name (see its docstring)
and returns ``param``. ``step`` is the 1-based index of this update (bias corrections use it). The hyperparameters
are checked by the same compiled checks as the class's, with the same messages; then every array (dtype, shape,
layout, overlap); nothing is written if a check fails. A state array the step does not use (``max_exp_avg_sq``
without amsgrad) may be None and is not touched.
"""
from fastopt.optim._spec import make_functional
from fastopt.optim.specs import SPECS

FUNCTIONS = {spec.functional_name: make_functional(spec) for spec in SPECS}
globals().update(FUNCTIONS)

__all__ = list(FUNCTIONS)
