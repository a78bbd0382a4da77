"""Data for the codon task: random pairs, CSV files, and a few real genes.

Every data set of the task is a table of pairs, one RNA sequence and its protein::

    rna,protein
    AUGGCCUAA,MA*

read and written with pandas; other columns are allowed and kept. This module makes such
tables (:func:`generate_pairs`), reads and writes them (:func:`read_pairs_csv`,
:func:`write_pairs_csv`), checks them (:func:`check_pairs`), and loads the real genes that
ship with the package (:func:`load_example_genes`).

How random pairs are made
-------------------------
Backwards from the protein. First draw the protein: a length, then each residue, one of the
20 amino acids or, with probability ``stop_rate``, a stop ``*``. Then write each residue as
one of its codons, chosen uniformly among its synonymous codons (for ``L``, one of six). So
the RNA is, by construction, exactly what translates to the protein, and the model has to
learn that every codon of a family means the same residue.

(The package data folder ``data/`` sits next to this module ``data.py``; Python imports the
module, and :func:`load_example_genes` reads the folder with :mod:`importlib.resources`.)
"""
from __future__ import annotations

import csv
import os
from importlib import resources

import numpy as np
import pandas as pd

from ..vocab import Vocabulary
from .genetic_code import (AMINO_ACIDS, CODONS, NUCLEOTIDES, PROTEIN_ALPHABET,
                           GeneticCode, get_genetic_code, translate)
from .sequences import SequenceError, normalize_protein, normalize_rna

#: The columns every pairs table has.
PAIR_COLUMNS = ("rna", "protein")
#: How many bad rows an error message lists before "... and N more".
MAX_REPORTED_ROWS = 10

EXAMPLE_GENE_FILES = {"standard": "standard_genes.csv", "mitochondrial": "mitochondrial_genes.csv",
                      "collection": "collection_genes.csv", "holdout": "holdout_genes.csv"}
#: The kinds ``load_example_genes("all")`` joins: every file but the hold-out.
ALL_EXAMPLE_GENES = ("standard", "mitochondrial", "collection")


def rna_vocabulary() -> Vocabulary:
    """The source vocabulary: one token per nucleotide, ``A C G U``."""
    return Vocabulary(NUCLEOTIDES)


def protein_vocabulary() -> Vocabulary:
    """The target vocabulary: one token per residue, the 20 amino acids and ``*``."""
    return Vocabulary(PROTEIN_ALPHABET)


# ---------------------------------------------------------------------- random pairs
def _codon_lookup(code: GeneticCode) -> tuple[np.ndarray, np.ndarray]:
    """Arrays for drawing codons fast.

    Returns ``(counts, table)``: ``counts[r]`` is how many codons residue ``r`` (an index
    into :data:`PROTEIN_ALPHABET`) has, and ``table[r, j]`` is the ``j``-th of them, as an
    index into :data:`CODONS` (``j < counts[r]``; the rest of the row is unused).
    """
    families = [code.codons_for(aa) for aa in PROTEIN_ALPHABET]
    counts = np.array([len(f) for f in families])
    table = np.zeros((len(families), counts.max()), dtype=np.int64)
    for r, family in enumerate(families):
        table[r, :len(family)] = [CODONS.index(c) for c in family]
    return counts, table


def _split(text: str, lengths: np.ndarray) -> list[str]:
    """Cut one long string into consecutive pieces of the given lengths."""
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]
    return [text[a:b] for a, b in zip(starts, ends)]


