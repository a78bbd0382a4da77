"""Fast attention: the same numbers as :func:`functional.attention_forward` and
:func:`functional.multi_head_attention_forward`, computed faster (see :mod:`minitransformer.fast`).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .. import functional as F
from ..backend import get_array_module, random_keep_mask
from ..cpu import run_in_parallel
from .layers import _sum_over_last_axis, linear_backward, linear_forward

#: Attention scores no larger than this in size need no max-subtraction before exp():
#: exp(+-64) is 6e27 or 2e-28, inside float32's range (about 1e-38 to 3e38) with room
#: for a row sum over 10**10 keys.
SAFE_SCORE = 64.0


def _transposed(a):
    """Every matrix of a stack transposed (the last two axes swapped): a view, no copy."""
    return get_array_module(a).swapaxes(a, -1, -2)


# --------------------------------------------------------------------------------------
# Scaled dot-product attention: the row factors on the small side of the products
# --------------------------------------------------------------------------------------
class AttentionCache(NamedTuple):
    q_scaled: Any        # s Q, s = 1 / sqrt(d_k)
    k: Any
    v: Any
    exp_scores: Any      # E = exp(S - shift), masked entries 0
    inv_row_sums: Any    # 1 / r, r = the row sums of E (0 for a query that sees no key)
    keep: Any            # dropout's mask (booleans), or None without dropout
    row_scale: Any       # 1 / (r P(keep)): what turns (E * keep) V into out
    out: Any
    scale: float         # s


def _draw_keep(q, k, dropout_p, rng, training):
    """Dropout's ``(keep, 1 / P(keep))`` for the attention weights of q and k, drawn as
    :func:`functional.dropout_forward` draws it; ``(None, 1.0)`` without dropout."""
    if not training or dropout_p == 0.0:
        return None, 1.0
    shape = np.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (q.shape[-2], k.shape[-2])
    return random_keep_mask(rng, shape, dropout_p)


def attention_forward(q, k, v, mask=None, dropout_p=0.0, rng=None, training=True, bias=None):
    """:func:`functional.attention_forward`, with fewer passes over the (Tq, Tk) scores.

    The scores are the largest arrays of the layer, so every factor that is one number per
    query (per row) moves to the (Tq, d_v) side of the products. A row of weights is E / r,
    with E = exp(scores - row max) and r the row's sum, and dropout multiplies by
    keep / P(keep); so ``out = ((E * keep) @ v) * (1 / (r P(keep)))``: the division touches
    Tq x d_v numbers instead of Tq x Tk, and neither the weights nor the dropped weights are
    ever formed. The scale s is applied to q, Tq x d_k numbers, for the same reason. Where
    no score can overflow exp(), the max-subtraction is skipped (:func:`_needs_max_shift`).
    Measured on one core, forward and backward of a (64, 8, 92, 16) batch in float32:
    50 ms for the reference, 27 for this (docs/performance.md).
    """
    keep, keep_scale = _draw_keep(q, k, dropout_p, rng, training)
    return _attention_forward(q, k, v, mask, keep, keep_scale, bias)


def _attention_forward(q, k, v, mask, keep, keep_scale, bias=None):
    """:func:`attention_forward` with dropout's mask given (None: no dropout)."""
    xp = get_array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1])
    q_scaled = q * scale
    scores = q_scaled @ _transposed(k)
    if bias is not None:
        scores += bias   # a constant (ALiBi): the backward is unchanged
    if mask is not None and bool(mask.all()):
        mask = None   # nothing is hidden (no padding in this batch): skip a pass over the scores
    if mask is not None:
        xp.copyto(scores, F.MASK_VALUE, where=~mask)
    sees_a_key = None if mask is None else mask.any(axis=-1, keepdims=True)
    # the softmax, with its division by the row sums left for later
    # a bias is not bounded by the norms of q and k: then the shift always
    shift = True if bias is not None else _needs_max_shift(q_scaled, k, sees_a_key)
    if shift is True:
        scores -= scores.max(axis=-1, keepdims=True)
    elif bool(shift.any()):   # (subtracting 0 from the other matrices' scores changes nothing)
        scores -= scores.max(axis=-1, keepdims=True) * shift
    exp_scores = xp.exp(scores, out=scores)
    inv_row_sums = 1.0 / _sum_over_last_axis(exp_scores)
    if sees_a_key is not None:
        inv_row_sums *= sees_a_key   # a query that may see no key: weights 0
    kept = exp_scores if keep is None else exp_scores * keep
    row_scale = inv_row_sums if keep is None else inv_row_sums * keep_scale
    out = kept @ v
    out *= row_scale
    return out, AttentionCache(q_scaled, k, v, exp_scores, inv_row_sums, keep, row_scale, out, scale)


