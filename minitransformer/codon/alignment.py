"""Errors counted by alignment: how many residues a translation got wrong, when a dropped or
doubled residue counts once.

Comparing two proteins position by position blames a single dropped residue for every
residue after it: ``MAIVK`` read as ``MIVK`` differs at four positions, but one residue is
missing. The edit (Levenshtein) distance counts the fewest single-residue edits that turn the
predicted protein into the expected one, and a backtrace through its table says which kind
each edit is:

* a **substitution**: a predicted residue where the expected one has another;
* an **insertion**: a residue the prediction has and the expected protein lacks (a doubled
  residue, say);
* a **deletion**: a residue of the expected protein the prediction lacks (a dropped one).

The table
---------
With ``e`` the expected protein (``n`` residues) and ``p`` the predicted one (``m``),
``D[i, j]`` is the distance between ``e[:i]`` and ``p[:j]``::

    D[0, j] = j,   D[i, 0] = i,
    D[i, j] = min(D[i-1, j-1] + [e[i-1] != p[j-1]],   # match or substitution
                  D[i-1, j] + 1,                       # e[i-1] deleted
                  D[i, j-1] + 1)                       # p[j-1] inserted

Row ``i`` depends on row ``i - 1`` through the first two terms, which NumPy computes for the
whole row at once (``T``); the third runs along the row, and unrolls to
``D[i, j] = min over k <= j of (T[k] + j - k) = j + cummin(T[k] - k)``, one
``np.minimum.accumulate``. So a row is a few vector operations and the table ``n * m`` small
integers. The backtrace walks back from ``D[n, m]``, preferring a diagonal step, and counts.

Long sequences
--------------
Residues both proteins share at the start and at the end cannot be part of a shortest edit
script that needs them changed, so they are cut off first: a right translation costs one string
comparison, and one wrong stretch in a long protein costs a table of that stretch only. The
table is kept below :data:`MAX_CELLS` cells; longer comparisons go block by block, following
the prediction's offset. ``translate --check`` compares a sequence translated in pieces piece
by piece (:func:`align_in_pieces`): each piece's translation against the genetic code's
translation of that piece, which is exactly what the model was asked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EditCounts", "MAX_CELLS", "BLOCK_RESIDUES", "ALIGNMENT_COLUMNS", "edit_counts", "align_in_pieces",
           "alignment_scores"]

#: The largest table (rows times columns) :func:`edit_counts` fills in one piece: 4 million
#: cells, 16 MB of int32 and well under a second.
MAX_CELLS = 4_000_000
#: The block length of comparisons larger than MAX_CELLS.
BLOCK_RESIDUES = 1000
#: What :func:`alignment_scores` returns, by name.
ALIGNMENT_COLUMNS = ("residue_error_rate", "edits", "substitutions", "insertions", "deletions")


@dataclass(frozen=True)
class EditCounts:
    """The edits that turn a predicted protein into the expected one (see the module doc)."""

    substitutions: int = 0
    insertions: int = 0   #: residues the prediction has in excess (a doubled residue)
    deletions: int = 0    #: residues of the expected protein the prediction lacks (a dropped one)

    @property
    def distance(self) -> int:
        """The edit (Levenshtein) distance: all edits together."""
        return self.substitutions + self.insertions + self.deletions

    def __add__(self, other: "EditCounts") -> "EditCounts":
        return EditCounts(self.substitutions + other.substitutions, self.insertions + other.insertions,
                          self.deletions + other.deletions)

    def describe(self) -> str:
        """``2 edits (1 substitution, 1 insertion, 0 deletions)``."""
        def n(count, word):
            return f"{count} {word}{'' if count == 1 else 's'}"
        return (f"{n(self.distance, 'edit')} ({n(self.substitutions, 'substitution')}, "
                f"{n(self.insertions, 'insertion')}, {n(self.deletions, 'deletion')})")


def _trim(predicted: str, expected: str) -> tuple[str, str]:
    """Both strings without the residues they share at the start and at the end."""
    n = min(len(predicted), len(expected))
    start = 0
    while start < n and predicted[start] == expected[start]:
        start += 1
    end = 0
    while end < n - start and predicted[-1 - end] == expected[-1 - end]:
        end += 1
    return predicted[start:len(predicted) - end], expected[start:len(expected) - end]


def _table(p: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The distance table ``D`` (``len(e) + 1`` rows, ``len(p) + 1`` columns), row by row."""
    n, m = len(e), len(p)
    D = np.empty((n + 1, m + 1), dtype=np.int32)
    ramp = np.arange(m + 1, dtype=np.int32)
    D[0] = ramp
    for i in range(1, n + 1):
        T = np.empty(m + 1, dtype=np.int32)
        T[0] = i
        T[1:] = np.minimum(D[i - 1, :-1] + (p != e[i - 1]), D[i - 1, 1:] + 1)
        D[i] = ramp + np.minimum.accumulate(T - ramp)
    return D


