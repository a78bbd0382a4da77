"""minitransformer: a Transformer written by hand on NumPy, every gradient readable and checked."""
__version__ = "0.1.0"
