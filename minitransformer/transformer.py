"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

Read this file top to bottom: the configuration, the masks, the residual block, one
encoder layer, one decoder layer, the stacks, and the whole model. Every ``backward`` is
the mirror image of its ``forward``: put the two side by side and read the second from
the bottom up.

Every sub-layer sits in a :class:`Residual` block: post-LN as in the paper
(``norm_first=False``) or pre-LN (``norm_first=True``, with one more norm at the end of
each stack; the identity path then never passes through a normalisation, which makes
deep models train without a learning-rate warm-up). Generating text one token at a time,
with a cache of keys and values, is in :mod:`~minitransformer.decoding`.
"""
from __future__ import annotations

import numpy as np

from . import backend as _backend
from .layers import _math
from .nn import (Dropout, Embedding, LayerNorm, Linear, Module, ModuleList,
                 Parameter, as_generator, positional_encoding)
from .sublayers import FeedForward, MultiHeadAttention
from .config import TransformerConfig, cross_attention_positions, self_attention_positions
from .validation import check_id_batch


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------
def padding_mask(ids, pad_id):
    """(B, 1, 1, T) boolean, True at real tokens: every query may look at every real key."""
    return (ids != pad_id)[:, None, None, :]


def causal_mask(length, xp=np):
    """(1, 1, T, T) boolean, True on and below the diagonal: position t sees positions <= t."""
    return xp.tril(xp.ones((length, length), dtype=bool))[None, None]


def decoder_self_mask(tgt_ids, pad_id):
    """Causal and padding together: query t sees real keys at positions <= t."""
    xp = _backend.get_array_module(tgt_ids)
    return causal_mask(tgt_ids.shape[1], xp) & padding_mask(tgt_ids, pad_id)


# --------------------------------------------------------------------------------------
# One residual block
# --------------------------------------------------------------------------------------
class Residual(Module):
    """One sub-layer ``f`` in its residual connection, with its dropout and layer norm.

    The arrangement is chosen here, once, for every block of the model::

        post-LN (norm_first=False, the paper):  out = norm(x + dropout(f(x)))
        pre-LN  (norm_first=True):              out = x + dropout(f(norm(x)))

    ``f`` is :class:`SelfAttention`, :class:`CrossAttention` or
    :class:`~minitransformer.sublayers.FeedForward`; ``context`` (a mask, or the encoder output
    and a mask) goes to it unchanged. The block keeps no cache: the norm, the dropout and
    the sub-layer keep theirs. It wires modules that the layer owns, under the layer's
    names (``norm1``, ``self_attn``, ...), which are the names in a checkpoint.
    """

    def __init__(self, sublayer, norm: LayerNorm, dropout: Dropout, norm_first: bool):
        self.sublayer, self.norm, self.dropout = sublayer, norm, dropout
        self.norm_first = norm_first

    def forward(self, x, *context):
        return self.around(self.sublayer.forward, x, *context)

    def around(self, f, x, *context):
        """The residual connection around any ``f(x, *context)``: :meth:`forward` passes the
        sub-layer's forward, incremental decoding an attention over cached keys and values."""
        if self.norm_first:
            return x + self.dropout.forward(f(self.norm.forward(x), *context))
        return self.norm.forward(x + self.dropout.forward(f(x, *context)))

    def backward(self, dout):
        """The gradient of the block's input ``x``, from the gradient ``dout`` of its output.

        A residual connection ``y = x + g(x)`` has the Jacobian ``dy/dx = I + J``, with
        ``J = dg/dx``, so ``dx = (I + J)^T dy = dy + J^T dy``: the gradient passes through
        unchanged *and* through the branch, and the two add. ``J^T dy`` is the branch's
        backward pass, its pieces in reverse order::

            pre-LN,  out = x + g(x), g = dropout(f(norm(.))):
                dx = dout + norm.backward(f.backward(dropout.backward(dout)))
            post-LN, out = norm(s),  s = x + g(x), g = dropout(f(.)):
                ds = norm.backward(dout)
                dx = ds + f.backward(dropout.backward(ds))

        Returns what the sub-layer's backward returns, with the gradient of its input
        replaced by that of ``x``: ``dx``, or for cross-attention ``(dx, dmemory)``.
        """
        if self.norm_first:
            df, others = _first(self.sublayer.backward(self.dropout.backward(dout)))
            dx = dout + self.norm.backward(df)
        else:
            ds = self.norm.backward(dout)
            df, others = _first(self.sublayer.backward(self.dropout.backward(ds)))
            dx = ds + df
        return (dx, *others) if others else dx


