"""Genetic codes: which amino acid each of the 64 codons stands for.

This module is the one source of truth for the translation tables used by the codon task.
Everything else in the package (data generation, checking, the demo) asks it.

How the tables are written
--------------------------
The NCBI publishes every translation table in a compact form: 64 letters, one per codon,
with the codons listed in "TCAG order". The first base of the codon changes slowest and the
third fastest, each running through T, C, A, G::

    AAs    = FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG   (table 1)
    Base1  = TTTTTTTTTTTTTTTTCCCCCCCCCCCCCCCCAAAAAAAAAAAAAAAAGGGGGGGGGGGGGGGG
    Base2  = TTTTCCCCAAAAGGGGTTTTCCCCAAAAGGGGTTTTCCCCAAAAGGGGTTTTCCCCAAAAGGGG
    Base3  = TCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAGTCAG

so the first letter, ``F``, is the amino acid of ``TTT``, the second of ``TTC`` and the last,
``G``, of ``GGG``. A second 64-letter line marks the codons that may start a protein with
``M``. We copy those two lines from the NCBI's list
(https://www.ncbi.nlm.nih.gov/Taxonomy/Utils/wprintgc.cgi) and build the tables from them,
writing codons in the RNA alphabet (``U`` instead of ``T``), since the model reads RNA.

Translation
-----------
:func:`translate` reads codon by codon. A stop codon gives ``*`` and translation goes on
after it, exactly what Biopython's ``Seq.translate()`` does by default. An alternative start
codon (``GUG`` in table 2, say) is translated as its usual amino acid (``V``), not as ``M``:
we translate codons, we do not model where a ribosome starts.

Why there is no ``B`` or ``Z``
------------------------------
Protein sequences sometimes contain the ambiguity codes ``B`` (N or D: "Asx") and ``Z`` (Q or
E: "Glx"). They come from chemistry, where amides were hard to tell from their acids, not from
the genetic code: no codon means "B". The codons of N (``AAU``, ``AAC``) and those of D
(``GAU``, ``GAC``) are different codons, so a model reading the RNA always knows which of the
two it is, and there is nothing for ``B`` to stand for. A target alphabet with ``B`` would ask
the model to choose between a precise and a vague answer with nothing in the input to decide
it. So the protein alphabet here is the 20 amino acids and ``*`` for stop, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

#: The 20 standard amino acids, one letter each, in alphabetical order of the letters.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
#: What a stop codon translates to.
STOP = "*"
#: Every letter :func:`translate` can produce.
PROTEIN_ALPHABET = AMINO_ACIDS + STOP
#: The RNA alphabet, in alphabetical order.
NUCLEOTIDES = "ACGU"

#: The order of bases in the NCBI's compact tables (not alphabetical!).
_TCAG = "UCAG"
#: All 64 codons in the NCBI order: UUU, UUC, UUA, UUG, UCU, ..., GGG.
CODONS = tuple("".join(bases) for bases in product(_TCAG, repeat=3))


@dataclass(frozen=True)
class GeneticCode:
    """One translation table.

    Attributes:
        table_id: the NCBI number of the table (1 for the standard code).
        name: the NCBI name, e.g. ``"Vertebrate Mitochondrial"``.
        codon_to_aa: all 64 codons (RNA letters) mapped to a letter of
            :data:`PROTEIN_ALPHABET`, ``"*"`` for stop codons.
        start_codons: the codons the NCBI lists as possible starts (in TCAG order).
        aliases: other names :func:`get_genetic_code` accepts for this table.
    """

    table_id: int
    name: str
    codon_to_aa: dict[str, str]
    start_codons: tuple[str, ...]
    aliases: tuple[str, ...] = field(default=())

    @property
    def stop_codons(self) -> tuple[str, ...]:
        """The codons that translate to ``*``, in TCAG order."""
        return tuple(c for c in CODONS if self.codon_to_aa[c] == STOP)

    def codons_for(self, aa: str) -> tuple[str, ...]:
        """The codons that translate to ``aa`` (a letter of :data:`PROTEIN_ALPHABET`)."""
        return tuple(c for c in CODONS if self.codon_to_aa[c] == aa)

    def translate(self, rna: str) -> str:
        """Translate ``rna`` with this table; see :func:`translate`."""
        return translate(rna, self)

    def __str__(self) -> str:
        return f"table {self.table_id} ({self.name})"


def _from_ncbi(table_id: int, name: str, aas: str, starts: str,
               aliases: tuple[str, ...] = ()) -> GeneticCode:
    """Build a :class:`GeneticCode` from the NCBI's two 64-letter lines."""
    if len(aas) != 64 or len(starts) != 64:
        raise ValueError(f"table {table_id}: the NCBI lines must have 64 letters each")
    codon_to_aa = dict(zip(CODONS, aas))
    start_codons = tuple(c for c, s in zip(CODONS, starts) if s == "M")
    return GeneticCode(table_id, name, codon_to_aa, start_codons, aliases)


