"""Counting the operations of the strict device, each about one kernel launch on a GPU.

A small model on a GPU spends its time launching kernels rather than computing: every
element-wise operation, reduction, matrix product and random draw is one launch (a few
microseconds each, whatever the size of the array). The strict backend
(:mod:`minitransformer.testing.strict`) sees every operation on its arrays, so on the CPU it
can count what a GPU would launch::

    with count_launches() as launches:
        one_training_step()
    launches.total(), launches.most_common(5)

``benchmarks/kernel_count.py`` counts one training step of the benchmark configuration with
the fused kernels of :mod:`minitransformer.fast.fused` off and on. The count is of
operations, not a measurement of a GPU: CuPy may launch two kernels for one operation
(``mean`` is a sum and a division) or none (a product with an empty array).
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

#: Operations that launch no kernel on a GPU: new views of the same memory, and allocation.
NO_KERNEL = frozenset({"reshape", "transpose", "swapaxes", "view", "squeeze", "expand_dims",
                       "broadcast_to", "moveaxis", "empty", "empty_like"})
_COUNTERS: list = []


@contextmanager
def count_launches():
    """``with count_launches() as launches:`` counts the strict device's operations in the
    block, by name (a ``collections.Counter``; ``launches.total()`` is their number). Each is
    about one kernel launch on a GPU: an element-wise operation, a reduction, a matrix
    product, a random draw, an assignment, a fused kernel. Views and allocations
    (:data:`NO_KERNEL`) and copies between host and device are not counted."""
    counter = Counter()
    _COUNTERS.append(counter)
    try:
        yield counter
    finally:
        _COUNTERS.remove(counter)


def count(name):
    """Count one operation named ``name`` in every open :func:`count_launches`."""
    if name not in NO_KERNEL:
        for counter in _COUNTERS:
            counter[name] += 1
