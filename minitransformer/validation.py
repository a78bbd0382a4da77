"""Checks on arguments, shared by every module that takes them: token ids and numbers.

An embedding looks its ids up as rows of a table, and NumPy reads row ``-1`` as the last
row: an id out of range would not fail, it would quietly read the wrong token. So the
embedding, the model's ``encode``/``decode``, the loss (whose targets are token ids of the
output vocabulary) and :meth:`Vocabulary.decode` all ask :func:`check_token_ids` first,
and a bad id gets the same one-line error everywhere.

:func:`check_number` and :func:`check_int` check a hyper-parameter (a learning rate, a
momentum, a number of warm-up steps) and return it as a plain Python number.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["check_token_ids", "check_id_batch", "check_number", "check_int"]


def check_token_ids(what: str, ids, vocab_size: int, *, ignore_index=None) -> None:
    """``ValueError`` unless ``ids`` is an integer array with every id in ``[0, vocab_size)``.

    ``what`` names the array in the message (``"src_ids"``, ``"Embedding"``). Ids equal to
    ``ignore_index`` (the loss's padding targets) are not checked. The message gives the
    range the ids span, the valid range, and the first id out of it with its position,
    e.g. ``src_ids: token ids from 3 to 9, but valid ids are 0 to 8 (vocabulary size 9);
    token id 9 at position (0, 1) (counted from 0) is out of range``.

    Two reductions (``min`` and ``max``) when the ids are good; the search for the first
    bad id runs only on the way to the error.
    """
    if not hasattr(ids, "dtype") or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what}: token ids must be integers, got "
                         f"{getattr(ids, 'dtype', type(ids).__name__)} (pass an integer array of token "
                         "ids, e.g. ids.astype(np.int64))")
    counted = ids if ignore_index is None else ids[ids != ignore_index]
    if not counted.size:
        return
    lo, hi = int(counted.min()), int(counted.max())
    if lo >= 0 and hi < vocab_size:
        return
    bad = (ids < 0) | (ids >= vocab_size)
    if ignore_index is not None:
        bad &= ids != ignore_index
    first = int(bad.reshape(-1).argmax())
    position = tuple(int(i) for i in np.unravel_index(first, ids.shape))
    skipped = f"; ids equal to ignore_index={ignore_index} are skipped" if ignore_index is not None else ""
    raise ValueError(f"{what}: token ids from {lo} to {hi}, but valid ids are 0 to {vocab_size - 1} "
                     f"(vocabulary size {vocab_size}{skipped}); token id {int(ids.reshape(-1)[first])} "
                     f"at position {position[0] if len(position) == 1 else position} (counted from 0) "
                     "is out of range")


def check_id_batch(what: str, ids, max_len: int, vocab_size: int) -> None:
    """``ValueError`` unless ``ids`` is a (batch, length) array of at least one sequence of
    1 to ``max_len`` token ids, each in ``[0, vocab_size)`` (:func:`check_token_ids`): what
    a model's forward pass reads. ``what`` names the array in the message."""
    if not hasattr(ids, "ndim") or ids.ndim != 2:
        raise ValueError(f"{what} must be a 2-D integer array (batch, length), got "
                         f"{getattr(ids, 'shape', type(ids).__name__)}")
    if ids.shape[0] == 0:
        raise ValueError(f"{what} is a batch of zero sequences; give at least one")
    if ids.shape[1] == 0:
        raise ValueError(f"{what} is empty (length 0)")
    if ids.shape[1] > max_len:
        raise ValueError(f"{what} has length {ids.shape[1]}, longer than the model's max_len={max_len}")
    check_token_ids(what, ids, vocab_size)


def check_number(name: str, value, *, minimum: float | None = None, strict: bool = False,
                  maximum: float | None = None, max_strict: bool = False) -> float:
    """``value`` as a Python float, or a ValueError naming the argument and the rule broken."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if max_strict else value > maximum):
        raise ValueError(f"{name} must be {'<' if max_strict else '<='} {maximum}, got {value}")
    return value


def check_int(name: str, value, *, minimum: int) -> int:
    """``value`` as a Python int, or a ValueError naming the argument and the rule broken."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
