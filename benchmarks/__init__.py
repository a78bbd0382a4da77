"""Benchmarks of minitransformer: speed, memory and time-to-accuracy, against the machine's
own matrix-multiplication rate and against PyTorch.

Run them all with ``python -m benchmarks.run`` (see ``benchmarks/README.md``), or one
part, e.g. ``python -m benchmarks.run --only train --quick``. A per-layer breakdown of
one training step: ``python -m benchmarks.profile_step``.
"""

import os as _os

# OpenBLAS threads spin for a while after each product before they sleep (by default about
# 2**28 cycles, a tenth of a second), holding cores that the library's own threads (batched
# attention) then wait for. 2**12 cycles lets them sleep at once. Read when NumPy loads, so
# it is set here, before any benchmark imports NumPy; an explicit setting wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")

from minitransformer import cpu as _cpu  # noqa: E402

# The library's threads on every CPU and an allocator that keeps freed memory, as the command
# line trains; both sides of every comparison (ours and PyTorch's) run in this process with it.
_cpu.tune_for_training()
