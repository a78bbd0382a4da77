"""The fast path on a GPU: fused kernels, each beside the reference function it equals.

Switched on by :func:`minitransformer.gpu.use_fused_kernels` (or ``MINITRANSFORMER_FUSED=1``)
and used on the device backends only (see :mod:`minitransformer.gpu`). **Unmeasured on a
GPU**: the functions here cut the number of kernel launches of a training step (counted on
the CPU by ``benchmarks/kernel_count.py``); whether that makes a GPU step faster is for a GPU
to say.

Each kernel is a :class:`~minitransformer.fast.kernels.FusedKernel`: CUDA source for CuPy, and
a NumPy twin with the same formula, which the tests prove equal to the reference. Below each
kernel, the function the layers call has the name and the signature of the reference function
it replaces:

Device operations (about one kernel launch each) of the function it replaces, and its own,
counted on the strict backend at float32:

* :func:`dropout_forward` 4 -> 2 (the draw and one kernel), :func:`dropout_backward` 2 -> 1
  (:func:`functional.dropout_forward` and its backward);
* :func:`relu_dropout_linear_forward` 7 -> 5, its backward 7 -> 6
  (:func:`fast.relu_dropout_linear_forward`: the products stay, the ReLU and the mask fuse);
* :func:`gelu_forward` 8 -> 1, :func:`gelu_backward` 13 -> 1 (:func:`functional.gelu_forward`);
* :func:`softmax_forward` 5 -> 1, :func:`softmax_backward` 4 -> 1 (:func:`functional.softmax_forward`);
* :func:`layer_norm_forward` 12 -> 1, :func:`layer_norm_backward` 13 -> 5
  (:func:`fast.layer_norm_forward`; dgamma and dbeta stay sums over the rows);
* :func:`adam_update` 15 (Adam with an L2 term) or 14 (AdamW) -> 1 per parameter
  (:meth:`optim.Adam._update`).

Dropout masks are drawn as :func:`functional.dropout_forward` draws them on a device
(``random_uniform(rng, shape, float32) >= p``): the same seed gives the same masks whether the
kernels are on or off. Softmax and layer norm need the sum (and the maximum) of a row before
they can write it, which no element-wise kernel can do in one launch: they are row kernels,
one thread block per row, the row's reductions in shared memory.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import get_array_module, random_uniform
from . import layers as fast_layers
from .kernels import ElementwiseFused, RowFused, as_rows


# --------------------------------------------------------------------------------------
# Dropout: the mask and the scale in one pass
# --------------------------------------------------------------------------------------
def _dropout_twin(x, u, p, scale, y, keep):
    keep[...] = u >= p
    y[...] = x * keep * scale


DROPOUT = ElementwiseFused(
    "mt_dropout", "T x, float32 u, float32 p, T scale", "T y, bool keep",
    "keep = u >= p;  y = x * (T)keep * scale;", _dropout_twin)


def _apply_mask_twin(dy, keep, scale, dx):
    dx[...] = dy * keep * scale


APPLY_MASK = ElementwiseFused(
    "mt_apply_mask", "T dy, bool keep, T scale", "T dx", "dx = dy * (T)keep * scale;", _apply_mask_twin)


def dropout_forward(x, p, rng, training=True):
    """:func:`functional.dropout_forward` on a device: y = x * keep * scale, keep = u >= p,
    from one uniform draw u and one kernel (the reference: a draw, a comparison and two
    products)."""
    if not training or p == 0.0:
        return x, None
    xp = get_array_module(x)
    u = random_uniform(rng, x.shape, np.float32)
    y, keep = xp.empty_like(x), xp.empty(x.shape, dtype=bool)
    scale = 1.0 / (1.0 - p)
    DROPOUT(x, u, np.float32(p), x.dtype.type(scale), y, keep)
    return y, F.DropoutCache(keep, scale)


def dropout_backward(dy, cache):
    """:func:`functional.dropout_backward`, dx = dy * keep * scale, in one kernel."""
    if cache is None:
        return dy
    dx = get_array_module(dy).empty_like(dy)
    APPLY_MASK(dy, cache.keep, dy.dtype.type(cache.scale), dx)
    return dx


# --------------------------------------------------------------------------------------
# The feed-forward's ReLU and dropout in one pass
# --------------------------------------------------------------------------------------
def _relu_dropout_twin(h, u, p, d):
    d[...] = np.where((h > 0) | (h != h), h, 0) * (u >= p)


RELU_DROPOUT = ElementwiseFused(
    "mt_relu_dropout", "T h, float32 u, float32 p", "T d",
    "T r = (h > (T)0 || h != h) ? h : (T)0;  d = r * (T)(u >= p);", _relu_dropout_twin)


def _relu_dropout_backward_twin(d, dd):
    dd *= d > 0


RELU_DROPOUT_BACKWARD = ElementwiseFused(
    "mt_relu_dropout_backward", "T d", "T dd", "dd = dd * (T)(d > (T)0);", _relu_dropout_backward_twin)


def relu_dropout_linear_forward(h, w, b, p, rng, training=True):
    """:func:`fast.relu_dropout_linear_forward` with d = relu(h) * keep made by one kernel from
    the uniform draw (the mask itself is never stored: the backward pass reads d > 0)."""
    if not training or p == 0.0:
        return fast_layers.relu_dropout_linear_forward(h, w, b, p, rng, training)
    d = get_array_module(h).empty_like(h)
    RELU_DROPOUT(h, random_uniform(rng, h.shape, np.float32), np.float32(p), d)
    scale = 1.0 / (1.0 - p)
    y, linear_cache = fast_layers.linear_forward(d, w * scale, b)
    return y, fast_layers.ReluDropoutLinearCache(linear_cache, scale)


def relu_dropout_linear_backward(dy, cache):
    """:func:`fast.relu_dropout_linear_backward`, with dh = dd * (d > 0) as one kernel, in place."""
    dd, dw, db = fast_layers.linear_backward(dy, cache.linear_cache)
    if cache.scale != 1.0:
        dw *= cache.scale
    RELU_DROPOUT_BACKWARD(cache.linear_cache.x, dd)
    return dd, dw, db


# --------------------------------------------------------------------------------------
# GELU
# --------------------------------------------------------------------------------------
_C, _K = F._GELU_C, 0.044715


def _gelu_twin(x, y, t):
    t[...] = np.tanh(_C * (x + _K * (x * x * x)))
    y[...] = 0.5 * x * (1.0 + t)


GELU = ElementwiseFused(
    "mt_gelu", "T x", "T y, T t",
    f"T tt = tanh((T){_C!r} * (x + (T){_K!r} * (x * x * x)));  t = tt;  y = (T)0.5 * x * ((T)1 + tt);",
    _gelu_twin)


def _gelu_backward_twin(dy, x, t, dx):
    dt = _C * (1.0 + 3 * _K * (x * x))
    dx[...] = dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt)


GELU_BACKWARD = ElementwiseFused(
    "mt_gelu_backward", "T dy, T x, T t", "T dx",
    f"T dt = (T){_C!r} * ((T)1 + (T){3 * _K!r} * (x * x));"
    "  dx = dy * ((T)0.5 * ((T)1 + t) + (T)0.5 * x * ((T)1 - t * t) * dt);",
    _gelu_backward_twin)


def gelu_forward(x):
    """:func:`functional.gelu_forward` in one kernel (y and the cached t = tanh(...) together)."""
    xp = get_array_module(x)
    y, t = xp.empty_like(x), xp.empty_like(x)
    GELU(x, y, t)
    return y, F.GeluCache(x, t)


def gelu_backward(dy, cache):
    """:func:`functional.gelu_backward` in one kernel."""
    dx = get_array_module(dy).empty_like(dy)
    GELU_BACKWARD(dy, cache.x, cache.t, dx)
    return dx


# --------------------------------------------------------------------------------------
# Softmax and layer norm: one thread block per row
# --------------------------------------------------------------------------------------
def _softmax_twin(x, p):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    p[...] = e / e.sum(axis=-1, keepdims=True)


SOFTMAX = RowFused("mt_softmax", r"""
extern "C" __global__ void mt_softmax(const real* x, real* p, int n_rows, int d) {
    __shared__ real buf[ROW_THREADS];
    const real* xr = x + (long long)blockIdx.x * d;
    real* pr = p + (long long)blockIdx.x * d;
    real m = xr[0];
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) m = xr[j] > m ? xr[j] : m;
    m = block_max(m, buf);
    real s = 0;
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) { real e = exp(xr[j] - m); pr[j] = e; s += e; }
    s = block_sum(s, buf);
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) pr[j] = pr[j] / s;
}
""", _softmax_twin)


def softmax_forward(x):
    """:func:`functional.softmax_forward` (row maximum, exp, row sum, division) in one kernel."""
    rows = as_rows(x)
    p = get_array_module(x).empty_like(rows)
    SOFTMAX(rows, p)
    p = p.reshape(x.shape)
    return p, p


def _softmax_backward_twin(dp, p, dx):
    dx[...] = p * (dp - (dp * p).sum(axis=-1, keepdims=True))


SOFTMAX_BACKWARD = RowFused("mt_softmax_backward", r"""
extern "C" __global__ void mt_softmax_backward(const real* dp, const real* p, real* dx, int n_rows, int d) {
    __shared__ real buf[ROW_THREADS];
    long long row = (long long)blockIdx.x * d;
    real s = 0;
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) s += dp[row + j] * p[row + j];
    s = block_sum(s, buf);
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) dx[row + j] = p[row + j] * (dp[row + j] - s);
}
""", _softmax_backward_twin)


def softmax_backward(dp, cache):
    """:func:`functional.softmax_backward`, dx = p * (dp - sum(dp * p)), in one kernel."""
    rows = as_rows(dp)
    dx = get_array_module(dp).empty_like(rows)
    SOFTMAX_BACKWARD(rows, as_rows(cache), dx)
    return dx.reshape(dp.shape)


def _layer_norm_twin(x, gamma, beta, eps, y, xhat, rstd):
    d = x.shape[-1]
    mean = x.sum(axis=-1, keepdims=True) / d
    c = x - mean
    rstd[...] = 1.0 / np.sqrt((c * c).sum(axis=-1, keepdims=True) / d + eps)
    xhat[...] = c * rstd
    y[...] = gamma * xhat + beta


LAYER_NORM = RowFused("mt_layer_norm", r"""
extern "C" __global__ void mt_layer_norm(const real* x, const real* gamma, const real* beta, real eps,
                                         real* y, real* xhat, real* rstd, int n_rows, int d) {
    __shared__ real buf[ROW_THREADS];
    long long row = (long long)blockIdx.x * d;
    real s = 0;
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) s += x[row + j];
    real mean = block_sum(s, buf) / d;
    s = 0;
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) { real c = x[row + j] - mean; s += c * c; }
    real r = (real)1 / sqrt(block_sum(s, buf) / d + eps);
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) {
        real h = (x[row + j] - mean) * r;
        xhat[row + j] = h;
        y[row + j] = gamma[j] * h + beta[j];
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}
""", _layer_norm_twin)


def _layer_norm_backward_twin(dy, xhat, rstd, gamma, dx, dy_xhat):
    d = dy.shape[-1]
    g = dy * gamma
    mean_g = g.sum(axis=-1, keepdims=True) / d
    mean_gx = (g * xhat).sum(axis=-1, keepdims=True) / d
    dx[...] = rstd * (g - mean_g - xhat * mean_gx)
    dy_xhat[...] = dy * xhat


LAYER_NORM_BACKWARD = RowFused("mt_layer_norm_backward", r"""
extern "C" __global__ void mt_layer_norm_backward(const real* dy, const real* xhat, const real* rstd,
                                                  const real* gamma, real* dx, real* dy_xhat,
                                                  int n_rows, int d) {
    __shared__ real buf[ROW_THREADS];
    long long row = (long long)blockIdx.x * d;
    real s1 = 0, s2 = 0;
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) {
        real g = dy[row + j] * gamma[j];
        s1 += g;
        s2 += g * xhat[row + j];
        dy_xhat[row + j] = dy[row + j] * xhat[row + j];
    }
    real mean_g = block_sum(s1, buf) / d;
    real mean_gx = block_sum(s2, buf) / d;
    real r = rstd[blockIdx.x];
    for (int j = threadIdx.x; j < d; j += ROW_THREADS) {
        real g = dy[row + j] * gamma[j];
        dx[row + j] = r * (g - mean_g - xhat[row + j] * mean_gx);
    }
}
""", _layer_norm_backward_twin)


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """:func:`functional.layer_norm_forward`: mean, variance, xhat and y of a row in one kernel."""
    xp = get_array_module(x)
    rows = as_rows(x)
    y, xhat = xp.empty_like(rows), xp.empty_like(rows)
    rstd = xp.empty((rows.shape[0], 1), dtype=x.dtype)
    LAYER_NORM(rows, gamma, beta, x.dtype.type(eps), y, xhat, rstd)
    return y.reshape(x.shape), F.LayerNormCache(xhat.reshape(x.shape), rstd.reshape(x.shape[:-1] + (1,)), gamma)


def layer_norm_backward(dy, cache):
    """:func:`functional.layer_norm_backward`: dx and dy * xhat of a row in one kernel, then
    dgamma and dbeta as two sums over the rows (products with ones, as the fast path does)."""
    xp = get_array_module(dy)
    rows = as_rows(dy)
    dx, dy_xhat = xp.empty_like(rows), xp.empty_like(rows)
    LAYER_NORM_BACKWARD(rows, as_rows(cache.xhat), as_rows(cache.rstd), cache.gamma, dx, dy_xhat)
    return (dx.reshape(dy.shape), fast_layers._sum_over_leading_axes(dy_xhat),
            fast_layers._sum_over_leading_axes(rows))


# --------------------------------------------------------------------------------------
# The Adam update: p, m and v in place, in one kernel
# --------------------------------------------------------------------------------------
def _adam_twin(g, b1, one_minus_b1, b2, one_minus_b2, bias2_sqrt, eps, step_size, decay, l2, p, m, v):
    if decay != 1:
        p *= decay
    if l2 != 0:
        g = p * l2 + g
    m *= b1
    m += g * one_minus_b1
    v *= b2
    v += g * g * one_minus_b2
    p -= m / (np.sqrt(v) / bias2_sqrt + eps) * step_size


ADAM = ElementwiseFused(
    "mt_adam",
    "T g, T b1, T one_minus_b1, T b2, T one_minus_b2, T bias2_sqrt, T eps, T step_size, T decay, T l2",
    "T p, T m, T v", """
    T q = p;
    if (decay != (T)1) q = q * decay;
    T gg = g;
    if (l2 != (T)0) gg = q * l2 + g;
    m = m * b1 + gg * one_minus_b1;
    v = v * b2 + gg * gg * one_minus_b2;
    p = q - m / (sqrt(v) / bias2_sqrt + eps) * step_size;
""", _adam_twin)


def adam_update(p, g, m, v, *, betas, eps, step_size, bias2_sqrt, decay=1.0, l2=0.0):
    """:meth:`optim.Adam._update`'s equations for one parameter, in one kernel, in place:
    p <- p * decay (AdamW), g <- g + l2 * p (Adam's L2 term), the moments m and v, and
    p <- p - step_size * m / (sqrt(v) / bias2_sqrt + eps). The numbers are the reference's,
    operation for operation (the scalars rounded to p's dtype, as NumPy rounds Python floats)."""
    t = p.dtype.type
    b1, b2 = betas
    ADAM(g, t(b1), t(1.0 - b1), t(b2), t(1.0 - b2), t(bias2_sqrt), t(eps), t(step_size), t(decay), t(l2),
         p, m, v)
