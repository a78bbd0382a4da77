"""minitransformer: a Transformer written by hand on NumPy, every gradient readable and checked.

The package reads bottom up: :mod:`backend` (NumPy or CuPy), :mod:`functional` (the math,
forward and backward side by side), :mod:`nn` (layers), :mod:`losses`,
:mod:`transformer` (the model), :mod:`decoding`, :mod:`optim`, :mod:`training`,
:mod:`checkpoint`, and the codon translation demo in :mod:`codon`.
"""
__version__ = "0.1.0"

from .transformer import Transformer, TransformerConfig  # noqa: E402

__all__ = ["Transformer", "TransformerConfig", "__version__"]
