"""Tests for minitransformer.codon.genetic_code.

The module builds its tables from the NCBI's 64-letter strings. Here the standard code is
written out again, independently, the way a textbook prints it: amino acid by amino acid,
every codon spelled out. If a letter of the compact strings were wrong, or the TCAG order
misread, these tables would disagree.
"""
import numpy as np
import pytest

from minitransformer.codon.genetic_code import (AMINO_ACIDS, AVAILABLE_TABLES, CODONS, NUCLEOTIDES,
                                                PROTEIN_ALPHABET, STOP, GeneticCode,
                                                differing_codons, get_genetic_code,
                                                synonymous_codons, translate)

STANDARD_FAMILIES = {
    "F": ["UUU", "UUC"],
    "L": ["UUA", "UUG", "CUU", "CUC", "CUA", "CUG"],
    "I": ["AUU", "AUC", "AUA"],
    "M": ["AUG"],
    "V": ["GUU", "GUC", "GUA", "GUG"],
    "S": ["UCU", "UCC", "UCA", "UCG", "AGU", "AGC"],
    "P": ["CCU", "CCC", "CCA", "CCG"],
    "T": ["ACU", "ACC", "ACA", "ACG"],
    "A": ["GCU", "GCC", "GCA", "GCG"],
    "Y": ["UAU", "UAC"],
    "H": ["CAU", "CAC"],
    "Q": ["CAA", "CAG"],
    "N": ["AAU", "AAC"],
    "K": ["AAA", "AAG"],
    "D": ["GAU", "GAC"],
    "E": ["GAA", "GAG"],
    "C": ["UGU", "UGC"],
    "W": ["UGG"],
    "R": ["CGU", "CGC", "CGA", "CGG", "AGA", "AGG"],
    "G": ["GGU", "GGC", "GGA", "GGG"],
    "*": ["UAA", "UAG", "UGA"],
}

# The vertebrate mitochondrial code, written out in full as well (not derived from the above).
VERTEBRATE_MITO_FAMILIES = {
    "F": ["UUU", "UUC"],
    "L": ["UUA", "UUG", "CUU", "CUC", "CUA", "CUG"],
    "I": ["AUU", "AUC"],
    "M": ["AUA", "AUG"],
    "V": ["GUU", "GUC", "GUA", "GUG"],
    "S": ["UCU", "UCC", "UCA", "UCG", "AGU", "AGC"],
    "P": ["CCU", "CCC", "CCA", "CCG"],
    "T": ["ACU", "ACC", "ACA", "ACG"],
    "A": ["GCU", "GCC", "GCA", "GCG"],
    "Y": ["UAU", "UAC"],
    "H": ["CAU", "CAC"],
    "Q": ["CAA", "CAG"],
    "N": ["AAU", "AAC"],
    "K": ["AAA", "AAG"],
    "D": ["GAU", "GAC"],
    "E": ["GAA", "GAG"],
    "C": ["UGU", "UGC"],
    "W": ["UGA", "UGG"],
    "R": ["CGU", "CGC", "CGA", "CGG"],
    "G": ["GGU", "GGC", "GGA", "GGG"],
    "*": ["UAA", "UAG", "AGA", "AGG"],
}


def _by_codon(families):
    table = {codon: aa for aa, codons in families.items() for codon in codons}
    assert len(table) == 64, "the reference table itself must list 64 distinct codons"
    return table


STANDARD = _by_codon(STANDARD_FAMILIES)
VERTEBRATE_MITO = _by_codon(VERTEBRATE_MITO_FAMILIES)


def test_alphabets():
    assert AMINO_ACIDS == "ACDEFGHIKLMNPQRSTVWY"
    assert STOP == "*"
    assert PROTEIN_ALPHABET == AMINO_ACIDS + "*"
    assert NUCLEOTIDES == "ACGU"
    assert len(CODONS) == len(set(CODONS)) == 64
    assert CODONS[:5] == ("UUU", "UUC", "UUA", "UUG", "UCU") and CODONS[-1] == "GGG"
    assert not set("BZ") & set(PROTEIN_ALPHABET)


@pytest.mark.parametrize("codon", sorted(STANDARD))
def test_standard_code_every_codon(codon):
    assert get_genetic_code(1).codon_to_aa[codon] == STANDARD[codon]
    assert translate(codon, 1) == STANDARD[codon]


@pytest.mark.parametrize("codon", sorted(VERTEBRATE_MITO))
def test_vertebrate_mitochondrial_code_every_codon(codon):
    assert get_genetic_code(2).codon_to_aa[codon] == VERTEBRATE_MITO[codon]
    assert translate(codon, 2) == VERTEBRATE_MITO[codon]


def test_tables_have_64_codons_over_the_protein_alphabet():
    for table in AVAILABLE_TABLES:
        code = get_genetic_code(table)
        assert isinstance(code, GeneticCode) and code.table_id == table
        assert set(code.codon_to_aa) == set(CODONS)
        assert set(code.codon_to_aa.values()) <= set(PROTEIN_ALPHABET)
        # Every amino acid has at least one codon in every table.
        assert set(AMINO_ACIDS) <= set(code.codon_to_aa.values())
        assert set(code.start_codons) <= set(CODONS) and "AUG" in code.start_codons


