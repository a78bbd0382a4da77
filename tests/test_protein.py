"""The protein demo's data and pipeline (a tiny run; the real one is `run_demo` with defaults)."""
import json

import numpy as np
import pytest

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


def test_paired_difference_reads_each_test_sequence_once_per_pair_of_runs():
    from minitransformer.protein.train import paired_difference

    # per-sequence differences 1, 0, 0, -1: mean 0, s = sqrt(2/3), half-width 1.96 s / 2
    d, (low, high) = paired_difference([[1, 1, 0, 0]], [[0, 1, 0, 1]])
    assert d == 0 and np.isclose(high, 1.96 * np.sqrt(2 / 3) / 2) and np.isclose(low, -high)
    # two runs: sequence 0 right for a in both, for b in neither (1); sequence 1 the same for both (0)
    d, (low, high) = paired_difference([[1, 0], [1, 1]], [[0, 0], [0, 1]])
    assert d == 0.5 and np.isclose(high - d, 1.96 * np.sqrt(0.5) / np.sqrt(2))
    assert paired_difference([[1, 0, 1]], [[1, 0, 1]]) == (0.0, (0.0, 0.0))   # the same answers: no doubt
    with pytest.raises(ValueError, match="same shape"):
        paired_difference([[1, 0, 1]], [[1, 0]])


def test_a_tiny_demo_writes_the_model_and_the_evaluation(tmp_path):
    settings = DemoSettings(d_model=16, n_heads=2, d_ff=32, n_layers=1, window=32, batch_size=8,
                            pretrain_steps=2, finetune_steps=2, per_family=2, label_counts=(1,), seeds=(0,),
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
    # every label count (the headline's added), both arms, the frozen features, the steps in proportion
    assert [row["per_family"] for row in saved["by_labels"]] == [1, 2]
    assert [row["finetune_steps"] for row in saved["by_labels"]] == [2, 2]
    headline = saved["by_labels"][1]
    assert headline["pretrained"] == saved["classification_accuracy_pretrained"]
    assert headline["runs"] == saved["runs"] and headline["n_train_labelled"] == 24
    for row in saved["by_labels"]:
        assert {"scratch", "ci95_scratch", "probe_pretrained", "probe_random_init", "probe_dipeptides"} <= set(row)
        assert 0 <= row["probe_pretrained"] <= 1 and len(row["runs"]) == 1
        # the paired difference is the difference of the two accuracies, with an interval around it
        assert np.isclose(row["difference"], row["pretrained"] - row["scratch"])
        assert row["ci95_difference"][0] <= row["difference"] <= row["ci95_difference"][1]


def test_the_label_counts_read_their_sequences_as_often_as_the_headline():
    from minitransformer.protein.demo import at_label_count

    settings = DemoSettings(finetune_steps=300, per_family=8, curve_points=3)
    assert [at_label_count(settings, n).finetune_steps for n in (1, 2, 4, 8)] == [38, 75, 150, 300]
    assert at_label_count(settings, 8) == settings
    assert at_label_count(settings, 2).curve_points == 1 and at_label_count(settings, 2).per_family == 2


def test_nearest_centroid_reads_only_the_labelled_rows():
    from minitransformer.protein.train import centroid_accuracy

    features = np.array([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [-0.9, -0.1], [-3.0, -1.0]])
    labels = [0, 0, 1, 1, 0]
    test = np.array([[1.0, 0.05], [-1.0, -0.05]])
    assert centroid_accuracy(features, labels, [1, 3], test, [0, 1]) == 1.0
    assert centroid_accuracy(features, labels, [1, 3], test, [1, 0]) == 0.0
    # a class's centroid is the mean of its labelled rows only: row 4 (label 0, on class 1's
    # side) is unread unless it is one of them, and then it pulls class 0's centroid over
    assert centroid_accuracy(features, labels, [0, 2], test, [0, 1]) == 1.0
    assert centroid_accuracy(features, labels, [1, 3, 4], test, [0, 1]) == 0.5


def test_the_dipeptide_profile_counts_neighbouring_pairs():
    from minitransformer.protein.train import dipeptide_profile

    profile = dipeptide_profile(["ACAC", "W"])
    pair = {(a, b): 20 * D.AMINO_ACIDS.index(a) + D.AMINO_ACIDS.index(b) for a in "ACW" for b in "ACW"}
    assert profile.shape == (2, 400)
    assert profile[0, pair["A", "C"]] == 2 / 3 and profile[0, pair["C", "A"]] == 1 / 3
    assert profile[0].sum() == 1 and not profile[1].any()           # one residue: no pair
