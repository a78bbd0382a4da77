"""Tests for minitransformer.vocab.Vocabulary."""
import json

import numpy as np
import pytest

from minitransformer.vocab import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, Vocabulary


@pytest.fixture
def rna():
    return Vocabulary("ACGU")


def test_special_tokens_come_first_with_fixed_ids(rna):
    assert (rna.pad_id, rna.bos_id, rna.eos_id, rna.unk_id) == (0, 1, 2, 3)
    assert rna.tokens[:4] == (PAD, BOS, EOS, UNK) == SPECIAL_TOKENS
    assert (Vocabulary.PAD, Vocabulary.BOS, Vocabulary.EOS, Vocabulary.UNK) == SPECIAL_TOKENS
    assert rna.symbols == ("A", "C", "G", "U")
    assert rna.tokens == SPECIAL_TOKENS + ("A", "C", "G", "U")
    assert len(rna) == 8


def test_lookup_both_ways(rna):
    assert rna.token_to_id("A") == 4
    assert rna.token_to_id(EOS) == 2
    assert rna.id_to_token(7) == "U"
    assert "G" in rna and "T" not in rna
    with pytest.raises(KeyError, match="'T' is not in this vocabulary"):
        rna.token_to_id("T")
    with pytest.raises(IndexError, match="token id 8 is out of range"):
        rna.id_to_token(8)


def test_multi_character_symbols():
    codons = Vocabulary(["AUG", "UUU", "UAA"])
    assert codons.encode(["AUG", "UAA"], add_eos=True) == [4, 6, 2]
    assert codons.decode([4, 5, 6], sep=" ") == "AUG UUU UAA"


@pytest.mark.parametrize("symbols, message", [
    (["A", "A"], "'A' appears more than once"),
    (["A", ""], "symbol 1 is ''"),
    (["A", 3], "symbol 1 is 3"),
    (["A", "<pad>"], "'<pad>' is a special token"),
])
def test_bad_symbols_are_rejected(symbols, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(symbols)


def test_encode(rna):
    assert rna.encode("GAUC") == [6, 4, 7, 5]
    assert rna.encode(["G", "A"]) == [6, 4]
    assert rna.encode("GA", add_bos=True) == [1, 6, 4]
    assert rna.encode("GA", add_eos=True) == [6, 4, 2]
    assert rna.encode("", add_bos=True, add_eos=True) == [1, 2]


def test_encode_unknown_symbol_names_symbol_and_position(rna):
    with pytest.raises(ValueError, match=r"unknown symbol 'T' at position 2 \(counted from 0\)"):
        rna.encode("GAT")
    with pytest.raises(ValueError, match="strict=False"):
        rna.encode("N")
    assert rna.encode("GAT", strict=False) == [6, 4, rna.unk_id]


def test_special_token_text_in_input_is_not_a_symbol(rna):
    with pytest.raises(ValueError, match="unknown symbol '<eos>'"):
        rna.encode(["A", "<eos>"])
    assert rna.encode(["A", "<eos>"], strict=False) == [4, 3]


def test_decode_reads_model_output(rna):
    assert rna.decode([1, 6, 4, 2, 7, 7]) == "GA"          # stops at the first EOS
    assert rna.decode([6, 0, 4, 0, 0]) == "GA"             # skips padding
    assert rna.decode([1, 6, 3, 4]) == "G<unk>A"           # keeps unknown
    assert rna.decode([]) == ""
    assert rna.decode([1, 6, 2, 0], strip_special=False) == "<bos>G<eos><pad>"


def test_decode_accepts_numpy_arrays(rna):
    ids = np.array([1, 6, 4, 7, 5, 2, 0], dtype=np.int64)
    assert rna.decode(ids) == "GAUC"
    assert rna.decode(ids.astype(np.int32)) == "GAUC"
    assert rna.decode_batch(np.array([[6, 4, 2], [7, 0, 0]])) == ["GA", "U"]


def test_decode_errors(rna):
    with pytest.raises(ValueError, match=r"token id 9 at position 1 .* is out of range"):
        rna.decode([4, 9])
    with pytest.raises(ValueError, match=r"token id -1 at position 0"):
        rna.decode([-1])
    with pytest.raises(ValueError, match="decode_batch"):
        rna.decode(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="must be integers"):
        rna.decode(np.array([4.0, 5.0]))


def test_round_trip(rna):
    for seq in ["A", "ACGU", "UUUUGGGA"]:
        assert rna.decode(rna.encode(seq, add_bos=True, add_eos=True)) == seq


def test_pad_batch(rna):
    batch = rna.pad_batch([[1, 4, 2], [1, 2], [5]])
    assert batch.dtype == np.int64
    np.testing.assert_array_equal(batch, [[1, 4, 2], [1, 2, 0], [5, 0, 0]])
    wide = rna.pad_batch([[1, 4, 2], [5]], length=5)
    np.testing.assert_array_equal(wide, [[1, 4, 2, 0, 0], [5, 0, 0, 0, 0]])
    assert rna.pad_batch([]).shape == (0, 0)
    assert rna.pad_batch([[]]).shape == (1, 0)
    assert rna.pad_batch([np.array([4, 5])]).tolist() == [[4, 5]]


def test_pad_batch_refuses_to_cut(rna):
    with pytest.raises(ValueError, match=r"sequence 1 \(counted from 0\) has 4 tokens, more than length=3"):
        rna.pad_batch([[4], [4, 5, 6, 7]], length=3)
    with pytest.raises(ValueError, match="length must be >= 0"):
        rna.pad_batch([[4]], length=-1)


def test_encode_batch_and_padding_mask(rna):
    batch = rna.encode_batch(["GA", "U"], add_bos=True, add_eos=True)
    np.testing.assert_array_equal(batch, [[1, 6, 4, 2], [1, 7, 2, 0]])
    np.testing.assert_array_equal(rna.is_padding(batch),
                                  [[False, False, False, False], [False, False, False, True]])
    assert rna.decode_batch(batch) == ["GA", "U"]


def test_to_dict_is_json_and_round_trips(rna):
    saved = json.loads(json.dumps(rna.to_dict()))
    again = Vocabulary.from_dict(saved)
    assert again == rna
    assert hash(again) == hash(rna)
    assert again.tokens == rna.tokens


def test_from_dict_errors():
    with pytest.raises(ValueError, match="'symbols' list"):
        Vocabulary.from_dict({"tokens": ["A"]})
    with pytest.raises(ValueError, match="special tokens"):
        Vocabulary.from_dict({"special_tokens": ["<pad>", "<s>", "</s>", "<unk>"],
                              "symbols": ["A"]})


def test_equality(rna):
    assert rna == Vocabulary(["A", "C", "G", "U"])
    assert rna != Vocabulary("ACGT")
    assert rna != Vocabulary("UGCA")              # same symbols, other ids
    assert rna != "ACGU"
    assert repr(rna) == "Vocabulary(['A', 'C', 'G', 'U'])"
