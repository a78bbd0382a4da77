"""The codon training recipe: batches, curriculum, translation and scoring (small and fast)."""
import numpy as np
import pandas as pd
import pytest

from minitransformer.codon.data import generate_pairs, protein_vocabulary, rna_vocabulary
from minitransformer.codon.train import (CodonRecipe, SyntheticBatches, TableBatches, accuracy_by_length,
                                         encode_pairs, safe_piece_codons, score_translations, split_into_pieces,
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


def test_synthetic_batches_add_long_and_short_proteins():
    def share_of_short(**shares):   # proteins of at most 10 residues, once the range is 1..40
        batches = SyntheticBatches(CodonRecipe(max_tokens=300, **shares), 1, np.random.default_rng(0))
        batches.max_len = 40
        pad = rna_vocabulary().pad_id
        lengths = np.concatenate([(next(batches).src != pad).sum(axis=1) // 3 for _ in range(300)])
        assert lengths.min() >= 1 and lengths.max() <= 40
        return np.mean(lengths <= 10)

    # uniform 1..40 and half again from 20..40: 1/6 short; half again from 1..10 as well: 3/8
    assert 0.13 < share_of_short(long_share=0.5, short_share=0.0) < 0.2
    assert 0.33 < share_of_short(long_share=0.5, short_share=0.5) < 0.42


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
    # errors counted by alignment beside them: one substitution in 30 residues
    assert list(table["edits"]) == [0, 1] and list(table["substitutions"]) == [0, 1]
    assert table["residue_error_rate"].tolist() == [0.0, 1 / 30]
    dropped = accuracy_by_length(["MAIVK" * 5 + "AIVK"], ["MAIVK" * 6])
    assert dropped["deletions"].tolist() == [1] and dropped["residue_accuracy"].tolist()[0] < 0.9


def test_auto_pieces_stay_below_the_longest_trained_length():
    # the default model's auto pieces: the promised length, inside the trained range
    assert safe_piece_codons(CodonRecipe().train_max_len) == CodonRecipe().final_max_len == 100
    assert safe_piece_codons(100) == 83
    assert safe_piece_codons(12) == 10 and safe_piece_codons(1) == 1
    assert all(safe_piece_codons(n) < n for n in range(2, 500))


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


# --------------------------------------------------------------------------------------
# Resuming a run: the same steps, bit for bit
# --------------------------------------------------------------------------------------
STEPS = 24   # checks every 5 steps, each moving the curriculum on (advance_at 0): new pools


def _resume_recipe():
    return CodonRecipe(**{**TINY, "advance_at": 0.0, "final_max_len": 40, "max_tokens": 150})


def _saved_and_resumed(tmp_path, data, stop):
    """Train until ``stop`` stops the run, save it, resume it to STEPS: the resumed run."""
    from minitransformer.checkpoint import load_model
    from minitransformer.codon.checkpoints import checkpoint_recipe, save_run

    first = train_codon_model(_resume_recipe(), data=data, seed=3, max_steps=stop.get("max_steps", STEPS),
                              progress=False)
    assert first.trainer.step < STEPS
    path = tmp_path / "half.npz"
    save_run(path, first)
    model, ckpt = load_model(path)
    return train_codon_model(checkpoint_recipe(model, ckpt), data=data, seed=3, max_steps=STEPS,
                             progress=False, model=model, resume=ckpt)


@pytest.mark.parametrize("stop", ["max_steps", "interrupt in a step", "interrupt in a check"])
@pytest.mark.parametrize("source", ["fresh pairs", "a table"])
def test_a_resumed_run_equals_an_uninterrupted_one(stop, source, tmp_path, monkeypatch):
    from minitransformer.codon import train as train_module
    from minitransformer.training import Trainer

    data = generate_pairs(200, 1, 40, seed=5) if source == "a table" else None
    straight = train_codon_model(_resume_recipe(), data=data, seed=3, max_steps=STEPS, progress=False)
    assert len(straight.curriculum) > 2     # the curriculum moved, so pools were drawn anew

    if stop == "max_steps":                  # between two checks: the final check changes nothing
        resumed = _saved_and_resumed(tmp_path, data, {"max_steps": 13})
    else:
        # Ctrl-C after the batch of step 13 was drawn, or inside the check at step 10
        real_step, real_translate = Trainer.train_step, train_module.translate_rna
        state = {"armed": True}

        def step(self, batch):
            if stop == "interrupt in a step" and self.step == 12 and state["armed"]:
                state["armed"] = False
                raise KeyboardInterrupt
            return real_step(self, batch)

        def translate(model, rnas, **kw):
            if stop == "interrupt in a check" and state.get("trainer_step") == 10 and state["armed"]:
                state["armed"] = False
                raise KeyboardInterrupt
            return real_translate(model, rnas, **kw)

        def recorded_step(self, batch):
            result = step(self, batch)
            state["trainer_step"] = self.step
            return result
        monkeypatch.setattr(Trainer, "train_step", recorded_step)
        monkeypatch.setattr(train_module, "translate_rna", translate)
        resumed = _saved_and_resumed(tmp_path, data, {})
        monkeypatch.undo()
    assert resumed.trainer.step == straight.trainer.step == STEPS
    assert [c[::2] for c in resumed.curriculum] == [c[::2] for c in straight.curriculum]
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert np.array_equal(a.data, b.data), name
    assert resumed.data_rng.bit_generator.state == straight.data_rng.bit_generator.state
    # the checks after the restart drew the same check pairs and scored the same
    checks = [h[h["step"] > 13].dropna(subset=["eval_residue_accuracy"])[["step", "eval_residue_accuracy"]]
              .reset_index(drop=True) for h in (straight.history, resumed.history)]
    assert len(checks[0]) == 3 and checks[0].equals(checks[1])   # steps 15, 20 and the last, 24


def test_the_curriculum_trains_past_the_promised_length_as_far_as_max_len_allows():
    recipe = CodonRecipe()
    assert (recipe.final_max_len, recipe.train_max_len) == (100, 120)
    assert 3 * recipe.train_max_len <= recipe.max_len           # its RNA fits the model
    assert CodonRecipe(final_max_len=100, max_len=330).train_max_len == 110
    assert CodonRecipe(final_max_len=100, max_len=256).train_max_len == 100   # never short of the promise
    assert CodonRecipe(final_max_len=30, train_past=1.0).train_max_len == 30


def _final_phase_recipe():
    # checks every 5 steps; the curriculum 10 -> 20 -> 40 -> 48 (1.2 x 40) by step 15; the
    # target (0: any score) is first met at step 20, then 10 steps with the rate falling to 0
    return CodonRecipe(**{**TINY, "advance_at": 0.0, "final_max_len": 40, "max_tokens": 150,
                          "target_exact": 0.0, "final_steps": 10})


def test_the_final_phase_lets_the_rate_fall_to_zero_then_stops():
    from minitransformer.schedules import LinearTailSchedule

    run = train_codon_model(_final_phase_recipe(), seed=3, max_steps=100, progress=False)
    assert [c[::2] for c in run.curriculum] == [(0, 10), (5, 20), (10, 40), (15, 48)]
    schedule = run.trainer.optimizer.schedule
    assert isinstance(schedule, LinearTailSchedule) and schedule.start == 20 and schedule.steps == 10
    assert run.trainer.step == 30 and run.trainer.stop_reason == "target reached"
    checks = run.history.dropna(subset=["eval_n"]).set_index("step")
    # the checks at the top read the promised lengths; the confirm set only once, at step 20
    assert checks.loc[[15, 20, 25, 30], "eval_max_len"].tolist() == [40, 40, 40, 40]
    assert checks.loc[[15, 20, 25, 30], "eval_n"].tolist() == [10, 20, 10, 10]
    assert run.trainer.optimizer.current_lr == 0.0
    # without a final phase the run stops at the target, as soon as the confirm set reads it
    at_once = train_codon_model(CodonRecipe(**{**_final_phase_recipe().to_dict(), "final_steps": 0}), seed=3,
                                max_steps=100, progress=False)
    assert at_once.trainer.step == 20 and not isinstance(at_once.trainer.optimizer.schedule, LinearTailSchedule)


@pytest.mark.parametrize("stop_at", [13, 23])   # before the final phase, and inside it
def test_a_resumed_run_goes_through_the_final_phase_as_an_uninterrupted_one(stop_at, tmp_path):
    from minitransformer.checkpoint import load_model
    from minitransformer.codon.checkpoints import checkpoint_recipe, save_run

    straight = train_codon_model(_final_phase_recipe(), seed=3, max_steps=100, progress=False)
    first = train_codon_model(_final_phase_recipe(), seed=3, max_steps=stop_at, progress=False)
    save_run(tmp_path / "half.npz", first)
    model, ckpt = load_model(tmp_path / "half.npz")
    resumed = train_codon_model(checkpoint_recipe(model, ckpt), seed=3, max_steps=100, progress=False,
                                model=model, resume=ckpt)
    assert resumed.trainer.step == straight.trainer.step == 30
    assert resumed.trainer.optimizer.schedule == straight.trainer.optimizer.schedule
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert np.array_equal(a.data, b.data), name


def test_a_recipe_recorded_before_the_new_fields_keeps_its_old_behaviour():
    from types import SimpleNamespace

    from minitransformer.codon.checkpoints import checkpoint_recipe

    run = train_codon_model(CodonRecipe(**TINY), seed=0, max_steps=1, progress=False)
    old = {k: v for k, v in CodonRecipe(**TINY).to_dict().items()
           if k not in ("train_past", "short_share", "final_steps")}
    recipe = checkpoint_recipe(run.model, SimpleNamespace(metadata={"recipe": old}))
    assert (recipe.train_past, recipe.short_share, recipe.final_steps) == (1.0, 0.0, 0)
    assert recipe.train_max_len == recipe.final_max_len
    new = checkpoint_recipe(run.model, SimpleNamespace(metadata={"recipe": CodonRecipe(**TINY).to_dict()}))
    assert (new.train_past, new.short_share, new.final_steps) == (1.2, 0.5, 1500)


def test_a_checkpoint_without_training_state_cannot_be_resumed(tmp_path):
    from minitransformer.checkpoint import CheckpointError, load_model, save_checkpoint

    run = train_codon_model(CodonRecipe(**TINY), seed=0, max_steps=2, progress=False)
    save_checkpoint(tmp_path / "plain.npz", run.model, optimizer=run.trainer.optimizer, step=2,
                    metadata={"task": "codon"})
    model, ckpt = load_model(tmp_path / "plain.npz")
    with pytest.raises(CheckpointError, match="records no training state"):
        train_codon_model(CodonRecipe(**TINY), max_steps=4, progress=False, model=model, resume=ckpt)


def test_batch_streams_go_back_to_where_they_stood():
    pairs = generate_pairs(100, 1, 30, seed=2)
    for make in (lambda rng: SyntheticBatches(CodonRecipe(max_tokens=150), 1, rng, pool_batches=4),
                 lambda rng: TableBatches(pairs, CodonRecipe(max_tokens=150), rng)):
        stream = make(np.random.default_rng(0))
        handed = [next(stream).src.tolist() for _ in range(7)]
        position = stream.position(untaken=1)   # the 7th batch is to be handed out again
        later = [next(stream).src.tolist() for _ in range(5)]   # across a new pool (4 batches each)
        again = make(np.random.default_rng(99))
        again.restore(position)
        assert [next(again).src.tolist() for _ in range(6)] == [handed[-1]] + later
