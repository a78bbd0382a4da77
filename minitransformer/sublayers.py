"""The two sub-layers of every Transformer layer: multi-head attention and the position-wise
feed-forward network, built from the layers of :mod:`minitransformer.layers`.

Each is a module like the layers (``forward`` keeps a cache, ``backward`` adds into its
parameters' gradients) and runs the path through the math its ``math_path`` names: the
fused functions of :mod:`minitransformer.fast` by default, the textbook ones of
:mod:`minitransformer.functional` on the reference path (:meth:`Module.use_math`).
``nn.MultiHeadAttention`` and ``nn.FeedForward`` are these classes.
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .backend import get_array_module
from .module import Module
from .positions import softplus_inverse
from .layers import ACTIVATIONS, Dropout, Linear, ReLU, _check_float_input, _math, _param, as_generator

__all__ = ["MultiHeadAttention", "FeedForward", "check_attention_mask"]


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

    ``positions``: None (the default: positions, if any, came with the inputs), ``"rope"``
    (queries and keys turned by their positions, :func:`~minitransformer.positions.rope_forward`)
    or ``"alibi"`` (the scores biased by distance, :func:`~minitransformer.positions.alibi_bias`).
    Query t and key t are both at position t (self-attention); a decoding step passes the
    position of its first query as ``start`` to :meth:`project_self` and :meth:`attend`.
    ``"diagonal"`` (cross-attention) adds ``-a_h |j - r_h i - b_h|`` to the score of query i
    and key j (:func:`~minitransformer.positions.diagonal_bias_forward`), with three more
    parameters of shape (n_heads,): ``diag_a_raw`` (a = softplus(a_raw), starting at ALiBi's
    slopes), ``diag_r`` (the slope, starting at 1) and ``diag_b`` (the offset, starting at 0).
    """

    def __init__(self, d_model, n_heads, dropout=0.0, *, rng=None, dropout_rng=None, dtype=None,
                 backend=None, positions=None):
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if positions not in (None, "rope", "alibi", "diagonal"):
            raise ValueError(f"MultiHeadAttention positions must be None, 'rope', 'alibi' or 'diagonal', "
                             f"got {positions!r}")
        if positions == "rope" and (d_model // n_heads) % 2:
            raise ValueError(f"RoPE turns pairs of features: d_model / n_heads = {d_model // n_heads} must be even")
        rng = as_generator(rng)
        self.d_model, self.n_heads, self.positions = d_model, n_heads, positions
        self.slopes = F.alibi_slopes(n_heads) if positions == "alibi" else None
        limit = math.sqrt(6.0 / (d_model + d_model))  # Glorot for each d x d block
        self.w_in = _param(rng.uniform(-limit, limit, (d_model, 3 * d_model)), dtype, backend)
        self.b_in = _param(np.zeros(3 * d_model), dtype, backend)
        self.w_out = _param(rng.uniform(-limit, limit, (d_model, d_model)), dtype, backend)
        self.b_out = _param(np.zeros(d_model), dtype, backend)
        if positions == "diagonal":   # no draw from rng: the other weights are those of any model
            self.diag_a_raw = _param(softplus_inverse(F.alibi_slopes(n_heads)), dtype, backend)
            self.diag_r = _param(np.ones(n_heads), dtype, backend)
            self.diag_b = _param(np.zeros(n_heads), dtype, backend)
        self.attn_dropout = Dropout(dropout, dropout_rng, backend)
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

    def _positions(self, x, q_len, k_len, start=0):
        """``(rotary, bias, diagonal_cache)`` for queries at positions start .. start + q_len - 1
        and keys at 0 .. k_len - 1: what :func:`functional.multi_head_attention_forward` takes,
        and the diagonal bias's cache (None for the other schemes)."""
        if self.positions is None:
            return None, None, None
        xp = get_array_module(x)
        q_positions, k_positions = start + xp.arange(q_len), xp.arange(k_len)
        if self.positions == "rope":
            return (q_positions, k_positions), None, None
        if self.positions == "diagonal":
            return (None, *F.diagonal_bias_forward(self.diag_a_raw.data, self.diag_r.data, self.diag_b.data,
                                                   q_positions, k_positions))
        return None, F.alibi_bias(self.slopes, q_positions, k_positions, self.w_in.dtype), None

    def forward(self, x_q, x_kv=None, mask=None):
        self._check(x_q, x_kv, mask)
        dropout, math_fns = self.attn_dropout, _math(self)
        rotary, bias, diagonal = self._positions(x_q, x_q.shape[1], (x_q if x_kv is None else x_kv).shape[1])
        out, cache = math_fns.multi_head_attention_forward(
            x_q, x_kv, self.w_in.data, self.b_in.data, self.w_out.data, self.b_out.data,
            self.n_heads, mask, dropout.p, dropout.rng, self.training, rotary, bias)
        self._cache = (math_fns, cache, diagonal)
        return out

    def backward(self, dout):
        math_fns, cache, diagonal = self._cache
        dx_q, dx_kv, dw_in, db_in, dw_out, db_out, *dbias = math_fns.multi_head_attention_backward(
            dout, cache, bias_grad=diagonal is not None)
        self._cache = None
        self.w_in.grad += dw_in
        self.b_in.grad += db_in
        self.w_out.grad += dw_out
        self.b_out.grad += db_out
        if diagonal is not None:   # the learned bias: its share of the scores' gradient
            d_a_raw, d_r, d_b = F.diagonal_bias_backward(dbias[0], diagonal)
            self.diag_a_raw.grad += d_a_raw
            self.diag_r.grad += d_r
            self.diag_b.grad += d_b
        return dx_q, dx_kv

    # -- inference pieces for incremental decoding (no cache for backward is kept) -----
    def project_self(self, x, start=0):
        """Q, K, V heads (B, H, T, d_k) of ``x``, from the one fused projection; with RoPE, Q
        and K turned by their positions start .. start + T - 1."""
        d = self.d_model
        qkv = x @ self.w_in.data + self.b_in.data
        q, k, v = (F.split_heads(qkv[..., i * d:(i + 1) * d], self.n_heads) for i in range(3))
        if self.positions == "rope":
            positions = start + get_array_module(x).arange(x.shape[1])
            q, k = F.rope_forward(q, positions)[0], F.rope_forward(k, positions)[0]
        return q, k, v

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

    def attend(self, q, k, v, mask=None, start=0):
        """Attention of query heads over key/value heads, heads merged and projected; with
        ALiBi or the diagonal bias, the queries at positions start .. and the keys at 0 ..
        biased by their positions."""
        bias = self._positions(q, q.shape[2], k.shape[2], start)[1]   # (RoPE turned q and k already)
        heads, _ = _math(self).attention_forward(q, k, v, mask, training=False, bias=bias)
        return F.merge_heads(heads) @ self.w_out.data + self.b_out.data

    @property
    def attention_weights(self):
        """The (B, H, Tq, Tk) attention weights of the last forward pass (for plots)."""
        if self._cache is None:
            return None
        return self._cache[0].multi_head_attention_weights(self._cache[1])

    def extra_repr(self):
        where = f", positions={self.positions}" if self.positions else ""
        return f"d_model={self.d_model}, n_heads={self.n_heads}{where}"


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
        self.dropout = Dropout(dropout, dropout_rng, backend)
        self.linear2 = Linear(d_ff, d_model, rng=rng, dtype=dtype, backend=backend)
        self._cache = None   # the fused pair's cache, when it ran

    def forward(self, x):
        h = self.linear1.forward(x)
        if self.math_path == "fast" and isinstance(self.activation, ReLU):
            math_fns = _math(self, h)   # fast, or fast.fused on a device with fused kernels on
            y, cache = math_fns.relu_dropout_linear_forward(
                h, self.linear2.weight.data, self.linear2.bias.data, self.dropout.p, self.dropout.rng,
                self.training)
            self._cache = (math_fns, cache)
            return y
        h = self.activation.forward(h)
        h = self.dropout.forward(h)
        return self.linear2.forward(h)

    def backward(self, dy):
        if self._cache is not None:   # the fused pair ran: its backward, then W1's
            math_fns, cache = self._cache
            dh, dw2, db2 = math_fns.relu_dropout_linear_backward(dy, cache)
            self._cache = None
            self.linear2.weight.grad += dw2
            self.linear2.bias.grad += db2
        else:
            dh = self.linear2.backward(dy)
            dh = self.dropout.backward(dh)
            dh = self.activation.backward(dh)
        return self.linear1.backward(dh)
