"""A decoder-only Transformer (GPT; Radford et al., 2018, 2019) built from the encoder's blocks.

A GPT block is an encoder layer run under a *causal* mask: self-attention in which
position t sees positions <= t only, then the feed-forward network. There is no
cross-attention, because there is no encoder to attend to. So this model is token and
position embeddings, the ``Encoder`` stack of :mod:`transformer` (the same layers the
encoder-decoder uses; built by :class:`~minitransformer.heads.StackModel`) run with
``decoder_self_mask``, and a projection to the vocabulary,
tied to the token embedding by default (GPT-2). It is trained to predict every next token
at once (:func:`next_token_targets`), and generates one token at a time (:func:`generate`).

Generation with a KV cache
--------------------------
Generating token t+1 needs the last layer's vector at position t only. Inside a layer,
everything but self-attention acts on each position alone (norms, feed-forward, residual
sums), and self-attention needs the keys and values of the earlier positions — which do not
change as the sequence grows. So each layer keeps them (:class:`~minitransformer.decoding.KVCache`), and a step runs
the layers on the new positions only, each through its own residual blocks
(:meth:`~minitransformer.transformer.Residual.around`): only the self-attention differs, it
computes the new positions' queries, keys and values, appends the keys and values to the
cache and attends over all of them (:func:`~minitransformer.decoding.cached_self_attention`). ``generate(..., use_cache=False)`` runs
the whole model over the whole prefix at every step instead: the reference the cached
path is tested against.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import backend as _backend
from .decoding import KVCache, cached_self_attention
from .heads import OutputProjection, StackConfig, StackModel
from .nn import as_generator
from .sampling import sample_next_token
from .transformer import decoder_self_mask
from .validation import check_id_batch, check_int

__all__ = ["DecoderOnlyConfig", "DecoderOnly", "next_token_targets", "generate"]


@dataclass
class DecoderOnlyConfig(StackConfig):
    """:class:`~minitransformer.heads.StackConfig` with GPT-2's defaults: pre-LN, GELU, tied
    output embedding."""

    norm_first: bool = True         #: pre-LN, as GPT-2


class DecoderOnly(StackModel):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size): position t predicts token t+1.

    ``backward(dlogits)`` adds every parameter's gradient into ``.grad``. Sequences are
    padded at the end with ``pad_id``; padding is hidden from attention (and the loss
    skips it with ``CrossEntropyLoss(ignore_index=pad_id)``).
    """

    def build_heads(self, rng, dropout_rng, table):
        self.output = OutputProjection(self.config.d_model, self.config.vocab_size, table, rng=rng,
                                       dtype=self.config.dtype)

    def forward(self, ids):
        check_id_batch("ids", ids, self.config.max_len, self.config.vocab_size)
        x = self.embeddings.forward(ids)
        h = self.stack.forward(x, decoder_self_mask(ids, self.config.pad_id))   # GPT: causal
        return self.output.forward(h)

    def backward(self, dlogits):
        """The forward pass in reverse: projection, stack, embeddings."""
        self.embeddings.backward(self.stack.backward(self.output.backward(dlogits)))

    # -- generation, one position (or a prompt) at a time -------------------------------
    def start_generation(self, batch, max_len):
        """One empty :class:`~minitransformer.decoding.KVCache` per layer, for sequences of up to ``max_len`` tokens."""
        c = self.config
        xp = _backend.get_array_module(self.embeddings.token.weight.data)
        return [KVCache(batch, c.n_heads, max_len, c.d_model // c.n_heads, self.dtype, xp)
                for _ in range(c.n_layers)]

    def step(self, ids, caches):
        """Logits (B, T_new, V) for ``ids`` (B, T_new), the tokens that follow those already in
        the caches (a whole prompt at first, then one token a step). Inference only."""
        if len(caches) != len(self.stack.layers):
            raise ValueError(f"the model has {len(self.stack.layers)} layers but {len(caches)} caches "
                             f"were given; make them with start_generation")
        start = caches[0].length if caches else 0
        h = self.embeddings.forward(ids, start=start)
        for layer, cache in zip(self.stack.layers, caches):
            self_attention, feed_forward = layer.blocks
            h = self_attention.around(cached_self_attention, h, layer.self_attn, cache)
            h = feed_forward.forward(h)
        if self.stack.final_norm is not None:
            h = self.stack.final_norm.forward(h)
        return self.output.forward(h)


def next_token_targets(ids):
    """``(inputs, targets)`` for next-token training: ``ids[:, :-1]`` and ``ids[:, 1:]``.

    With ``ids`` = [a, b, c, <pad>], the model reads [a, b, c] and is asked for [b, c, <pad>]
    (padding targets are skipped by the loss's ``ignore_index``)."""
    if ids.ndim != 2 or ids.shape[1] < 2:
        raise ValueError(f"next-token training needs sequences of at least 2 tokens, got shape "
                         f"{tuple(ids.shape)}")
    return ids[:, :-1], ids[:, 1:]


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------
def generate(model: DecoderOnly, prompt_ids, max_new_tokens, *, rng=0, temperature=1.0, top_k=None,
             top_p=None, eos_id=None, use_cache=True):
    """Continue each prompt by up to ``max_new_tokens`` tokens; returns (B, T0 + n) ids.

    ``prompt_ids`` (B, T0) holds prompts of equal length, without padding. Each step draws
    the next token with :func:`~minitransformer.sampling.sample_next_token` (``rng`` a seed
    or NumPy Generator; ``temperature=0`` is greedy; ``top_k``, ``top_p`` as there), never
    the padding token (a padded position would be hidden from later steps' attention). A row
    that has produced ``eos_id`` is finished: it gets padding from then on, and generation
    stops when every row is finished. The model runs in eval mode (no dropout) and is put
    back in the mode it was in.
    """
    check_id_batch("prompt_ids", prompt_ids, model.config.max_len, model.config.vocab_size)
    pad = model.config.pad_id
    if bool((prompt_ids == pad).any()):
        raise ValueError(f"prompt_ids hold padding (id {pad}); give prompts of equal length without padding")
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    batch, prompt_len = prompt_ids.shape
    total = prompt_len + max_new_tokens
    if total > model.config.max_len:
        raise ValueError(f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds the "
                         f"model's max_len={model.config.max_len}")
    rng = as_generator(rng)
    xp = _backend.get_array_module(prompt_ids)
    tokens = xp.full((batch, total), pad, dtype=prompt_ids.dtype)
    tokens[:, :prompt_len] = prompt_ids
    finished = np.zeros(batch, dtype=bool)
    was_training = model.training
    model.eval()
    try:
        caches = model.start_generation(batch, total) if use_cache else None
        end = prompt_len
        for t in range(prompt_len, total):
            if use_cache:    # the whole prompt at the first step, then the newest token
                logits = model.step(tokens[:, :t] if t == prompt_len else tokens[:, t - 1:t], caches)[:, -1]
            else:
                logits = model.forward(tokens[:, :t])[:, -1]
            logits[:, pad] = -np.inf       # padding is never a token to generate: attention hides it
            choice = sample_next_token(logits, rng, temperature, top_k, top_p)
            choice = np.where(finished, pad, choice)
            tokens[:, t] = xp.asarray(choice, dtype=tokens.dtype)
            end = t + 1
            if eos_id is not None:
                finished |= choice == eos_id
                if finished.all():
                    break
    finally:
        model.train(was_training)
    return tokens[:, :end]
