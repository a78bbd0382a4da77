"""The layers: modules that own parameters and call the math in :mod:`functional` or :mod:`fast`.

(:mod:`minitransformer.nn` gathers them with the sub-layers built from them, in one namespace.)

Every layer has ``forward(...)``, which validates its input, computes the output and
keeps what the backward pass needs, and ``backward(dout)``, which returns the gradient
with respect to the input and **adds** the parameters' gradients into ``param.grad``.
A layer remembers one forward pass at a time: call ``backward`` before the next
``forward``. The backward pass frees what the forward kept, so between training steps
memory holds little more than the weights, gradients and optimizer state.

Constructors take ``rng`` (a NumPy ``Generator`` or an integer seed) for the initial
weights, ``dtype`` (float32 unless told otherwise) and ``backend`` ("numpy" or "cupy";
by default ``$MINITRANSFORMER_BACKEND`` or numpy). Weights are drawn on the host with
NumPy and then moved, so the same seed gives the same model on every backend.

Each layer runs the path through the math its ``math_path`` names (see
:meth:`Module.use_math`): the functions of :mod:`fast` by default, those of
:mod:`functional` on the reference path, and the reference functions wherever there is no
fast twin. On a device backend with the fused kernels switched on
(:func:`gpu.use_fused_kernels`), the fast path runs :mod:`fast.fused` where it has a
function. A layer's forward keeps the functions it ran with its cache, so its backward
runs the same path.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend as _backend
from . import fast, gpu
from . import functional as F
from .fast import fused
from .module import Module, Parameter

__all__ = ["Linear", "Embedding", "PositionalEncoding", "NoPositionalEncoding", "positional_encoding", "LayerNorm", "ReLU", "GELU", "Softmax",
           "Dropout", "ACTIVATIONS", "as_generator"]


# --------------------------------------------------------------------------------------
# Helpers shared by the layers: random generators and input checks
# --------------------------------------------------------------------------------------
def as_generator(rng):
    """A NumPy Generator from a Generator, an integer seed, or None (unseeded)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _math(module, x=None):
    """The functions ``module`` runs on ``x``: :mod:`fast`, or :mod:`functional` on the reference
    path; on the fast path, :mod:`fast.fused` for an ``x`` on a device when the fused kernels
    are switched on (:func:`gpu.fused_kernels_active`)."""
    if module.math_path != "fast":
        return F
    return fused if x is not None and gpu.fused_kernels_active(x) else fast


def _param(array, dtype, backend):
    """A Parameter holding ``array`` converted to the dtype and backend asked for."""
    return Parameter(_backend.asarray(array, backend, dtype or _backend.DEFAULT_DTYPE))