def _first(grads):
    """A backward pass returns the gradient of its input, or a tuple that starts with it."""
    return (grads[0], grads[1:]) if isinstance(grads, tuple) else (grads, ())


class SelfAttention(Module):
    """The self-attention sub-layer: queries, keys and values all from ``x``, under ``mask``."""

    def __init__(self, attention: MultiHeadAttention):
        self.attention = attention

    def forward(self, x, mask):
        return self.attention.forward(x, mask=mask)

    def backward(self, dout):
        """``dx``: the attention has already added the query, key and value paths into its
        first result (its second, the separate keys' and values' gradient, is None)."""
        dx, _ = self.attention.backward(dout)
        return dx


class CrossAttention(Module):
    """The cross-attention sub-layer: queries from ``y``, keys and values from the encoder
    output ``memory``, under ``mask`` (the source's padding)."""

    def __init__(self, attention: MultiHeadAttention):
        self.attention = attention

    def forward(self, y, memory, mask):
        return self.attention.forward(y, memory, mask)

    def backward(self, dout):
        """``(dy, dmemory)``: the gradients of the queries' input and of the encoder output."""
        return self.attention.backward(dout)


# --------------------------------------------------------------------------------------
# One encoder layer
# --------------------------------------------------------------------------------------
class EncoderLayer(Module):
    """Self-attention, then a position-wise feed-forward network, each in a residual block."""

    def __init__(self, config: TransformerConfig, rng, dropout_rng):
        c, kw = config, dict(rng=rng, dtype=config.dtype)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.attention_dropout, dropout_rng=dropout_rng,
                                            positions=self_attention_positions(c.positions), **kw)
        self.dropout1 = Dropout(c.dropout, dropout_rng)
        self.norm1 = LayerNorm(c.d_model, dtype=c.dtype)
        self.feed_forward = FeedForward(c.d_model, c.d_ff, c.activation, c.dropout,
                                        dropout_rng=dropout_rng, **kw)
        self.dropout2 = Dropout(c.dropout, dropout_rng)
        self.norm2 = LayerNorm(c.d_model, dtype=c.dtype)
        # a tuple, not attributes: the blocks own nothing, the names above are the checkpoint's
        self.blocks = (Residual(SelfAttention(self.self_attn), self.norm1, self.dropout1, c.norm_first),
                       Residual(self.feed_forward, self.norm2, self.dropout2, c.norm_first))

    def forward(self, x, mask):
        """x (B, S, d) -> (B, S, d); ``mask`` (B, 1, 1, S) hides padding keys."""
        self_attention, feed_forward = self.blocks
        x = self_attention.forward(x, mask)
        return feed_forward.forward(x)

    def backward(self, dout):
        """The gradient of the layer input: the blocks' backward passes in reverse order."""
        self_attention, feed_forward = self.blocks
        dx = feed_forward.backward(dout)
        return self_attention.backward(dx)


