"""The math of every layer, as the textbook writes it: forward and backward, side by side.

This is the **reference path**: the code that the derivations in ``docs/backward/`` and the
course quote, and the code a student steps through in a debugger (run a model on it with
``model.use_math("reference")`` or ``MINITRANSFORMER_MATH=reference``). The model runs
:mod:`minitransformer.fast` by default, whose functions compute the same numbers faster
and are tested equal to these.

Each ``*_forward`` function computes its output and returns ``(out, cache)``, where the
cache (a NamedTuple) holds exactly what the backward pass needs. Its twin
``*_backward(dout, cache)``, right below it, takes the gradient of the loss with respect to
``out`` and returns the gradients with respect to the inputs and parameters. The docstrings
derive each backward pass in the code's own symbols.

Conventions:

* Arrays may be NumPy or CuPy: every function asks its input which library to use
  (``xp = get_array_module(x)``), so the same code runs on the CPU and on a GPU.
* The last axis is the feature axis; any number of leading (batch, time) axes is allowed.
* Weights are stored ``(in_features, out_features)``, so a linear layer is ``y = x @ W + b``
  and reads left to right like the math.
* The dtype of the input is the dtype of the output and of every gradient: no function
  here upcasts float32 to float64. Scalars are Python floats for that reason
  (NumPy keeps ``float32_array * python_float`` in float32).

These functions check nothing: they are the math, kept short. The modules in
:mod:`minitransformer.layers` validate shapes and dtypes before they call them.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .backend import get_array_module, random_keep_mask, scatter_add_rows
from .positions import (alibi_bias, alibi_slopes, diagonal_bias_backward, diagonal_bias_forward,  # noqa: F401
                        rope_backward, rope_forward)  # (offered here)

#: What masked attention scores are set to before the softmax: a large *finite* negative
#: number, so exp() of it is exactly 0 next to any real score and nothing becomes NaN.
MASK_VALUE = -1e9


def _sum_over_leading_axes(a):
    """Sum over every axis but the last: the gradient of a bias or scale that was
    broadcast over every position."""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


# --------------------------------------------------------------------------------------
# Linear: y = x W + b
# --------------------------------------------------------------------------------------
class LinearCache(NamedTuple):
    x: Any   # the input (..., n_in)
    w: Any   # the weight (n_in, n_out)


def linear_forward(x, w, b=None):
    """y = x @ W + b, with x (..., n_in), W (n_in, n_out), b (n_out,)."""
    y = x @ w
    if b is not None:
        y = y + b
    return y, LinearCache(x, w)


def linear_backward(dy, cache):
    """Gradients of y = x W + b.

    Element-wise, y[n, j] = sum_i x[n, i] W[i, j] + b[j], so

    * dx[n, i] = sum_j dy[n, j] W[i, j]        ->  dx = dy @ W.T
    * dW[i, j] = sum_n x[n, i] dy[n, j]        ->  dW = x.T @ dy   (n runs over all rows)
    * db[j]    = sum_n dy[n, j]

    Returns ``(dx, dW, db)``.
    """
    x, w = cache
    n_in, n_out = w.shape
    dx = dy @ w.T
    dw = x.reshape(-1, n_in).T @ dy.reshape(-1, n_out)
    db = _sum_over_leading_axes(dy)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# Embedding: y = E[ids] * scale
# --------------------------------------------------------------------------------------
class EmbeddingCache(NamedTuple):
    ids: Any           # the token ids (...)
    table_shape: tuple  # (vocabulary, d_model)
    scale: float


def embedding_forward(ids, table, scale=1.0):
    """y[..., :] = E[ids[...], :] * scale: a row look-up (scale = sqrt(d_model) in the paper)."""
    y = table[ids] * scale
    return y, EmbeddingCache(ids, table.shape, scale)


def embedding_backward(dy, cache, padding_idx=None):
    """dE[v] = scale * (sum of dy over every position whose id is v).

    A look-up is multiplication by a one-hot matrix, y = onehot(ids) E, so
    dE = onehot(ids)^T dy: each row collects the gradients of all its occurrences.
    The row of the padding token, if any, gets no gradient: padding carries no meaning.
    Returns ``dE`` (the ids are integers and have no gradient).
    """
    xp = get_array_module(dy)
    dtable = xp.zeros(cache.table_shape, dtype=dy.dtype)
    scatter_add_rows(dtable, cache.ids, dy * cache.scale)
    if padding_idx is not None:
        dtable[padding_idx] = 0
    return dtable


# --------------------------------------------------------------------------------------
# Positional encoding
# --------------------------------------------------------------------------------------
def sinusoidal_positional_encoding(max_len, d_model, dtype=np.float64):
    """The paper's table: P[pos, 2i] = sin(pos / 10000^(2i/d)), P[pos, 2i+1] = cos(...).

    Each pair of columns is a rotation at its own frequency, so P[pos + k] is a linear
    function of P[pos]: relative offsets are easy for attention to read. Returned as a
    NumPy array; modules move it to their backend.
    """
    position = np.arange(max_len, dtype=np.float64)[:, None]
    inv_freq = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    table = np.zeros((max_len, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(position * inv_freq)
    table[:, 1::2] = np.cos(position * inv_freq[: d_model // 2])
    return table.astype(dtype)


# --------------------------------------------------------------------------------------
# Layer normalisation
# --------------------------------------------------------------------------------------
class LayerNormCache(NamedTuple):
    xhat: Any    # the normalised input (x - mean) * rstd
    rstd: Any    # 1 / sqrt(var + eps), one per position (..., 1)
    gamma: Any   # the scale (D,)


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """y = gamma * xhat + beta, xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps).

    Mean and (biased) variance are taken over the last axis of x, separately for
    every position.
    """
    xp = get_array_module(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1.0 / xp.sqrt(var + eps)
    xhat = (x - mean) * rstd
    y = gamma * xhat + beta
    return y, LayerNormCache(xhat, rstd, gamma)


def layer_norm_backward(dy, cache):
    """Gradients of layer norm, over a feature vector of length D.

    With g = dy * gamma (the gradient reaching xhat), the chain rule through the mean
    and the variance gives, for every position,

        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))

    (the two subtracted terms remove what moving x along the all-ones direction and
    along xhat itself would change: the normalisation undoes both).
    dgamma = sum over positions of dy * xhat; dbeta = sum over positions of dy.
    Returns ``(dx, dgamma, dbeta)``.
    """
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dgamma = _sum_over_leading_axes(dy * xhat)
    dbeta = _sum_over_leading_axes(dy)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------
def relu_forward(x):
    """y = max(x, 0). The cache is y itself."""
    xp = get_array_module(x)
    y = xp.maximum(x, 0)
    return y, y


def relu_backward(dy, cache):
    """dx = dy where x > 0, else 0 (y > 0 exactly where x > 0, so y is all we keep)."""
    y = cache
    return dy * (y > 0)


_GELU_C = math.sqrt(2.0 / math.pi)


class GeluCache(NamedTuple):
    x: Any   # the input
    t: Any   # tanh(c (x + 0.044715 x^3))


def gelu_forward(x):
    """GELU, tanh form: y = x/2 * (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi).

    This is PyTorch's ``gelu(approximate="tanh")`` and the form GPT-2 used.
    """
    xp = get_array_module(x)
    t = xp.tanh(_GELU_C * (x + 0.044715 * x ** 3))
    y = 0.5 * x * (1.0 + t)
    return y, GeluCache(x, t)


def gelu_backward(dy, cache):
    """dy/dx = (1 + t)/2 + x/2 * (1 - t^2) * c * (1 + 3 * 0.044715 x^2), t as in the forward."""
    x, t = cache
    dt = _GELU_C * (1.0 + 3 * 0.044715 * x ** 2)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t ** 2) * dt)


# --------------------------------------------------------------------------------------
# Softmax
# --------------------------------------------------------------------------------------
def softmax_forward(x):
    """p = exp(x - max x) / sum exp(x - max x) along the last axis. The cache is p.

    Subtracting the maximum changes nothing mathematically (it cancels in the ratio)
    but keeps exp() from overflowing: the largest exponent is exp(0) = 1.
    """
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return p, p


def softmax_backward(dp, cache):
    """dx_i = p_i * (dp_i - sum_j dp_j p_j).

    From dp_i/dx_k = p_i (delta_ik - p_k): the Jacobian is diag(p) - p p^T, and
    multiplying it by dp never needs the matrix.
    """
    p = cache
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------
class DropoutCache(NamedTuple):
    keep: Any      # booleans, True where a unit was kept
    scale: float   # 1 / P(keep)


def dropout_forward(x, p, rng, training=True):
    """Inverted dropout: y = x * m, m = keep * scale, scale = 1 / P(keep).

    Each unit is kept with probability about 1 - p. Scaling the kept units at training
    time keeps E[y] = x, so evaluation is the identity. ``rng`` is a seeded generator of
    x's backend: the same seed gives the same masks (see
    :func:`~minitransformer.backend.random_keep_mask` for how ``keep`` is drawn: booleans,
    a quarter of the memory of a float mask). The cache is None when dropout is off.
    """
    if not training or p == 0.0:
        return x, None
    keep, scale = random_keep_mask(rng, x.shape, p)
    return x * keep * scale, DropoutCache(keep, scale)


def dropout_backward(dy, cache):
    """dx = dy * m: the same units are dropped and scaled on the way back."""
    if cache is None:
        return dy
    return dy * cache.keep * cache.scale


# --------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------
class AttentionCache(NamedTuple):
    q: Any                # (..., Tq, d_k)
    k: Any                # (..., Tk, d_k)
    v: Any                # (..., Tk, d_v)
    weights: Any          # A = softmax(S), (..., Tq, Tk)
    dropped: Any          # A' = dropout(A), what multiplies V
    dropout_cache: Any    # DropoutCache, or None without dropout
    scale: float          # s = 1 / sqrt(d_k)


def attention_forward(q, k, v, mask=None, dropout_p=0.0, rng=None, training=True, bias=None):
    """out = softmax(Q K^T / sqrt(d_k) + bias + mask) V, over the last two axes.

    Shapes: q (..., Tq, d_k), k (..., Tk, d_k), v (..., Tk, d_v) -> out (..., Tq, d_v),
    where ``...`` is usually (batch, heads). ``mask`` is boolean, broadcastable to
    (..., Tq, Tk), True where a query may attend to a key. Masked scores are set to
    :data:`MASK_VALUE` before the softmax, so they get exactly zero weight. A query that
    may attend to *no* key has only masked scores, which the softmax would spread evenly;
    its weights are set to zero instead (a zero output, never NaN). Optional dropout acts
    on the attention weights. ``bias``, broadcastable to (..., Tq, Tk), is a constant added
    to the scores before the mask (ALiBi's :func:`alibi_bias`); the mask replaces masked
    scores whatever their bias.
    """
    xp = get_array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ xp.swapaxes(k, -1, -2)) * scale             # S = s Q K^T
    if bias is not None:
        scores = scores + bias                                 # S = s Q K^T + bias
    if mask is not None:
        scores = xp.where(mask, scores, MASK_VALUE)
    weights, _ = softmax_forward(scores)                       # A = softmax(S)
    if mask is not None:
        weights = weights * mask.any(axis=-1, keepdims=True)   # rows that see no key: 0
    dropped, dropout_cache = dropout_forward(weights, dropout_p, rng, training)
    out = dropped @ v                                          # out = A' V
    return out, AttentionCache(q, k, v, weights, dropped, dropout_cache, scale)


def attention_backward(dout, cache, bias_grad=False):
    """Gradients of out = A' V, A' = dropout(A), A = softmax(S), S = s Q K^T, s = 1/sqrt(d_k).

    Walking back through the forward, bottom to top:

    * out = A' V:             dA' = dout V^T,  dV = A'^T dout
    * dropout:                dA = dropout_backward(dA')
    * softmax, row by row:    dS = A * (dA - sum_j dA_ij A_ij)   (softmax_backward)
    * S = s Q K^T (+ bias):   dQ = s dS K,  dK = s dS^T Q

    dS passes through the addition of a bias unchanged. A constant bias (ALiBi) gets
    nothing; with ``bias_grad=True`` (a learned bias, :func:`diagonal_bias_forward`) the
    bias's gradient is returned too: dS summed over the batch, since one (H, Tq, Tk) bias is
    added to every sequence's scores. Masked entries have A = 0, so dS = 0 there: no gradient
    flows to masked keys, and a row with no key at all (A = 0 everywhere) sends none either.
    Returns ``(dq, dk, dv)``, and ``dbias`` after them with ``bias_grad=True``.
    """
    xp = get_array_module(dout)
    q, k, v, weights, dropped, dropout_cache, scale = cache
    dv = xp.swapaxes(dropped, -1, -2) @ dout
    ddropped = dout @ xp.swapaxes(v, -1, -2)
    dweights = dropout_backward(ddropped, dropout_cache)
    dscores = softmax_backward(dweights, weights)
    dq = (dscores @ k) * scale
    dk = (xp.swapaxes(dscores, -1, -2) @ q) * scale
    if bias_grad:
        return dq, dk, dv, dscores.reshape((-1,) + dscores.shape[-3:]).sum(axis=0)
    return dq, dk, dv


# --------------------------------------------------------------------------------------
# Multi-head attention
# --------------------------------------------------------------------------------------
def split_heads(x, n_heads):
    """(B, T, H*d) -> (B, H, T, d): each head sees its own slice of the features."""
    b, t, d_model = x.shape
    return x.reshape(b, t, n_heads, d_model // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, d) -> (B, T, H*d): the inverse of :func:`split_heads`."""
    b, h, t, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * d)


class MultiHeadAttentionCache(NamedTuple):
    q_cache: LinearCache          # the projections Q = x_q W_Q + b_Q, K, V
    k_cache: LinearCache
    v_cache: LinearCache
    attention_cache: AttentionCache
    out_cache: LinearCache        # out = concat(heads) W_O + b_O
    n_heads: int
    self_attention: bool          # x_kv was None: K and V came from x_q
    q_rotary: Any = None          # RotaryCache of the query heads (RoPE), or None
    k_rotary: Any = None          # RotaryCache of the key heads


def multi_head_attention_forward(x_q, x_kv, w_in, b_in, w_out, b_out, n_heads, mask=None,
                                 dropout_p=0.0, rng=None, training=True, rotary=None, bias=None):
    """Multi-head attention: out = concat(head_1, ..., head_H) W_O + b_O, where
    head_h = attention(Q_h, K_h, V_h) and Q_h, K_h, V_h are the h-th slices of
    d_k = d / n_heads features of

        Q = x_q W_Q + b_Q,   K = x_kv W_K + b_K,   V = x_kv W_V + b_V.

    ``w_in = [W_Q | W_K | W_V]`` (d, 3d) and ``b_in`` (3d,) hold the three projections side
    by side. ``x_kv=None`` is self-attention: keys and values come from x_q too.

    Positions inside attention: ``rotary = (q_positions, k_positions)`` turns the query and
    key heads by their positions (RoPE, :func:`rope_forward`) before the scores;
    ``bias`` (H, Tq, Tk) is added to the scores (ALiBi, :func:`alibi_bias`).
    """
    d = w_out.shape[0]
    self_attention = x_kv is None
    if self_attention:
        x_kv = x_q   # keys and values come from the queries' own sequence
    q, q_cache = linear_forward(x_q, w_in[:, :d], b_in[:d])
    k, k_cache = linear_forward(x_kv, w_in[:, d:2 * d], b_in[d:2 * d])
    v, v_cache = linear_forward(x_kv, w_in[:, 2 * d:], b_in[2 * d:])
    qh, kh = split_heads(q, n_heads), split_heads(k, n_heads)
    q_rotary = k_rotary = None
    if rotary is not None:   # RoPE: every query and key head turned by its position
        qh, q_rotary = rope_forward(qh, rotary[0])
        kh, k_rotary = rope_forward(kh, rotary[1])
    heads, attention_cache = attention_forward(qh, kh, split_heads(v, n_heads), mask, dropout_p, rng,
                                               training, bias)
    out, out_cache = linear_forward(merge_heads(heads), w_out, b_out)
    return out, MultiHeadAttentionCache(q_cache, k_cache, v_cache, attention_cache, out_cache,
                                        n_heads, self_attention, q_rotary, k_rotary)


def multi_head_attention_backward(dout, cache, bias_grad=False):
    """The forward read bottom to top: output projection, merge heads, attention, (RoPE,)
    split heads, the three input projections. The gradients of W_Q, W_K, W_V are put side by side
    as ``dw_in``, like the weights. x_q feeds Q, and in self-attention K and V too: its
    gradient is the sum of what comes back through each.

    Returns ``(dx_q, dx_kv, dw_in, db_in, dw_out, db_out)``; ``dx_kv`` is None for
    self-attention (its gradient is already inside ``dx_q``). With ``bias_grad=True``, the
    gradient of the (H, Tq, Tk) ``bias`` follows (:func:`attention_backward`).
    """
    xp = get_array_module(dout)
    n_heads = cache.n_heads
    dconcat, dw_out, db_out = linear_backward(dout, cache.out_cache)
    dqh, dkh, dvh, *dbias = attention_backward(split_heads(dconcat, n_heads), cache.attention_cache, bias_grad)
    if cache.q_rotary is not None:   # RoPE: turned back
        dqh, dkh = rope_backward(dqh, cache.q_rotary), rope_backward(dkh, cache.k_rotary)
    dx_q, dw_q, db_q = linear_backward(merge_heads(dqh), cache.q_cache)
    dx_k, dw_k, db_k = linear_backward(merge_heads(dkh), cache.k_cache)
    dx_v, dw_v, db_v = linear_backward(merge_heads(dvh), cache.v_cache)
    dw_in = xp.concatenate([dw_q, dw_k, dw_v], axis=1)
    db_in = xp.concatenate([db_q, db_k, db_v])
    if cache.self_attention:
        return (dx_q + dx_k + dx_v, None, dw_in, db_in, dw_out, db_out, *dbias)
    return (dx_q, dx_k + dx_v, dw_in, db_in, dw_out, db_out, *dbias)


def multi_head_attention_weights(cache):
    """The (B, H, Tq, Tk) attention weights of a :func:`multi_head_attention_forward` cache."""
    return cache.attention_cache.weights