def _check_float_input(layer, x, n_features, dtype):
    """ValueError unless x is an array of the layer's dtype with ``n_features`` on the last axis."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{layer} expects an array, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != n_features:
        raise ValueError(f"{layer} expects input of shape (..., {n_features}), got {tuple(x.shape)}")
    if x.dtype != dtype:
        raise ValueError(f"{layer} expects {np.dtype(dtype).name} input (the layer's dtype), got "
                         f"{x.dtype}; convert the input with .astype(...) or the layer with .to(dtype=...)")


from .validation import check_token_ids as _check_ids  # noqa: E402  (one check for every reader of ids)


# --------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------
class Linear(Module):
    """y = x W + b, with W of shape (in_features, out_features).

    W is initialised Glorot-uniform, U(-a, a) with a = sqrt(6 / (in + out)), which keeps
    the variance of activations and of gradients about the same through the layer.
    """

    def __init__(self, in_features, out_features, bias=True, *, rng=None, dtype=None, backend=None):
        rng = as_generator(rng)
        limit = math.sqrt(6.0 / (in_features + out_features))
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param(rng.uniform(-limit, limit, (in_features, out_features)), dtype, backend)
        self.bias = _param(np.zeros(out_features), dtype, backend) if bias else None
        self._cache = None

    def forward(self, x):
        _check_float_input("Linear", x, self.in_features, self.weight.dtype)
        math_fns = _math(self)
        y, cache = math_fns.linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        self._cache = (math_fns, cache)
        return y

    def backward(self, dy):
        math_fns, cache = self._cache
        dx, dw, db = math_fns.linear_backward(dy, cache)
        self._cache = None  # the forward's arrays are not needed any more: free them
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}, bias={self.bias is not None}"


# --------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------
class Embedding(Module):
    """Token ids -> vectors: y = E[ids] * scale.

    ``scale=True`` multiplies by sqrt(d_model), as the paper does, so that embeddings and
    the positional encoding (entries in [-1, 1]) have comparable size; the table is then
    initialised N(0, 1/d_model) so that the scaled vectors have unit-variance entries.
    The row of ``padding_idx`` starts at zero and gets no gradient from this layer's
    backward pass (a tied output projection, which reads the same table, still sends it one).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, scale=False, *,
                 rng=None, dtype=None, backend=None):
        rng = as_generator(rng)
        if padding_idx is not None and not 0 <= padding_idx < num_embeddings:
            raise ValueError(f"padding_idx must be in [0, {num_embeddings}), got {padding_idx}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.scale = math.sqrt(embedding_dim) if scale else 1.0
        table = rng.normal(0.0, embedding_dim ** -0.5 if scale else 1.0, (num_embeddings, embedding_dim))
        if padding_idx is not None:
            table[padding_idx] = 0.0
        self.weight = _param(table, dtype, backend)
        self._cache = None

    def forward(self, ids):
        _check_ids("Embedding", ids, self.num_embeddings)
        y, self._cache = F.embedding_forward(ids, self.weight.data, self.scale)
        return y

    def backward(self, dy):
        """Adds into the table's gradient; returns None (token ids have no gradient)."""
        self.weight.grad += F.embedding_backward(dy, self._cache, self.padding_idx)
        return None

    def extra_repr(self):
        return (f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, "
                f"scale={self.scale:.4g}")


# --------------------------------------------------------------------------------------
# Positional encoding
# --------------------------------------------------------------------------------------
class PositionalEncoding(Module):
    """y[b, t] = x[b, t] + P[start + t]: tells attention where each token is.

    ``learned=False`` (default) uses the paper's fixed sinusoids, a buffer with no
    gradient; ``learned=True`` makes P a parameter (initialised small and random) whose
    gradient is the sum of dy over the batch. ``start`` shifts the positions, which
    incremental decoding uses to encode one new token at position t.
    """

    def __init__(self, d_model, max_len=512, learned=False, *, rng=None, dtype=None, backend=None):
        self.d_model, self.max_len, self.learned = d_model, max_len, learned
        if learned:
            self.table = _param(as_generator(rng).normal(0.0, 0.02, (max_len, d_model)), dtype, backend)
        else:
            self.buffer = _backend.asarray(F.sinusoidal_positional_encoding(max_len, d_model),
                                           backend, dtype or _backend.DEFAULT_DTYPE)
        self._cache = None

    def _move_buffers(self, backend_name, dtype, memo):
        if not self.learned:
            self.buffer = _backend.asarray(self.buffer, backend_name, dtype or self.buffer.dtype)

    @property
    def positions(self):
        """The (max_len, d_model) table P, parameter or buffer."""
        return self.table.data if self.learned else self.buffer

    def forward(self, x, start=0):
        table = self.positions
        _check_float_input("PositionalEncoding", x, self.d_model, table.dtype)
        length = x.shape[-2]
        _check_length(start + length, self.max_len)
        self._cache = (start, length)
        return x + table[start:start + length]

    def backward(self, dy):
        if self.learned:
            start, length = self._cache
            self.table.grad[start:start + length] += dy.reshape(-1, length, self.d_model).sum(axis=0)
        return dy

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}, learned={self.learned}"


def _check_length(length, max_len):
    if length > max_len:
        raise ValueError(f"sequence of length {length} is longer than max_len={max_len} "
                         f"of the positional encoding; build the model with a larger max_len")


class NoPositionalEncoding(Module):
    """y = x: nothing added to the embeddings, for RoPE and ALiBi, whose positions act inside
    every self-attention (:class:`~minitransformer.sublayers.MultiHeadAttention`). It keeps
    :class:`PositionalEncoding`'s ``forward(x, start)`` and its limit of ``max_len``."""

    def __init__(self, max_len=512):
        self.max_len = max_len

    def forward(self, x, start=0):
        _check_length(start + x.shape[-2], self.max_len)
        return x

    def backward(self, dy):
        return dy

    def extra_repr(self):
        return f"max_len={self.max_len}, positions inside attention"


