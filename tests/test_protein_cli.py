"""Tests for the ``minitransformer protein`` commands, run through ``minitransformer.cli.main``.

Models here are tiny and trained for 2-3 steps: the tests check the plumbing (files, keys,
messages, exit codes, models that load back and predict the same), not the accuracy; the
accuracy is the demo's own report (docs/api/protein.md).
"""
import json

import numpy as np
import pandas as pd
import pytest

from minitransformer.checkpoint import CheckpointError, save_checkpoint
from minitransformer.cli import main
from minitransformer.encoder_only import EncoderOnly, EncoderOnlyConfig
from minitransformer.protein import data as D
from minitransformer.protein.checkpoints import checkpoint_vocabulary, load_protein_model, save_protein_model
from minitransformer.protein.demo import DEMO_FILES, load_demo_data
from minitransformer.protein.train import DemoSettings, class_logits

TINY = ["--d-model", "16", "--heads", "2", "--d-ff", "32", "--layers", "1", "--window", "32"]
QUICK_PRETRAIN = ["--batch-size", "8", "--pretrain-steps", "3"]
QUICK_FINETUNE = ["--finetune-steps", "2", "--finetune-batch", "8", "--per-family", "2", "--eval-windows", "2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got: {err!r}"
    assert lines[0].startswith("minitransformer: error:") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("protein_cli")


@pytest.fixture(scope="module")
def pretrained(workdir):
    path = workdir / "pre.npz"
    assert main(["protein", "pretrain", *TINY, *QUICK_PRETRAIN, "--out", str(path),
                 "--plot", str(workdir / "pre.png")]) == 0
    return path


@pytest.fixture(scope="module")
def demo_dir(workdir):
    out = workdir / "demo"
    assert main(["protein", "demo", "--out-dir", str(out), *TINY, *QUICK_PRETRAIN, *QUICK_FINETUNE,
                 "--seeds", "1"]) == 0
    return out


def test_pretrain_saves_a_masked_lm_model_that_loads_back(pretrained, workdir, capsys):
    model, checkpoint = load_protein_model(pretrained, task="protein-mlm")
    assert checkpoint.metadata["model"] == "encoder_only" and model.classifier is None
    assert 0 <= checkpoint.metadata["mlm_accuracy"] <= 1
    assert (workdir / "pre.png").read_bytes()[:8] == PNG_MAGIC
    # refused without --force, before any work
    assert main(["protein", "pretrain", *TINY, "--out", str(pretrained)]) == 2
    assert "--force" in _one_line_error(capsys.readouterr().err)


def test_finetune_from_the_pretrained_model_and_from_scratch(pretrained, workdir, capsys):
    tuned, scratch = workdir / "tuned.npz", workdir / "scratch.npz"
    assert main(["protein", "finetune", "--from", str(pretrained), "--window", "32", *QUICK_FINETUNE,
                 "--out", str(tuned), "--plot", str(workdir / "tuned.png")]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["protein", "finetune", *TINY, *QUICK_FINETUNE, "--out", str(scratch)]) == 0
    pre, _ = load_protein_model(pretrained)
    model, checkpoint = load_protein_model(tuned, task="protein-families")
    assert checkpoint.metadata["families"] == sorted(D.load_families().family.unique())
    # the fine-tuned model started from the pre-trained encoder: its weights moved, from there
    moved = model.state_dict()["embeddings.token.weight"] - pre.state_dict()["embeddings.token.weight"]
    assert 0 < np.abs(moved).max() < 0.1
    assert load_protein_model(scratch)[1].metadata["pretrained"] is None
    assert (workdir / "tuned.png").read_bytes()[:8] == PNG_MAGIC


def test_a_loaded_classifier_predicts_what_the_saved_one_did(tmp_path):
    config = EncoderOnlyConfig(vocab_size=len(D.protein_vocabulary()), d_model=16, n_heads=2, d_ff=32,
                               n_layers=1, max_len=32, n_classes=3, seed=5)
    model = EncoderOnly(config)
    model.load_state_dict({k: v + 0.01 * np.random.default_rng(1).standard_normal(v.shape).astype(v.dtype)
                           for k, v in model.state_dict().items()})
    save_protein_model(tmp_path / "m.npz", model, "protein-families", ["a", "b", "c"])
    loaded, _ = load_protein_model(tmp_path / "m.npz")
    settings = DemoSettings(window=32, eval_windows=3)
    sequences = ["MKVLAAGIVGLLLAQ" * 5, "ACDEFGHIKLMNPQRSTVWY", "MSTNPKPQRKTKRNTNRRPQDVKFPGG"]
    np.testing.assert_array_equal(class_logits(model, sequences, settings),
                                  class_logits(loaded, sequences, settings))


def test_the_demo_writes_its_files_and_the_keys(demo_dir, capsys):
    for name in DEMO_FILES:
        assert (demo_dir / name).is_file()
    assert (demo_dir / "demo.png").read_bytes()[:8] == PNG_MAGIC
    evaluation = json.loads((demo_dir / "evaluation.json").read_text())
    for key in ("mlm_accuracy", "mlm_unigram_baseline", "classification_accuracy_pretrained",
                "classification_accuracy_scratch", "classification_ci95_pretrained",
                "classification_ci95_scratch", "n_test", "runs", "curve_steps", "curve_pretrained", "by_labels"):
        assert key in evaluation
    assert evaluation["n_test"] == 185 and evaluation["split"] == "test"
    assert [row["per_family"] for row in evaluation["by_labels"]] == [1, 2, 4, 8]      # --per-family 2 among them
    model, checkpoint = load_protein_model(demo_dir / "model.npz", task="protein-families")
    settings = DemoSettings(window=32, eval_windows=2)
    data = load_demo_data(settings, vocab=checkpoint_vocabulary(checkpoint))
    assert len(data.vocab.words) == DemoSettings().words           # the default: words
    predicted = class_logits(model, data.test.sequence.tolist(), settings, data.vocab).argmax(-1)
    assert np.isclose((predicted == data.labels(data.test)).mean(), evaluation["runs"][0]["pretrained"])
    assert main(["protein", "demo", "--out-dir", str(demo_dir), *TINY]) == 2
    assert "--force" in _one_line_error(capsys.readouterr().err)


def test_the_validation_split_is_carved_from_the_training_side():
    test = load_demo_data(DemoSettings())
    validation = load_demo_data(DemoSettings(), validation=True)
    assert set(validation.test.accession) <= set(test.train.accession)
    assert set(validation.train.accession) | set(validation.test.accession) == set(test.train.accession)
    assert not set(validation.test.accession) & set(test.test.accession)


@pytest.mark.parametrize("argv, expected", [
    (["protein", "pretrain", "--out", "{tmp}/m.npz", "--pretrain-steps", "0"],
     "argument --pretrain-steps: expected a positive integer, got 0"),
    (["protein", "finetune", "--out", "{tmp}/m.npz", "--encoder-lr-scale", "2"],
     "argument --encoder-lr-scale: expected a probability"),
    (["protein", "demo", "--seeds", "-1"], "argument --seeds: expected a positive integer"),
])
def test_bad_numbers_are_refused_by_the_parser(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as exit:
        main([a.format(tmp=tmp_path) for a in argv])
    assert exit.value.code == 2
    assert expected in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, expected", [
    (["protein", "pretrain", "--out", "{tmp}/m.npz", "--d-model", "10", "--heads", "4"], "must divide"),
    (["protein", "finetune", "--out", "{tmp}/m.npz", "--from", "{tmp}/missing.npz"], "no checkpoint"),
    (["protein", "finetune", "--out", "{tmp}/m.npz", "--from", "{tmp}/codon.npz"], "not a protein model"),
    (["protein", "finetune", "--out", "{tmp}/m.npz", "--data", "{tmp}/bad.csv"], "row 2"),
    (["protein", "pretrain", "--out", "{tmp}/m.npz", "--data", "{tmp}/nocolumn.csv"], "lacks the column"),
    (["protein", "pretrain", "--out", "{tmp}/"], "ends with a path separator"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, expected):
    pd.DataFrame({"family": ["a", "b"], "sequence": ["MKV", "MK1"]}).to_csv(tmp_path / "bad.csv", index=False)
    pd.DataFrame({"seq": ["MKV"]}).to_csv(tmp_path / "nocolumn.csv", index=False)
    save_checkpoint(tmp_path / "codon.npz", EncoderOnly(EncoderOnlyConfig(vocab_size=25, d_model=8, n_heads=2,
                                                                          d_ff=8, n_layers=1)),
                    metadata={"task": "codon"})
    status = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert status == 2
    assert expected in _one_line_error(err)
    assert not (tmp_path / "m.npz").exists()


def test_a_model_of_another_kind_is_refused(tmp_path):
    save_checkpoint(tmp_path / "x.npz", EncoderOnly(EncoderOnlyConfig(vocab_size=25, d_model=8, n_heads=2,
                                                                      d_ff=8, n_layers=1)))
    with pytest.raises(CheckpointError, match="not a protein model"):
        load_protein_model(tmp_path / "x.npz")
