"""Generating target sequences: greedy decoding (with or without a KV cache) and beam search.

A decoder is trained on whole target sequences at once, but generates one token at a
time: token t+1 depends on the tokens chosen so far. The plain way (``use_cache=False``)
runs the whole decoder over the whole prefix at every step: easy to read, and the
reference the fast way is tested against. It recomputes, at step t, the keys and values
of the t-1 earlier positions, which have not changed.

The KV cache (``use_cache=True``) keeps them. Each decoder layer stores its
self-attention keys and values and appends one position per step, and the
cross-attention keys and values, which depend only on the source, are computed once.
A step then costs one position instead of t, and decoding a length-T target costs O(T)
position-steps instead of O(T^2).
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module, to_numpy


# --------------------------------------------------------------------------------------
# The KV cache
# --------------------------------------------------------------------------------------
class KVCache:
    """One layer's self-attention keys and values, (B, H, max_len, d_k), filled from the left.

    They grow by one position a step (or a whole prompt at first); they live in arrays
    allocated once for ``max_len`` positions, so a step writes one slice instead of copying
    the whole history. The decoder-only model's generation uses it as it is."""

    def __init__(self, batch, n_heads, max_len, d_k, dtype, xp=np):
        self.k = xp.empty((batch, n_heads, max_len, d_k), dtype=dtype)
        self.v = xp.empty((batch, n_heads, max_len, d_k), dtype=dtype)
        self.length = 0

    def append(self, k, v):
        """Store the new positions' keys and values; return all of them so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(f"decoding past the cache's max_len={self.k.shape[2]}")
        self.k[:, :, start:end], self.v[:, :, start:end] = k, v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class DecoderCache(KVCache):
    """One decoder layer's caches during incremental decoding: its self-attention keys and
    values (:class:`KVCache`) and its cross-attention keys and values, which depend only on
    the source and are computed once, before the first step."""

    def __init__(self, memory_k, memory_v, max_len):
        b, h, _, dk = memory_k.shape
        super().__init__(b, h, max_len, dk, memory_k.dtype, get_array_module(memory_k))
        self.memory_k, self.memory_v = memory_k, memory_v

    def reorder(self, index):
        """Keep the rows ``index`` (beam search: follow the surviving beams).

        Only the self-attention keys and values move: a beam's new parent is always a beam
        of the same source, whose cross-attention keys and values are the same rows."""
        self.k, self.v = self.k[index], self.v[index]


def start_decoding(model, memory, src_mask, max_len):
    """Per-layer caches for :func:`decode_step`, cross-attention keys/values computed once."""
    return [DecoderCache(*layer.cross_attn.project_memory(memory), max_len) for layer in model.decoder.layers]


def decode_step(model, token_ids, caches, src_mask):
    """Logits (B, V) for the next token, given the newest token ids (B,) of each sequence.

    The same layers as :meth:`~minitransformer.transformer.Transformer.decode`, each
    through its own residual blocks; only the attentions differ: the new position's query
    attends over the cached keys and values."""
    position = caches[0].length if caches else 0
    y = model.tgt_pos.forward(model.tgt_embed.forward(token_ids.reshape(-1, 1)), start=position)
    for layer, cache in zip(model.decoder.layers, caches):
        self_attention, cross_attention, feed_forward = layer.blocks
        y = self_attention.around(cached_self_attention, y, layer.self_attn, cache)
        y = cross_attention.around(_cached_cross_attention, y, layer.cross_attn, cache, src_mask, position)
        y = feed_forward.forward(y)
    if model.decoder.final_norm is not None:
        y = model.decoder.final_norm.forward(y)
    return model.project(y)[:, 0]


def cached_self_attention(x, attention, cache: KVCache):
    """Self-attention of the new positions ``x`` (B, T_new, d) over every cached position up
    to their own: their queries, keys and values come from the layer's own projection, and
    the keys and values join the cache (query i of a step that starts at position s sees
    keys 0 .. s + i; with one new position, every cached key)."""
    start = cache.length
    q, k, v = attention.project_self(x, start)   # RoPE turns them by their absolute positions
    keys, values = cache.append(k, v)
    xp = get_array_module(q)
    causal = xp.arange(keys.shape[2])[None, :] <= start + xp.arange(q.shape[2])[:, None]
    return attention.attend(q, keys, values, causal[None, None], start)


def _cached_cross_attention(y, attention, cache, cross_mask, start):
    """Cross-attention of the new positions ``y`` over the cached source keys and values; a
    diagonal bias reads the queries' positions, start .. (the step's own)."""
    return attention.attend(attention.project_queries(y), cache.memory_k, cache.memory_v, cross_mask, start)


# --------------------------------------------------------------------------------------
# Greedy decoding and beam search
# --------------------------------------------------------------------------------------
def _prepare(model, src_ids, max_len):
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    if max_len + 1 > model.config.max_len:
        raise ValueError(f"max_len={max_len} plus the start token exceeds the model's "
                         f"max_len={model.config.max_len}")
    model.eval()
    return model.encode(src_ids)


def _next_token_logits(model, logits, bos_id):
    """Logits with the padding and start tokens ruled out: neither is ever a valid output,
    and a generated padding token would be masked out of later steps' attention."""
    logits[:, model.config.pad_id] = -np.inf
    logits[:, bos_id] = -np.inf
    return logits


