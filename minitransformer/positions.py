"""Positions inside attention: rotary embeddings (RoPE), linear biases (ALiBi), and a learned
diagonal bias for cross-attention.

The paper adds a table of positions to the token embeddings, once, before the first layer
(:func:`~minitransformer.functional.sinusoidal_positional_encoding`, or a learned table).
The two schemes here act inside every self-attention instead, on the scores, so that a
score depends on how far apart two tokens are and not on where they are:

* **RoPE** (Su et al., 2021, "RoFormer") turns each pair of query and key features by an
  angle proportional to the token's position. The dot product of a query turned by
  ``theta_i`` and a key turned by ``theta_j`` only sees ``theta_i - theta_j``.
* **ALiBi** (Press et al., 2022, "Train Short, Test Long") adds ``-m_h |i - j|`` to the
  score of query i and key j in head h: a penalty growing with distance, a different
  slope ``m_h`` per head, no parameter at all.
* **The diagonal bias** acts in cross-attention, where query i (a target position) and key
  j (a source position) belong to different sequences: it adds ``-a_h |j - r_h i - b_h|``,
  a penalty on the distance of key j from a line whose sharpness a_h, slope r_h and offset
  b_h each head learns. It is the one scheme here with parameters.

These are the reference functions, in the style of :mod:`~minitransformer.functional`
(which offers them under the same names): each forward returns ``(out, cache)`` and its
backward sits right below it. The fast path (:mod:`minitransformer.fast`) calls these same
functions: they touch (T, d_k) and (H, Tq, Tk) numbers once, next to the attention that
touches them several times, so a fused twin would not pay for itself.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .backend import get_array_module

#: The base of RoPE's angles, as for the sinusoids: pair i turns 10000^(-2i/d_k) radians
#: per position.
ROPE_BASE = 10000.0


# --------------------------------------------------------------------------------------
# RoPE: queries and keys turned by their positions
# --------------------------------------------------------------------------------------
class RotaryCache(NamedTuple):
    cos: Any   # cos(theta), (T, d_k / 2): theta[t, i] = position[t] * w_i
    sin: Any   # sin(theta)


def rotary_angles(positions, d_k, base=ROPE_BASE):
    """theta[t, i] = positions[t] * w_i, w_i = base^(-2i / d_k), i = 0 .. d_k/2 - 1, in float64
    (an angle of a thousand radians keeps its digits; the sine and cosine are then rounded
    to the input's dtype)."""
    xp = get_array_module(positions)
    inv_freq = base ** (-xp.arange(0, d_k, 2, dtype=np.float64) / d_k)
    return positions.astype(np.float64)[:, None] * inv_freq


def _turn(x, cos, sin):
    """Each feature pair (x[2i], x[2i+1]) of x (..., T, d_k) turned by the angle whose
    cosine and sine are cos[t, i], sin[t, i]."""
    xp = get_array_module(x)
    even, odd = x[..., 0::2], x[..., 1::2]
    y = xp.empty_like(x)
    y[..., 0::2] = even * cos - odd * sin
    y[..., 1::2] = even * sin + odd * cos
    return y


def rope_forward(x, positions, base=ROPE_BASE):
    """Rotary position embedding of queries or keys x (..., T, d_k) at ``positions`` (T,).

    Feature pair i of the token at position p is a point in the plane, turned by
    theta = p w_i:

        y[2i]   = x[2i] cos(theta) - x[2i+1] sin(theta)
        y[2i+1] = x[2i] sin(theta) + x[2i+1] cos(theta)

    that is y_pair = R(theta) x_pair, with R the 2x2 rotation. For a query at position i
    and a key at position j, (R(i w) q) . (R(j w) k) = q . (R((j - i) w) k): the score
    depends on the offset j - i only. ``positions`` are absolute (0, 1, ...), so a
    decoding step that adds a token at position t turns it by t w, as a whole pass would.
    d_k must be even.
    """
    xp = get_array_module(x)
    theta = rotary_angles(xp.asarray(positions), x.shape[-1], base)
    cos, sin = xp.cos(theta).astype(x.dtype), xp.sin(theta).astype(x.dtype)
    return _turn(x, cos, sin), RotaryCache(cos, sin)


def rope_backward(dy, cache):
    """dx = R(theta)^T dy, pair by pair: the transpose of a rotation is the rotation by
    -theta, so

        dx[2i]   =  dy[2i] cos(theta) + dy[2i+1] sin(theta)
        dx[2i+1] = -dy[2i] sin(theta) + dy[2i+1] cos(theta)

    (y = R x is linear in x, so dx = (dy/dx)^T dy = R^T dy). The positions are integers
    and have no gradient. Returns ``dx``.
    """
    return _turn(dy, cache.cos, -cache.sin)


# --------------------------------------------------------------------------------------
# ALiBi: a linear penalty on distance, one slope per head
# --------------------------------------------------------------------------------------
def alibi_slopes(n_heads):
    """Press et al.'s slopes: for n heads a power of two, the geometric sequence
    m_h = 2^(-8h/n), h = 1 .. n (8 heads: 1/2, 1/4, ..., 1/256). Otherwise the slopes of
    the power of two just below n, then every other slope of the next power of two
    (the paper's code). A tuple of floats, steepest first."""
    def powers_of_two(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    below = 2 ** int(math.floor(math.log2(n_heads)))
    slopes = powers_of_two(below)
    if below < n_heads:
        slopes += alibi_slopes(2 * below)[0::2][: n_heads - below]
    return tuple(slopes)


def alibi_bias(slopes, q_positions, k_positions, dtype=np.float64):
    """bias[h, i, j] = -m_h |q_positions[i] - k_positions[j]|, shape (H, Tq, Tk).

    Added to the attention scores, S = s Q K^T + bias (see
    :func:`~minitransformer.functional.attention_forward`): each head prefers near keys,
    steep heads strongly, shallow ones barely. The distance is |i - j| so that one formula
    serves the encoder, whose queries see keys on both sides, and the causal decoder,
    whose keys are never after the query (there i - j >= 0). Positions are absolute, so a
    cached decoding step builds the row of the new query at its own position.

    Its backward pass is the identity on the scores: the bias is a constant, so
    dS/d(s Q K^T) = I, the gradient of the scores goes on to Q and K unchanged, and the
    bias, having no parameter, receives nothing.
    """
    xp = get_array_module(q_positions)
    m = xp.asarray(slopes, dtype=np.float64)[:, None, None]
    distance = xp.abs(q_positions[:, None] - k_positions[None, :]).astype(np.float64)
    return (-m * distance).astype(dtype)


# --------------------------------------------------------------------------------------
# The diagonal bias: cross-attention near a learned line j = r i + b
# --------------------------------------------------------------------------------------
class DiagonalCache(NamedTuple):
    a: Any             # a = softplus(a_raw), (H,): the sharpness of each head
    da_da_raw: Any     # sigmoid(a_raw), (H,): the derivative of softplus
    u: Any             # u[h, i, j] = j - r_h i - b_h, (H, Tq, Tk): key j's offset from the line
    q_positions: Any   # i, (Tq,)


def softplus_inverse(a):
    """The a_raw whose softplus is ``a`` > 0: log(exp(a) - 1), for initial values."""
    return np.log(np.expm1(np.asarray(a, dtype=np.float64)))


def diagonal_bias_forward(a_raw, r, b, q_positions, k_positions):
    """bias[h, i, j] = -a_h |j - r_h i - b_h|, shape (H, Tq, Tk), with a_h = softplus(a_raw_h).

    Query i is a target position, key j a source position (cross-attention). Head h
    prefers the keys near the line j = r_h i + b_h, sharply when a_h is large; a_h > 0
    because softplus(x) = log(1 + e^x) is positive, so the bias is always a penalty. The
    parameters a_raw, r, b are (H,) each; ``q_positions`` and ``k_positions`` are absolute,
    so a cached decoding step builds the row of its query at its own position.

    The line is all it is told: where a target token reads its source is a line, of a
    slope and offset it must learn (r starts at 1, b at 0). Returns ``(bias, cache)``.
    """
    xp = get_array_module(a_raw)
    a = xp.logaddexp(0.0, a_raw)                                      # softplus(a_raw)
    i = xp.asarray(q_positions).astype(a_raw.dtype)[None, :, None]
    j = xp.asarray(k_positions).astype(a_raw.dtype)[None, None, :]
    u = j - r[:, None, None] * i - b[:, None, None]                   # u = j - r i - b
    bias = -a[:, None, None] * xp.abs(u)
    da_da_raw = 0.5 * (1.0 + xp.tanh(0.5 * a_raw))                    # sigmoid(a_raw), stably
    return bias, DiagonalCache(a, da_da_raw, u, i[0, :, 0])


def diagonal_bias_backward(d_bias, cache):
    """Gradients of bias = -a |u|, u = j - r i - b, a = softplus(a_raw), per head.

    ``d_bias`` (H, Tq, Tk) is the gradient of the attention scores summed over the batch
    (the one bias is added to every sequence's scores, so its gradient is the sum). With
    d|u|/du = sign(u), taken as 0 at u = 0 (|u| has no derivative there; 0 is the middle of
    its left and right slopes, -1 and 1, as NumPy's sign gives):

        d_a     = -sum_ij d_bias |u|             d_a_raw = d_a * sigmoid(a_raw)
        d_u     = -a sign(u) d_bias
        d_r     =  sum_ij d_u (-i) =  sum_ij a sign(u) d_bias i
        d_b     =  sum_ij d_u (-1) =  sum_ij a sign(u) d_bias

    (softplus'(x) = e^x / (1 + e^x) = sigmoid(x)). Returns ``(d_a_raw, d_r, d_b)``, (H,) each.
    """
    xp = get_array_module(d_bias)
    d_a = -(d_bias * xp.abs(cache.u)).sum(axis=(1, 2))
    g = d_bias * xp.sign(cache.u) * cache.a[:, None, None]           # -d_u
    d_r = (g * cache.q_positions[None, :, None]).sum(axis=(1, 2))
    d_b = g.sum(axis=(1, 2))
    return d_a * cache.da_da_raw, d_r, d_b


__all__ = ["ROPE_BASE", "RotaryCache", "rotary_angles", "rope_forward", "rope_backward", "alibi_slopes",
           "alibi_bias", "DiagonalCache", "softplus_inverse", "diagonal_bias_forward", "diagonal_bias_backward"]
