"""What encoder-only (BERT) and decoder-only (GPT) models add around the encoder stack.

Both families are the encoder stack of :mod:`transformer` with something before it and
something after it. Before: token embeddings plus positions (:class:`Embeddings`). After:
a projection back to the vocabulary (:class:`OutputProjection`, optionally *tied* to the
token embedding), the masked-language-model head (:class:`MaskedLMHead`), or mean pooling
and a classifier (:class:`MeanPooling`, :class:`SequenceClassifier`). Their shared settings
live in :class:`StackConfig`, the embeddings and the stack in :class:`StackModel`;
:mod:`encoder_only` and :mod:`decoder_only` add their heads.

The layers inside are the ones of :mod:`nn`; what is new is written out here, forward and
backward side by side: the tied projection ``logits = h E^T + b`` and the masked mean.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import backend as _backend
from .nn import (ACTIVATIONS, Dropout, Embedding, LayerNorm, Linear, Module, Parameter, as_generator,
                 positional_encoding)
from .config import (JSONConfig, cross_attention_positions, field_problems, resolve_positions,
                     self_attention_positions)
from .transformer import Encoder, TransformerConfig


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------
@dataclass
class StackConfig(JSONConfig):
    """The settings every single-stack model shares (saved as JSON inside checkpoints).

    Subclasses (:class:`~minitransformer.encoder_only.EncoderOnlyConfig`,
    :class:`~minitransformer.decoder_only.DecoderOnlyConfig`) add their own fields and
    defaults; :meth:`layer_config` hands the layer settings to :mod:`transformer`'s
    ``Encoder``, so the layers are built by the very code the encoder-decoder uses.
    """

    vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    n_layers: int = 4
    dropout: float = 0.1            #: on embeddings, sub-layer outputs, inside the FFN, before heads
    attention_dropout: float = 0.0  #: on attention weights
    max_len: int = 512              #: longest sequence the positional encoding covers
    activation: str = "gelu"        #: in the feed-forward networks and the masked-LM head
    norm_first: bool = False        #: False: post-LN (BERT); True: pre-LN (GPT-2)
    tie_embeddings: bool = True     #: the output projection reads the token embedding table
    learned_positions: bool | None = None  #: the older spelling of positions="learned"; read, then None
    scale_embeddings: bool = True   #: multiply embeddings by sqrt(d_model)
    pad_id: int = 0
    dtype: str = "float32"
    seed: int = 0                   #: initial weights and dropout masks
    positions: str = "sinusoidal"   #: as :attr:`TransformerConfig.positions`

    def __post_init__(self):
        self.validate()

    def _problems(self) -> list[str]:
        """What is wrong with the settings (empty when nothing is): the checks of
        :func:`~minitransformer.config.field_problems`, types as well as values, the
        positions (:func:`~minitransformer.config.resolve_positions`), then the padding id;
        subclasses add theirs."""
        problems = field_problems(
            self, positive=("vocab_size", "d_model", "n_heads", "d_ff", "max_len"),
            non_negative=("n_layers", "pad_id", "seed"),
            flags=("norm_first", "tie_embeddings", "scale_embeddings"))
        problems += resolve_positions(self)
        if not problems and cross_attention_positions(self.positions):
            problems.append(f"positions={self.positions!r} puts a bias in cross-attention, which a stack of one "
                            f"kind has none of; give {self_attention_positions(self.positions)!r}")
        if not problems and not 0 <= self.pad_id < self.vocab_size:
            problems.append(f"pad_id={self.pad_id} must be a token id, in [0, {self.vocab_size})")
        return problems

    def validate(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def layer_config(self) -> TransformerConfig:
        """The settings in the form :mod:`transformer`'s ``Encoder`` and ``EncoderLayer`` read
        (an encoder-decoder config with ``n_layers`` encoder layers and no decoder)."""
        return TransformerConfig(
            src_vocab_size=self.vocab_size, tgt_vocab_size=self.vocab_size, d_model=self.d_model,
            n_heads=self.n_heads, d_ff=self.d_ff, n_encoder_layers=self.n_layers, n_decoder_layers=0,
            dropout=self.dropout, attention_dropout=self.attention_dropout, max_len=self.max_len,
            activation=self.activation, norm_first=self.norm_first, pad_id=self.pad_id,
            dtype=self.dtype, seed=self.seed, positions=self.positions)


# --------------------------------------------------------------------------------------
# Before the stack: token embeddings plus positions
# --------------------------------------------------------------------------------------
class Embeddings(Module):
    """x = dropout(E[ids] * scale + P[start:start + T]): the input of the first layer."""

    def __init__(self, config: StackConfig, rng, dropout_rng):
        c, kw = config, dict(rng=rng, dtype=config.dtype)
        self.token = Embedding(c.vocab_size, c.d_model, c.pad_id, c.scale_embeddings, **kw)
        self.position = positional_encoding(c.positions, c.d_model, c.max_len, **kw)
        self.dropout = Dropout(c.dropout, dropout_rng)

    def forward(self, ids, start=0):
        return self.dropout.forward(self.position.forward(self.token.forward(ids), start=start))

    def backward(self, dx):
        """Adds into the embedding (and learned position) tables; ids have no gradient."""
        self.token.backward(self.position.backward(self.dropout.backward(dx)))


# --------------------------------------------------------------------------------------
# The half both models share: embeddings, then the encoder stack
# --------------------------------------------------------------------------------------
class StackModel(Module):
    """Embeddings, then :mod:`transformer`'s own ``Encoder`` (``self.stack``), then heads.

    A subclass builds its heads in :meth:`build_heads`, which receives the generators and,
    with ``tie_embeddings``, the token embedding table for the output projection to share.
    """

    def __init__(self, config: StackConfig, backend: str | None = None):
        config.validate()
        self.config = c = config
        rng = as_generator(c.seed)
        dropout_rng = _backend.default_rng(c.seed + 1, backend)   # one generator for every dropout
        self.embeddings = Embeddings(c, rng, dropout_rng)
        self.stack = Encoder(c.layer_config(), rng, dropout_rng)
        self.build_heads(rng, dropout_rng, self.embeddings.token.weight if c.tie_embeddings else None)
        if backend is not None:
            self.to(backend)

    def build_heads(self, rng, dropout_rng, table: Parameter | None) -> None:
        raise NotImplementedError

    @property
    def dropout_rng(self):
        """The generator every dropout layer of the model draws from (checkpoints save it)."""
        return self.embeddings.dropout.rng

    def extra_repr(self):
        c = self.config
        return (f"d_model={c.d_model}, heads={c.n_heads}, d_ff={c.d_ff}, layers={c.n_layers}, "
                f"{'pre' if c.norm_first else 'post'}-LN, tied={c.tie_embeddings}, "
                f"params={self.num_parameters():,}")


# --------------------------------------------------------------------------------------
# After the stack: back to the vocabulary, tied or not
# --------------------------------------------------------------------------------------
class OutputProjection(Module):
    """Hidden vectors (..., d) -> logits (..., V) over the vocabulary.

    Untied, it is a :class:`~minitransformer.layers.Linear` of its own. Tied (``table`` given),
    it reuses the token embedding table E (V, d), as BERT and GPT-2 do:

        logits = h E^T + b,   so   dh = dlogits E,   dE += dlogits^T h,   db += sum dlogits,

    the sums running over every position (all leading axes). E then receives gradient from
    two places, the embedding look-up and this projection, and the two **add** (which is
    why every backward pass adds into ``.grad``). ``self.weight`` *is* the embedding's
    parameter (the same object), so a model lists it once and an optimiser steps it once.
    """

    def __init__(self, d_model, vocab_size, table: Parameter | None = None, *, rng=None, dtype=None):
        self.linear = Linear(d_model, vocab_size, rng=rng, dtype=dtype) if table is None else None
        if table is not None:
            self.weight = table
            self.bias = Parameter(_backend.get_array_module(table.data).zeros(vocab_size, dtype=table.dtype))
        self._cache = None

    def forward(self, h):
        if self.linear is not None:
            return self.linear.forward(h)
        self._cache = h
        return h @ self.weight.data.T + self.bias.data

    def backward(self, dlogits):
        if self.linear is not None:
            return self.linear.backward(dlogits)
        h, self._cache = self._cache, None
        vocab, d = self.weight.shape
        self.weight.grad += dlogits.reshape(-1, vocab).T @ h.reshape(-1, d)
        self.bias.grad += dlogits.reshape(-1, vocab).sum(axis=0)
        return dlogits @ self.weight.data


class MaskedLMHead(Module):
    """BERT's masked-language-model head: logits = project(norm(act(h W + b))).

    A dense layer and an activation give the head room to turn the last layer's vectors
    into something the (often tied) vocabulary projection can read; the layer norm keeps
    their scale that of the embeddings. Every piece is a layer of :mod:`nn`, so the backward
    pass is theirs, in reverse order.
    """

    def __init__(self, config: StackConfig, table: Parameter | None, rng):
        c, kw = config, dict(rng=rng, dtype=config.dtype)
        self.dense = Linear(c.d_model, c.d_model, **kw)
        self.activation = ACTIVATIONS[c.activation]()
        self.norm = LayerNorm(c.d_model, dtype=c.dtype)
        self.projection = OutputProjection(c.d_model, c.vocab_size, table, **kw)

    def forward(self, h):
        """h (B, T, d) -> logits (B, T, V) at every position (the loss reads the masked ones)."""
        return self.projection.forward(self.norm.forward(self.activation.forward(self.dense.forward(h))))

    def backward(self, dlogits):
        return self.dense.backward(self.activation.backward(self.norm.backward(self.projection.backward(dlogits))))


# --------------------------------------------------------------------------------------
# After the stack: one vector per sequence, then classes
# --------------------------------------------------------------------------------------
class MeanPooling(Module):
    """The mean of the vectors of the real (non-padding) tokens of each sequence.

    With m[b, t] = 1 at real tokens and 0 at padding, and n[b] = sum_t m[b, t]:

        pooled[b] = sum_t m[b, t] h[b, t] / n[b],   so   dh[b, t] = m[b, t] dpooled[b] / n[b]:

    every real token receives an equal share of the gradient, padding none.
    """

    def __init__(self):
        self._cache = None

    def forward(self, h, keep):
        """h (B, T, d), keep (B, T) boolean (True at real tokens) -> pooled (B, d)."""
        weights = keep.astype(h.dtype) / keep.sum(axis=1, keepdims=True).astype(h.dtype)   # m / n
        self._cache = weights
        return (weights[:, :, None] * h).sum(axis=1)

    def backward(self, dpooled):
        weights, self._cache = self._cache, None
        return weights[:, :, None] * dpooled[:, None, :]


class SequenceClassifier(Module):
    """Class logits (B, n_classes) from the mean of a sequence's real-token vectors.

    Why the mean, not a [CLS] token: a model pre-trained by masked language modelling alone
    never asks anything of a [CLS] vector (it is never masked, so the MLM loss sends it no
    gradient), and fine-tuning would start from an untrained summary. The mean reads every
    position, each one trained by pre-training; it also needs no extra token, so
    pre-training and fine-tuning see the same inputs.
    """

    def __init__(self, config, rng, dropout_rng):
        self.pool = MeanPooling()
        self.dropout = Dropout(config.dropout, dropout_rng)
        self.linear = Linear(config.d_model, config.n_classes, rng=rng, dtype=config.dtype)

    def forward(self, h, keep):
        return self.linear.forward(self.dropout.forward(self.pool.forward(h, keep)))

    def backward(self, dlogits):
        return self.pool.backward(self.dropout.backward(self.linear.backward(dlogits)))
