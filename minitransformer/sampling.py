"""Choosing the next token from a model's logits: greedy, temperature, top-k, top-p.

A language model gives, for each sequence, logits z over the vocabulary for the next
token. Sampling draws the token from p = softmax(z / temperature):

* **temperature** T: below 1 sharpens the distribution (T -> 0 is greedy, the arg max),
  above 1 flattens it. ``temperature=0`` means greedy here.
* **top-k**: keep the k most likely tokens, renormalise, draw among them.
* **top-p** (nucleus sampling, Holtzman et al., 2020): keep the most likely tokens until
  their probabilities add up to at least p — the smallest such set — and draw among them.
  The set is small where the model is sure and large where it is not.

Applied in that order (temperature, top-k, top-p), as Hugging Face's ``generate`` does.
Ties are broken towards the lower token id. Sampling runs on the host with a NumPy
generator, so the same seed draws the same tokens on every backend.
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy
from .nn import as_generator

__all__ = ["top_k_keep", "top_p_keep", "next_token_probabilities", "sample_next_token"]


def _check(temperature, top_k, top_p):
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")


def _descending(probs):
    """Token ids of each row from most to least likely (ties: lower id first)."""
    return np.argsort(-probs, axis=-1, kind="stable")


def top_k_keep(probs, k):
    """(B, V) boolean: True at the k most likely tokens of each row."""
    keep = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(keep, _descending(probs)[:, :k], True, axis=-1)
    return keep


def top_p_keep(probs, p):
    """(B, V) boolean: the smallest set of most likely tokens whose probabilities sum to >= p.

    Sorted from most likely down, token i is kept when the tokens before it add up to less
    than p: that keeps the first token always, and stops right after the sum reaches p.
    """
    order = _descending(probs)
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(keep, order, mass_before < p, axis=-1)
    return keep


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def next_token_probabilities(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution :func:`sample_next_token` draws from: (B, V) float64 on the host,
    zero outside the kept tokens, each row summing to 1. ``temperature=0``: one-hot at the
    arg max."""
    _check(temperature, top_k, top_p)
    z = to_numpy(logits).astype(np.float64)
    if temperature == 0:
        probs = np.zeros_like(z)
        np.put_along_axis(probs, z.argmax(axis=-1)[:, None], 1.0, axis=-1)
        return probs
    probs = _softmax(z / temperature)
    if top_k is not None and top_k < probs.shape[-1]:
        probs = np.where(top_k_keep(probs, top_k), probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        probs = np.where(top_p_keep(probs, top_p), probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def sample_next_token(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """One token id per row of ``logits`` (B, V), drawn with ``rng`` (a NumPy Generator or
    seed); returns a (B,) int64 host array.

    Inverse-CDF sampling: with u uniform in [0, 1), the token is the first one whose
    cumulative probability exceeds u (times the row's total, 1 up to rounding). A token of
    probability 0 adds nothing to the sum, so it is never the first to exceed it; and
    u < 1 means the last sum, the total, always exceeds it.
    """
    probs = next_token_probabilities(logits, temperature, top_k, top_p)
    u = as_generator(rng).random(probs.shape[0])
    cdf = np.cumsum(probs, axis=-1)
    return (cdf <= u[:, None] * cdf[:, -1:]).sum(axis=-1).astype(np.int64)