# --------------------------------------------------------------------------------------
# One decoder layer
# --------------------------------------------------------------------------------------
class DecoderLayer(Module):
    """Causal self-attention, cross-attention over the encoder output, feed-forward."""

    def __init__(self, config: TransformerConfig, rng, dropout_rng):
        c, kw = config, dict(rng=rng, dtype=config.dtype)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, c.attention_dropout, dropout_rng=dropout_rng,
                                            positions=self_attention_positions(c.positions), **kw)
        self.dropout1 = Dropout(c.dropout, dropout_rng)
        self.norm1 = LayerNorm(c.d_model, dtype=c.dtype)
        # query i and key j belong to different sequences: no positions in cross-attention,
        # but for a learned diagonal bias (positions="rope+diagonal")
        self.cross_attn = MultiHeadAttention(c.d_model, c.n_heads, c.attention_dropout, dropout_rng=dropout_rng,
                                             positions=cross_attention_positions(c.positions), **kw)
        self.dropout2 = Dropout(c.dropout, dropout_rng)
        self.norm2 = LayerNorm(c.d_model, dtype=c.dtype)
        self.feed_forward = FeedForward(c.d_model, c.d_ff, c.activation, c.dropout,
                                        dropout_rng=dropout_rng, **kw)
        self.dropout3 = Dropout(c.dropout, dropout_rng)
        self.norm3 = LayerNorm(c.d_model, dtype=c.dtype)
        self.blocks = (Residual(SelfAttention(self.self_attn), self.norm1, self.dropout1, c.norm_first),
                       Residual(CrossAttention(self.cross_attn), self.norm2, self.dropout2, c.norm_first),
                       Residual(self.feed_forward, self.norm3, self.dropout3, c.norm_first))

    def forward(self, y, memory, self_mask, cross_mask):
        """y (B, T, d) target positions, memory (B, S, d) encoder output -> (B, T, d)."""
        self_attention, cross_attention, feed_forward = self.blocks
        y = self_attention.forward(y, self_mask)
        y = cross_attention.forward(y, memory, cross_mask)
        return feed_forward.forward(y)

    def backward(self, dout):
        """Returns ``(dy, dmemory)``: the gradient of the layer input and of the encoder output."""
        self_attention, cross_attention, feed_forward = self.blocks
        dy = feed_forward.backward(dout)
        dy, dmemory = cross_attention.backward(dy)
        return self_attention.backward(dy), dmemory


# --------------------------------------------------------------------------------------
# The stacks
# --------------------------------------------------------------------------------------
class Encoder(Module):
    """N encoder layers (and, for pre-LN, a final layer norm)."""

    def __init__(self, config, rng, dropout_rng):
        self.layers = ModuleList(EncoderLayer(config, rng, dropout_rng) for _ in range(config.n_encoder_layers))
        self.final_norm = LayerNorm(config.d_model, dtype=config.dtype) if config.norm_first else None

    def forward(self, x, mask):
        for layer in self.layers:
            x = layer.forward(x, mask)
        return x if self.final_norm is None else self.final_norm.forward(x)

    def backward(self, dx):
        if self.final_norm is not None:
            dx = self.final_norm.backward(dx)
        for layer in reversed(list(self.layers)):
            dx = layer.backward(dx)
        return dx


class Decoder(Module):
    """N decoder layers (and, for pre-LN, a final layer norm).

    Every layer reads the same encoder output, so its gradient is the *sum* of what
    each layer sends back.
    """

    def __init__(self, config, rng, dropout_rng):
        self.layers = ModuleList(DecoderLayer(config, rng, dropout_rng) for _ in range(config.n_decoder_layers))
        self.final_norm = LayerNorm(config.d_model, dtype=config.dtype) if config.norm_first else None

    def forward(self, y, memory, self_mask, cross_mask):
        for layer in self.layers:
            y = layer.forward(y, memory, self_mask, cross_mask)
        return y if self.final_norm is None else self.final_norm.forward(y)

    def backward(self, dy):
        if self.final_norm is not None:
            dy = self.final_norm.backward(dy)
        dmemory = 0
        for layer in reversed(list(self.layers)):
            dy, dmem = layer.backward(dy)
            dmemory = dmemory + dmem
        return dy, dmemory


