"""Tests for minitransformer.codon.sequences and minitransformer.codon.data."""
import time

import numpy as np
import pandas as pd
import pytest

from minitransformer.codon import (AMINO_ACIDS, PROTEIN_ALPHABET, SequenceError, check_pairs,
                                   generate_pairs, load_example_genes, normalize_protein,
                                   normalize_rna, protein_vocabulary, read_fasta,
                                   read_pairs_csv, rna_vocabulary, translate, write_pairs_csv)

# ---------------------------------------------------------------------- normalize_rna


def test_normalize_rna_accepts_dna_lower_case_and_whitespace():
    assert normalize_rna("AUGGCC") == "AUGGCC"
    assert normalize_rna("atggcc") == "AUGGCC"
    assert normalize_rna(" ATG gcc\nuaa\r\n\tTAG ") == "AUGGCCUAAUAG"
    assert normalize_rna("AU", require_codons=False) == "AU"


def test_normalize_rna_names_bad_characters_and_positions():
    with pytest.raises(SequenceError) as err:
        normalize_rna("AUGXCCAU-")
    message = str(err.value)
    assert "'X' at position 4" in message
    assert "'-' at position 9" in message
    assert "count characters of the input from 1" in message
    assert "only A, C, G, U (or T)" in message


def test_normalize_rna_positions_refer_to_the_input_as_given():
    # Whitespace is removed, but positions still count it, so the user can find the character.
    with pytest.raises(SequenceError, match="'N' at position 6"):
        normalize_rna("AUG\nANG")


def test_normalize_rna_long_lists_are_cut():
    with pytest.raises(SequenceError, match="and 5 more"):
        normalize_rna("N" * 15)


def test_normalize_rna_empty_and_length_errors():
    for empty in ["", "   ", "\n\n"]:
        with pytest.raises(SequenceError, match="empty sequence"):
            normalize_rna(empty)
    with pytest.raises(SequenceError, match="has 10 nucleotides, which is not a multiple of 3"):
        normalize_rna("AUGGCCAUGG")
    with pytest.raises(TypeError):
        normalize_rna(None)


def test_sequence_error_is_a_value_error():
    assert issubclass(SequenceError, ValueError)


# ---------------------------------------------------------------------- normalize_protein


def test_normalize_protein():
    assert normalize_protein("mal w*") == "MALW*"
    assert normalize_protein(AMINO_ACIDS + "*") == PROTEIN_ALPHABET


def test_normalize_protein_explains_ambiguity_codes():
    with pytest.raises(SequenceError) as err:
        normalize_protein("MABZ")
    message = str(err.value)
    assert "'B' at position 3, 'Z' at position 4" in message
    assert "B is the ambiguity code for N or D" in message
    assert "Z is the ambiguity code for Q or E" in message
    assert "ambiguity codes are not supported" in message
    with pytest.raises(SequenceError, match="X is the unknown amino acid"):
        normalize_protein("MX")
    with pytest.raises(SequenceError, match="'1' at position 2"):
        normalize_protein("M1")
    with pytest.raises(SequenceError, match="empty sequence"):
        normalize_protein(" ")


# ---------------------------------------------------------------------- read_fasta


def test_read_fasta_text_and_file(tmp_path):
    text = ">gene1 some description\nAUGGCC\nuaa\n\n; a comment\n>gene2\nATG GCC\n"
    expected = [("gene1 some description", "AUGGCCuaa"), ("gene2", "ATGGCC")]
    assert read_fasta(text) == expected
    path = tmp_path / "genes.fasta"
    path.write_text(text)
    assert read_fasta(path) == expected
    assert read_fasta(str(path)) == expected


def test_read_fasta_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such FASTA file"):
        read_fasta(str(tmp_path / "missing.fasta"))
    with pytest.raises(SequenceError, match="line 1: sequence before the first '>' header"):
        read_fasta("AUG\n>x\nAUG")
    with pytest.raises(SequenceError, match="line 3: FASTA header '>' without a name"):
        read_fasta(">a\nAUG\n>\nAUG")
    with pytest.raises(SequenceError, match=r"record 'a' \(line 1\) has no sequence"):
        read_fasta(">a\n>b\nAUG")
    with pytest.raises(SequenceError, match="no FASTA records"):
        read_fasta("\n\n")
    empty = tmp_path / "empty.fasta"
    empty.write_text("")
    with pytest.raises(SequenceError, match="no FASTA records found in"):
        read_fasta(empty)


