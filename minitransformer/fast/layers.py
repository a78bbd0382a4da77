"""The fast path, layer by layer: linear, layer norm and the feed-forward's
ReLU-dropout-linear pair, the same numbers as :mod:`minitransformer.functional`, computed
faster (see :mod:`minitransformer.fast`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .. import functional as F
from ..backend import get_array_module, random_keep_mask


# --------------------------------------------------------------------------------------
# Sums as products with a vector of ones, which BLAS computes
# --------------------------------------------------------------------------------------
# NumPy's own reduction over a short last axis (a row of 128 features, 92 attention scores)
# goes row by row and measured about 4x slower: 0.50 against 0.12 ns per number for a
# (2944, 128) float32 array on one core (docs/performance.md). The numbers are the same sums,
# added in another order.
@lru_cache(maxsize=64)
def _constant_vector(xp, n: int, dtype, value: float):
    """A read-only vector of ``n`` copies of ``value``, made once per shape, kind and backend:
    the sums below use the same few vectors every step, and on a GPU making one is a kernel
    launch of its own (one in ten of a training step's launches before they were kept)."""
    vector = xp.full(n, value, dtype=dtype)
    if xp is np:
        vector.flags.writeable = False   # shared by every caller: no one may write into it
    return vector


def _sum_over_leading_axes(a):
    """``a.reshape(-1, n).sum(axis=0)``, computed as ``ones(rows) @ a``."""
    rows = a.reshape(-1, a.shape[-1])
    return _constant_vector(get_array_module(a), rows.shape[0], rows.dtype, 1.0) @ rows


def _dot_over_last_axis(a, w):
    """``(a * w).sum(axis=-1, keepdims=True)`` for a (..., n) and a vector w (n,), as ``a @ w``."""
    n = a.shape[-1]
    return (a.reshape(-1, n) @ w).reshape(a.shape[:-1] + (1,))


def _sum_over_last_axis(a):
    """``a.sum(axis=-1, keepdims=True)``, as ``a @ ones(n)``."""
    return _dot_over_last_axis(a, _constant_vector(get_array_module(a), a.shape[-1], a.dtype, 1.0))


def _mean_over_last_axis(a):
    """``a.mean(axis=-1, keepdims=True)``, as ``a @ (ones(n) / n)``."""
    n = a.shape[-1]
    return _dot_over_last_axis(a, _constant_vector(get_array_module(a), n, a.dtype, 1.0 / n))


def _transposed(a):
    """Every matrix of a stack transposed (the last two axes swapped): a view, no copy."""
    return get_array_module(a).swapaxes(a, -1, -2)


# --------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------
def linear_forward(x, w, b=None):
    """:func:`functional.linear_forward`, as one 2-D product.

    The leading axes are flattened first (rows = every position of every sequence): NumPy
    hands that to BLAS in one call, where a 3-D ``x @ W`` may loop over the batch in smaller
    products; the bias is added in place. (With NumPy 2.4 the 3-D product measured as fast,
    10.5 against 10.2 ms at (64, 92, 128) @ (128, 512): the gain is in the backward pass.)
    """
    n_in, n_out = w.shape
    y = x.reshape(-1, n_in) @ w
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (n_out,)), F.LinearCache(x, w)


def linear_backward(dy, cache):
    """:func:`functional.linear_backward`, with dW = x^T dy computed as (dy^T x)^T.

    The same numbers: BLAS reads both operands of ``dy.T @ x`` as stored transposes and
    writes a (n_out, n_in) result that is then viewed transposed. On an Intel Xeon (AVX-512,
    2 cores) ``x.T @ dy`` ran at 7-23 GFLOP/s against 95 for ``(dy.T @ x).T`` at
    x (5888, 128), dy (5888, 512) float32; on a shared 2-core AMD EPYC both ran at 150-180
    GFLOP/s (docs/performance.md), so this form costs nothing there. db is a product with
    ones (see the sums above). With the forward pass's flattening, measured 20.6 ms for the
    reference backward and 18.7 for this at the shapes above, one core.
    """
    x, w = cache
    n_in, n_out = w.shape
    x2 = x.reshape(-1, n_in)
    dy2 = dy.reshape(-1, n_out)
    dx = (dy2 @ w.T).reshape(x.shape)
    dw = (dy2.T @ x2).T
    db = _sum_over_leading_axes(dy2)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# Layer norm: the means as products
