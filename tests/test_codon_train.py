"""The codon training recipe: batches, curriculum, translation and scoring (small and fast)."""
import numpy as np
import pandas as pd
import pytest

from minitransformer.codon.data import generate_pairs, protein_vocabulary, rna_vocabulary
from minitransformer.codon.train import (CodonRecipe, SyntheticBatches, TableBatches, accuracy_by_length,
                                         encode_pairs, score_translations, split_into_pieces,
                                         train_codon_model, translate_rna)

TINY = dict(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, check_every=5,
            check_size=10, confirm_size=20, max_len=256)


def test_encode_pairs_layout():
    batch = encode_pairs(["AUGUAA", "GCU"], ["M*", "A"], rna_vocabulary(), protein_vocabulary())
    rna, protein = rna_vocabulary(), protein_vocabulary()
    assert batch.src.tolist() == [rna.encode("AUGUAA"), rna.encode("GCU") + [rna.pad_id] * 3]
    assert batch.tgt_in.tolist() == [[protein.bos_id] + protein.encode("M*"),
                                     [protein.bos_id] + protein.encode("A") + [protein.pad_id]]
    assert batch.tgt_out.tolist() == [protein.encode("M*") + [protein.eos_id],
                                      protein.encode("A") + [protein.eos_id, protein.pad_id]]
    assert batch.n_tokens == 5


def test_synthetic_batches_follow_the_curriculum_and_the_token_budget():
    recipe = CodonRecipe(max_tokens=300)
    batches = SyntheticBatches(recipe, 1, np.random.default_rng(0))
    for _ in range(20):
        b = next(batches)
        assert b.src.shape[1] <= 3 * recipe.start_max_len
        assert b.src.shape[0] == 1 or b.src.size <= recipe.max_tokens
    batches.max_len = 40
    longest = max(next(batches).src.shape[1] for _ in range(60))
    assert 3 * recipe.start_max_len < longest <= 120


def test_table_batches_use_only_rows_within_the_curriculum():
    pairs = generate_pairs(300, 1, 30, seed=1)
    batches = TableBatches(pairs, CodonRecipe(max_tokens=200), np.random.default_rng(0))
    assert all(next(batches).src.shape[1] <= 30 for _ in range(30))


def test_scores_and_buckets():
    scores = score_translations(["MA*", "KK"], ["MA*", "KR"])
    assert scores == {"exact_match": 0.5, "residue_accuracy": 4 / 5, "n": 2}
    table = accuracy_by_length(["M" * 5, "A" * 30], ["M" * 5, "A" * 29 + "C"])
    assert list(table["lengths"]) == ["1-10", "26-50"]
    assert list(table["exact_match"]) == [1.0, 0.0]


def test_a_short_run_trains_checks_and_keeps_the_input_order():
    run = train_codon_model(CodonRecipe(**TINY), max_steps=12, progress=False, seed=3)
    assert run.trainer.step == 12
    history = run.history
    assert "eval_exact_match" in history.columns and history["loss"].notna().any()
    rnas = list(generate_pairs(7, 1, 12, seed=2)["rna"])
    proteins = translate_rna(run.model, rnas)
    assert len(proteins) == 7
    # each sequence decodes alone to the same protein as in the (length-sorted) batch
    assert translate_rna(run.model, rnas[3:4]) == proteins[3:4]
    # in pieces: each piece translated on its own, the proteins joined in order
    long_rna = list(generate_pairs(1, 25, 25, seed=5)["rna"])[0]
    pieces = split_into_pieces(long_rna, 10)
    expected = "".join(translate_rna(run.model, pieces))
    assert translate_rna(run.model, [long_rna], max_codons=10) == [expected]
    assert translate_rna(run.model, rnas[3:4], max_codons=12) == proteins[3:4]   # short: whole


def test_split_into_pieces_cuts_whole_codons_into_near_equal_pieces():
    rna = "AUG" * 25
    pieces = split_into_pieces(rna, 10)
    assert "".join(pieces) == rna
    assert [len(p) // 3 for p in pieces] == [8, 9, 8]
    assert all(len(p) % 3 == 0 for p in pieces)
    assert split_into_pieces(rna, 25) == [rna]
    assert split_into_pieces("AUGGC", 1) == ["AUG", "GC"]   # an incomplete last codon stays at the end


def test_training_on_a_table_of_pairs():
    pairs = generate_pairs(200, 1, 8, seed=4)
    run = train_codon_model(CodonRecipe(**TINY), data=pairs, max_steps=6, progress=False)
    assert run.trainer.step == 6


def test_an_extra_stop_rule_sees_every_check_and_can_end_the_run():
    seen = []

    def stop_at_the_third_check(trainer, metrics):
        seen.append((trainer.step, sorted(metrics)))
        return len(seen) == 3

    run = train_codon_model(CodonRecipe(**TINY), max_steps=100, progress=False, seed=3,
                            stop_when=stop_at_the_third_check)
    assert [step for step, _ in seen] == [5, 10, 15]
    assert seen[0][1] == ["exact_match", "max_len", "n", "residue_accuracy"]
    assert run.trainer.step == 15 and run.trainer.stop_reason == "target reached"