def _needs_max_shift(q_scaled, k, sees_a_key):
    """For each (Tq, Tk) matrix of scores, whether the softmax must subtract the row
    maxima before exp(): a boolean array (..., 1, 1), or True for all of them.

    Not when no score can be larger in size than :data:`SAFE_SCORE`. By Cauchy-Schwarz,
    |q_i . k_j| <= |q_i| |k_j| <= max_i |q_i| * max_j |k_j|: the norms of two (T, d_k)
    arrays bound every score of the (Tq, Tk) matrix. The softmax is the same with or
    without the shift (it cancels in the ratio); only exp()'s range needs it. A query that
    may see no key has only masked scores, whose exp() is 0 without the shift; its matrix
    keeps the shift, so that row sums are never 0. The decision is per matrix, so that
    a batch cut into slices gives the numbers of one call.

    The bound reads every key's d_k numbers, which costs more than the max it saves when
    there are fewer queries than that (decoding, one query at a time): then the max stays.
    """
    if q_scaled.shape[-2] <= q_scaled.shape[-1]:
        return True
    q_squared = _sum_over_last_axis(q_scaled * q_scaled).max(axis=-2, keepdims=True)
    k_squared = _sum_over_last_axis(k * k).max(axis=-2, keepdims=True)
    needed = q_squared * k_squared > SAFE_SCORE ** 2
    if sees_a_key is not None:
        needed = needed | ~sees_a_key.all(axis=-2, keepdims=True)
    return needed


def attention_weights(cache):
    """The attention weights softmax(S), (..., Tq, Tk), of an :func:`attention_forward` cache."""
    return cache.exp_scores * cache.inv_row_sums


def attention_backward(dout, cache, bias_grad=False):
    """:func:`functional.attention_backward`, with the row factors kept on the (Tq, d_v)
    side as in the forward pass (m = keep / P(keep), A = E / r, A' = A * m):

    * D_i = sum_j dA'_ij A'_ij = sum_c dout_ic out_ic, since A' V = out: a sum over d_v
      numbers per query instead of Tk;
    * dS = A * (dA' * m - D) = E * ((g V^T) * keep - D / r), where g = dout / (r P(keep))
      is dout with each row scaled;
    * dV = A'^T dout = (E * keep)^T g, and dK = dS^T (s Q).

    ``A^T B`` with A a (Tq, Tk) matrix is computed as ``(B^T A)^T``: the same numbers, but
    BLAS reads A in its stored order (measured about 20% faster: 2.2 against 2.7 ms for 256
    products of 92x92 by 92x16 on one core). Returns ``(dq, dk, dv)``, and with
    ``bias_grad=True`` the bias's gradient, dS summed over the batch.
    """
    q_scaled, k, v, exp_scores, inv_row_sums, keep, row_scale, out, scale = cache
    dout_scaled = dout * row_scale                                   # g
    kept = exp_scores if keep is None else exp_scores * keep
    dv = _transposed(_transposed(dout_scaled) @ kept)                # (E * keep)^T g
    dscores = dout_scaled @ _transposed(v)                           # g V^T
    if keep is not None:
        dscores *= keep
    dscores -= inv_row_sums * _sum_over_last_axis(dout * out)       # D / r
    dscores *= exp_scores
    dq = dscores @ k
    dq *= scale
    dk = _transposed(_transposed(q_scaled) @ dscores)                # dS^T (s Q)
    if bias_grad:
        return dq, dk, dv, dscores.reshape((-1,) + dscores.shape[-3:]).sum(axis=0)
    return dq, dk, dv


# --------------------------------------------------------------------------------------
# Attention of a whole batch: in cache-sized slices, on every core
# --------------------------------------------------------------------------------------
#: Attention scores per slice of the batch in :func:`batched_attention_forward`: 2**19
#: float32 scores are 2 MB, which stays in the processor's cache between the passes of
#: the softmax and its backward (measured on a 2-core machine: slices of 1, 2 and 4 MB ran
#: within about 15% of each other, and all well ahead of the whole batch at once).
SCORES_PER_SLICE = 2 ** 19


