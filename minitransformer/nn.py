"""The layers and sub-layers of a Transformer in one namespace: ``nn.Linear``, ``nn.LayerNorm``,
``nn.MultiHeadAttention``, ...

Nothing is defined here: the layers (modules that own parameters and call the math) are in
:mod:`minitransformer.layers`, the two sub-layers built from them (multi-head attention and
the feed-forward network) in :mod:`minitransformer.sublayers`, and the base classes in
:mod:`minitransformer.module`. Read those files; use this one.
"""
from .layers import (ACTIVATIONS, GELU, Dropout, Embedding, LayerNorm, Linear, NoPositionalEncoding,
                     PositionalEncoding, ReLU, Softmax, as_generator, positional_encoding)
from .module import Module, ModuleList, Parameter
from .sublayers import FeedForward, MultiHeadAttention, check_attention_mask

__all__ = ["Parameter", "Module", "ModuleList", "Linear", "Embedding", "PositionalEncoding",
           "NoPositionalEncoding", "positional_encoding",
           "LayerNorm", "ReLU", "GELU", "Softmax", "Dropout", "MultiHeadAttention", "FeedForward",
           "ACTIVATIONS", "as_generator", "check_attention_mask"]
