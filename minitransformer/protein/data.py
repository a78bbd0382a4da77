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

from pathlib import Path

import numpy as np
import pandas as pd

from ..vocab import Vocabulary

DATA = Path(__file__).resolve().parent / "data"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MASK = "<mask>"


def protein_vocabulary() -> Vocabulary:
    """The four special tokens, ``<mask>`` (id 4), then the 20 standard amino acids."""
    return Vocabulary([MASK, *AMINO_ACIDS])


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
    allowed = set(AMINO_ACIDS)
    for row, sequence in enumerate(table.sequence):
        if not isinstance(sequence, str) or not sequence or not set(sequence) <= allowed:
            bad = sorted(set(str(sequence)) - allowed) if isinstance(sequence, str) and sequence else "empty"
            raise ValueError(f"{where}: row {row + 1} holds a sequence that is not made of the 20 standard "
                             f"amino acids ({AMINO_ACIDS}); found {bad}; remove or fix that row")
    if len(table) == 0:
        raise ValueError(f"{where} holds no sequences")


# --------------------------------------------------------------------------------------
# Windows and batches
# --------------------------------------------------------------------------------------
def window(sequence: str, length: int, rng: np.random.Generator | None = None) -> str:
    """A window of at most ``length`` residues: at a random start with ``rng``, else centred."""
    if len(sequence) <= length:
        return sequence
    extra = len(sequence) - length
    start = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
    return sequence[start:start + length]


def spaced_windows(sequence: str, length: int, count: int) -> list[str]:
    """Up to ``count`` windows of ``length`` residues, evenly spaced from the sequence's start
    to its end (one centred window when ``count`` is 1; the whole sequence when it fits)."""
    if len(sequence) <= length:
        return [sequence]
    if count == 1:
        return [window(sequence, length)]
    starts = np.unique(np.rint(np.linspace(0, len(sequence) - length, count)).astype(int))
    return [sequence[s:s + length] for s in starts]


def encode(vocab: Vocabulary, sequences, length: int, rng=None) -> np.ndarray:
    """(B, <= length) padded ids of windows of the sequences (see :func:`window`)."""
    return vocab.encode_batch([window(s, length, rng) for s in sequences], strict=False)


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