def batch_slices(batch, scores_per_item, limit=None):
    """``range(batch)`` cut into near-equal slices of at most ``limit`` scores each
    (default :data:`SCORES_PER_SLICE`; one slice at least, one item per slice at most)."""
    limit = SCORES_PER_SLICE if limit is None else limit
    n = min(batch, max(1, -(-batch * scores_per_item // limit)))
    bounds = [round(i * batch / n) for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


class BatchedAttentionCache(NamedTuple):
    slices: list     # how the batch was cut
    caches: list     # one AttentionCache per slice


def batched_attention_forward(q, k, v, mask=None, dropout_p=0.0, rng=None, training=True, bias=None):
    """:func:`functional.attention_forward` of a batch (B, H, Tq, d), one slice of the batch
    at a time.

    The numbers are those of one call on the whole batch (every sequence attends on its
    own, so cutting the batch changes nothing), but on a CPU with two cores the attention
    alone measured 2-2.5x faster (less inside a whole training step), and 1.13x on one core
    against one call of :func:`attention_forward` (docs/performance.md):

    * softmax and its backward pass over the (B, H, Tq, Tk) scores several times; when a
      slice's scores fit in the processor's cache, every pass after the first reads the
      cache instead of main memory;
    * slices are independent, so they run on all cores at once
      (:func:`~minitransformer.cpu.run_in_parallel`); NumPy's element-wise operations
      alone would use one core.

    Same seed, same numbers, whatever the number of threads: the cut depends on the shapes
    only (threads decide how many slices run at once), and dropout's mask is drawn for the
    whole batch in one call, as the reference draws it, before the batch is cut. On a GPU
    the whole batch is one call. A ``bias`` (H, Tq, Tk) is the same for every sequence.
    """
    xp = get_array_module(q)
    keep, keep_scale = _draw_keep(q, k, dropout_p, rng, training)
    slices = [slice(None)] if xp is not np else batch_slices(q.shape[0], q.shape[1] * q.shape[2] * k.shape[2])
    if len(slices) == 1:
        out, cache = _attention_forward(q, k, v, mask, keep, keep_scale, bias)
        return out, BatchedAttentionCache(slices, [cache])
    if mask is not None and mask.ndim == 4 and mask.shape[0] > 1:
        masks = [mask[s] for s in slices]
    else:
        masks = [mask] * len(slices)   # the same for every sequence (a causal mask)
    out = np.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)

    def one_slice(i):
        s = slices[i]
        out[s], cache = _attention_forward(q[s], k[s], v[s], masks[i], None if keep is None else keep[s],
                                           keep_scale, bias)
        return cache

    return out, BatchedAttentionCache(slices, run_in_parallel(one_slice, len(slices)))


def batched_attention_backward(dout, cache, bias_grad=False):
    """:func:`attention_backward`, slice by slice as in the forward pass; ``(dq, dk, dv)``,
    and with ``bias_grad=True`` the bias's gradient: the sum of the slices' sums."""
    slices, caches = cache
    if len(slices) == 1:
        return attention_backward(dout, caches[0], bias_grad)
    grads = run_in_parallel(lambda i: attention_backward(dout[slices[i]], caches[i], bias_grad), len(slices))
    dq, dk, dv = (np.concatenate(parts, axis=0) for parts in list(zip(*grads))[:3])
    return (dq, dk, dv, sum(g[3] for g in grads)) if bias_grad else (dq, dk, dv)


def batched_attention_weights(cache):
    """The (B, H, Tq, Tk) attention weights kept in a :func:`batched_attention_forward` cache."""
    weights = [attention_weights(c) for c in cache.caches]
    return weights[0] if len(weights) == 1 else np.concatenate(weights, axis=0)


# --------------------------------------------------------------------------------------
# Multi-head attention: one fused input projection
# --------------------------------------------------------------------------------------
def _split_projections(x, n_parts, n_heads):
    """(B, T, n*H*d) -> n_parts arrays (B, H, T, d), with one copy for all of them.

    The fused projection lays out [Q | K | V] along the features; viewing them as
    (B, T, n, H, d) and moving axes to (n, B, H, T, d) turns each head of each of Q, K, V
    into a contiguous (T, d) matrix, ready for the batched products of attention.
    """
    xp = get_array_module(x)
    b, t, width = x.shape
    d = width // (n_parts * n_heads)
    return tuple(xp.ascontiguousarray(x.reshape(b, t, n_parts, n_heads, d).transpose(2, 0, 3, 1, 4)))


def _merge_projections(*heads):
    """Inverse of :func:`_split_projections`: n arrays (B, H, T, d) -> (B, T, n*H*d)."""
    xp = get_array_module(heads[0])
    b, h, t, d = heads[0].shape
    out = xp.empty((b, t, len(heads), h, d), dtype=heads[0].dtype)
    for i, part in enumerate(heads):
        out[:, :, i] = part.transpose(0, 2, 1, 3)
    return out.reshape(b, t, len(heads) * h * d)


class MultiHeadAttentionCache(NamedTuple):
    in_cache: F.LinearCache         # x_q @ [W_Q|W_K|W_V] (self) or x_q @ W_Q (cross)
    kv_cache: Any                   # x_kv @ [W_K|W_V] (cross), None for self-attention
    attention_cache: Any            # a batched_attention_forward cache
    out_cache: F.LinearCache
    n_heads: int
    q_rotary: Any = None            # RoPE's caches of the query and key heads, or None
    k_rotary: Any = None


def multi_head_attention_forward(x_q, x_kv, w_in, b_in, w_out, b_out, n_heads, mask=None,
                                 dropout_p=0.0, rng=None, training=True, rotary=None, bias=None):
    """:func:`functional.multi_head_attention_forward`, with the projections fused:

    * self-attention (``x_kv is None``): one product ``x @ [W_Q | W_K | W_V]`` gives Q, K
      and V at once, where the reference makes three (one read of x instead of three, and
      one larger product, which BLAS runs closer to its peak rate);
    * cross-attention: Q = x_q @ W_Q, and one product x_kv @ [W_K | W_V] gives K and V;

    then one copy lays the heads out contiguously, and attention runs through
    :func:`batched_attention_forward` (cache-sized slices, on threads). Measured on one core,
    forward and backward of self-attention over (64, 92, 128) with 8 heads: 88-101 ms for the
    reference, 73-79 for this (the projections alone: 31 against 29 ms).

    RoPE (``rotary``), ALiBi and the diagonal bias (``bias``) run the reference functions
    of :mod:`minitransformer.positions`: no fast twin.
    """
    d_model = w_out.shape[0]
    if x_kv is None:
        qkv, in_cache = linear_forward(x_q, w_in, b_in)
        qh, kh, vh = _split_projections(qkv, 3, n_heads)
        kv_cache = None
    else:
        q, in_cache = linear_forward(x_q, w_in[:, :d_model], b_in[:d_model])
        kv, kv_cache = linear_forward(x_kv, w_in[:, d_model:], b_in[d_model:])
        (qh,) = _split_projections(q, 1, n_heads)
        kh, vh = _split_projections(kv, 2, n_heads)
    q_rotary = k_rotary = None
    if rotary is not None:
        qh, q_rotary = F.rope_forward(qh, rotary[0])
        kh, k_rotary = F.rope_forward(kh, rotary[1])
    heads, attention_cache = batched_attention_forward(qh, kh, vh, mask, dropout_p, rng, training, bias)
    out, out_cache = linear_forward(F.merge_heads(heads), w_out, b_out)
    return out, MultiHeadAttentionCache(in_cache, kv_cache, attention_cache, out_cache, n_heads, q_rotary,
                                        k_rotary)


def multi_head_attention_backward(dout, cache, bias_grad=False):
    """:func:`functional.multi_head_attention_backward` of the fused forward; the same
    ``(dx_q, dx_kv, dw_in, db_in, dw_out, db_out)``, and ``dbias`` after them with
    ``bias_grad=True``."""
    xp = get_array_module(dout)
    dconcat, dw_out, db_out = linear_backward(dout, cache.out_cache)
    dqh, dkh, dvh, *dbias = batched_attention_backward(F.split_heads(dconcat, cache.n_heads),
                                                       cache.attention_cache, bias_grad)
    if cache.q_rotary is not None:
        dqh, dkh = F.rope_backward(dqh, cache.q_rotary), F.rope_backward(dkh, cache.k_rotary)
    if cache.kv_cache is None:
        dx_q, dw_in, db_in = linear_backward(_merge_projections(dqh, dkh, dvh), cache.in_cache)
        return (dx_q, None, dw_in, db_in, dw_out, db_out, *dbias)
    dx_q, dw_q, db_q = linear_backward(F.merge_heads(dqh), cache.in_cache)
    dx_kv, dw_kv, db_kv = linear_backward(_merge_projections(dkh, dvh), cache.kv_cache)
    dw_in = xp.concatenate([dw_q, dw_kv], axis=1)
    db_in = xp.concatenate([db_q, db_kv])
    return (dx_q, dx_kv, dw_in, db_in, dw_out, db_out, *dbias)


def multi_head_attention_weights(cache):
    """The (B, H, Tq, Tk) attention weights of a :func:`multi_head_attention_forward` cache."""
    return batched_attention_weights(cache.attention_cache)
