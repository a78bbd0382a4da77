"""Bad or unusual input files: one line naming the file and what is wrong, or accepted as meant."""
import pytest

from minitransformer.codon.data import read_pairs_csv
from minitransformer.codon.sequences import SequenceError, read_fasta


def test_fasta_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "genes.fasta"
    path.write_bytes(b"\xef\xbb\xbf>gene1\nAUGGCC\n")
    assert read_fasta(path) == [("gene1", "AUGGCC")]
    assert read_fasta("\ufeff>gene1\nAUG") == [("gene1", "AUG")]


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"\xef\xbb\xbfrna,protein\nAUGGCC,MA\n")
    assert read_pairs_csv(path)["protein"].tolist() == ["MA"]


@pytest.mark.parametrize("name, content, read, error, detail", [
    ("genes.fasta", b">gene1\nAUG\xff\xfe\n", read_fasta, SequenceError, ": byte 0xff at offset 10"),
    ("pairs.csv", b"rna,protein\nAUG\xe9,M\n", read_pairs_csv, ValueError, ": byte 0xe9 at offset 15"),
])
def test_a_file_that_is_not_utf8_is_named(tmp_path, name, content, read, error, detail):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=rf"'{path}' is not UTF-8 text{detail}"):
        read(path)


def test_an_empty_csv_names_the_file(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("")
    with pytest.raises(ValueError, match=rf"'{path}' is empty: a pairs file starts with the header"):
        read_pairs_csv(path)


@pytest.mark.parametrize("row, fields", [("AUGGCC", 1), ("AUGGCC,MA,extra,more", 4)])
def test_a_ragged_row_names_its_line_not_a_column(tmp_path, row, fields):
    path = tmp_path / "pairs.csv"
    path.write_text(f"rna,protein\nAUG,M\n{row}\n")
    with pytest.raises(ValueError, match=rf"line 3: {fields} field\(s\) where the header has 2 \(rna, protein\)"):
        read_pairs_csv(path)
