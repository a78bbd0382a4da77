"""Protein sequences for the demo: the vocabulary, the shipped data, a split by similarity.

Two files ship in ``data/`` (see ``data/SOURCES.md``; :mod:`.build_data` made them):

* ``families.csv`` — labelled sequences: columns ``family`` (a UniProt protein name, the
  class), ``accession``, ``organism``, ``sequence``;
* ``pretrain.csv.gz`` — unlabelled sequences for masked language modelling (``accession``,
  ``sequence``), none of them a family member or like one.

The honest test: a classifier tested on sequences nearly identical to its training
sequences measures memory, not understanding. :func:`similarity_split` therefore puts whole
*clusters* of similar sequences (linked by shared k-mers) on one side of the split.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ..vocab import Vocabulary

DATA = Path(__file__).resolve().parent / "data"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_STANDARD = frozenset(AMINO_ACIDS)
MASK = "<mask>"


class ProteinVocabulary(Vocabulary):
    """The four special tokens, ``<mask>`` (id 4), the 20 standard amino acids, then
    ``words``: tokens of several residues (none by default: one token per residue).

    Why words: PRoBERTa, like most protein language models of its time, does not read one
    residue per token but "words" learned from the sequences (byte-pair encoding). A word
    of three residues makes each token carry more, and a window of 128 tokens then covers
    about 315 residues of a protein instead of 128. :func:`learn_words` picks the words;
    :meth:`split` cuts a sequence into them.
    """

    def __init__(self, words=()):
        words = tuple(words)
        for word in words:
            if not isinstance(word, str) or len(word) < 2 or not set(word) <= _STANDARD:
                raise ValueError(f"word {word!r}: a word is a string of at least 2 of the 20 standard "
                                 f"amino acids ({AMINO_ACIDS})")
        super().__init__([MASK, *AMINO_ACIDS, *words])
        self.words = words
        self._words = set(words)
        self._longest = max(map(len, words), default=1)

    def split(self, sequence: str):
        """The tokens of ``sequence``: with words, the longest word (or residue) that starts
        where the last one ended, left to right; without words, the sequence itself (a string
        is its own list of one-letter tokens)."""
        if not self.words:
            return sequence
        tokens, start = [], 0
        while start < len(sequence):
            length = next((n for n in range(min(self._longest, len(sequence) - start), 1, -1)
                           if sequence[start:start + n] in self._words), 1)
            tokens.append(sequence[start:start + length])
            start += length
        return tokens

    def __repr__(self) -> str:
        return f"ProteinVocabulary({len(self.words)} words)"


def protein_vocabulary(words=()) -> ProteinVocabulary:
    """The protein tokens: see :class:`ProteinVocabulary` (no words: one token per residue)."""
    return ProteinVocabulary(words)


def learn_words(sequences, count: int, longest: int = 4) -> list[str]:
    """The ``count`` words of 2 to ``longest`` residues that save the most tokens in
    ``sequences``: a word of n residues found m times saves m (n - 1) tokens, counting
    every place it occurs (overlaps too, so it is an estimate). Ties go alphabetically, so
    the same sequences always give the same words.

    A simpler relative of byte-pair encoding, which merges the most frequent pair of tokens
    again and again: frequent pairs and triples come out as words in both, and cutting by
    the longest word (:meth:`ProteinVocabulary.split`) needs no merge table."""
    if count < 0 or longest < 2:
        raise ValueError(f"learn_words needs count >= 0 and longest >= 2, got {count} and {longest}")
    counts = Counter()
    for sequence in sequences:
        for n in range(2, longest + 1):
            counts.update(sequence[i:i + n] for i in range(len(sequence) - n + 1))
    saving = sorted(counts, key=lambda word: (-counts[word] * (len(word) - 1), word))
    return [word for word in saving if set(word) <= _STANDARD][:count]


def special_ids(vocab: Vocabulary) -> list[int]:
    """Ids never chosen for masking nor drawn as random replacements."""
    return [vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id, vocab.token_to_id(MASK)]


def _read(path: Path, columns) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with python -m minitransformer.protein.build_data "
                                "(see minitransformer/protein/data/SOURCES.md)")
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; it has {list(table.columns)}")
    return table


def load_families(path=None) -> pd.DataFrame:
    """The labelled sequences (default: the shipped ``families.csv``)."""
    return _read(Path(path) if path else DATA / "families.csv", ["family", "sequence"])


def load_pretraining(path=None) -> pd.DataFrame:
    """The unlabelled pre-training sequences (default: the shipped ``pretrain.csv.gz``)."""
    return _read(Path(path) if path else DATA / "pretrain.csv.gz", ["sequence"])


def check_sequences(table: pd.DataFrame, where) -> None:
    """ValueError naming the first row of ``table`` whose sequence is empty or holds a letter
    other than the 20 standard amino acids (upper case)."""
    for row, sequence in enumerate(table.sequence):
        if not isinstance(sequence, str) or not sequence or not set(sequence) <= _STANDARD:
            bad = sorted(set(str(sequence)) - _STANDARD) if isinstance(sequence, str) and sequence else "empty"
            raise ValueError(f"{where}: row {row + 1} holds a sequence that is not made of the 20 standard "
                             f"amino acids ({AMINO_ACIDS}); found {bad}; remove or fix that row")
    if len(table) == 0:
        raise ValueError(f"{where} holds no sequences")


# --------------------------------------------------------------------------------------
# Windows and batches
# --------------------------------------------------------------------------------------
def window(sequence, length: int, rng: np.random.Generator | None = None):
    """A window of at most ``length`` tokens (residues of a string, or the items of a list of
    tokens): at a random start with ``rng``, else centred."""
    if len(sequence) <= length:
        return sequence
    extra = len(sequence) - length
    start = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
    return sequence[start:start + length]


def spaced_windows(sequence, length: int, count: int) -> list:
    """Up to ``count`` windows of ``length`` tokens (as :func:`window`), evenly spaced from
    the sequence's start to its end (one centred window when ``count`` is 1; the whole
    sequence when it fits)."""
    if len(sequence) <= length:
        return [sequence]
    if count == 1:
        return [window(sequence, length)]
    starts = np.unique(np.rint(np.linspace(0, len(sequence) - length, count)).astype(int))
    return [sequence[s:s + length] for s in starts]


def encode(vocab: ProteinVocabulary, sequences, length: int, rng=None) -> np.ndarray:
    """(B, <= length) padded ids of windows of ``length`` tokens of the sequences (see
    :func:`window`), each sequence cut into ``vocab``'s tokens first."""
    return vocab.encode_batch([window(vocab.split(s), length, rng) for s in sequences], strict=False)


