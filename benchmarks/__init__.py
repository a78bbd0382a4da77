"""Benchmarks of minitransformer: speed, memory and time-to-accuracy, against the machine's
own matrix-multiplication rate and against PyTorch.

Run them all with ``python -m benchmarks.run`` (see ``benchmarks/README.md``), or one
part, e.g. ``python -m benchmarks.run --only train --quick``. A per-layer breakdown of
one training step: ``python -m benchmarks.profile_step``.
"""
