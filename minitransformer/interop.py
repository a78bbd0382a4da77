"""Carry a model into PyTorch and back: :func:`to_torch` and :func:`from_torch`.

``to_torch(model)`` builds a ``torch.nn.Module`` out of the standard ``torch.nn`` layers
(``nn.Embedding``, ``nn.TransformerEncoderLayer``, ``nn.TransformerDecoderLayer``,
``nn.TransformerEncoder``, ``nn.TransformerDecoder``, ``nn.LayerNorm``, ``nn.Linear``)
that computes the same logits as our :class:`~minitransformer.transformer.Transformer`,
with a copy of its weights. ``from_torch(torch_module, model)`` copies the weights of such
a module back into one of our models: train in PyTorch, then open the model here to look
at its attention weights or to decode with our code.

PyTorch is imported only when one of these functions is called; importing this module
(or the package) never imports it.

The mapping
-----------
Our weights are stored ``(in_features, out_features)`` and used as ``y = x @ W + b``;
PyTorch stores ``(out_features, in_features)`` and computes ``y = x @ W.T + b``. So every
matrix a layer multiplies by is *transposed* on the way across; vectors and embedding
tables cross as they are. With ``E`` for an encoder layer ``encoder.layers.<i>`` and ``D``
for a decoder layer ``decoder.layers.<i>``::

    ours                                   PyTorch                                 how
    src_embed.weight (V_src, d)            src_embed.weight          nn.Embedding  same
    tgt_embed.weight (V_tgt, d)            tgt_embed.weight          nn.Embedding  same
    src_pos.table, tgt_pos.table           src_pos.table, tgt_pos.table            same
        (learned positions only; the sinusoids are a buffer, shared by both sides)
    E.self_attn.w_in (d, 3d) = [Wq|Wk|Wv]  E.self_attn.in_proj_weight (3d, d)      transposed
    E.self_attn.b_in (3d,)                 E.self_attn.in_proj_bias                same
    E.self_attn.w_out (d, d)               E.self_attn.out_proj.weight             transposed
    E.self_attn.b_out (d,)                 E.self_attn.out_proj.bias               same
    E.feed_forward.linear1.weight (d, f)   E.linear1.weight (f, d)                 transposed
    E.feed_forward.linear1.bias            E.linear1.bias                          same
    E.feed_forward.linear2.weight (f, d)   E.linear2.weight (d, f)                 transposed
    E.feed_forward.linear2.bias            E.linear2.bias                          same
    E.norm1.gamma, E.norm1.beta            E.norm1.weight, E.norm1.bias            same
    E.norm2.gamma, E.norm2.beta            E.norm2.weight, E.norm2.bias            same
    D.self_attn.*                          D.self_attn.*            (as for E)
    D.cross_attn.*                         D.multihead_attn.*       (as for E)
    D.feed_forward.linear1/2.*             D.linear1/2.*            (as for E)
    D.norm1, D.norm2, D.norm3              D.norm1, D.norm2, D.norm3               same
    encoder.final_norm.gamma/beta          encoder.norm.weight/bias  (pre-LN only) same
    decoder.final_norm.gamma/beta          decoder.norm.weight/bias  (pre-LN only) same
    output.weight (d, V_tgt)               output.weight (V_tgt, d)  nn.Linear     transposed
    output.bias                            output.bias                             same
    output_bias (tied embeddings only)     output_bias: logits = h @ tgt_embed.weight.T + output_bias

:func:`torch_parameter_names` gives this table for a given model, and
:func:`torch_parameter_map` the PyTorch tensors themselves.

What else has to agree
----------------------
* Embeddings are multiplied by ``sqrt(d_model)`` when ``config.scale_embeddings`` is set.
* Post-LN (``norm_first=False``, the paper) has no final norms; pre-LN has one at the end
  of each stack, which is the ``norm`` argument of ``nn.TransformerEncoder`` and
  ``nn.TransformerDecoder``.
* Our ``"gelu"`` is the tanh approximation: the PyTorch layers get :func:`gelu_tanh`, a
  plain function (an ``nn.GELU`` module would send PyTorch's inference fast path to the
  exact GELU).
* Masks are opposite: ours are True where attending is *allowed*, PyTorch's are True where
  it is *blocked*. The PyTorch module builds them from the ids: the source padding mask
  for encoder self-attention and for cross-attention, and for decoder self-attention the
  causal mask together with the target padding mask (our ``decoder_self_mask``).
* Dropout: ``config.dropout`` on the embeddings, the sub-layer outputs and inside the
  feed-forward network; ``config.attention_dropout`` on the attention weights (PyTorch's
  layers use one rate for all, so the attention modules' rate is set afterwards). The
  random masks of course differ between the libraries.
* A query whose keys are all padding (a source made only of padding) gets zero attention
  weights here and NaN in PyTorch.
* ``nn.TransformerEncoder`` is built with ``enable_nested_tensor=False``: its nested-tensor
  shortcut would return zeros at padded positions, where we return numbers.

Example::

    torch_model = to_torch(model)                    # float64 if the model is, else float32
    logits = torch_model(torch.as_tensor(src_ids), torch.as_tensor(tgt_in_ids))
    ...train torch_model with torch.optim...
    from_torch(torch_model, model)                   # the trained weights, back here
"""
from __future__ import annotations