# --------------------------------------------------------------------------------------
# The split: clusters of similar sequences stay on one side
# --------------------------------------------------------------------------------------
def kmer_sets(sequences, k=5):
    return [{s[i:i + k] for i in range(len(s) - k + 1)} for s in sequences]


def similarity(a: set, b: set) -> float:
    """Shared k-mers over the smaller set's size: 1 for a sequence and its fragment."""
    return len(a & b) / max(1, min(len(a), len(b)))


def clusters(sequences, threshold=0.2, k=5) -> np.ndarray:
    """Cluster id per sequence: single linkage, two sequences linked when they share at least
    ``threshold`` of their k-mers (unrelated proteins share about 1% of 5-mers by chance)."""
    sets = kmer_sets(sequences, k)
    parent = list(range(len(sets)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(sets)):
        for j in range(i):
            if similarity(sets[i], sets[j]) >= threshold:
                parent[root(i)] = root(j)
    return np.array([root(i) for i in range(len(sets))])


def similarity_split(families: pd.DataFrame, test_fraction=0.35, seed=0, threshold=0.2):
    """``(train, test)`` tables: within each family, whole clusters (see :func:`clusters`) go
    to the test side, in random order, each one only if the test side then holds at most
    ``test_fraction`` of the family (a cluster too large is passed over; the largest always
    stays for training).

    So no test sequence shares ``threshold`` of its k-mers with a training sequence of its
    family."""
    rng = np.random.default_rng(seed)
    test_rows = []
    for _, group in families.groupby("family", sort=True):
        ids = clusters(group.sequence.tolist(), threshold)
        labels, sizes = np.unique(ids, return_counts=True)
        largest = labels[sizes.argmax()]
        taken = 0
        for cluster in rng.permutation(labels):
            members = group.index[ids == cluster]
            if cluster != largest and taken + len(members) <= test_fraction * len(group):
                test_rows.extend(members)
                taken += len(members)
    is_test = families.index.isin(test_rows)
    return families[~is_test].reset_index(drop=True), families[is_test].reset_index(drop=True)


def few_rows(train: pd.DataFrame, n: int, seed=0) -> list:
    """The index labels of at most ``n`` training sequences of each family, drawn at random."""
    rng = np.random.default_rng(seed)
    return [i for _, group in train.groupby("family", sort=True) for i in rng.permutation(group.index)[:n]]


def few_per_family(train: pd.DataFrame, n: int, seed=0) -> pd.DataFrame:
    """At most ``n`` training sequences of each family, drawn at random: the few labelled ones
    (the rows of :func:`few_rows`)."""
    return train.loc[few_rows(train, n, seed)].reset_index(drop=True)
