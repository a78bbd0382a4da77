"""minitransformer: a Transformer written by hand on NumPy, every gradient readable and checked.

The package reads bottom up: :mod:`backend` (NumPy or CuPy), :mod:`functional` (the math,
forward and backward side by side), :mod:`nn` (layers), :mod:`losses`,
:mod:`transformer` (the model), :mod:`decoding`, :mod:`optim`, :mod:`training`,
:mod:`checkpoint`, and the codon translation demo in :mod:`codon`.
"""
__version__ = "0.1.0"

__all__ = ["Transformer", "TransformerConfig", "__version__"]


def __getattr__(name):
    # Imported on first use, so that ``import minitransformer.cli`` does not load NumPy
    # before the command line has had a chance to set the number of BLAS threads.
    if name in ("Transformer", "TransformerConfig"):
        from . import transformer
        return getattr(transformer, name)
    raise AttributeError(f"module 'minitransformer' has no attribute {name!r}")
