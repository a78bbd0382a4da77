"""The protein demo's data and pipeline (a tiny run; the real one is `run_demo` with defaults)."""
import json

import numpy as np

from minitransformer.protein import data as D
from minitransformer.protein.demo import run_demo
from minitransformer.protein.train import DemoSettings, wilson_interval


def test_the_shipped_data_and_vocabulary():
    families, pretraining = D.load_families(), D.load_pretraining()
    assert families.family.nunique() == 12 and len(families) == 566
    assert len(pretraining) == 12000 and pretraining.sequence.str.len().max() <= 128
    assert not set(families.accession) & set(pretraining.accession)
    vocab = D.protein_vocabulary()
    assert vocab.token_to_id(D.MASK) == 4 and len(vocab) == 25
    ids = D.encode(vocab, ["MKV", "MKVLAAGX"], 8)           # X is not standard: <unk>
    assert ids.shape == (2, 8) and ids[0, 3] == vocab.pad_id and vocab.unk_id in ids[1]


def test_the_split_keeps_similar_sequences_on_one_side():
    families = D.load_families()
    train, test = D.similarity_split(families, seed=0)
    assert len(train) + len(test) == len(families) and set(test.family) == set(families.family)
    assert 0.2 < len(test) / len(families) < 0.4
    train_sets, test_sets = D.kmer_sets(train.sequence), D.kmer_sets(test.sequence)
    worst = max(D.similarity(a, b) for a, fa in zip(test_sets, test.family)
                for b, fb in zip(train_sets, train.family) if fa == fb)
    assert worst < 0.2, worst                                   # the clustering threshold
    few = D.few_per_family(train, 3, seed=1)
    assert (few.family.value_counts() == 3).all()


def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert abs((low + high) / 2 - 0.5) < 1e-12 and abs(high - 0.5 - 0.0961) < 1e-3


def test_a_tiny_demo_writes_the_model_and_the_evaluation(tmp_path):
    settings = DemoSettings(d_model=16, n_heads=2, d_ff=32, n_layers=1, window=32, batch_size=8,
                            pretrain_steps=2, finetune_steps=2, per_family=2, seeds=(0,),
                            mlm_eval_sequences=20)
    evaluation = run_demo(tmp_path, settings, log=lambda line: None)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved == json.loads(json.dumps(evaluation))
    for key in ("mlm_accuracy", "classification_accuracy_pretrained", "classification_accuracy_scratch",
                "n_test"):
        assert key in saved
    assert saved["n_test"] == 185 and 0 <= saved["mlm_accuracy"] <= 1
    assert (tmp_path / "model.npz").is_file()
    assert np.isfinite(saved["classification_ci95_pretrained"]).all()


def test_spaced_windows_cover_the_sequence_evenly():
    sequence = "ACDEFGHIKLMNPQRSTVWY" * 3          # 60 residues
    assert D.spaced_windows(sequence, 20, 3) == [sequence[:20], sequence[20:40], sequence[40:]]
    assert D.spaced_windows(sequence, 20, 1) == [D.window(sequence, 20)]
    assert D.spaced_windows("MKV", 20, 4) == ["MKV"]


def test_a_frozen_encoder_stays_as_it_was_and_a_scaled_one_moves_less():
    from minitransformer.encoder_only import EncoderOnly
    from minitransformer.protein.train import finetune

    settings = DemoSettings(d_model=16, n_heads=2, d_ff=32, n_layers=1, window=32, finetune_steps=3,
                            finetune_batch=4)
    sequences, labels = ["MKVLAAGIVGLLLAQ" * 3, "ACDEFGHIKLMNPQRSTVWY", "MSTNPKPQRKTKRNTNRR", "GGSGGSWWY"], [0, 1, 0, 1]
    moved = {}
    for scale in (0.0, 0.1, 1.0):
        model = EncoderOnly(settings.model_config(2, seed=3))
        before = {k: v.copy() for k, v in model.state_dict().items()}
        finetune(model, sequences, labels, settings, seed=0, encoder_lr_scale=scale)
        after = model.state_dict()
        moved[scale] = max(np.abs(after[k] - before[k]).max() for k in before if not k.startswith("classifier."))
        assert max(np.abs(after[k] - before[k]).max() for k in before if k.startswith("classifier.")) > 0
    assert moved[0.0] == 0 and 0 < moved[0.1] < moved[1.0]