def _trim(generated, eos_id):
    """Each row up to (not including) its end token, as a list of Python int lists."""
    rows = to_numpy(generated)
    out = []
    for row in rows:
        ends = np.nonzero(row == eos_id)[0]
        out.append(row[: ends[0]].tolist() if ends.size else row.tolist())
    return out


def greedy_decode(model, src_ids, *, bos_id, eos_id, max_len, use_cache=True, return_array=False):
    """Pick the most likely next token until every sequence has produced ``eos_id``.

    ``src_ids`` (B, S) padded source ids. Returns, per sequence, the generated ids
    without the start token and without the end token (a list of lists), or with
    ``return_array=True`` the raw (B, n_steps) array including end tokens and whatever
    finished sequences produced after them. At most ``max_len`` tokens are generated.
    """
    xp = get_array_module(src_ids)
    memory, src_mask = _prepare(model, src_ids, max_len)
    batch = src_ids.shape[0]
    tokens = xp.full((batch, max_len + 1), model.config.pad_id, dtype=src_ids.dtype)
    tokens[:, 0] = bos_id
    finished = xp.zeros(batch, dtype=bool)
    caches = start_decoding(model, memory, src_mask, max_len + 1) if use_cache else None
    n_steps = 0
    for t in range(max_len):
        if use_cache:
            logits = decode_step(model, tokens[:, t], caches, src_mask)
        else:
            logits = model.decode(tokens[:, : t + 1], memory, src_mask)[:, -1]
        next_token = _next_token_logits(model, logits, bos_id).argmax(axis=-1).astype(tokens.dtype)
        # a finished sequence keeps padding; its choices no longer matter
        tokens[:, t + 1] = xp.where(finished, model.config.pad_id, next_token)
        finished |= next_token == eos_id
        n_steps = t + 1
        if bool(finished.all()):
            break
    generated = tokens[:, 1 : n_steps + 1]
    return generated if return_array else _trim(generated, eos_id)


def _length_penalty(length, alpha):
    """GNMT's length penalty ((5 + L) / 6)^alpha: alpha = 0 compares raw log-probabilities,
    larger alpha favours longer hypotheses."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(model, src_ids, *, bos_id, eos_id, max_len, beam_width=4, length_penalty=0.6,
                return_scores=False):
    """Batched beam search with a KV cache.

    Each source keeps ``beam_width`` hypotheses. At every step each hypothesis is
    extended by every token, and the ``beam_width`` best extensions (by total
    log-probability) survive; the caches follow the survivors. A hypothesis that has
    produced ``eos_id`` is frozen: it can only be extended by padding, at no cost.
    At the end hypotheses are ranked by log-probability / length_penalty(length).
    With ``beam_width=1`` this is exactly greedy decoding.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    xp = get_array_module(src_ids)
    memory, src_mask = _prepare(model, src_ids, max_len)
    batch, k = src_ids.shape[0], beam_width
    pad = model.config.pad_id
    # every hypothesis is a row: (batch * k) rows, the k beams of one source adjacent
    rows = xp.repeat(xp.arange(batch), k)
    memory, src_mask = memory[rows], src_mask[rows]
    caches = start_decoding(model, memory, src_mask, max_len + 1)
    tokens = xp.full((batch * k, max_len + 1), pad, dtype=src_ids.dtype)
    tokens[:, 0] = bos_id
    # only the first beam of each source is live at the start, so the k copies don't tie
    scores = xp.zeros((batch, k), dtype=np.float64)
    scores[:, 1:] = -np.inf
    scores = scores.reshape(-1)
    finished = xp.zeros(batch * k, dtype=bool)
    lengths = xp.zeros(batch * k, dtype=np.int64)
    n_steps = 0
    for t in range(max_len):
        logits = _next_token_logits(model, decode_step(model, tokens[:, t], caches, src_mask), bos_id)
        logits = logits.astype(np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        vocab = log_probs.shape[-1]
        # frozen hypotheses: only padding, at log-probability 0
        log_probs[finished] = -np.inf
        log_probs[finished, pad] = 0.0
        candidates = (scores[:, None] + log_probs).reshape(batch, k * vocab)
        best = xp.argsort(-candidates, axis=1, kind="stable")[:, :k]
        scores = xp.take_along_axis(candidates, best, axis=1).reshape(-1)
        parent = (best // vocab + xp.arange(batch)[:, None] * k).reshape(-1)
        token = (best % vocab).reshape(-1).astype(tokens.dtype)
        tokens = tokens[parent]
        tokens[:, t + 1] = token
        was_finished = finished[parent]
        lengths = lengths[parent] + (~was_finished)
        finished = was_finished | (token == eos_id)
        for cache in caches:
            cache.reorder(parent)
        n_steps = t + 1
        if bool(finished.all()):
            break
    final = (scores / _length_penalty(lengths, length_penalty)).reshape(batch, k)
    final = xp.where(xp.isfinite(final), final, -np.inf)
    choice = final.argmax(axis=1) + xp.arange(batch) * k
    generated = tokens[choice, 1 : n_steps + 1]
    result = _trim(generated, eos_id)
    if return_scores:
        return result, to_numpy(final.max(axis=1)).tolist()
    return result