# --------------------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------------------
class Transformer(Module):
    """Encoder-decoder Transformer: ``forward(src_ids, tgt_in_ids) -> logits``.

    ``src_ids`` (B, S) and ``tgt_in_ids`` (B, T) are integer token ids, padded with
    ``config.pad_id``; ``tgt_in_ids`` is the target shifted right (it starts with the
    start token). The logits (B, T, tgt_vocab_size) at position t predict target token t.
    ``backward(dlogits)`` fills every parameter's ``.grad``.
    """

    def __init__(self, config: TransformerConfig, backend: str | None = None):
        config.validate()
        self.config = c = config
        rng = as_generator(c.seed)
        dropout_rng = _backend.default_rng(c.seed + 1, backend)
        self.dropout_rng = dropout_rng
        kw = dict(rng=rng, dtype=c.dtype)
        self.src_embed = Embedding(c.src_vocab_size, c.d_model, c.pad_id, c.scale_embeddings, **kw)
        self.tgt_embed = Embedding(c.tgt_vocab_size, c.d_model, c.pad_id, c.scale_embeddings, **kw)
        self.src_pos = positional_encoding(c.positions, c.d_model, c.max_len, **kw)
        self.tgt_pos = self.src_pos if c.positions != "learned" else \
            positional_encoding(c.positions, c.d_model, c.max_len, **kw)
        self.src_dropout = Dropout(c.dropout, dropout_rng)
        self.tgt_dropout = Dropout(c.dropout, dropout_rng)
        self.encoder = Encoder(c, rng, dropout_rng)
        self.decoder = Decoder(c, rng, dropout_rng)
        if c.tie_embeddings:
            # logits = h E^T + b: the output projection reads the target embedding table
            self.output_bias = Parameter(_backend.asarray(np.zeros(c.tgt_vocab_size), None, c.dtype))
            self.output = None
        else:
            self.output = Linear(c.d_model, c.tgt_vocab_size, **kw)
        if backend is not None:
            self.to(backend)
        self._cache = None

    def _move_buffers(self, backend_name, dtype, memo):
        # the model is visited before its layers: move the shared generator here (the memo
        # hands the layers the same new one), so the one checkpoints save is the one they use
        self.src_dropout._move_buffers(backend_name, dtype, memo)
        self.dropout_rng = self.src_dropout.rng

    # -- the pieces, usable alone (decoding uses them) --------------------------------
    def encode(self, src_ids):
        """Source ids -> (memory (B, S, d), source mask (B, 1, 1, S))."""
        check_id_batch("src_ids", src_ids, self.config.max_len, self.config.src_vocab_size)
        src_mask = padding_mask(src_ids, self.config.pad_id)
        x = self.src_dropout.forward(self.src_pos.forward(self.src_embed.forward(src_ids)))
        return self.encoder.forward(x, src_mask), src_mask

    def decode(self, tgt_in_ids, memory, src_mask):
        """Target prefix ids and encoder output -> logits (B, T, V), all positions at once."""
        check_id_batch("tgt_in_ids", tgt_in_ids, self.config.max_len, self.config.tgt_vocab_size)
        if tgt_in_ids.shape[0] != memory.shape[0]:
            raise ValueError(f"tgt_in_ids has batch size {tgt_in_ids.shape[0]} but the source has "
                             f"{memory.shape[0]}")
        y = self.tgt_dropout.forward(self.tgt_pos.forward(self.tgt_embed.forward(tgt_in_ids)))
        h = self.decoder.forward(y, memory, decoder_self_mask(tgt_in_ids, self.config.pad_id), src_mask)
        return self.project(h)

    def project(self, h):
        """Decoder output h (B, T, d) -> logits (B, T, V)."""
        if self.output is not None:
            return self.output.forward(h)
        math_fns = _math(self)   # the tied projection follows the model's path too
        logits, cache = math_fns.linear_forward(h, self.tgt_embed.weight.data.T, self.output_bias.data)
        self._out_cache = (math_fns, cache)
        return logits

    def project_backward(self, dlogits):
        """dh from dlogits; adds the output projection's gradients."""
        if self.output is not None:
            return self.output.backward(dlogits)
        math_fns, cache = self._out_cache
        dh, dw_t, db = math_fns.linear_backward(dlogits, cache)
        self.tgt_embed.weight.grad += dw_t.T
        self.output_bias.grad += db
        return dh

    # -- training --------------------------------------------------------------------
    def forward(self, src_ids, tgt_in_ids):
        """Source ids (B, S) and shifted target ids (B, T) -> logits (B, T, tgt_vocab_size)."""
        memory, src_mask = self.encode(src_ids)
        return self.decode(tgt_in_ids, memory, src_mask)

    def backward(self, dlogits):
        """The forward pass in reverse; adds every parameter's gradient into ``.grad``."""
        dh = self.project_backward(dlogits)
        dy, dmemory = self.decoder.backward(dh)
        dy = self.tgt_pos.backward(self.tgt_dropout.backward(dy))
        self.tgt_embed.backward(dy)
        dx = self.encoder.backward(dmemory)
        dx = self.src_pos.backward(self.src_dropout.backward(dx))
        self.src_embed.backward(dx)

    def extra_repr(self):
        c = self.config
        return (f"d_model={c.d_model}, heads={c.n_heads}, d_ff={c.d_ff}, layers={c.n_encoder_layers}+"
                f"{c.n_decoder_layers}, {'pre' if c.norm_first else 'post'}-LN, "
                f"params={self.num_parameters():,}")