def test_mitochondrial_differences():
    mito = get_genetic_code(2)
    assert mito.codon_to_aa["UGA"] == "W"
    assert mito.codon_to_aa["AUA"] == "M"
    assert mito.codon_to_aa["AGA"] == mito.codon_to_aa["AGG"] == "*"
    assert differing_codons(1, 2) == {"UGA": ("*", "W"), "AUA": ("I", "M"),
                                      "AGA": ("R", "*"), "AGG": ("R", "*")}
    assert differing_codons(2, 1) == {c: (b, a) for c, (a, b) in differing_codons(1, 2).items()}
    assert differing_codons(1, 1) == {}


def test_stop_and_start_codons():
    assert get_genetic_code(1).stop_codons == ("UAA", "UAG", "UGA")
    assert get_genetic_code(2).stop_codons == ("UAA", "UAG", "AGA", "AGG")
    assert get_genetic_code(1).start_codons == ("UUG", "CUG", "AUG")
    assert get_genetic_code(2).start_codons == ("AUU", "AUC", "AUA", "AUG", "GUG")


def test_other_tables_known_differences():
    assert differing_codons(1, 11) == {}                       # bacteria: same amino acids
    assert differing_codons(1, 4) == {"UGA": ("*", "W")}
    assert differing_codons(1, 5) == {"UGA": ("*", "W"), "AUA": ("I", "M"),
                                      "AGA": ("R", "S"), "AGG": ("R", "S")}
    yeast = differing_codons(1, 3)
    assert {c: yeast[c] for c in ("CUU", "CUC", "CUA", "CUG")} == {c: ("L", "T") for c in
                                                                    ("CUU", "CUC", "CUA", "CUG")}
    assert yeast["UGA"] == ("*", "W") and yeast["AUA"] == ("I", "M")


def test_get_genetic_code_accepts_numbers_and_names():
    assert get_genetic_code(2) is get_genetic_code("2") is get_genetic_code(np.int64(2))
    assert get_genetic_code("Vertebrate Mitochondrial").table_id == 2
    assert get_genetic_code("vertebrate-mitochondrial").table_id == 2
    assert get_genetic_code("mitochondrial").table_id == 2
    assert get_genetic_code("standard").table_id == 1
    assert get_genetic_code().table_id == 1
    code = get_genetic_code(11)
    assert get_genetic_code(code) is code
    assert str(get_genetic_code(1)) == "table 1 (Standard)"


def test_unknown_tables_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown genetic code table 7; known tables: 1 \(Standard"):
        get_genetic_code(7)
    with pytest.raises(ValueError, match=r"unknown genetic code 'klingon'.*2 \(Vertebrate Mitochondrial"):
        get_genetic_code("klingon")
    with pytest.raises(TypeError):
        get_genetic_code(2.0)
    with pytest.raises(TypeError):
        get_genetic_code(True)


# Known translations. The first is the example of the Biopython tutorial ("Translation"),
# whose answers are given there for the standard and the vertebrate mitochondrial table.
TUTORIAL_RNA = "AUGGCCAUUGUAAUGGGCCGCUGAAAGGGUGCCCGAUAG"


def test_translate_known_sequences():
    assert translate(TUTORIAL_RNA) == "MAIVMGR*KGAR*"
    assert translate(TUTORIAL_RNA, table=2) == "MAIVMGRWKGAR*"
    assert translate(TUTORIAL_RNA.replace("U", "T")) == "MAIVMGR*KGAR*"   # DNA letters
    assert translate(TUTORIAL_RNA.lower()) == "MAIVMGR*KGAR*"
    # Human insulin signal peptide, first 8 codons: M A L W M R L L
    assert translate("AUGGCCCUGUGGAUGCGCCUCCUG") == "MALWMRLL"
    # The mitochondrial differences, one codon each.
    assert translate("UGAAUAAGAAGG", 1) == "*IRR"
    assert translate("UGAAUAAGAAGG", 2) == "WM**"
    assert translate("") == ""


def test_translate_does_not_stop_at_stop_codons():
    assert translate("AUGUAAUUUUAGGGG") == "M*F*G"


def test_translate_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="length 4: the length must be a multiple of 3"):
        translate("AUGA")
    with pytest.raises(ValueError, match=r"invalid codon 'ANG' at nucleotide 4 \(codon 2"):
        translate("AUGANG")
    with pytest.raises(ValueError, match="unknown genetic code table 99"):
        translate("AUG", 99)


def test_synonymous_codons():
    assert synonymous_codons("W", 1) == ["UGG"]
    assert synonymous_codons("W", 2) == ["UGA", "UGG"]
    assert synonymous_codons("*", 2) == ["UAA", "UAG", "AGA", "AGG"]
    assert synonymous_codons("l") == ["UUA", "UUG", "CUU", "CUC", "CUA", "CUG"]
    for table in (1, 2):
        reference = STANDARD_FAMILIES if table == 1 else VERTEBRATE_MITO_FAMILIES
        for aa in PROTEIN_ALPHABET:
            assert sorted(synonymous_codons(aa, table)) == sorted(reference[aa])


def test_synonymous_codons_errors():
    with pytest.raises(ValueError, match="'B' is an ambiguity code"):
        synonymous_codons("B")
    with pytest.raises(ValueError, match="unknown amino acid 'O'"):
        synonymous_codons("O")
    with pytest.raises(ValueError, match="one amino-acid letter"):
        synonymous_codons("MA")


def test_genetic_code_methods():
    code = get_genetic_code(2)
    assert code.translate("UGA") == "W"
    assert code.codons_for("M") == ("AUA", "AUG")
