"""PyTorch twins of the encoder-only and decoder-only models, for the parity tests.

``torch.nn.TransformerEncoder`` (with a causal mask for the decoder-only model) plus the
same heads written with ``torch.nn``, our weights copied in. The encoder stack's names are
mapped by :func:`minitransformer.interop.torch_parameter_names`, the table the
encoder-decoder's parity tests use; the heads' names by :data:`HEAD_NAMES`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minitransformer import interop
from minitransformer.decoder_only import DecoderOnly
from minitransformer.module import Module

#: our parameter name -> (the twin's parameter name, transposed?) outside the encoder stack
HEAD_NAMES = {
    "embeddings.token.weight": ("embed.weight", False),
    "embeddings.position.table": ("pos_table", False),
    "mlm_head.dense.weight": ("mlm_dense.weight", True),
    "mlm_head.dense.bias": ("mlm_dense.bias", False),
    "mlm_head.norm.gamma": ("mlm_norm.weight", False),
    "mlm_head.norm.beta": ("mlm_norm.bias", False),
    "mlm_head.projection.bias": ("mlm_bias", False),
    "mlm_head.projection.linear.weight": ("mlm_out.weight", True),
    "mlm_head.projection.linear.bias": ("mlm_out.bias", False),
    "classifier.linear.weight": ("classifier.weight", True),
    "classifier.linear.bias": ("classifier.bias", False),
    "output.bias": ("out_bias", False),
    "output.linear.weight": ("out.weight", True),
    "output.linear.bias": ("out.bias", False),
}


def _activation(name):
    return interop.gelu_tanh if name == "gelu" else name


class TorchStack(nn.Module):
    """Embeddings, ``nn.TransformerEncoder`` and the heads of ``model`` (float64, CPU)."""

    def __init__(self, model):
        super().__init__()
        c = model.config
        kw = dict(dtype=torch.float64)
        self.pad_id, self.causal = c.pad_id, isinstance(model, DecoderOnly)
        self.scale = math.sqrt(c.d_model) if c.scale_embeddings else 1.0
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id, **kw)
        table = torch.as_tensor(np.asarray(model.embeddings.position.positions))
        if c.positions == "learned":
            self.pos_table = nn.Parameter(table.clone())
        else:
            self.register_buffer("pos_table", table.clone())
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, dropout=0.0,
                                           activation=_activation(c.activation), layer_norm_eps=1e-5,
                                           batch_first=True, norm_first=c.norm_first, **kw)
        norm = nn.LayerNorm(c.d_model, eps=1e-5, **kw) if c.norm_first else None
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, norm=norm, enable_nested_tensor=False)
        self.tied = c.tie_embeddings
        if not self.causal:                    # BERT: masked-LM head and classifier
            self.mlm_dense = nn.Linear(c.d_model, c.d_model, **kw)
            self.mlm_act = interop.gelu_tanh if c.activation == "gelu" else F.relu
            self.mlm_norm = nn.LayerNorm(c.d_model, eps=1e-5, **kw)
            if self.tied:
                self.mlm_bias = nn.Parameter(torch.zeros(c.vocab_size, **kw))
            else:
                self.mlm_out = nn.Linear(c.d_model, c.vocab_size, **kw)
            if c.n_classes:
                self.classifier = nn.Linear(c.d_model, c.n_classes, **kw)
        elif self.tied:                        # GPT: the projection to the vocabulary
            self.out_bias = nn.Parameter(torch.zeros(c.vocab_size, **kw))
        else:
            self.out = nn.Linear(c.d_model, c.vocab_size, **kw)
        copy_weights(model, self)

    def hidden(self, ids):
        padding = ids == self.pad_id
        x = self.embed(ids) * self.scale + self.pos_table[:ids.shape[1]]
        mask = None
        if self.causal:
            mask = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool).triu(1)
        return self.encoder(x, mask=mask, src_key_padding_mask=padding), ~padding

    def _vocabulary(self, h, linear, bias_name):
        return F.linear(h, self.embed.weight, getattr(self, bias_name)) if self.tied else linear(h)

    def forward(self, ids, head="mlm"):
        h, keep = self.hidden(ids)
        if self.causal:
            return self._vocabulary(h, getattr(self, "out", None), "out_bias")
        if head == "mlm":
            t = self.mlm_norm(self.mlm_act(self.mlm_dense(h)))
            return self._vocabulary(t, getattr(self, "mlm_out", None), "mlm_bias")
        weights = keep.to(h.dtype) / keep.sum(dim=1, keepdim=True)
        return self.classifier((weights[:, :, None] * h).sum(dim=1))


def parameter_map(model, twin):
    """our parameter name -> (twin's parameter, transform between the two layouts)."""
    holder = Module()                    # named like the encoder-decoder's stack, for interop's table
    holder.encoder = model.stack
    names = dict(HEAD_NAMES)
    for ours, theirs in interop.torch_parameter_names(holder).items():
        names["stack" + ours[len("encoder"):]] = theirs
    out = {}
    for name, _ in model.named_parameters():
        torch_name, transposed = names[name]
        out[name] = (twin.get_parameter(torch_name), (lambda a: a.T) if transposed else (lambda a: a))
    return out


def copy_weights(model, twin):
    mapping = parameter_map(model, twin)
    with torch.no_grad():
        for name, p in model.named_parameters():
            param, transform = mapping[name]
            param.copy_(torch.as_tensor(np.ascontiguousarray(transform(np.asarray(p.data)))))
