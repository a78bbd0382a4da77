"""Protein words: multi-residue tokens learned from the pre-training sequences, as PRoBERTa
reads proteins (its byte-pair encoding), and the models, checkpoints and commands that use them."""
import numpy as np
import pytest

from minitransformer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minitransformer.cli import main
from minitransformer.encoder_only import EncoderOnly
from minitransformer.protein import data as D
from minitransformer.protein.checkpoints import checkpoint_vocabulary, load_protein_model, save_protein_model
from minitransformer.protein.demo import load_demo_data
from minitransformer.protein.train import DemoSettings, class_logits


def test_a_sequence_is_cut_into_the_longest_word_that_starts_where_the_last_ended():
    vocab = D.protein_vocabulary(["MK", "MKV", "VL"])
    assert vocab.split("MKVLA") == ["MKV", "L", "A"]        # MKV, not MK: the longest first
    assert vocab.split("MKLVL") == ["MK", "L", "VL"]
    assert vocab.split("W") == ["W"] and vocab.split("") == []
    assert len(vocab) == 4 + 1 + 20 + 3 and vocab.token_to_id("MKV") == 26
    sequence = D.load_families().sequence[0]
    words = D.protein_vocabulary(D.learn_words([sequence], 40))
    assert "".join(words.split(sequence)) == sequence and len(words.split(sequence)) < len(sequence)
    # without words, a sequence is its own list of one-residue tokens: the ids are those of before
    plain = D.protein_vocabulary()
    assert plain.split("MKV") == "MKV" and plain.encode("MKV") == [plain.token_to_id(a) for a in "MKV"]


def test_words_are_chosen_by_the_tokens_they_save_and_ties_go_alphabetically():
    # ACACAC: AC 3 times (saves 3), CA twice (2), ACA and CAC twice each (2 x 2 = 4)
    assert D.learn_words(["ACACAC"], 3, longest=3) == ["ACA", "CAC", "AC"]
    assert D.learn_words(["ACACAC"], 10, longest=2) == ["AC", "CA"]
    assert D.learn_words(["ACACAC"], 0) == []
    with pytest.raises(ValueError, match="longest >= 2"):
        D.learn_words(["ACACAC"], 3, longest=1)


@pytest.mark.parametrize("word", ["A", "AX", "", 7])
def test_a_word_that_is_not_two_or_more_standard_residues_is_refused(word):
    with pytest.raises(ValueError, match="a word is a string of at least 2"):
        D.protein_vocabulary(["AC", word])


def test_windows_are_counted_in_tokens():
    vocab = D.protein_vocabulary(["MKV", "LA"])
    ids = D.encode(vocab, ["MKVLAMKVLAMKV", "MKV"], 4)
    assert ids.shape == (2, 4)
    assert vocab.decode(ids[0], sep="|") == "MKV|LA|MKV|LA"     # the centred window of 5 tokens, 4 of them
    assert vocab.decode(ids[1], sep="|") == "MKV"


def test_the_demo_learns_its_words_from_the_pre_training_sequences_only():
    settings = DemoSettings(words=50, mlm_eval_sequences=20)
    data = load_demo_data(settings)
    assert data.vocab.words == tuple(D.learn_words(data.unlabelled, 50))
    assert not set(data.test.sequence) & set(data.unlabelled) and not set(data.held_out) & set(data.unlabelled)
    assert load_demo_data(DemoSettings(words=0)).vocab == D.protein_vocabulary()   # words=0: residues
    given = D.protein_vocabulary(["MK"])
    assert load_demo_data(settings, vocab=given).vocab is given


def test_a_checkpoint_keeps_its_words_and_predicts_the_same_after_loading(tmp_path):
    vocab = D.protein_vocabulary(["MK", "VLA", "GG"])
    settings = DemoSettings(d_model=16, n_heads=2, d_ff=32, n_layers=1, window=16, eval_windows=2)
    model = EncoderOnly(settings.model_config(3, seed=2, vocab=vocab))
    save_protein_model(tmp_path / "m.npz", model, "protein-families", ["a", "b", "c"], words=vocab.words)
    loaded, checkpoint = load_protein_model(tmp_path / "m.npz")
    assert checkpoint_vocabulary(checkpoint) == vocab
    sequences = ["MKVLAGGMKVLA" * 4, "ACDEFGHIKLMNPQRSTVWY"]
    np.testing.assert_array_equal(class_logits(model, sequences, settings, vocab),
                                  class_logits(loaded, sequences, settings, vocab))
    with pytest.raises(ValueError, match="give the model's words"):
        save_protein_model(tmp_path / "n.npz", model, "protein-families", ["a", "b", "c"])
    # a file whose words do not fit its model's vocabulary is refused in one line
    saved = load_checkpoint(tmp_path / "m.npz")
    save_checkpoint(tmp_path / "bad.npz", loaded, metadata={**saved.metadata, "words": ["MK"]})
    with pytest.raises(CheckpointError, match="with its 1 words"):
        load_protein_model(tmp_path / "bad.npz")
    save_checkpoint(tmp_path / "odd.npz", loaded, metadata={**saved.metadata, "words": ["MK", "B?", "GG"]})
    with pytest.raises(CheckpointError, match="no protein words"):
        load_protein_model(tmp_path / "odd.npz")


def test_the_commands_carry_the_words_from_pre_training_to_fine_tuning(tmp_path, capsys):
    tiny = ["--d-model", "16", "--heads", "2", "--d-ff", "32", "--layers", "1", "--window", "24"]
    pre, tuned = tmp_path / "pre.npz", tmp_path / "tuned.npz"
    assert main(["protein", "pretrain", *tiny, "--words", "30", "--batch-size", "4", "--pretrain-steps", "2",
                 "--out", str(pre)]) == 0
    assert "30 words" in capsys.readouterr().out
    model, checkpoint = load_protein_model(pre)
    words = checkpoint.metadata["words"]
    assert len(words) == 30 and model.config.vocab_size == 25 + 30
    assert main(["protein", "finetune", "--from", str(pre), "--window", "24", "--finetune-steps", "2",
                 "--per-family", "1", "--eval-windows", "1", "--out", str(tuned)]) == 0
    assert load_protein_model(tuned)[1].metadata["words"] == words
    capsys.readouterr()
    assert main(["protein", "finetune", "--from", str(pre), "--words", "30", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "--words" in err and "cannot be given with --from" in err and len(err.strip().splitlines()) == 1