# --------------------------------------------------------------------------------------
def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """:func:`functional.layer_norm_forward`, with means as products and no temporary that
    is not reused in place. With its backward pass, measured 3.7 ms for the reference and
    2.6 for this at (5888, 128) float32 on one core (docs/performance.md)."""
    xp = get_array_module(x)
    mean = _mean_over_last_axis(x)
    xc = x - mean
    var = _mean_over_last_axis(xc * xc)
    rstd = 1.0 / xp.sqrt(var + eps)
    xhat = xc
    xhat *= rstd
    y = xhat * gamma
    y += beta
    return y, F.LayerNormCache(xhat, rstd, gamma)


def layer_norm_backward(dy, cache):
    """:func:`functional.layer_norm_backward`, without forming g = dy * gamma for the means:
    mean(g) = dy @ (gamma / D) and mean(g * xhat) = (dy * xhat) @ (gamma / D)."""
    xhat, rstd, gamma = cache
    dy_xhat = dy * xhat
    dgamma = _sum_over_leading_axes(dy_xhat)
    dbeta = _sum_over_leading_axes(dy)
    gamma_over_d = gamma / gamma.shape[-1]
    dx = dy * gamma
    dx -= _dot_over_last_axis(dy, gamma_over_d)
    dx -= xhat * _dot_over_last_axis(dy_xhat, gamma_over_d)
    dx *= rstd
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------------------
# Feed-forward: ReLU, dropout and the second linear layer in one pair
# --------------------------------------------------------------------------------------
class ReluDropoutLinearCache(NamedTuple):
    linear_cache: F.LinearCache   # input d = relu(h) * keep, weight scale * W
    scale: float                  # dropout's 1 / P(keep) (1.0 without dropout)


def relu_dropout_linear_forward(h, w, b, p, rng, training=True):
    """``linear(dropout(relu(h)), W, b)`` of :mod:`functional`, with dropout's scale s
    moved into the weight: (relu(h) * keep * s) @ W = (relu(h) * keep) @ (s W).

    s W is d_ff x d_model numbers instead of the (rows, d_ff) hidden units, the largest
    array of the layer: one walk through it fewer each way. The mask is drawn exactly as
    :func:`functional.dropout_forward` draws it, so a seed gives the same masks on both paths.
    With its backward pass, measured 46 ms for the reference's three layers and 34 for this
    at (64, 92, 512) hidden units, float32, one core (docs/performance.md).
    """
    xp = get_array_module(h)
    d = xp.maximum(h, 0)
    scale = 1.0
    if training and p > 0.0:
        keep, scale = random_keep_mask(rng, h.shape, p)
        d *= keep
    y, linear_cache = linear_forward(d, w * scale if scale != 1.0 else w, b)
    return y, ReluDropoutLinearCache(linear_cache, scale)


def relu_dropout_linear_backward(dy, cache):
    """The reference's linear, dropout and ReLU backward passes in one step; ``(dh, dW, db)``.

    ReLU passes the gradient where h > 0, dropout where a unit was kept: both exactly
    where d = relu(h) * keep is > 0, so dh = dd * (d > 0), one walk through the (rows, d_ff)
    gradient instead of two, keeping neither ReLU's output nor the mask (the linear layer
    keeps d anyway). From y = d (s W): dW = s d^T dy.
    """
    dd, dw, db = linear_backward(dy, cache.linear_cache)
    if cache.scale != 1.0:
        dw *= cache.scale
    dd *= cache.linear_cache.x > 0
    return dd, dw, db
