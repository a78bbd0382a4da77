"""The fast path: the same numbers as :mod:`minitransformer.functional`, computed faster.

The model runs these functions by default; ``model.use_math("reference")`` (or
``MINITRANSFORMER_MATH=reference`` when the model is built) runs it on the textbook
functions of :mod:`~minitransformer.functional` instead. Each function here has the name of
the reference function it equals, says so in its docstring, and gives the measured reason
it exists. ``tests/test_fast_path.py`` proves output and every gradient equal to the
reference's (float64, relative error <= 1e-12) and gradient-checks them too;
``docs/performance.md`` explains each one against its reference. A layer with no function
here runs the reference one (embedding, GELU, dropout, and the ``Softmax`` layer: a fast
softmax measured no faster than the reference, forward and backward together).

* :mod:`~minitransformer.fast.layers`: sums as products with ones (BLAS), linear, layer
  norm, and ReLU-dropout-linear as one pair for the feed-forward network;
* :mod:`~minitransformer.fast.attention`: attention with its row factors moved to the small
  side of the products, a batch in cache-sized slices on threads, multi-head attention with
  one fused input projection.
* :mod:`~minitransformer.fast.fused` (with :mod:`~minitransformer.fast.kernels`): fused GPU
  kernels for dropout, ReLU-dropout, GELU, softmax, layer norm and the Adam update, each with a
  NumPy twin; used on device backends when :func:`minitransformer.gpu.use_fused_kernels` switches
  them on (off by default: unmeasured on a GPU).

A fast forward's cache goes to its fast backward only: a module's backward runs the path
its forward ran.
"""
from .attention import (SAFE_SCORE, SCORES_PER_SLICE, attention_backward, attention_forward,
                        attention_weights, batch_slices, batched_attention_backward,
                        batched_attention_forward, batched_attention_weights,
                        multi_head_attention_backward, multi_head_attention_forward,
                        multi_head_attention_weights)
from .layers import (layer_norm_backward, layer_norm_forward, linear_backward, linear_forward,
                     relu_dropout_linear_backward, relu_dropout_linear_forward)

__all__ = ["linear_forward", "linear_backward", "layer_norm_forward", "layer_norm_backward",
           "relu_dropout_linear_forward",
           "relu_dropout_linear_backward", "attention_forward", "attention_backward",
           "attention_weights", "SAFE_SCORE", "SCORES_PER_SLICE", "batch_slices",
           "batched_attention_forward", "batched_attention_backward", "batched_attention_weights",
           "multi_head_attention_forward", "multi_head_attention_backward",
           "multi_head_attention_weights"]
