"""The layers: modules that own parameters and call the math in :mod:`functional` or :mod:`fast`.

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
fast twin. A layer's forward keeps the functions it ran with its cache, so its backward
runs the same path.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend as _backend
from . import fast
from . import functional as F
from .module import Module, ModuleList, Parameter

__all__ = ["Parameter", "Module", "ModuleList", "Linear", "Embedding", "PositionalEncoding",
           "LayerNorm", "ReLU", "GELU", "Softmax", "Dropout", "MultiHeadAttention", "FeedForward",
           "ACTIVATIONS", "as_generator"]


# --------------------------------------------------------------------------------------
# Helpers shared by the layers: random generators and input checks
# --------------------------------------------------------------------------------------
def as_generator(rng):
    """A NumPy Generator from a Generator, an integer seed, or None (unseeded)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _math(module):
    """The functions ``module`` runs: :mod:`fast`, or :mod:`functional` on the reference path."""
    return fast if module.math_path == "fast" else F


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
        if start + length > self.max_len:
            raise ValueError(f"sequence of length {start + length} is longer than max_len={self.max_len} "
                             f"of the positional encoding; build the model with a larger max_len")
        self._cache = (start, length)
        return x + table[start:start + length]

    def backward(self, dy):
        if self.learned:
            start, length = self._cache
            self.table.grad[start:start + length] += dy.reshape(-1, length, self.d_model).sum(axis=0)
        return dy

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}, learned={self.learned}"


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
        math_fns = _math(self)
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
        math_fns = _math(self)
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
    layers of a model share one, so a single seed fixes every mask.
    """

    def __init__(self, p=0.1, rng=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else _backend.default_rng(None)
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
        y, self._cache = F.dropout_forward(x, self.p, self.rng, self.training)
        return y

    def backward(self, dy):
        dx, self._cache = F.dropout_backward(dy, self._cache), None
        return dx

    def extra_repr(self):
        return f"p={self.p}"


# --------------------------------------------------------------------------------------
# Multi-head attention
# --------------------------------------------------------------------------------------
class MultiHeadAttention(Module):
    """Multi-head scaled dot-product attention, for self- and cross-attention.

    Parameters: ``w_in`` (d, 3d) = [W_Q | W_K | W_V] with bias ``b_in`` (3d,), and the
    output projection ``w_out`` (d, d) with ``b_out`` (d,). Each head attends with
    d_k = d / n_heads features. ``dropout`` acts on the attention weights (0 by default:
    the paper's dropout sits on the sub-layer outputs, and this one is costly).

    ``forward(x_q, x_kv=None, mask=None)``: with ``x_kv=None`` the layer attends over
    ``x_q`` itself (self-attention); otherwise queries come from ``x_q`` (B, Tq, d) and keys
    and values from ``x_kv`` (B, Tk, d) (cross-attention). ``mask`` is a boolean array
    broadcastable to (B, n_heads, Tq, Tk), True where attending is allowed.
    ``backward(dout)`` returns ``(dx_q, dx_kv)``, with ``dx_kv = None`` for self-attention.
    """

    def __init__(self, d_model, n_heads, dropout=0.0, *, rng=None, dropout_rng=None, dtype=None,
                 backend=None):
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        rng = as_generator(rng)
        self.d_model, self.n_heads = d_model, n_heads
        limit = math.sqrt(6.0 / (d_model + d_model))  # Glorot for each d x d block
        self.w_in = _param(rng.uniform(-limit, limit, (d_model, 3 * d_model)), dtype, backend)
        self.b_in = _param(np.zeros(3 * d_model), dtype, backend)
        self.w_out = _param(rng.uniform(-limit, limit, (d_model, d_model)), dtype, backend)
        self.b_out = _param(np.zeros(d_model), dtype, backend)
        self.attn_dropout = Dropout(dropout, dropout_rng)
        self._cache = None

    def _check(self, x_q, x_kv, mask):
        _check_float_input("MultiHeadAttention", x_q, self.d_model, self.w_in.dtype)
        if x_q.ndim != 3:
            raise ValueError(f"MultiHeadAttention expects queries of shape (batch, length, {self.d_model}), "
                             f"got {tuple(x_q.shape)}")
        kv = x_q if x_kv is None else x_kv
        if x_kv is not None:
            _check_float_input("MultiHeadAttention (keys/values)", x_kv, self.d_model, self.w_in.dtype)
            if x_kv.ndim != 3 or x_kv.shape[0] != x_q.shape[0]:
                raise ValueError(f"keys/values must have shape ({x_q.shape[0]}, length, {self.d_model}) "
                                 f"to match the queries' batch, got {tuple(x_kv.shape)}")
        if mask is not None:
            scores_shape = (x_q.shape[0], self.n_heads, x_q.shape[1], kv.shape[1])
            check_attention_mask(mask, scores_shape)

    def forward(self, x_q, x_kv=None, mask=None):
        self._check(x_q, x_kv, mask)
        dropout, math_fns = self.attn_dropout, _math(self)
        out, cache = math_fns.multi_head_attention_forward(
            x_q, x_kv, self.w_in.data, self.b_in.data, self.w_out.data, self.b_out.data,
            self.n_heads, mask, dropout.p, dropout.rng, self.training)
        self._cache = (math_fns, cache)
        return out

    def backward(self, dout):
        math_fns, cache = self._cache
        dx_q, dx_kv, dw_in, db_in, dw_out, db_out = math_fns.multi_head_attention_backward(dout, cache)
        self._cache = None
        self.w_in.grad += dw_in
        self.b_in.grad += db_in
        self.w_out.grad += dw_out
        self.b_out.grad += db_out
        return dx_q, dx_kv

    # -- inference pieces for incremental decoding (no cache for backward is kept) -----
    def project_self(self, x):
        """Q, K, V heads (B, H, T, d_k) of ``x``, from the one fused projection."""
        d = self.d_model
        qkv = x @ self.w_in.data + self.b_in.data
        return tuple(F.split_heads(qkv[..., i * d:(i + 1) * d], self.n_heads) for i in range(3))

    def project_queries(self, x):
        """Query heads (B, H, T, d_k) of ``x`` (cross-attention)."""
        d = self.d_model
        return F.split_heads(x @ self.w_in.data[:, :d] + self.b_in.data[:d], self.n_heads)

    def project_memory(self, memory):
        """Key and value heads (B, H, S, d_k) of the encoder output (cross-attention)."""
        d = self.d_model
        kv = memory @ self.w_in.data[:, d:] + self.b_in.data[d:]
        return (F.split_heads(kv[..., :d], self.n_heads).copy(),
                F.split_heads(kv[..., d:], self.n_heads).copy())

    def attend(self, q, k, v, mask=None):
        """Attention of query heads over key/value heads, heads merged and projected."""
        heads, _ = _math(self).attention_forward(q, k, v, mask, training=False)
        return F.merge_heads(heads) @ self.w_out.data + self.b_out.data

    @property
    def attention_weights(self):
        """The (B, H, Tq, Tk) attention weights of the last forward pass (for plots)."""
        if self._cache is None:
            return None
        math_fns, cache = self._cache
        return math_fns.multi_head_attention_weights(cache)

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}"


def check_attention_mask(mask, scores_shape):
    """ValueError unless ``mask`` is boolean and broadcastable to ``scores_shape`` (B, H, Tq, Tk)."""
    if not hasattr(mask, "dtype") or mask.dtype != bool:
        raise ValueError(f"attention mask must be a boolean array (True = may attend), got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)}")
    ok = mask.ndim <= 4 and all(m in (1, s) for m, s in zip(mask.shape[::-1], scores_shape[::-1]))
    if not ok:
        raise ValueError(f"attention mask of shape {tuple(mask.shape)} does not broadcast to the "
                         f"attention scores (batch, heads, q_len, k_len) = {tuple(scores_shape)}")


# --------------------------------------------------------------------------------------
# Position-wise feed-forward
# --------------------------------------------------------------------------------------
class FeedForward(Module):
    """FFN(x) = W2 act(W1 x + b1) + b2, applied to every position alone (dropout after act).

    On the fast path with ReLU, ReLU, dropout and W2 run as one pair,
    :func:`fast.relu_dropout_linear_forward` and its backward; otherwise each sub-layer
    runs on its own.
    """

    def __init__(self, d_model, d_ff, activation="relu", dropout=0.0, *, rng=None, dropout_rng=None,
                 dtype=None, backend=None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: expected one of {sorted(ACTIVATIONS)}")
        rng = as_generator(rng)
        self.linear1 = Linear(d_model, d_ff, rng=rng, dtype=dtype, backend=backend)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = Dropout(dropout, dropout_rng)
        self.linear2 = Linear(d_ff, d_model, rng=rng, dtype=dtype, backend=backend)
        self._cache = None   # the fused pair's cache, when it ran

    def forward(self, x):
        h = self.linear1.forward(x)
        if self.math_path == "fast" and isinstance(self.activation, ReLU):
            y, self._cache = fast.relu_dropout_linear_forward(
                h, self.linear2.weight.data, self.linear2.bias.data, self.dropout.p, self.dropout.rng,
                self.training)
            return y
        h = self.activation.forward(h)
        h = self.dropout.forward(h)
        return self.linear2.forward(h)

    def backward(self, dy):
        if self._cache is not None:   # the fused pair ran: its backward, then W1's
            dh, dw2, db2 = fast.relu_dropout_linear_backward(dy, self._cache)
            self._cache = None
            self.linear2.weight.grad += dw2
            self.linear2.bias.grad += db2
        else:
            dh = self.linear2.backward(dy)
            dh = self.dropout.backward(dh)
            dh = self.activation.backward(dh)
        return self.linear1.backward(dh)