import functools
import math
import re

import numpy as np

from . import backend as _backend
from .functional import sinusoidal_positional_encoding
from .transformer import TransformerConfig

__all__ = ["to_torch", "from_torch", "torch_parameter_names", "torch_parameter_map", "gelu_tanh"]

#: The settings that decide the architecture: a PyTorch module and a model must agree on them.
ARCHITECTURE_FIELDS = ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff",
                       "n_encoder_layers", "n_decoder_layers", "max_len", "activation", "norm_first",
                       "tie_embeddings", "learned_positions", "scale_embeddings", "pad_id", "positions")

#: Our LayerNorm's epsilon, which is also PyTorch's default.
LAYER_NORM_EPS = 1e-5

_TORCH_MISSING = ("PyTorch is needed to convert a model to or from torch.nn: "
                  "pip install torch (or pip install minitransformer[torch])")


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_MISSING) from exc
    return torch


# --------------------------------------------------------------------------------------
# The name mapping (needs no PyTorch)
# --------------------------------------------------------------------------------------
#: (pattern on the end of our name, PyTorch replacement, transposed?), tried in order.
_RULES = (
    (r"\.cross_attn\.w_in$", ".multihead_attn.in_proj_weight", True),
    (r"\.cross_attn\.b_in$", ".multihead_attn.in_proj_bias", False),
    (r"\.cross_attn\.w_out$", ".multihead_attn.out_proj.weight", True),
    (r"\.cross_attn\.b_out$", ".multihead_attn.out_proj.bias", False),
    (r"\.self_attn\.w_in$", ".self_attn.in_proj_weight", True),
    (r"\.self_attn\.b_in$", ".self_attn.in_proj_bias", False),
    (r"\.self_attn\.w_out$", ".self_attn.out_proj.weight", True),
    (r"\.self_attn\.b_out$", ".self_attn.out_proj.bias", False),
    (r"\.feed_forward\.(linear[12])\.weight$", r".\1.weight", True),
    (r"\.feed_forward\.(linear[12])\.bias$", r".\1.bias", False),
    (r"^(encoder|decoder)\.final_norm\.gamma$", r"\1.norm.weight", False),
    (r"^(encoder|decoder)\.final_norm\.beta$", r"\1.norm.bias", False),
    (r"\.(norm[123])\.gamma$", r".\1.weight", False),
    (r"\.(norm[123])\.beta$", r".\1.bias", False),
    (r"^output\.weight$", "output.weight", True),
    (r"^(src_embed\.weight|tgt_embed\.weight|src_pos\.table|tgt_pos\.table|output\.bias|output_bias)$",
     r"\1", False),
)


def _torch_name(name: str) -> tuple[str, bool]:
    for pattern, replacement, transposed in _RULES:
        new, n = re.subn(pattern, replacement, name)
        if n:
            return new, transposed
    raise ValueError(f"no PyTorch counterpart is known for the parameter {name!r}")


def torch_parameter_names(model) -> dict[str, tuple[str, bool]]:
    """``{our parameter name: (PyTorch parameter name, transposed)}`` for every parameter of
    ``model``, in the order of ``model.named_parameters()`` (the table in the module docstring).
    ``transposed`` is True for the matrices, which PyTorch stores (out, in)."""
    return {name: _torch_name(name) for name, _ in model.named_parameters()}


def _same(array):
    return array


def _transpose(array):
    return array.T


def torch_parameter_map(model, torch_module) -> dict:
    """``{our parameter name: (PyTorch parameter, transform)}``.

    ``transform`` turns an array in one library's layout into the other's: it is the
    transpose for matrices and the identity otherwise (each is its own inverse), and it works
    on NumPy arrays and torch tensors alike. So ``transform(ours.data)`` has the shape of the
    PyTorch parameter and ``transform(torch_param.grad)`` the shape of our gradient.
    """
    out = {}
    for name, (torch_name, transposed) in torch_parameter_names(model).items():
        try:
            param = torch_module.get_parameter(torch_name)
        except AttributeError as exc:
            raise ValueError(f"the PyTorch module has no parameter {torch_name!r} (the counterpart of "
                             f"our {name!r}): is it the module to_torch() builds?") from exc
        out[name] = (param, _transpose if transposed else _same)
    return out


