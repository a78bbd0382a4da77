"""Softmax cross-entropy with label smoothing and ignored (padding) targets.

Label smoothing follows PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``: the target
distribution spreads ``eps`` uniformly over *all* K classes, the true one included,

    q_k = (1 - eps) * [k == y] + eps / K.

(The paper's reference code spreads eps over the K - 1 *other* classes instead; the two
differ only in how much mass the true class keeps, 1 - eps + eps/K versus 1 - eps.)
Positions whose target is ``ignore_index`` (padding) contribute nothing, and the loss is
the mean over the positions that count.
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module
from .module import Module
from .validation import check_token_ids


def softmax_cross_entropy_forward(logits, targets, ignore_index=None, label_smoothing=0.0):
    """loss = mean over counted positions n of  -sum_k q_nk log p_nk,  p = softmax(logits).

    ``logits`` (..., K) float, ``targets`` (...) integer class ids. Works from the
    log-softmax, log p = z - max z - log sum exp(z - max z), which never overflows and
    never takes the log of an underflowed 0.
    With q as above, -sum_k q_k log p_k = (1 - eps)(-log p_y) + eps * mean_k(-log p_k).
    """
    xp = get_array_module(logits)
    n_classes = logits.shape[-1]
    z = logits.reshape(-1, n_classes)
    y = targets.reshape(-1)
    valid = xp.ones(y.shape, dtype=bool) if ignore_index is None else (y != ignore_index)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError("every target equals ignore_index, so the mean loss is undefined; "
                         "check that the batch contains real (non-padding) targets")
    y_safe = xp.where(valid, y, 0)
    shifted = z - z.max(axis=-1, keepdims=True)
    log_sum = xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
    log_p = shifted
    log_p -= log_sum
    nll = -log_p[xp.arange(y.shape[0]), y_safe]
    per_position = (1.0 - label_smoothing) * nll
    if label_smoothing:
        per_position -= label_smoothing * log_p.mean(axis=-1)
    loss = (per_position * valid).sum() / n_valid
    cache = (log_p, y_safe, valid, n_valid, label_smoothing, logits.shape)
    return loss, cache


def softmax_cross_entropy_backward(dloss, cache):
    """dlogits_nk = dloss * (p_nk - q_nk) / N_valid for counted positions, 0 for ignored.

    From log p_k = z_k - log sum_j exp z_j:  d(-sum_k q_k log p_k)/dz_j = p_j - q_j
    (because sum_k q_k = 1). The mean divides by the number of counted positions.
    """
    log_p, y_safe, valid, n_valid, eps, shape = cache
    xp = get_array_module(log_p)
    n_classes = log_p.shape[-1]
    dz = xp.exp(log_p)
    if eps:
        dz -= eps / n_classes
    dz[xp.arange(y_safe.shape[0]), y_safe] -= 1.0 - eps
    dz *= (valid * (float(dloss) / n_valid)).astype(dz.dtype)[:, None]
    return dz.reshape(shape)


class CrossEntropyLoss(Module):
    """Module form: ``loss = criterion.forward(logits, targets)``, then ``criterion.backward()``."""

    def __init__(self, ignore_index=None, label_smoothing=0.0):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)
        self._cache = None

    def forward(self, logits, targets):
        if logits.ndim < 1 or not np.issubdtype(logits.dtype, np.floating):
            raise ValueError(f"logits must be a float array of shape (..., n_classes), got "
                             f"dtype {logits.dtype} and shape {tuple(logits.shape)}")
        if tuple(targets.shape) != tuple(logits.shape[:-1]):
            raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])} (logits without "
                             f"the class axis), got {tuple(targets.shape)}")
        check_token_ids("targets", targets, logits.shape[-1], ignore_index=self.ignore_index)
        loss, self._cache = softmax_cross_entropy_forward(logits, targets, self.ignore_index,
                                                          self.label_smoothing)
        return loss

    def backward(self, dloss=1.0):
        if self._cache is None:
            raise RuntimeError("CrossEntropyLoss.backward() called before forward()")
        return softmax_cross_entropy_backward(dloss, self._cache)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}"