# ---------------------------------------------------------------------- generate_pairs


def test_generate_pairs_shape_and_lengths():
    df = generate_pairs(500, 3, 12, seed=0)
    assert list(df.columns) == ["rna", "protein"]
    assert len(df) == 500
    lengths = df["protein"].str.len()
    assert lengths.min() >= 3 and lengths.max() <= 12
    assert set(lengths) == set(range(3, 13))          # both ends are reachable
    assert (df["rna"].str.len() == 3 * lengths).all()


@pytest.mark.parametrize("table", [1, 2, 11])
def test_every_generated_pair_translates_correctly(table):
    df = generate_pairs(2000, 1, 40, table=table, stop_rate=0.1, seed=1)
    assert all(translate(rna, table) == protein for rna, protein in zip(df["rna"], df["protein"]))
    assert check_pairs(df, table).empty
    assert set("".join(df["rna"])) == set("ACGU")
    assert set("".join(df["protein"])) == set(PROTEIN_ALPHABET)


def test_generated_codons_cover_synonymous_families():
    # UGA is a stop in table 1 and tryptophan in table 2: it must show up as each.
    for table, aa in [(1, "*"), (2, "W")]:
        df = generate_pairs(300, 30, 30, table=table, stop_rate=0.2, seed=2)
        used = {rna[i:i + 3] for rna, p in zip(df["rna"], df["protein"])
                for i in range(0, len(rna), 3) if p[i // 3] == aa}
        assert "UGA" in used
    df = generate_pairs(200, 50, 50, seed=3)
    leucine = {rna[i:i + 3] for rna, p in zip(df["rna"], df["protein"])
               for i in range(0, len(rna), 3) if p[i // 3] == "L"}
    assert leucine == {"UUA", "UUG", "CUU", "CUC", "CUA", "CUG"}


def test_generate_pairs_stop_rate():
    none = generate_pairs(200, 20, 20, stop_rate=0.0, seed=0)
    assert not any("*" in p for p in none["protein"])
    only = generate_pairs(20, 5, 5, stop_rate=1.0, seed=0)
    assert set("".join(only["protein"])) == {"*"}
    some = "".join(generate_pairs(1000, 50, 50, stop_rate=0.05, seed=0)["protein"])
    assert 0.04 < some.count("*") / len(some) < 0.06


def test_generate_pairs_is_seeded():
    a = generate_pairs(100, 5, 30, table=2, seed=42)
    b = generate_pairs(100, 5, 30, table=2, seed=42)
    pd.testing.assert_frame_equal(a, b)
    c = generate_pairs(100, 5, 30, table=2, seed=43)
    assert not a.equals(c)
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    pd.testing.assert_frame_equal(generate_pairs(10, 1, 5, seed=g1), generate_pairs(10, 1, 5, seed=g2))
    # A generator is advanced: two calls with it give different tables.
    assert not generate_pairs(10, 1, 5, seed=g1).equals(generate_pairs(10, 1, 5, seed=g1))


def test_generate_pairs_is_fast():
    start = time.perf_counter()
    df = generate_pairs(100_000, 10, 50, seed=0)
    elapsed = time.perf_counter() - start
    assert len(df) == 100_000
    assert elapsed < 3.0, f"100k pairs took {elapsed:.2f} s"


def test_generate_pairs_edge_cases_and_errors():
    empty = generate_pairs(0, 1, 5, seed=0)
    assert list(empty.columns) == ["rna", "protein"] and len(empty) == 0
    with pytest.raises(ValueError, match="min_len <= max_len"):
        generate_pairs(5, 10, 3)
    with pytest.raises(ValueError, match="min_len <= max_len"):
        generate_pairs(5, 0, 3)
    with pytest.raises(ValueError, match="stop_rate"):
        generate_pairs(5, 1, 3, stop_rate=1.5)
    with pytest.raises(ValueError, match="non-negative integer"):
        generate_pairs(-1, 1, 3)
    with pytest.raises(ValueError, match="unknown genetic code table 42"):
        generate_pairs(5, 1, 3, table=42)


# ---------------------------------------------------------------------- CSV files


def test_csv_round_trip(tmp_path):
    df = generate_pairs(50, 1, 20, table=2, seed=5)
    df["split"] = "train"
    path = tmp_path / "pairs.csv"
    write_pairs_csv(df, path)
    again = read_pairs_csv(path, table=2)
    pd.testing.assert_frame_equal(again, df)
    assert path.read_text().splitlines()[0] == "rna,protein,split"


def test_write_puts_pair_columns_first(tmp_path):
    df = pd.DataFrame({"name": ["x"], "protein": ["M"], "rna": ["AUG"]})
    write_pairs_csv(df, tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text().splitlines() == ["rna,protein,name", "AUG,M,x"]
    with pytest.raises(ValueError, match="no column 'protein'"):
        write_pairs_csv(pd.DataFrame({"rna": ["AUG"]}), tmp_path / "q.csv")


def test_read_pairs_csv_normalises(tmp_path):
    path = tmp_path / "dna.csv"
    path.write_text("rna,protein,comment\natggcctaa,ma*,from DNA\n")
    df = read_pairs_csv(path)
    assert df.to_dict("records") == [{"rna": "AUGGCCUAA", "protein": "MA*", "comment": "from DNA"}]


def test_read_pairs_csv_missing_file_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such pairs file: '.*nope.csv'"):
        read_pairs_csv(tmp_path / "nope.csv")
    path = tmp_path / "bad.csv"
    path.write_text("sequence,protein\nAUG,M\n")
    with pytest.raises(ValueError, match=r"no column 'rna'.*found: 'sequence', 'protein'"):
        read_pairs_csv(path)


def test_read_pairs_csv_reports_bad_rows_by_number(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("rna,protein\nAUG,M\nAUGX,M\nAUGG,M\nAUG,B\nAUG,M\n")
    with pytest.raises(ValueError) as err:
        read_pairs_csv(path)
    message = str(err.value)
    assert "row 2 (line 3): invalid characters in RNA sequence: 'X' at position 4" in message
    assert "row 3 (line 4): RNA sequence has 4 nucleotides" in message
    assert "row 4 (line 5): invalid characters in protein sequence: 'B'" in message
    assert "row 1 " not in message and "row 5 " not in message


def test_read_pairs_csv_with_table_checks_translations(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("rna,protein\nAUGUGA,M*\nAUGUGA,MW\n")
    assert len(read_pairs_csv(path)) == 2               # no table: no check
    with pytest.raises(ValueError, match=r"row 2 \(line 3\): protein 'MW', but the RNA translates to 'M\*'"):
        read_pairs_csv(path, table=1)
    with pytest.raises(ValueError, match=r"row 1 \(line 2\): protein 'M\*', but the RNA translates to 'MW'"):
        read_pairs_csv(path, table=2)


def test_check_pairs():
    df = pd.DataFrame({"rna": ["AUGUGA", "AUGUGA", "AUGG"], "protein": ["M*", "MW", "M"]},
                      index=[10, 11, 12])
    wrong = check_pairs(df, 1)
    assert list(wrong.columns) == ["expected", "given"]
    assert list(wrong.index) == [11, 12]
    assert wrong.loc[11, "expected"] == "M*" and wrong.loc[11, "given"] == "MW"
    assert "not a multiple of 3" in wrong.loc[12, "expected"]
    assert list(check_pairs(df, 2).index) == [10, 12]
    # Without a table argument, a 'table' column decides row by row.
    df["table"] = [1, 2, 1]
    assert list(check_pairs(df).index) == [12]


# ---------------------------------------------------------------------- vocabularies


def test_vocabularies_of_the_task():
    rna, protein = rna_vocabulary(), protein_vocabulary()
    assert rna.symbols == tuple("ACGU")
    assert protein.symbols == tuple(PROTEIN_ALPHABET)
    assert len(rna) == 8 and len(protein) == 25
    pair = generate_pairs(1, 10, 10, seed=0).iloc[0]
    assert protein.decode(protein.encode(pair.protein, add_bos=True, add_eos=True)) == pair.protein
    assert rna.decode(rna.encode(pair.rna)) == pair.rna


# ---------------------------------------------------------------------- shipped genes


@pytest.mark.parametrize("kind, table", [("standard", 1), ("mitochondrial", 2)])
def test_example_genes_are_valid(kind, table):
    genes = load_example_genes(kind)
    assert len(genes) >= 3
    for column in ["name", "accession", "table", "rna", "protein", "source"]:
        assert column in genes.columns
        assert (genes[column].astype(str).str.len() > 0).all(), column
    assert (genes["table"] == table).all()
    assert genes["name"].is_unique
    for gene in genes.itertuples():
        assert normalize_rna(gene.rna) == gene.rna           # clean upper-case RNA
        assert len(gene.rna) % 3 == 0 and len(gene.rna) >= 150
        assert gene.rna.startswith("AU")                     # AUG, or AUA in mitochondria
        assert translate(gene.rna, gene.table) == gene.protein
        assert gene.protein[0] == "M"
        assert "*" not in gene.protein[:-1]                  # no stop inside a real gene
    assert check_pairs(genes).empty


def test_example_genes_show_the_mitochondrial_code():
    mito = load_example_genes("mitochondrial")
    codons = [rna[i:i + 3] for rna in mito["rna"] for i in range(0, len(rna), 3)]
    assert "UGA" in codons and "AUA" in codons
    # Read with the standard code, these genes would be full of stops.
    assert any("*" in translate(rna, 1)[:-1] for rna in mito["rna"])
    # Complete genes end with a stop codon of their table.
    standard = load_example_genes("standard")
    assert standard["protein"].str.endswith("*").all()


@pytest.mark.parametrize("kind", ["collection", "holdout"])
def test_collected_genes_are_complete_cds_from_named_records(kind):
    genes = load_example_genes(kind)
    assert len(genes) >= 30
    for column in ["name", "accession", "table", "rna", "protein", "source", "organism", "note"]:
        assert (genes[column].astype(str).str.len() > 0).all(), column
    assert genes["name"].is_unique and genes["rna"].is_unique
    assert (genes["table"] == 1).all()
    assert genes["source"].str.startswith("biopython/biopython Tests/").all()
    assert genes["note"].str.contains("matches the record's /translation").all()
    for gene in genes.itertuples():
        assert normalize_rna(gene.rna) == gene.rna and gene.rna.startswith("AUG")
        assert 30 <= len(gene.protein) <= 2500 and len(gene.rna) == 3 * len(gene.protein)
        assert translate(gene.rna, 1) == gene.protein
        assert gene.protein.endswith("*") and "*" not in gene.protein[:-1]   # complete, no inner stop
    assert check_pairs(genes).empty


def test_collected_genes_add_at_least_fifty_and_the_holdout_stays_apart():
    collection, holdout = load_example_genes("collection"), load_example_genes("holdout")
    earlier = load_example_genes("standard")
    assert len(collection) + len(holdout) >= 50
    assert not set(holdout["rna"]) & set(collection["rna"])
    assert not (set(holdout["rna"]) | set(collection["rna"])) & set(earlier["rna"])
    assert (collection["protein"].str.len() > 1000).any()     # long genes too: they need pieces
    import os
    from minitransformer.codon import data
    folder = os.path.join(os.path.dirname(data.__file__), "data")
    assert sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) < 2_000_000


def test_load_example_genes_all_and_errors():
    everything = load_example_genes("all")
    assert len(everything) == sum(len(load_example_genes(k)) for k in ("standard", "mitochondrial", "collection"))
    assert not set(everything["rna"]) & set(load_example_genes("holdout")["rna"])
    with pytest.raises(ValueError, match="unknown kind of example genes 'plastid'"):
        load_example_genes("plastid")
