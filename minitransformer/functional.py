"""The math of every layer: forward and backward passes, side by side.

Each ``*_forward`` function computes its output and returns ``(out, cache)``, where the
cache holds exactly what the backward pass needs. Its twin ``*_backward(dout, cache)``,
right below it, takes the gradient of the loss with respect to ``out`` and returns the
gradients with respect to the inputs and parameters. The docstrings derive each backward
pass in the code's own symbols; ``docs/backward/`` walks through the same derivations at
length.

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
:mod:`minitransformer.nn` validate shapes and dtypes before they call them.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import get_array_module, random_keep_mask, scatter_add_rows
from .cpu import parallel_threads, run_in_parallel

#: What masked attention scores are set to before the softmax: a large *finite* negative
#: number, so exp() of it is exactly 0 next to any real score and nothing becomes NaN.
MASK_VALUE = -1e9

#: Attention scores no larger than this in size need no max-subtraction before exp():
#: exp(+-64) is 6e27 or 2e-28, inside float32's range (about 1e-38 to 3e38) with room
#: for a row sum over 10**10 keys.
SAFE_SCORE = 64.0


# Sums along an axis are written as products with a vector of ones, which BLAS computes.
# NumPy's own reduction over a short last axis (a row of 128 features, 92 attention scores)
# goes row by row and measured about 4x slower: 0.50 against 0.12 ns per number for a
# (2944, 128) float32 array on one core (docs/performance.md). The numbers are the same sums,
# added in another order.
def _sum_over_leading_axes(a):
    """Sum over every axis but the last: the gradient of a broadcast bias or scale.

    ``a.reshape(-1, n).sum(axis=0)``, computed as ``ones(rows) @ a``.
    """
    xp = get_array_module(a)
    rows = a.reshape(-1, a.shape[-1])
    return xp.ones(rows.shape[0], dtype=a.dtype) @ rows


def _dot_over_last_axis(a, w):
    """``(a * w).sum(axis=-1, keepdims=True)`` for a (..., n) and a vector w (n,), as ``a @ w``."""
    n = a.shape[-1]
    return (a.reshape(-1, n) @ w).reshape(a.shape[:-1] + (1,))


def _sum_over_last_axis(a):
    """``a.sum(axis=-1, keepdims=True)``, as ``a @ ones(n)``."""
    xp = get_array_module(a)
    return _dot_over_last_axis(a, xp.ones(a.shape[-1], dtype=a.dtype))


def _mean_over_last_axis(a):
    """``a.mean(axis=-1, keepdims=True)``, as ``a @ (ones(n) / n)``."""
    xp = get_array_module(a)
    return _dot_over_last_axis(a, xp.full(a.shape[-1], 1.0 / a.shape[-1], dtype=a.dtype))


# --------------------------------------------------------------------------------------
# Linear: y = x W + b
# --------------------------------------------------------------------------------------
def linear_forward(x, w, b=None):
    """y = x @ W + b, with x (..., n_in), W (n_in, n_out), b (n_out,).

    The leading axes are flattened first, so the product is one large 2-D matrix product
    (rows = every position of every sequence): NumPy hands that to BLAS in one call,
    where a 3-D ``x @ W`` would loop over the batch in smaller products.
    """
    n_in, n_out = w.shape
    y = x.reshape(-1, n_in) @ w
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (n_out,)), (x, w)


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
    x2 = x.reshape(-1, n_in)
    dy2 = dy.reshape(-1, n_out)
    dx = (dy2 @ w.T).reshape(x.shape)
    dw = x2.T @ dy2
    db = _sum_over_leading_axes(dy2)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# Embedding: y = E[ids] * scale
# --------------------------------------------------------------------------------------
def embedding_forward(ids, table, scale=1.0):
    """y[..., :] = E[ids[...], :] * scale: a row look-up (scale = sqrt(d_model) in the paper)."""
    y = table[ids]
    if scale != 1.0:
        y *= scale
    return y, (ids, table.shape, scale)


def embedding_backward(dy, cache, padding_idx=None):
    """dE[v] = scale * (sum of dy over every position whose id is v).

    A look-up is multiplication by a one-hot matrix, y = onehot(ids) E, so
    dE = onehot(ids)^T dy: each row collects the gradients of all its occurrences.
    The row of the padding token, if any, gets no gradient: padding carries no meaning.
    Returns ``dE`` (the ids are integers and have no gradient).
    """
    ids, table_shape, scale = cache
    xp = get_array_module(dy)
    dtable = xp.zeros(table_shape, dtype=dy.dtype)
    scatter_add_rows(dtable, ids, dy * scale if scale != 1.0 else dy)
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
def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """y = gamma * xhat + beta, xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps).

    Mean and (biased) variance are taken over the last axis of x, separately for
    every position.
    """
    xp = get_array_module(x)
    mean = _mean_over_last_axis(x)
    xc = x - mean
    var = _mean_over_last_axis(xc * xc)
    rstd = 1.0 / xp.sqrt(var + eps)
    xhat = xc
    xhat *= rstd
    y = xhat * gamma
    y += beta
    return y, (xhat, rstd, gamma)


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
    dy_xhat = dy * xhat
    dgamma = _sum_over_leading_axes(dy_xhat)
    dbeta = _sum_over_leading_axes(dy)
    # mean(g) = mean(dy * gamma) is the product dy @ (gamma / D), and mean(g * xhat) is
    # dy_xhat @ (gamma / D): neither needs g itself
    gamma_over_d = gamma / gamma.shape[-1]
    dx = dy * gamma
    dx -= _dot_over_last_axis(dy, gamma_over_d)
    dx -= xhat * _dot_over_last_axis(dy_xhat, gamma_over_d)
    dx *= rstd
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------
def relu_forward(x):
    """y = max(x, 0)."""
    xp = get_array_module(x)
    y = xp.maximum(x, 0)
    return y, y


def relu_backward(dy, cache):
    """dx = dy where x > 0, else 0 (y > 0 exactly where x > 0, so y is all we keep)."""
    y = cache
    return dy * (y > 0)


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_forward(x):
    """GELU, tanh form: y = x/2 * (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi).

    This is PyTorch's ``gelu(approximate="tanh")`` and the form GPT-2 used.
    """
    xp = get_array_module(x)
    t = xp.tanh(_GELU_C * (x + 0.044715 * x * x * x))
    y = 0.5 * x * (1.0 + t)
    return y, (x, t)


def gelu_backward(dy, cache):
    """dy/dx = (1 + t)/2 + x/2 * (1 - t^2) * c * (1 + 3 * 0.044715 x^2), t as in the forward."""
    x, t = cache
    dt = _GELU_C * (1.0 + 3 * 0.044715 * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt)


# --------------------------------------------------------------------------------------
# Softmax
# --------------------------------------------------------------------------------------
def softmax_forward(x):
    """p = exp(x - max x) / sum exp(x - max x) along the last axis.

    Subtracting the maximum changes nothing mathematically (it cancels in the ratio)
    but keeps exp() from overflowing: the largest exponent is exp(0) = 1.
    """
    xp = get_array_module(x)
    p = x - x.max(axis=-1, keepdims=True)
    xp.exp(p, out=p)
    p /= _sum_over_last_axis(p)
    return p, p


def softmax_backward(dp, cache):
    """dx_i = p_i * (dp_i - sum_j dp_j p_j).

    From dp_i/dx_k = p_i (delta_ik - p_k): the Jacobian is diag(p) - p p^T, and
    multiplying it by dp never needs the matrix.
    """
    p = cache
    dx = dp * p
    dx -= p * _sum_over_last_axis(dx)
    return dx


# --------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------
def dropout_forward(x, p, rng, training=True, rescale=True):
    """Inverted dropout: y = x * m, m = 1/(1-p) with probability 1-p, else 0.

    Scaling the kept units at training time keeps E[y] = x, so evaluation is the
    identity. ``rng`` is a seeded generator of x's backend: the same seed gives the same
    masks. The mask is kept as booleans ``keep`` and a number ``scale``, one over the
    probability of keeping a unit (1/(1-p) to within 1e-5), so m = keep * scale (a quarter
    of the memory of a float mask; see :func:`~minitransformer.backend.random_keep_mask`
    for how ``keep`` is drawn).

    With ``rescale=False`` the output is ``x * keep`` and the caller applies ``scale``
    where it is cheaper: a linear layer that follows can take it in its weight,
    (x * keep * scale) @ W = (x * keep) @ (scale * W) (:class:`~minitransformer.nn.FeedForward`
    does). The cache is ``(keep, scale, rescale)``, or None when dropout is off.
    """
    if not training or p == 0.0:
        return x, None
    keep, scale = random_keep_mask(rng, x.shape, p)
    y = x * keep
    if rescale:
        y *= scale
    return y, (keep, scale, rescale)


def dropout_backward(dy, cache):
    """dx = dy * m: the same units are dropped and scaled on the way back (not scaled, if
    the forward pass left the scale to the caller)."""
    if cache is None:
        return dy
    keep, scale, rescale = cache
    dx = dy * keep
    if rescale:
        dx *= scale
    return dx


# --------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------
def attention_forward(q, k, v, mask=None, dropout_p=0.0, rng=None, training=True):
    """out = softmax(Q K^T / sqrt(d_k) + mask) V, over the last two axes.

    Shapes: q (..., Tq, d_k), k (..., Tk, d_k), v (..., Tk, d_v) -> out (..., Tq, d_v),
    where ``...`` is usually (batch, heads). ``mask`` is boolean, broadcastable to
    (..., Tq, Tk), True where a query may attend to a key. Masked scores are set to
    :data:`MASK_VALUE` before the softmax, so they get exactly zero weight. A query that
    may attend to *no* key gets all-zero weights (and a zero output) rather than NaN.
    Optional dropout acts on the attention weights.

    Written with the functions above, the forward pass is::

        scores = (q * s) @ k^T                     # s = 1 / sqrt(d_k)
        weights, _ = softmax_forward(scores)       # after masking
        dropped, _ = dropout_forward(weights, dropout_p, rng, training)
        out = dropped @ v

    The code computes the same numbers with fewer passes over the (Tq, Tk) scores, the
    largest arrays of the layer, by moving every factor that is one number per query
    (per row) to the (Tq, d_v) side of the products. A row of weights is
    E / r, with E = exp(scores - row max) and r the row's sum, and dropout multiplies
    by keep / P(keep); so ``out = ((E * keep) @ v) * (1 / (r P(keep)))``: the division
    touches Tq x d_v numbers instead of Tq x Tk. The scale s is applied to q, Tq x d_k
    numbers, for the same reason. The cache keeps ``out`` (the backward pass needs it).
    """
    xp = get_array_module(q)
    scale = 1.0 / math.sqrt(q.shape[-1])
    q_scaled = q * scale
    scores = q_scaled @ _transposed(k)
    if mask is not None and bool(mask.all()):
        mask = None   # nothing is hidden (no padding in this batch): skip a pass over the scores
    if mask is not None:
        xp.copyto(scores, MASK_VALUE, where=~mask)
    sees_a_key = None if mask is None else mask.any(axis=-1, keepdims=True)
    # the softmax, with its division by the row sums left for later
    shift = _needs_max_shift(q_scaled, k, sees_a_key)
    if shift is True:
        scores -= scores.max(axis=-1, keepdims=True)
    elif bool(shift.any()):   # (subtracting 0 from the other matrices' scores changes nothing)
        scores -= scores.max(axis=-1, keepdims=True) * shift
    exp_scores = xp.exp(scores, out=scores)
    inv_row_sums = 1.0 / _sum_over_last_axis(exp_scores)
    if sees_a_key is not None:
        inv_row_sums *= sees_a_key   # a query that may see no key: weights 0
    # dropout on the weights: the mask here, its scale 1/P(keep) in the row factor
    kept, dropout_cache = dropout_forward(exp_scores, dropout_p, rng, training, rescale=False)
    row_scale = inv_row_sums if dropout_cache is None else inv_row_sums * dropout_cache[1]
    out = kept @ v
    out *= row_scale
    return out, (q_scaled, k, v, exp_scores, inv_row_sums, kept, dropout_cache, row_scale, out, scale)


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
    """The attention weights softmax(scores), (..., Tq, Tk), of an :func:`attention_forward` cache."""
    exp_scores, inv_row_sums = cache[3], cache[4]
    return exp_scores * inv_row_sums


def attention_backward(dout, cache):
    """Gradients of out = A' V, A' = dropout(A), A = softmax(S), S = s Q K^T, s = 1/sqrt(d_k).

    Walking back through the forward, bottom to top (``m`` is dropout's keep / P(keep)):

    * out = A' V:             dA' = dout V^T,  dV = A'^T dout
    * dropout:                dA = dA' * m
    * softmax, row by row:    dS = A * (dA - D),  D_i = sum_j dA_ij A_ij
    * S = s Q K^T:            dQ = s dS K,  dK = s dS^T Q = dS^T (s Q)

    As in the forward pass, the code keeps the row factors on the (Tq, d_v) side:

    * D_i = sum_j dA'_ij A'_ij = sum_c dout_ic out_ic, since A' V = out: a sum over d_v
      numbers per query instead of Tk;
    * with A = E / r and A' = (E * keep) / (r P(keep)), ``dS = E * ((g V^T) * keep - D / r)``,
      where g = dout / (r P(keep)) is dout with each row scaled.

    Masked entries have E = 0, so dS = 0 there: no gradient flows to masked keys.
    Returns ``(dq, dk, dv)``.
    """
    q_scaled, k, v, exp_scores, inv_row_sums, kept, dropout_cache, row_scale, out, scale = cache
    dout_scaled = dout * row_scale                                  # g
    # A^T B with A a (Tq, Tk) matrix is computed as (B^T A)^T: the same numbers, but BLAS
    # reads A in its stored order (measured about 20% faster: 2.2 against 2.7 ms for 256
    # products of 92x92 by 92x16 on one core)
    dv = _transposed(_transposed(dout_scaled) @ kept)               # (E * keep)^T g
    dscores = dout_scaled @ _transposed(v)                          # g V^T
    if dropout_cache is not None:
        dscores *= dropout_cache[0]                                # keep
    dscores -= inv_row_sums * _sum_over_last_axis(dout * out)      # D / r
    dscores *= exp_scores
    dq = dscores @ k
    dq *= scale
    dk = _transposed(_transposed(q_scaled) @ dscores)               # dS^T (s Q)
    return dq, dk, dv


def _transposed(a):
    """Every matrix of a stack transposed (the last two axes swapped): a view, no copy."""
    return get_array_module(a).swapaxes(a, -1, -2)


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


def batched_attention_forward(q, k, v, mask=None, dropout_p=0.0, rng=None, training=True):
    """:func:`attention_forward` of a batch (B, H, Tq, d), one slice of the batch at a time.

    The numbers are those of one call on the whole batch (every sequence attends on its
    own, so cutting the batch changes nothing), but on a CPU with two cores the attention
    alone measured 2-2.5x faster (less inside a whole training step: docs/performance.md):

    * softmax and its backward pass over the (B, H, Tq, Tk) scores several times; when a
      slice's scores fit in the processor's cache, every pass after the first reads the
      cache instead of main memory;
    * slices are independent, so they run on all cores at once
      (:func:`~minitransformer.cpu.run_in_parallel`); NumPy's element-wise operations
      alone would use one core.

    On a GPU, or with one thread, the whole batch is one call (with one core, the slices
    alone measured slower, not faster). With dropout on the attention weights, each slice
    draws its mask from its own generator, seeded from ``rng``: the masks then depend on
    how the batch is cut, so a seed gives the same run for the same number of threads.
    """
    if get_array_module(q) is not np or parallel_threads() == 1:
        slices = [slice(None)]
    else:
        slices = batch_slices(q.shape[0], q.shape[1] * q.shape[2] * k.shape[2])
    if len(slices) == 1:
        out, cache = attention_forward(q, k, v, mask, dropout_p, rng, training)
        return out, (slices, [cache])
    rngs = [rng] * len(slices)
    if training and dropout_p > 0.0:
        rngs = [np.random.default_rng(seed) for seed in rng.integers(2 ** 63, size=len(slices))]
    if mask is not None and mask.ndim == 4 and mask.shape[0] > 1:
        masks = [mask[s] for s in slices]
    else:
        masks = [mask] * len(slices)   # the same for every sequence (a causal mask)
    out = np.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)

    def one_slice(i):
        s = slices[i]
        out[s], cache = attention_forward(q[s], k[s], v[s], masks[i], dropout_p, rngs[i], training)
        return cache

    return out, (slices, run_in_parallel(one_slice, len(slices)))


def batched_attention_backward(dout, cache):
    """:func:`attention_backward`, slice by slice as in the forward pass; ``(dq, dk, dv)``."""
    slices, caches = cache
    if len(slices) == 1:
        return attention_backward(dout, caches[0])
    grads = run_in_parallel(lambda i: attention_backward(dout[slices[i]], caches[i]), len(slices))
    return tuple(np.concatenate(parts, axis=0) for parts in zip(*grads))


def batched_attention_weights(cache):
    """The (B, H, Tq, Tk) attention weights kept in a :func:`batched_attention_forward` cache."""
    slices, caches = cache
    weights = [attention_weights(c) for c in caches]
    return weights[0] if len(weights) == 1 else np.concatenate(weights, axis=0)


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


def _split_projections(x, n_parts, n_heads):
    """(B, T, n*H*d) -> n_parts arrays (B, H, T, d), with one copy for all of them.

    The fused projection lays out [Q | K | V] along the features; viewing them as
    (B, T, n, H, d) and moving axes to (n, B, H, T, d) turns each head of each of Q, K, V
    into a contiguous (T, d) matrix, ready for the batched products of attention.
    """
    xp = get_array_module(x)
    b, t, width = x.shape
    d = width // (n_parts * n_heads)
    parts = xp.ascontiguousarray(x.reshape(b, t, n_parts, n_heads, d).transpose(2, 0, 3, 1, 4))
    return tuple(parts)


def _merge_projections(*heads):
    """Inverse of :func:`_split_projections`: n arrays (B, H, T, d) -> (B, T, n*H*d)."""
    xp = get_array_module(heads[0])
    b, h, t, d = heads[0].shape
    out = xp.empty((b, t, len(heads), h, d), dtype=heads[0].dtype)
    for i, part in enumerate(heads):
        out[:, :, i] = part.transpose(0, 2, 1, 3)
    return out.reshape(b, t, len(heads) * h * d)


def multi_head_attention_forward(x_q, x_kv, w_in, b_in, w_out, b_out, n_heads, mask=None,
                                 dropout_p=0.0, rng=None, training=True):
    """Multi-head attention, all heads in one batched product.

    The three input projections are one (d, 3d) matrix ``w_in = [W_Q | W_K | W_V]``:

    * self-attention (``x_kv is None``): one product ``x @ w_in`` gives Q, K and V at once;
    * cross-attention: Q = x_q @ W_Q, and one product x_kv @ [W_K | W_V] gives K and V.

    Then each of Q, K, V is split into ``n_heads`` slices of d_k = d / n_heads features,
    attention runs on (batch, heads) in parallel, the heads are concatenated back and
    projected: out = concat(head_1..head_H) @ W_O + b_O.
    """
    d_model = w_out.shape[0]
    if x_kv is None:
        qkv, qkv_cache = linear_forward(x_q, w_in, b_in)
        qh, kh, vh = _split_projections(qkv, 3, n_heads)
        kv_cache = None
    else:
        q, qkv_cache = linear_forward(x_q, w_in[:, :d_model], b_in[:d_model])
        kv, kv_cache = linear_forward(x_kv, w_in[:, d_model:], b_in[d_model:])
        (qh,) = _split_projections(q, 1, n_heads)
        kh, vh = _split_projections(kv, 2, n_heads)
    heads, attn_cache = batched_attention_forward(qh, kh, vh, mask, dropout_p, rng, training)
    out, out_cache = linear_forward(merge_heads(heads), w_out, b_out)
    return out, (qkv_cache, kv_cache, attn_cache, out_cache, n_heads)


def multi_head_attention_backward(dout, cache):
    """The forward read bottom to top: output projection, merge heads, attention,
    split heads, input projections. Returns ``(dx_q, dx_kv, dw_in, db_in, dw_out, db_out)``;
    ``dx_kv`` is None for self-attention (its gradient is already inside ``dx_q``).
    """
    qkv_cache, kv_cache, attn_cache, out_cache, n_heads = cache
    xp = get_array_module(dout)
    dconcat, dw_out, db_out = linear_backward(dout, out_cache)
    dqh, dkh, dvh = batched_attention_backward(split_heads(dconcat, n_heads), attn_cache)
    if kv_cache is None:
        dx_q, dw_in, db_in = linear_backward(_merge_projections(dqh, dkh, dvh), qkv_cache)
        return dx_q, None, dw_in, db_in, dw_out, db_out
    dx_q, dw_q, db_q = linear_backward(merge_heads(dqh), qkv_cache)
    dx_kv, dw_kv, db_kv = linear_backward(_merge_projections(dkh, dvh), kv_cache)
    dw_in = xp.concatenate([dw_q, dw_kv], axis=1)
    db_in = xp.concatenate([db_q, db_kv])
    return dx_q, dx_kv, dw_in, db_in, dw_out, db_out
