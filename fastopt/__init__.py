"""fastopt: fused, in-place optimizer kernels (C + OpenMP) for NumPy training loops.

>>> import numpy as np, fastopt
>>> W = np.zeros((3, 2), dtype=np.float32)
>>> opt = fastopt.AdamW([W], lr=1e-3)
>>> opt.step([np.ones_like(W)])          # W updated in place, one fused pass

Modules: ``fastopt.optim`` (optimizers, also exported here), ``fastopt.functional`` (in-place kernels on arrays you
own), ``fastopt.nn`` (BatchNorm), ``fastopt.losses`` (losses with fused gradients), ``fastopt.regularize``
(penalties, max-norm), ``fastopt.schedules`` (lr schedules), ``fastopt.callbacks`` (EarlyStopping),
``fastopt.estimators`` (scikit-learn MLPs, imported on use).
"""
__version__ = "0.1.0"

from fastopt import callbacks, functional, losses, nn, regularize, schedules
from fastopt import quantize             # issue 12: blockwise int8/int4 quantization (fastopt.quantize)
from fastopt._config import (available_isas, config, get_isa, get_num_threads, parallel_min_elements, set_isa,
                             set_num_threads, show_config)
from fastopt.clip import clip_grad_norm_, clip_grad_value_, get_total_norm
from fastopt import optim as _optim_objects

globals().update({name: getattr(_optim_objects, name) for name in _optim_objects.__all__})

__all__ = list(_optim_objects.__all__) + [
    "functional", "nn", "losses", "regularize", "schedules", "callbacks",
    "clip_grad_norm_", "clip_grad_value_", "get_total_norm",
    "set_num_threads", "get_num_threads", "parallel_min_elements", "show_config", "config",
    "get_isa", "set_isa", "available_isas",
]

from fastopt._config import _apply_environment  # noqa: E402

_apply_environment()
del _apply_environment