def positional_encoding(positions, d_model, max_len, *, rng=None, dtype=None):
    """What a model adds to its embeddings for its ``positions`` setting (one of
    :data:`~minitransformer.config.POSITIONS`): the sinusoids, a learned table, or nothing."""
    from .config import self_attention_positions   # (config imports the layers)
    if self_attention_positions(positions):
        return NoPositionalEncoding(max_len)
    return PositionalEncoding(d_model, max_len, positions == "learned", rng=rng, dtype=dtype)


# --------------------------------------------------------------------------------------
# Layer norm, activations, softmax, dropout
# --------------------------------------------------------------------------------------
class LayerNorm(Module):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta over the last axis; gamma=1, beta=0 at start."""

    def __init__(self, d_model, eps=1e-5, *, dtype=None, backend=None):
        self.d_model, self.eps = d_model, eps
        self.gamma = _param(np.ones(d_model), dtype, backend)
        self.beta = _param(np.zeros(d_model), dtype, backend)
        self._cache = None

    def forward(self, x):
        _check_float_input("LayerNorm", x, self.d_model, self.gamma.dtype)
        math_fns = _math(self, x)
        y, cache = math_fns.layer_norm_forward(x, self.gamma.data, self.beta.data, self.eps)
        self._cache = (math_fns, cache)
        return y

    def backward(self, dy):
        math_fns, cache = self._cache
        dx, dgamma, dbeta = math_fns.layer_norm_backward(dy, cache)
        self._cache = None
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        return dx

    def extra_repr(self):
        return f"{self.d_model}, eps={self.eps}"


class _Elementwise(Module):
    """A parameter-free layer that wraps the forward/backward pair ``{_name}_forward`` and
    ``{_name}_backward`` of :mod:`functional` (or of :mod:`fast`, where it has them)."""

    _name = None

    def __init__(self):
        self._cache = None

    def forward(self, x):
        math_fns = _math(self, x)
        if not hasattr(math_fns, f"{self._name}_forward"):
            math_fns = F   # no fast twin: the reference runs
        y, cache = getattr(math_fns, f"{self._name}_forward")(x)
        self._cache = (math_fns, cache)
        return y

    def backward(self, dy):
        math_fns, cache = self._cache
        dx, self._cache = getattr(math_fns, f"{self._name}_backward")(dy, cache), None
        return dx


class ReLU(_Elementwise):
    """y = max(x, 0)."""
    _name = "relu"


class GELU(_Elementwise):
    """GELU, tanh approximation (PyTorch's ``approximate='tanh'``)."""
    _name = "gelu"


class Softmax(_Elementwise):
    """Numerically stable softmax over the last axis."""
    _name = "softmax"


ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


class Dropout(Module):
    """Inverted dropout with probability ``p``; the identity in eval mode or when p = 0.

    ``rng`` is a generator of the layer's backend (see :func:`backend.default_rng`); the
    layers of a model share one, so a single seed fixes every mask. Without one, the layer
    makes an unseeded generator on ``backend``: masks must live where the activations do.
    """

    def __init__(self, p=0.1, rng=None, backend=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else _backend.default_rng(None, backend)
        self._cache = None

    def _move_buffers(self, backend_name, dtype, memo):
        """Give the layer a generator on the new backend, one per generator shared before."""
        if _backend.rng_backend_name(self.rng) != backend_name:
            key = id(self.rng)
            if key not in memo:
                seed = int(_backend.to_numpy(self.rng.integers(0, 2**62, size=1))[0])
                memo[key] = _backend.default_rng(seed, backend_name)
            self.rng = memo[key]

    def forward(self, x):
        math_fns = _math(self, x)
        if not hasattr(math_fns, "dropout_forward"):
            math_fns = F   # no fast twin: the reference runs
        y, cache = math_fns.dropout_forward(x, self.p, self.rng, self.training)
        self._cache = (math_fns, cache)
        return y

    def backward(self, dy):
        math_fns, cache = self._cache
        dx, self._cache = math_fns.dropout_backward(dy, cache), None
        return dx

    def extra_repr(self):
        return f"p={self.p}"
