"""Functional (stateless) forms of fastopt's kernels: the caller owns every array.

Optimizer steps: ``sgd_``, ``adam_``, ``adamw_``, ``adamax_``, ``nadam_``, ``radam_``, ``rmsprop_``,
``adagrad_``, ``lion_`` (trailing underscore: in place).
"""
from fastopt.functional.optim import (adagrad_, adam_, adamax_, adamw_, lion_, nadam_, radam_, rmsprop_,
                                      sgd_)

__all__ = ["sgd_", "adam_", "adamw_", "adamax_", "nadam_", "radam_", "rmsprop_", "adagrad_", "lion_"]
from fastopt.functional.dropout import dropout, dropout_backward  # noqa: E402

__all__ += ["dropout", "dropout_backward"]