# --------------------------------------------------------------------------------------
# The PyTorch module (defined on first use, so that importing this file needs no torch)
# --------------------------------------------------------------------------------------
def gelu_tanh(x):
    """PyTorch's ``gelu(x, approximate="tanh")``: our GELU, as a plain (picklable) function."""
    import torch.nn.functional as F
    return F.gelu(x, approximate="tanh")


@functools.lru_cache(maxsize=None)
def _torch_classes():
    """Define the PyTorch classes once torch is importable: ``{name: class}``."""
    torch = _import_torch()
    from torch import nn
    import torch.nn.functional as F

    class PositionTable(nn.Module):
        """x + P[:T]: P a parameter (learned positions) or a fixed buffer (sinusoids)."""

        def __init__(self, table, learned):
            super().__init__()
            if learned:
                self.table = nn.Parameter(table)
            else:
                self.register_buffer("table", table, persistent=False)

        def forward(self, x):
            length = x.shape[1]
            if length > self.table.shape[0]:
                raise ValueError(f"sequence of length {length} is longer than max_len={self.table.shape[0]}")
            return x + self.table[:length]

    class NoLayers(nn.Module):
        """A stack of zero layers (``nn.TransformerEncoder`` needs at least one): only the norm."""

        def __init__(self, norm):
            super().__init__()
            self.layers = nn.ModuleList()
            self.norm = norm

        def forward(self, x, *args, **kwargs):
            return x if self.norm is None else self.norm(x)

    class TorchTransformer(nn.Module):
        """Our :class:`~minitransformer.transformer.Transformer`, written with ``torch.nn`` layers.

        ``forward(src_ids, tgt_in_ids) -> logits (B, T, tgt_vocab_size)``, ids as LongTensors
        padded with ``config.pad_id``. Build it with :func:`~minitransformer.interop.to_torch`
        (weights copied from a model), or directly from a config (PyTorch's initial weights).
        """

        def __init__(self, config: TransformerConfig, dtype=None, device=None):
            super().__init__()
            self.config = c = TransformerConfig.from_dict(config.to_dict())   # a copy, validated
            if c.positions not in ("sinusoidal", "learned"):
                raise ValueError(f"the PyTorch twin covers positions='sinusoidal' and 'learned', not "
                                 f"positions={c.positions!r}; tests/test_positions.py checks RoPE and ALiBi "
                                 f"against PyTorch instead")
            kw = dict(dtype=dtype or torch.float32, device=device)
            self.pad_id = c.pad_id
            self.embed_scale = math.sqrt(c.d_model) if c.scale_embeddings else 1.0
            self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id, **kw)
            self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id, **kw)
            if c.positions == "learned":
                self.src_pos = PositionTable(0.02 * torch.randn(c.max_len, c.d_model, **kw), True)
                self.tgt_pos = PositionTable(0.02 * torch.randn(c.max_len, c.d_model, **kw), True)
            else:
                table = torch.as_tensor(sinusoidal_positional_encoding(c.max_len, c.d_model)).to(**kw)
                self.src_pos = PositionTable(table, False)
                self.tgt_pos = self.src_pos          # one table for both sides, as ours
            self.src_dropout = nn.Dropout(c.dropout)
            self.tgt_dropout = nn.Dropout(c.dropout)

            activation = gelu_tanh if c.activation == "gelu" else c.activation
            layer_kw = dict(d_model=c.d_model, nhead=c.n_heads, dim_feedforward=c.d_ff, dropout=c.dropout,
                            activation=activation, layer_norm_eps=LAYER_NORM_EPS, batch_first=True,
                            norm_first=c.norm_first, **kw)

            def final_norm():
                return nn.LayerNorm(c.d_model, eps=LAYER_NORM_EPS, **kw) if c.norm_first else None

            if c.n_encoder_layers:
                self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer_kw), c.n_encoder_layers,
                                                     norm=final_norm(), enable_nested_tensor=False)
            else:
                self.encoder = NoLayers(final_norm())
            if c.n_decoder_layers:
                self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer_kw), c.n_decoder_layers,
                                                     norm=final_norm())
            else:
                self.decoder = NoLayers(final_norm())
            for layer in self.encoder.layers:       # our attention dropout has its own rate
                layer.self_attn.dropout = c.attention_dropout
            for layer in self.decoder.layers:
                layer.self_attn.dropout = c.attention_dropout
                layer.multihead_attn.dropout = c.attention_dropout

            if c.tie_embeddings:
                self.output = None
                self.output_bias = nn.Parameter(torch.zeros(c.tgt_vocab_size, **kw))
            else:
                self.output = nn.Linear(c.d_model, c.tgt_vocab_size, **kw)

        def encode(self, src_ids):
            """Source ids -> (memory (B, S, d), source padding mask (B, S), True at padding)."""
            src_padding = src_ids == self.pad_id
            x = self.src_dropout(self.src_pos(self.src_embed(src_ids) * self.embed_scale))
            return self.encoder(x, src_key_padding_mask=src_padding), src_padding

        def decode(self, tgt_in_ids, memory, src_padding):
            """Target prefix ids and encoder output -> logits (B, T, V)."""
            length = tgt_in_ids.shape[1]
            blocked_future = torch.ones(length, length, dtype=torch.bool, device=tgt_in_ids.device).triu(1)
            y = self.tgt_dropout(self.tgt_pos(self.tgt_embed(tgt_in_ids) * self.embed_scale))
            h = self.decoder(y, memory, tgt_mask=blocked_future, tgt_key_padding_mask=tgt_in_ids == self.pad_id,
                             memory_key_padding_mask=src_padding)
            if self.output is None:
                return F.linear(h, self.tgt_embed.weight, self.output_bias)
            return self.output(h)

        def forward(self, src_ids, tgt_in_ids):
            memory, src_padding = self.encode(src_ids)
            return self.decode(tgt_in_ids, memory, src_padding)

    classes = {"TorchTransformer": TorchTransformer, "PositionTable": PositionTable, "NoLayers": NoLayers}
    for name, cls in classes.items():        # so that pickle finds them through __getattr__
        cls.__module__, cls.__qualname__ = __name__, name
    return classes


