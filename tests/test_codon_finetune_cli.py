"""Tests for ``minitransformer codon finetune``, run through ``minitransformer.cli.main``.

The model to start from is the tiny standard-code model of ``test_codon_cli.py`` (3 training
steps), fine-tuned for a few steps: the tests check the plumbing (files, metadata, frozen
parameters, messages, exit codes), not how well the fine-tuned model translates.
"""
import contextlib
import hashlib
import io
import os

import numpy as np
import pandas as pd
import pytest
from test_codon_cli import _is_png, _one_line_error, model_path, workdir  # noqa: F401 (fixtures)

from minitransformer.checkpoint import load_checkpoint
from minitransformer.cli import main
from minitransformer.codon import runs

FAST = ["--n", "30", "--check-every", "2", "--check-pairs", "20", "--no-progress"]


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _finetune(*args) -> tuple[int, str]:
    """Run the command; (exit status, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["codon", "finetune", *map(str, args)])
    return status, out.getvalue()


@pytest.fixture(scope="module")
def finetuned(model_path, workdir):  # noqa: F811 (fixture)
    """The tiny model fine-tuned to table 2 for 4 steps: (its path, what was printed, --from's digest)."""
    before = _digest(model_path)
    out = workdir / "finetuned" / "mito.npz"
    status, printed = _finetune("--from", model_path, "--table", "2", "--out", out, "--steps", "4",
                                "--no-early-stop", *FAST)
    assert status == 0, printed
    return out, printed, before


# ------------------------------------------------------------------------ help
def test_finetune_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["codon", "finetune", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: minitransformer codon finetune" in out and "(default:" in out
    for option in ("--from", "--table", "--out", "--data", "--n", "--min-len", "--max-len", "--freeze",
                   "--lr", "--warmup", "--steps", "--time-budget", "--target", "--no-early-stop",
                   "--check-every", "--check-pairs", "--seed", "--backend", "--no-progress"):
        assert option in out, option
    assert "none,embeddings,encoder" in out
    assert main(["codon"]) == 2
    assert "finetune" in capsys.readouterr().out


# ------------------------------------------------------------------------ what it writes
def test_finetune_writes_model_history_and_curve(finetuned, model_path):  # noqa: F811
    out, printed, from_digest = finetuned
    history = out.with_name("mito.history.csv")
    curve = out.with_name("mito.learning-curve.png")
    assert out.is_file() and history.is_file() and _is_png(curve)
    for path in (out, history, curve):
        assert str(path) in printed
    assert "eval_exact_match" in pd.read_csv(history).columns
    ckpt = load_checkpoint(out)
    assert ckpt.step == 4
    assert ckpt.metadata["task"] == "codon" and ckpt.metadata["table"] == 2
    assert ckpt.metadata["recipe"]["d_model"] == 16  # the --from model's architecture
    how = ckpt.metadata["finetune"]
    assert how["from"] == str(model_path) and how["from_table"] == 1 and how["freeze"] == "none"
    assert how["pairs"] == 30 and how["target_exact"] is None
    assert how["lengths"] == [1, 10]  # what the tiny model was trained on (its curriculum's range)
    name = "encoder.layers.0.self_attn.w_in"  # --freeze none (the default): the encoder learns too
    assert not np.array_equal(ckpt.params[name], load_checkpoint(model_path).params[name])
    assert _digest(model_path) == from_digest  # --from is never written to


def test_finetune_reports_the_held_out_check(finetuned):
    _, printed, _ = finetuned
    assert "to table 2 (Vertebrate Mitochondrial) on 30 random pairs of 1-10 residues" in printed
    assert "held-out check on" in printed and "none in the fine-tuning data" in printed
    assert "before fine-tuning:" in printed and "after fine-tuning:" in printed
    assert "whose translation differs under table 1 (Standard)" in printed
    assert "stopped: max_steps" in printed


def test_evaluate_and_translate_default_to_the_new_table(finetuned, capsys):
    out, _, _ = finetuned
    assert main(["codon", "translate", "--model", str(out), "AUGUGA", "--check"]) == 0
    assert "check against table 2 (Vertebrate Mitochondrial)" in capsys.readouterr().out


def test_no_early_stop_and_target_reach_the_library(model_path, tmp_path, monkeypatch):  # noqa: F811
    seen = []

    def spy(model, **kwargs):
        seen.append(kwargs)
        return real(model, **kwargs)
    real = runs.finetune_codon_model
    monkeypatch.setattr(runs, "finetune_codon_model", spy)
    common = ["--from", model_path, "--table", "vertebrate_mitochondrial", "--steps", "3", "--lr", "1e-3",
              "--seed", "5", "--n", "20", "--check-pairs", "0", "--no-progress"]
    assert _finetune(*common, "--no-early-stop", "--out", tmp_path / "a.npz")[0] == 0
    assert seen[-1]["target_exact"] > 1 and seen[-1]["max_steps"] == 3 and seen[-1]["lr"] == 1e-3
    assert load_checkpoint(tmp_path / "a.npz").step == 3  # every step was run
    assert _finetune(*common, "--target", "0.5", "--out", tmp_path / "b.npz")[0] == 0
    assert seen[-1]["target_exact"] == 0.5 and seen[-1]["seed"] == 5 and seen[-1]["table"] == 2


# ------------------------------------------------------------------------ frozen parts
@pytest.mark.parametrize("freeze, fixed", [
    ("encoder", ("src_embed.", "src_pos.", "encoder.")),
    ("embeddings", ("src_embed.", "tgt_embed.", "src_pos.", "tgt_pos.")),
])
def test_frozen_parameters_stay_bit_identical(freeze, fixed, model_path, tmp_path):  # noqa: F811
    out = tmp_path / f"{freeze}.npz"
    status, printed = _finetune("--from", model_path, "--table", "2", "--out", out, "--steps", "3",
                                "--freeze", freeze, "--check-pairs", "0", "--n", "20", "--no-progress")
    assert status == 0, printed
    before, after = load_checkpoint(model_path).params, load_checkpoint(out).params
    assert before.keys() == after.keys()
    frozen = [name for name in before if name.startswith(fixed)]
    trained = [name for name in before if not name.startswith(fixed)]
    assert frozen and any(n.startswith("decoder.") for n in trained)
    for name in frozen:
        assert after[name].dtype == before[name].dtype
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    for name in trained:
        assert not np.array_equal(after[name], before[name]), f"{name} did not change"
    assert f"freeze {freeze}: {len(frozen)} of {len(before)} parameter arrays" in printed


# ------------------------------------------------------------------------ a file of pairs
def test_finetune_on_a_pairs_file(model_path, tmp_path):  # noqa: F811
    data = tmp_path / "mito.csv"
    assert main(["codon", "make-data", "--n", "25", "--min-len", "2", "--max-len", "8", "--table", "2",
                 "--seed", "1", "--out", str(data)]) == 0
    out = tmp_path / "from-file.npz"
    status, printed = _finetune("--from", model_path, "--table", "2", "--data", data, "--out", out,
                                "--steps", "2", "--check-pairs", "10", "--no-progress")
    assert status == 0, printed
    assert f"on 25 pairs from {data}" in printed and "(2-8 residues" in printed
    ckpt = load_checkpoint(out)
    assert ckpt.metadata["data"] == str(data) and ckpt.metadata["finetune"]["lengths"] == [2, 8]


def test_bad_pairs_files(model_path, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "never.npz"
    standard = tmp_path / "standard.csv"  # UGA is a stop in table 1 but W in table 2
    pd.DataFrame({"rna": ["AUGGCC", "AUGUGA"], "protein": ["MA", "M*"]}).to_csv(standard, index=False)
    bad_letter = tmp_path / "letter.csv"
    bad_letter.write_text("rna,protein\nAUGGCC,MA\nAUGXCC,MA\n")
    for path, expected in [(standard, "rows 2"), (bad_letter, "'X' at position 4"),
                           (tmp_path / "missing.csv", "no such pairs file")]:
        status, _ = _finetune("--from", model_path, "--table", "2", "--data", path, "--out", out,
                              "--steps", "1", "--no-progress")
        assert status == 2
        assert expected in _one_line_error(capsys.readouterr().err)
    assert not out.exists()


# ------------------------------------------------------------------------ bad input
def test_missing_and_corrupt_from_files(tmp_path, capsys):
    out = tmp_path / "never.npz"
    assert _finetune("--from", tmp_path / "missing.npz", "--table", "2", "--out", out)[0] != 0
    assert "no checkpoint" in _one_line_error(capsys.readouterr().err)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(os.urandom(300))
    assert _finetune("--from", corrupt, "--table", "2", "--out", out)[0] != 0
    assert "not a valid minitransformer checkpoint" in _one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_out_may_not_be_the_from_file(model_path, capsys):  # noqa: F811
    before = _digest(model_path)
    same = model_path.parent / ".." / model_path.parent.name / model_path.name  # another spelling
    for out in (model_path, same):
        assert _finetune("--from", model_path, "--table", "2", "--out", out, "--steps", "1")[0] == 2
        assert "is the --from model itself" in _one_line_error(capsys.readouterr().err)
    assert _digest(model_path) == before


@pytest.mark.parametrize("args, message", [
    (["--table", "99"], "unknown genetic code table 99"),
    (["--table", "martian"], "unknown genetic code 'martian'"),
    (["--table", "2", "--data", "x.csv", "--n", "5"], "not both"),
    (["--table", "2", "--min-len", "9", "--max-len", "4"], "--min-len 9 is larger than --max-len 4"),
    (["--table", "2", "--max-len", "400"], "1200 nucleotides"),
])
def test_bad_options_are_one_line_errors(args, message, model_path, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "never.npz"
    assert _finetune("--from", model_path, *args, "--out", out, "--steps", "1", "--no-progress")[0] == 2
    assert message in _one_line_error(capsys.readouterr().err)
    assert not out.exists()