# The NCBI's compact tables, copied letter for letter (AAs line, then Starts line).
# Where they differ from table 1 is noted on the right.
_TABLES = [
    _from_ncbi(1, "Standard",
               "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
               "---M------**--*----M---------------M----------------------------",
               aliases=("standard",)),
    _from_ncbi(2, "Vertebrate Mitochondrial",  # UGA=W, AUA=M, AGA=AGG=stop
               "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIMMTTTTNNKKSS**VVVVAAAADDEEGGGG",
               "----------**--------------------MMMM----------**---M------------",
               aliases=("vertebrate_mitochondrial", "mitochondrial")),
    _from_ncbi(3, "Yeast Mitochondrial",  # UGA=W, AUA=M, CUN=T
               "FFLLSSSSYY**CCWWTTTTPPPPHHQQRRRRIIMMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
               "----------**----------------------MM---------------M------------",
               aliases=("yeast_mitochondrial",)),
    _from_ncbi(4, "Mold, Protozoan, and Coelenterate Mitochondrial and Mycoplasma/Spiroplasma",
               "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",  # UGA=W
               "--MM------**-------M------------MMMM---------------M------------",
               aliases=("mold_mitochondrial", "mycoplasma")),
    _from_ncbi(5, "Invertebrate Mitochondrial",  # UGA=W, AUA=M, AGA=AGG=S
               "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIMMTTTTNNKKSSSSVVVVAAAADDEEGGGG",
               "---M------**--------------------MMMM---------------M------------",
               aliases=("invertebrate_mitochondrial",)),
    _from_ncbi(11, "Bacterial, Archaeal and Plant Plastid",  # same amino acids, more starts
               "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
               "---M------**--*----M------------MMMM---------------M------------",
               aliases=("bacterial", "plastid")),
]

_BY_ID = {code.table_id: code for code in _TABLES}
_BY_NAME = {alias: code for code in _TABLES for alias in code.aliases}

#: The NCBI numbers of the tables defined here.
AVAILABLE_TABLES = tuple(sorted(_BY_ID))


def _known_tables() -> str:
    return ", ".join(f"{c.table_id} ({c.name}; also '{c.aliases[0]}')" if c.aliases
                     else f"{c.table_id} ({c.name})" for c in _TABLES)


def get_genetic_code(table: int | str | GeneticCode = 1) -> GeneticCode:
    """Look a translation table up by its NCBI number or a name.

    >>> get_genetic_code(2).name
    'Vertebrate Mitochondrial'
    >>> get_genetic_code("standard").table_id
    1

    Accepts an ``int`` (``2``), a string of digits (``"2"``), a name (case, spaces and
    hyphens do not matter: ``"Vertebrate mitochondrial"``), or a :class:`GeneticCode`, which
    is returned as it is. ``"mitochondrial"`` means table 2, the one of the codon task.
    """
    if isinstance(table, GeneticCode):
        return table
    if isinstance(table, str):
        key = table.strip().lower().replace(" ", "_").replace("-", "_")
        if key.isdigit():
            table = int(key)
        elif key in _BY_NAME:
            return _BY_NAME[key]
        else:
            raise ValueError(f"unknown genetic code {table!r}; known tables: {_known_tables()}")
    if isinstance(table, bool) or not hasattr(table, "__index__"):
        raise TypeError(f"a genetic code is given by its NCBI number or name, not {table!r}")
    table_id = table.__index__()  # also accepts numpy integers
    if table_id not in _BY_ID:
        raise ValueError(f"unknown genetic code table {table_id}; known tables: {_known_tables()}")
    return _BY_ID[table_id]


