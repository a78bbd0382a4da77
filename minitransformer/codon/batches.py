"""Batches for the codon task: strings to id arrays, and the endless streams a run trains on.

:class:`SyntheticBatches` draws fresh random pairs; :class:`TableBatches` goes round a table of
pairs, reshuffled every pass. Both draw a *pool* of batches at a time from one generator, so
where a stream stands is three things: the generator's state when the current pool was drawn,
the curriculum's longest protein then, and how many batches of the pool were taken.
:meth:`position` says them and :meth:`restore` goes back there by drawing the same pool
again: a run resumed from a checkpoint gets the very batches it would have got (see
``codon train --resume``).
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..training import Batch, length_bucketed_batches
from ..vocab import Vocabulary
from .data import generate_pairs, protein_vocabulary, rna_vocabulary

if TYPE_CHECKING:  # (train.py imports this module)
    from .train import CodonRecipe

__all__ = ["encode_pairs", "SyntheticBatches", "TableBatches"]


# --------------------------------------------------------------------------------------
# From strings to id arrays
# --------------------------------------------------------------------------------------
def _lookup_table(vocab: Vocabulary) -> np.ndarray:
    """byte value -> token id, for turning whole ASCII strings into ids at once."""
    table = np.full(256, -1, dtype=np.int64)
    for symbol in vocab.symbols:
        table[ord(symbol)] = vocab.token_to_id(symbol)
    return table


def encode_pairs(rnas, proteins, rna_vocab: Vocabulary, protein_vocab: Vocabulary) -> Batch:
    """A padded :class:`Batch` from RNA strings and protein strings (already normalised)."""
    rnas, proteins = list(rnas), list(proteins)
    src = _encode_padded(rnas, rna_vocab)
    if proteins:
        body = _encode_padded(proteins, protein_vocab, extra=1)
        lengths = np.array([len(p) for p in proteins])
        rows = np.arange(len(proteins))
        tgt_out = body.copy()
        tgt_out[rows, lengths] = protein_vocab.eos_id
        tgt_in = np.concatenate([np.full((len(proteins), 1), protein_vocab.bos_id), body[:, :-1]], axis=1)
        n_tokens = int(lengths.sum() + len(proteins))
    else:
        tgt_in = tgt_out = np.zeros((0, 1), dtype=np.int64)
        n_tokens = 0
    return Batch(src, tgt_in, tgt_out, n_tokens)


def _encode_padded(texts, vocab, extra=0):
    lookup = _lookup_table(vocab)
    length = max(len(t) for t in texts) + extra
    out = np.full((len(texts), length), vocab.pad_id, dtype=np.int64)
    for i, text in enumerate(texts):
        out[i, : len(text)] = lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    if (out < 0).any():
        raise ValueError("a sequence holds a character outside the vocabulary; normalise it first")
    return out


# --------------------------------------------------------------------------------------
# Batches: synthetic (fresh every step) or from a table of pairs
# --------------------------------------------------------------------------------------
class _PooledBatches:
    """What the two streams share: a queue of batches drawn a pool at a time, and where the
    stream stands in it (:meth:`position`, :meth:`restore`)."""

    _queue: list
    _pool: dict | None = None   #: the generator state and max_len the current pool was drawn with

    def __iter__(self):
        return self

    def _start_pool(self) -> None:
        self._pool = {"rng_state": copy.deepcopy(self.rng.bit_generator.state), "max_len": int(self.max_len),
                      "taken": 0}

    def _take(self):
        self._pool["taken"] += 1
        return self._queue.pop()

    def position(self, untaken: int = 0) -> dict | None:
        """Where the stream stands, as JSON values; ``untaken``: batches handed out last that
        are to be handed out again on :meth:`restore` (a step interrupted before it finished)."""
        if self._pool is None:
            return None
        return {**self._pool, "taken": self._pool["taken"] - untaken}

    def restore(self, position: dict | None) -> None:
        """Go back to ``position`` (from :meth:`position`): the same pool, drawn again, with
        the batches already taken taken again; the generator ends where it was then."""
        if position is None:
            return
        max_len = self.max_len
        self.rng.bit_generator.state = position["rng_state"]
        self.max_len = int(position["max_len"])
        self._refill()
        for _ in range(int(position["taken"])):
            self._take()
        self.max_len = max_len


class SyntheticBatches(_PooledBatches):
    """Endless batches of fresh random pairs; the curriculum sets ``max_len``.

    Pairs are drawn a pool at a time (about ``pool_batches`` batches' worth), with protein
    lengths uniform in ``min_len..max_len`` (with extra long ones, ``long_share``, and extra
    short ones, ``short_share``), then grouped by length into batches of at most
    ``max_tokens`` padded source nucleotides (see :func:`length_bucketed_batches`), so
    almost no padding is computed. A change of ``max_len`` takes effect with the next pool.
    """

    def __init__(self, recipe: CodonRecipe, table, rng: np.random.Generator, pool_batches: int = 32):
        self.recipe, self.table, self.rng = recipe, table, rng
        self.min_len, self.max_len = recipe.min_len, recipe.start_max_len
        self.pool_batches = pool_batches
        self.rna_vocab, self.protein_vocab = rna_vocabulary(), protein_vocabulary()
        self._queue, self._pool_max_len = [], None

    def _refill(self):
        self._start_pool()
        mean_len = (self.min_len + self.max_len) / 2
        n = max(1, int(self.pool_batches * self.recipe.max_tokens / (3 * mean_len)))
        pairs = generate_pairs(n, self.min_len, self.max_len, self.table, self.recipe.stop_rate, self.rng)
        n_long = int(round(self.recipe.long_share * n))
        if n_long:
            # late positions are rare under uniform lengths (position p appears only in the
            # proteins at least p long): add proteins from the upper half of the range
            low = max(self.min_len, self.max_len // 2)
            longer = generate_pairs(n_long, low, self.max_len, self.table, self.recipe.stop_rate, self.rng)
            pairs = pd.concat([pairs, longer], ignore_index=True)
        n_short = int(round(self.recipe.short_share * n))
        if n_short:
            # and the shortest ones, whose end comes right after their first codons, grow as
            # rare once the range is long: add proteins of the curriculum's first range again
            high = min(self.max_len, max(self.min_len, self.recipe.start_max_len))
            shorter = generate_pairs(n_short, self.min_len, high, self.table, self.recipe.stop_rate, self.rng)
            pairs = pd.concat([pairs, shorter], ignore_index=True)
        lengths = 3 * pairs["protein"].str.len().to_numpy()
        groups = length_bucketed_batches(lengths, self.recipe.max_tokens, self.rng)
        rnas, proteins = pairs["rna"].to_numpy(), pairs["protein"].to_numpy()
        self._queue = [(rnas[g], proteins[g]) for g in groups]
        self._pool_max_len = self.max_len

    def __next__(self) -> Batch:
        if not self._queue or self._pool_max_len != self.max_len:
            self._refill()
        rnas, proteins = self._take()
        return encode_pairs(rnas, proteins, self.rna_vocab, self.protein_vocab)


class TableBatches(_PooledBatches):
    """Endless length-bucketed batches from a pairs DataFrame, reshuffled every epoch; the
    curriculum limits which rows (by protein length) are used."""

    def __init__(self, pairs: pd.DataFrame, recipe: CodonRecipe, rng: np.random.Generator):
        self.pairs = pairs.reset_index(drop=True)
        self.recipe, self.rng = recipe, rng
        self.lengths = self.pairs["protein"].str.len().to_numpy()
        self.min_len, self.max_len = recipe.min_len, recipe.start_max_len
        self.rna_vocab, self.protein_vocab = rna_vocabulary(), protein_vocabulary()
        self._queue = []

    def _refill(self):
        self._start_pool()
        allowed = np.nonzero(self.lengths <= self.max_len)[0]
        if allowed.size == 0:
            allowed = np.argsort(self.lengths)[: max(1, len(self.lengths) // 10)]
        groups = length_bucketed_batches(3 * self.lengths[allowed], self.recipe.max_tokens, self.rng)
        self._queue = [allowed[g] for g in groups]

    def __next__(self) -> Batch:
        if not self._queue:
            self._refill()
        rows = self.pairs.iloc[self._take()]
        return encode_pairs(rows["rna"], rows["protein"], self.rna_vocab, self.protein_vocab)