def generate_pairs(n: int, min_len: int, max_len: int, table: int | str | GeneticCode = 1,
                   stop_rate: float = 0.05,
                   seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    """Make ``n`` random (RNA, protein) pairs.

    Args:
        n: number of pairs.
        min_len, max_len: protein lengths, in residues, are drawn uniformly from
            ``min_len..max_len`` (both included); the RNA is three times as long.
        table: the genetic code (NCBI number or name).
        stop_rate: the probability that a residue is a stop ``*`` rather than one of the
            20 amino acids (which are equally likely).
        seed: an int (the same seed gives the same table), a ``numpy.random.Generator``
            (which is advanced), or None (fresh randomness).

    Returns:
        A DataFrame with columns ``rna`` and ``protein``, where
        ``translate(rna, table) == protein`` on every row.

    Everything is drawn at once as NumPy arrays, residue indices then codon indices, and
    turned into strings at the end, so 100 000 pairs take a fraction of a second.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, "
                         f"max_len={max_len}")
    if not 0.0 <= stop_rate <= 1.0:
        raise ValueError(f"stop_rate is a probability, between 0 and 1; got {stop_rate}")
    code = get_genetic_code(table)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # 1. Protein lengths, then all residues of all proteins in one flat array.
    lengths = rng.integers(min_len, max_len + 1, size=n)
    total = int(lengths.sum())
    residues = rng.integers(0, len(AMINO_ACIDS), size=total)      # 0..19: an amino acid
    residues[rng.random(total) < stop_rate] = len(AMINO_ACIDS)     # 20: the stop, '*'

    # 2. One codon per residue, uniform among its synonymous codons.
    counts, codon_table = _codon_lookup(code)
    choice = (rng.random(total) * counts[residues]).astype(np.int64)  # 0..counts-1
    codons = codon_table[residues, choice]                            # indices into CODONS

    # 3. From indices to text: look up bytes, decode once, cut into pieces.
    residue_bytes = np.frombuffer(PROTEIN_ALPHABET.encode("ascii"), dtype=np.uint8)
    codon_bytes = np.frombuffer("".join(CODONS).encode("ascii"), dtype=np.uint8).reshape(64, 3)
    protein_text = residue_bytes[residues].tobytes().decode("ascii")
    rna_text = codon_bytes[codons].tobytes().decode("ascii")
    return pd.DataFrame({"rna": _split(rna_text, 3 * lengths),
                         "protein": _split(protein_text, lengths)},
                        columns=list(PAIR_COLUMNS))


# ---------------------------------------------------------------------- CSV files
def _bad_rows_message(problems: list[str], what: str) -> str:
    shown = problems[:MAX_REPORTED_ROWS]
    more = len(problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    return f"{what}:\n  " + "\n  ".join(shown) + tail


def _read_csv_table(path: str) -> pd.DataFrame:
    """The CSV file as a table of strings, or one line naming the file and what is wrong:
    not UTF-8, empty, or a row with more or fewer fields than the header (which pandas
    would otherwise pad with empty strings, blaming the wrong column)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                raise ValueError(f"'{path}' is empty: a pairs file starts with the header line 'rna,protein'")
            for line, row in enumerate(rows, start=2):
                if row and len(row) != len(header):
                    raise ValueError(f"'{path}', line {line}: {len(row)} field(s) where the header has "
                                     f"{len(header)} ({', '.join(header)}); check the commas on that line")
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"'{path}' is not UTF-8 text: byte {err.object[err.start]:#04x} at offset "
                         f"{err.start} cannot be decoded (save it as UTF-8 CSV)") from None
    except csv.Error as err:
        raise ValueError(f"'{path}' is not a valid CSV file: {err}") from None


