"""Functional (stateless) forms of fastopt's kernels: the caller owns every array.

- optimizer steps: ``<name>_`` for every element-wise optimizer of ``fastopt.optim`` (``adam_``, ...; trailing
  underscore: in place), then ``adafactor_``, ``sparse_adam_``, ``muon_``, listed in
  ``fastopt.functional.optim.__all__`` (LBFGS has none: a closure-driven step);
- batch norm: ``batch_norm_forward``, ``batch_norm_backward``;
- a dense layer's bias + ReLU, fused: ``bias_activation``, ``bias_activation_backward``;
- dropout: ``dropout``, ``dropout_backward`` (the mask is regenerated from the seed, never stored).
"""
from fastopt.functional.activation import bias_activation, bias_activation_backward
from fastopt.functional.batchnorm import batch_norm_backward, batch_norm_forward
from fastopt.functional.dropout import dropout, dropout_backward
from fastopt.functional import optim as _optim_steps

globals().update({name: getattr(_optim_steps, name) for name in _optim_steps.__all__})

__all__ = list(_optim_steps.__all__) + [
           "batch_norm_forward", "batch_norm_backward", "dropout", "dropout_backward",
           "bias_activation", "bias_activation_backward"]