def __getattr__(name):
    """``from minitransformer.interop import TorchTransformer`` imports torch (and only then)."""
    if name in ("TorchTransformer", "PositionTable", "NoLayers"):
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# Copying weights across
# --------------------------------------------------------------------------------------
def _torch_dtype(torch, dtype, model):
    if dtype is None:
        return torch.float64 if np.dtype(model.dtype) == np.float64 else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return getattr(torch, name)


def to_torch(model, dtype=None):
    """A ``torch.nn.Module`` computing the same logits as ``model``, with a copy of its weights.

    ``dtype``: a torch dtype, ``"float32"`` or ``"float64"``; by default float64 for a float64
    model and float32 otherwise. The module is on the CPU, in training mode if the model is.
    See the module docstring for the mapping.
    """
    torch = _import_torch()
    torch_model = _torch_classes()["TorchTransformer"](model.config, dtype=_torch_dtype(torch, dtype, model))
    with torch.no_grad():
        if model.config.positions != "learned":
            torch_model.src_pos.table.copy_(torch.from_numpy(_backend.to_numpy(model.src_pos.positions)))
        ours = dict(model.named_parameters())
        for name, (param, transform) in torch_parameter_map(model, torch_model).items():
            array = np.ascontiguousarray(transform(_backend.to_numpy(ours[name].data)))
            if tuple(array.shape) != tuple(param.shape):
                raise ValueError(f"{name}: shape {tuple(array.shape)} does not fit PyTorch's {tuple(param.shape)}")
            param.copy_(torch.from_numpy(array))
    return torch_model.train(model.training)


def from_torch(torch_module, model):
    """Copy the weights of a module built by :func:`to_torch` (or ``TorchTransformer``) into
    ``model``, in place, converted to the model's dtype and backend. Returns ``model``.

    The two must have the same architecture (``ARCHITECTURE_FIELDS`` of their configs).
    """
    config = getattr(torch_module, "config", None)
    if config is not None:
        differ = [f"{f}: torch {getattr(config, f)!r} vs model {getattr(model.config, f)!r}"
                  for f in ARCHITECTURE_FIELDS if getattr(config, f) != getattr(model.config, f)]
        if differ:
            raise ValueError("the PyTorch module and the model differ in architecture: " + "; ".join(differ))
    ours = dict(model.named_parameters())
    for name, (param, transform) in torch_parameter_map(model, torch_module).items():
        array = transform(param.detach().cpu().numpy())
        p = ours[name]
        if tuple(array.shape) != tuple(p.shape):
            raise ValueError(f"{name}: PyTorch's {tuple(array.shape)} does not fit our {tuple(p.shape)}")
        p.data[...] = _backend.asarray(array, _backend.get_array_module_name(p.data), p.data.dtype)
        p.zero_grad()                           # old gradients belong to the old weights
    return model
