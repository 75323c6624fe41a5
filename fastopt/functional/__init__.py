"""Functional (stateless) forms of fastopt's kernels: the caller owns every array.

- optimizer steps: ``sgd_``, ``adam_``, ``adamw_``, ``adamax_``, ``nadam_``, ``radam_``, ``rmsprop_``,
  ``adagrad_``, ``lion_`` (trailing underscore: in place);
- batch norm: ``batch_norm_forward``, ``batch_norm_backward``;
- a dense layer's bias + ReLU, fused: ``bias_activation``, ``bias_activation_backward``;
- dropout: ``dropout``, ``dropout_backward`` (the mask is regenerated from the seed, never stored).
"""
from fastopt.functional.activation import bias_activation, bias_activation_backward
from fastopt.functional.batchnorm import batch_norm_backward, batch_norm_forward
from fastopt.functional.dropout import dropout, dropout_backward
from fastopt.functional.optim import adagrad_, adam_, adamax_, adamw_, lion_, nadam_, radam_, rmsprop_, sgd_

__all__ = ["sgd_", "adam_", "adamw_", "adamax_", "nadam_", "radam_", "rmsprop_", "adagrad_", "lion_",
           "batch_norm_forward", "batch_norm_backward", "dropout", "dropout_backward",
           "bias_activation", "bias_activation_backward"]