def read_pairs_csv(path: str | os.PathLike,
                   table: int | str | GeneticCode | None = None) -> pd.DataFrame:
    """Read a table of pairs from a CSV file with (at least) columns ``rna`` and ``protein``.

    Sequences are normalised (:func:`~minitransformer.codon.sequences.normalize_rna`: DNA
    letters and lower case are accepted; :func:`~minitransformer.codon.sequences.normalize_protein`)
    and extra columns are kept as they are. If ``table`` is given, every protein must also be
    the translation of its RNA under that table.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a missing column, or rows with invalid sequences or wrong proteins. The
            message lists the rows by number (data rows counted from 1; row 1 is on line 2
            of the file, after the header) and what is wrong with each.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such pairs file: '{path}'")
    df = _read_csv_table(path)
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"'{path}' has no column {', '.join(repr(c) for c in missing)}: a pairs "
                         f"file needs columns 'rna' and 'protein' (found: "
                         f"{', '.join(map(repr, df.columns)) or 'none'})")
    rnas, proteins, problems = [], [], []
    for row, (rna, protein) in enumerate(zip(df["rna"], df["protein"]), start=1):
        try:
            rna = normalize_rna(rna)
            protein = normalize_protein(protein)
        except SequenceError as err:
            problems.append(f"row {row} (line {row + 1}): {err}")
        rnas.append(rna)
        proteins.append(protein)
    if problems:
        raise ValueError(_bad_rows_message(problems, f"invalid sequences in '{path}'"))
    df["rna"], df["protein"] = rnas, proteins
    if table is not None:
        wrong = check_pairs(df, table)
        if len(wrong):
            problems = [f"row {i + 1} (line {i + 2}): protein {r.given!r}, but the RNA "
                        f"translates to {r.expected!r}" for i, r in wrong.iterrows()]
            name = get_genetic_code(table)
            raise ValueError(_bad_rows_message(problems, f"proteins in '{path}' that are not "
                                               f"the translation of their RNA under {name}"))
    return df


def write_pairs_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table of pairs to CSV: ``rna``, ``protein`` first, then any other columns."""
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write pairs: no column {', '.join(map(repr, missing))} "
                         f"(found: {', '.join(map(repr, df.columns)) or 'none'})")
    columns = list(PAIR_COLUMNS) + [c for c in df.columns if c not in PAIR_COLUMNS]
    df.to_csv(path, columns=columns, index=False)


def check_pairs(df: pd.DataFrame,
                table: int | str | GeneticCode | None = None) -> pd.DataFrame:
    """The rows whose protein is not the translation of their RNA.

    Args:
        df: a pairs table (columns ``rna``, ``protein``).
        table: the genetic code. If None, each row's ``table`` column is used when there is
            one (as in the example genes), table 1 otherwise.

    Returns:
        A DataFrame with the same index as the offending rows of ``df`` and columns
        ``expected`` (the translation) and ``given`` (the protein in ``df``); empty if all
        rows agree. Rows whose RNA cannot be translated at all (bad characters, length not a
        multiple of 3) are reported with ``expected`` saying why.
    """
    if table is None and "table" in df.columns:
        tables = df["table"].tolist()
    else:
        tables = [1 if table is None else table] * len(df)
    index, expected, given = [], [], []
    for i, rna, protein, t in zip(df.index, df["rna"], df["protein"], tables):
        try:
            translation = translate(normalize_rna(rna), t)
        except ValueError as err:
            translation = f"<cannot translate: {err}>"
        if translation != protein:
            index.append(i)
            expected.append(translation)
            given.append(protein)
    return pd.DataFrame({"expected": expected, "given": given},
                        index=pd.Index(index, name=df.index.name), dtype=object)


# ---------------------------------------------------------------------- real genes
def load_example_genes(kind: str = "standard") -> pd.DataFrame:
    """Load real coding sequences shipped with the package.

    Args:
        kind: ``"standard"`` (7 genes read with the standard code, table 1),
            ``"mitochondrial"`` (5 human mitochondrial genes, table 2), ``"collection"`` (74
            complete CDS of 30-2,448 codons from public GenBank/EMBL records: chloroplast,
            plant, animal, bacterial genes, all table 1), ``"holdout"`` (38 more of the same
            kind, kept apart for checking a model or a method that was tuned on the others:
            look at them only to measure), or ``"all"`` (every kind but the hold-out).

    Returns:
        A DataFrame with columns ``name, accession, table, rna, protein, source`` (and
        ``organism``, ``note``), where ``protein == translate(rna, table)``. Where each
        record comes from, and under which terms, is in ``data/SOURCES.md``.
    """
    if kind == "all":
        return pd.concat([load_example_genes(k) for k in ALL_EXAMPLE_GENES], ignore_index=True)
    if kind not in EXAMPLE_GENE_FILES:
        raise ValueError(f"unknown kind of example genes {kind!r}; choose one of "
                         f"{', '.join(map(repr, EXAMPLE_GENE_FILES))} or 'all'")
    resource = resources.files("minitransformer.codon") / "data" / EXAMPLE_GENE_FILES[kind]
    with resource.open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
    df["table"] = df["table"].astype(int)
    return df
