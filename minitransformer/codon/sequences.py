"""Reading and checking sequences typed or pasted by people.

The model's alphabets are small and strict: RNA is ``A C G U``, a protein is the 20 amino
acids and ``*``. What people paste is not: DNA with ``T``, lower case, line breaks, spaces
every ten letters, a stray ``N`` or ``-``. The functions here turn the harmless variations
into the strict form and refuse everything else with a message that says *what* is wrong and
*where*, so that the error can be fixed without guessing:

>>> normalize_rna("atg gcc\\ntaa")
'AUGGCCUAA'
>>> normalize_rna("AUGXCC-")
Traceback (most recent call last):
...
minitransformer.codon.sequences.SequenceError: invalid characters in RNA sequence: 'X' at position 4, '-' at position 7 (positions count characters of the input from 1); only A, C, G, U (or T), in upper or lower case, are allowed

All errors are :class:`SequenceError`, a ``ValueError``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .genetic_code import AMINO_ACIDS, NUCLEOTIDES, PROTEIN_ALPHABET, STOP

#: Show at most this many bad characters in an error message.
MAX_REPORTED = 10

_WHITESPACE = " \t\n\r\v\f"
_REMOVE_WHITESPACE = str.maketrans("", "", _WHITESPACE)

#: One-letter codes that are valid in protein databases but not in our target alphabet.
UNSUPPORTED_PROTEIN_CODES = {
    "B": "ambiguity code for N or D",
    "Z": "ambiguity code for Q or E",
    "J": "ambiguity code for L or I",
    "X": "unknown amino acid",
    "U": "selenocysteine, read through a UGA stop codon",
    "O": "pyrrolysine, read through a UAG stop codon",
}


class SequenceError(ValueError):
    """A sequence that cannot be used as it is: bad characters, empty, wrong length."""


def _describe_bad(seq: str, allowed: str) -> str:
    """``'X' at position 4, '-' at position 7`` for the characters of ``seq`` not allowed.

    Whitespace is always allowed (it is removed). Positions count from 1 in ``seq`` as given.
    """
    bad = [(i + 1, ch) for i, ch in enumerate(seq)
           if ch not in _WHITESPACE and ch.upper() not in allowed]
    parts = [f"{ch!r} at position {pos}" for pos, ch in bad[:MAX_REPORTED]]
    if len(bad) > MAX_REPORTED:
        parts.append(f"and {len(bad) - MAX_REPORTED} more")
    return ", ".join(parts)


def normalize_rna(seq: str, *, require_codons: bool = True) -> str:
    """Return ``seq`` as upper-case RNA: ``T`` becomes ``U``, whitespace is removed.

    Args:
        seq: the sequence, DNA or RNA, in any case, with any spaces or line breaks.
        require_codons: also require a length that is a multiple of 3 (whole codons).

    Raises:
        SequenceError: a character other than A, C, G, U, T or whitespace (the message
            names each one and its position, counted from 1 in ``seq`` as given); nothing
            left after removing whitespace; or a length that is not a multiple of 3.
    """
    if not isinstance(seq, str):
        raise TypeError(f"an RNA sequence must be a str, not {type(seq).__name__}")
    cleaned = seq.translate(_REMOVE_WHITESPACE).upper().replace("T", "U")
    if not set(cleaned) <= set(NUCLEOTIDES):
        raise SequenceError(
            f"invalid characters in RNA sequence: {_describe_bad(seq, NUCLEOTIDES + 'T')} "
            "(positions count characters of the input from 1); "
            "only A, C, G, U (or T), in upper or lower case, are allowed")
    if not cleaned:
        raise SequenceError("empty sequence: an RNA sequence needs at least one codon")
    if require_codons and len(cleaned) % 3:
        raise SequenceError(
            f"RNA sequence has {len(cleaned)} nucleotides, which is not a multiple of 3: "
            f"a coding sequence is read in codons of three ({len(cleaned) // 3} whole codons "
            f"and {len(cleaned) % 3} nucleotide(s) left over)")
    return cleaned


def normalize_protein(seq: str) -> str:
    """Return ``seq`` as an upper-case protein of the 20 amino acids and ``*``.

    Whitespace is removed. Raises :class:`SequenceError` for anything else, naming each bad
    character and its position (counted from 1 in ``seq`` as given), and explaining the
    codes that protein databases use but this task does not (B, Z, J, X, U, O).
    """
    if not isinstance(seq, str):
        raise TypeError(f"a protein sequence must be a str, not {type(seq).__name__}")
    cleaned = seq.translate(_REMOVE_WHITESPACE).upper()
    if not set(cleaned) <= set(PROTEIN_ALPHABET):
        found = sorted({ch.upper() for ch in seq} & set(UNSUPPORTED_PROTEIN_CODES))
        notes = "".join(f"; {ch} is the {UNSUPPORTED_PROTEIN_CODES[ch]}" for ch in found)
        if any(ch in "BZJX" for ch in found):
            notes += (" (ambiguity codes are not supported: each codon means one amino acid, "
                      "so a translation never needs them)")
        raise SequenceError(
            f"invalid characters in protein sequence: {_describe_bad(seq, PROTEIN_ALPHABET)} "
            f"(positions count characters of the input from 1){notes}; only the 20 amino "
            f"acids {AMINO_ACIDS} and '{STOP}' for a stop codon are allowed")
    if not cleaned:
        raise SequenceError("empty sequence: a protein needs at least one residue")
    return cleaned


def read_fasta(path_or_text: str | os.PathLike) -> list[tuple[str, str]]:
    """Read FASTA records: ``[(name, sequence), ...]`` in the order they appear.

    >>> read_fasta(">seq1 a gene\\nAUGGCC\\nUAA\\n>seq2\\nAUG")
    [('seq1 a gene', 'AUGGCCUAA'), ('seq2', 'AUG')]

    ``path_or_text`` is a path (``str`` or ``pathlib.Path``) or FASTA text itself: a string
    is read as text when it starts with ``>`` or contains a line break. The name is the whole
    header line after ``>``; the sequence is its lines joined, whitespace removed, letters
    left as they are (pass it to :func:`normalize_rna` or :func:`normalize_protein`). Blank
    lines and ``;`` comment lines are skipped.

    Raises:
        FileNotFoundError: a path that does not exist.
        SequenceError: no records, sequence lines before the first header, a header without
            a name, or a record without sequence (line numbers count from 1).
    """
    if isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and not path_or_text.lstrip().startswith(">")
            and "\n" not in path_or_text):
        path = Path(path_or_text)
        if not path.is_file():
            raise FileNotFoundError(f"no such FASTA file: '{path}' (to parse FASTA text "
                                    "directly, pass a string that starts with '>')")
        where = f" in '{path}'"
        try:   # utf-8-sig: a byte-order mark, which some editors write first, is not a character
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise SequenceError(f"'{path}' is not UTF-8 text: byte {err.object[err.start]:#04x} at "
                                f"offset {err.start} cannot be decoded (is it a FASTA file?)") from None
    else:
        text, where = path_or_text.lstrip("\ufeff"), ""

    records: list[tuple[str, str]] = []
    name, header_line, chunks = None, 0, []

    def finish():
        if name is not None:
            if not chunks:
                raise SequenceError(f"FASTA record '{name}' (line {header_line}{where}) "
                                    "has no sequence")
            records.append((name, "".join(chunks)))

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        if stripped.startswith(">"):
            finish()
            name, header_line, chunks = stripped[1:].strip(), number, []
            if not name:
                raise SequenceError(f"line {number}{where}: FASTA header '>' without a name")
        elif name is None:
            raise SequenceError(f"line {number}{where}: sequence before the first '>' header "
                                "(a FASTA record starts with a line '>name')")
        else:
            chunks.append(stripped.translate(_REMOVE_WHITESPACE))
    finish()
    if not records:
        raise SequenceError(f"no FASTA records found{where}: expected lines '>name' "
                            "followed by sequence lines")
    return records