def translate(rna: str, table: int | str | GeneticCode = 1) -> str:
    """Translate an RNA sequence codon by codon.

    >>> translate("AUGGCCAUUGUAAUGGGCCGCUGAAAGGGUGCCCGAUAG")
    'MAIVMGR*KGAR*'
    >>> translate("AUGGCCAUUGUAAUGGGCCGCUGAAAGGGUGCCCGAUAG", table=2)
    'MAIVMGRWKGAR*'

    Stop codons give ``*`` and translation carries on past them, as Biopython's
    ``translate()`` does by default. ``T`` is read as ``U`` and lower case as upper case;
    anything else (spaces included) is an error: clean user input with
    :func:`minitransformer.codon.sequences.normalize_rna` first.

    Raises:
        ValueError: the length is not a multiple of 3, or a codon contains a letter
            other than A, C, G, U (T).
    """
    code = get_genetic_code(table)
    seq = rna.upper().replace("T", "U")
    if len(seq) % 3:
        raise ValueError(f"cannot translate a sequence of length {len(seq)}: "
                         "the length must be a multiple of 3 (whole codons)")
    lookup = code.codon_to_aa
    protein = []
    for i in range(0, len(seq), 3):
        codon = seq[i:i + 3]
        aa = lookup.get(codon)
        if aa is None:
            raise ValueError(f"invalid codon {rna[i:i + 3]!r} at nucleotide {i + 1} "
                             f"(codon {i // 3 + 1}, both counted from 1): codons are made of "
                             "A, C, G, U (or T)")
        protein.append(aa)
    return "".join(protein)


def synonymous_codons(aa: str, table: int | str | GeneticCode = 1) -> list[str]:
    """The codons that code for the amino acid ``aa`` (or ``"*"``: the stop codons).

    >>> synonymous_codons("W", 1), synonymous_codons("W", 2)
    (['UGG'], ['UGA', 'UGG'])

    Codons come in the NCBI's TCAG order.
    """
    code = get_genetic_code(table)
    if not isinstance(aa, str) or len(aa) != 1:
        raise ValueError(f"expected one amino-acid letter, got {aa!r}")
    letter = aa.upper()
    if letter not in PROTEIN_ALPHABET:
        hint = ""
        if letter in "BZJX":
            hint = (f" ('{letter}' is an ambiguity code: it has no codons of its own, see "
                    "the module documentation)")
        raise ValueError(f"unknown amino acid {aa!r}{hint}; "
                         f"expected one of {AMINO_ACIDS} or '{STOP}' for stop")
    return list(code.codons_for(letter))


def differing_codons(table_a: int | str | GeneticCode,
                     table_b: int | str | GeneticCode) -> dict[str, tuple[str, str]]:
    """The codons two tables translate differently: ``{codon: (aa in a, aa in b)}``.

    >>> differing_codons(1, 2)
    {'UGA': ('*', 'W'), 'AUA': ('I', 'M'), 'AGA': ('R', '*'), 'AGG': ('R', '*')}

    Only amino acids are compared, not start codons.
    """
    a, b = get_genetic_code(table_a), get_genetic_code(table_b)
    return {c: (a.codon_to_aa[c], b.codon_to_aa[c])
            for c in CODONS if a.codon_to_aa[c] != b.codon_to_aa[c]}