def _backtrace(D: np.ndarray, p: np.ndarray, e: np.ndarray, i: int, j: int) -> EditCounts:
    """Count the edits of a shortest script from ``D[i, j]`` back to ``D[0, 0]``."""
    subs = ins = dels = 0
    while i > 0 or j > 0:
        if i > 0 and j > 0 and D[i, j] == D[i - 1, j - 1] + (e[i - 1] != p[j - 1]):
            subs += int(e[i - 1] != p[j - 1])
            i, j = i - 1, j - 1
        elif i > 0 and D[i, j] == D[i - 1, j] + 1:
            dels, i = dels + 1, i - 1
        else:
            ins, j = ins + 1, j - 1
    return EditCounts(subs, ins, dels)


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8)


def edit_counts(predicted: str, expected: str) -> EditCounts:
    """Substitutions, insertions and deletions that turn ``predicted`` into ``expected``, by a
    shortest edit script (Levenshtein with a backtrace; see the module doc).

    >>> edit_counts("MIVK", "MAIVK")              # one dropped residue
    EditCounts(substitutions=0, insertions=0, deletions=1)
    >>> edit_counts("MAAIVK", "MAIVK").distance    # one doubled residue
    1

    Comparisons larger than :data:`MAX_CELLS` (after the shared start and end are cut off) go
    block by block (:func:`_align_long`): never fewer edits than the true distance, the same
    number when errors are far apart.
    """
    if predicted == expected:
        return EditCounts()
    predicted, expected = _trim(predicted, expected)
    if (len(expected) + 1) * (len(predicted) + 1) > MAX_CELLS:
        return _align_long(predicted, expected)
    return _one_table(predicted, expected)


def _one_table(predicted: str, expected: str) -> EditCounts:
    """Edit counts from one distance table, whatever its size."""
    n, m = len(expected), len(predicted)
    if n == 0 or m == 0:
        return EditCounts(insertions=m, deletions=n)
    p, e = _codes(predicted), _codes(expected)
    return _backtrace(_table(p, e), p, e, n, m)


def _align_long(predicted: str, expected: str) -> EditCounts:
    """Edit counts of two long strings, one block of ``expected`` at a time.

    Blocks are :data:`BLOCK_RESIDUES` long. A block of ``expected`` that ``predicted`` holds at
    the current offset costs one string comparison. Any other block is aligned against the next ``block + slack`` residues of
    ``predicted`` with a free end there (the column of the table's last row with the fewest
    edits), and the offset moves on by the residues that block used. The blocks' scripts make a
    script of the whole, so the count is never below the true distance; it equals it when no
    error straddles a block boundary.
    """
    block = BLOCK_RESIDUES
    slack = max(1, block // 4)
    total, off = EditCounts(), 0
    for a in range(0, len(expected), block):
        e_text = expected[a:a + block]
        if a + block >= len(expected):              # the last block takes what is left
            rest = predicted[off:]
            if (len(e_text) + 1) * (len(rest) + 1) > MAX_CELLS:   # far too long: the excess inserted
                keep = len(e_text) + slack
                return total + _one_table(*_trim(rest[:keep], e_text)) + EditCounts(insertions=len(rest) - keep)
            return total + _one_table(*_trim(rest, e_text))
        if predicted[off:off + len(e_text)] == e_text:
            off += len(e_text)
            continue
        p, e = _codes(predicted[off:off + len(e_text) + slack]), _codes(e_text)
        D = _table(p, e)
        last = D[len(e)].astype(np.int64)
        # the fewest edits; among ties the end nearest the block's own length
        end = int(np.lexsort((np.abs(np.arange(len(last)) - len(e)), last))[0])
        total = total + _backtrace(D, p, e, len(e), end)
        off += end
    return total + EditCounts(insertions=len(predicted) - off)


def align_in_pieces(predicted: list, expected: list) -> EditCounts:
    """Edit counts summed piece by piece, for blocks that belong together: the translations of
    the pieces of one sequence and the genetic code's translations of the same pieces. An error
    of a model that read the pieces one by one stays inside its piece, so this is the whole
    sequence's count, at the cost of small tables only."""
    if len(predicted) != len(expected):
        raise ValueError(f"align_in_pieces needs as many predicted pieces as expected ones, got "
                         f"{len(predicted)} and {len(expected)}")
    total = EditCounts()
    for p, e in zip(predicted, expected):
        total = total + edit_counts(p, e)
    return total


def alignment_scores(predicted, expected) -> dict:
    """Errors by alignment over pairs of proteins: the edits of each pair summed, by kind, and
    ``residue_error_rate``, the edits per residue of the expected proteins (0 when all are
    right; a dropped residue in a 100-residue protein is 1%, wherever it is)."""
    total, residues = EditCounts(), 0
    for p, e in zip(predicted, expected):
        total = total + edit_counts(p, e)
        residues += len(e)
    return {"residue_error_rate": total.distance / max(residues, 1), "edits": total.distance,
            "substitutions": total.substitutions, "insertions": total.insertions,
            "deletions": total.deletions}
