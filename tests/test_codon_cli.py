"""Tests for the ``minitransformer codon`` commands, run through ``minitransformer.cli.main``.

Models here are tiny and trained for 3 steps: the tests check the plumbing (files, formats,
messages, exit codes), not translation quality.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from minitransformer import backend, cpu
from minitransformer.checkpoint import load_checkpoint, save_checkpoint
from minitransformer.cli import main
from minitransformer.codon import demo
from minitransformer.codon.alignment import edit_counts
from minitransformer.codon.evaluation import check_translations
from minitransformer.codon.genetic_code import translate
from minitransformer.codon.report import difference_markers
from minitransformer.codon.data import read_pairs_csv
from minitransformer.codon.train import CodonRecipe, split_into_pieces

TINY = ["--d-model", "16", "--heads", "2", "--d-ff", "32", "--layers", "1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got: {err!r}"
    assert lines[0].startswith("minitransformer: error:")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("codon_cli")


@pytest.fixture(scope="module")
def pairs_csv(workdir):
    path = workdir / "pairs.csv"
    assert main(["codon", "make-data", "--n", "30", "--min-len", "1", "--max-len", "12",
                 "--seed", "3", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def model_path(workdir):
    path = workdir / "runs" / "tiny.npz"
    assert main(["codon", "train", *TINY, "--max-steps", "3", "--no-progress", "--out", str(path)]) == 0
    return path


# ------------------------------------------------------------------------ help
def test_python_m_codon_help():
    result = subprocess.run([sys.executable, "-m", "minitransformer", "codon", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("demo", "make-data", "train", "evaluate", "translate", "attention"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["demo", "make-data", "train", "evaluate", "translate", "attention"])
def test_every_command_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["codon", command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: minitransformer codon " + command in out
    assert "(default:" in out


def test_codon_without_command_prints_help(capsys):
    assert main(["codon"]) == 2
    assert "make-data" in capsys.readouterr().out


# ------------------------------------------------------------------------ make-data
def test_make_data_writes_valid_pairs(pairs_csv, tmp_path, capsys):
    df = read_pairs_csv(pairs_csv, table=1)  # raises unless every protein is the translation
    assert len(df) == 30
    assert df["protein"].str.len().between(1, 12).all()
    out = tmp_path / "mito" / "m.csv"
    assert main(["codon", "make-data", "--n", "5", "--table", "mitochondrial", "--out", str(out)]) == 0
    read_pairs_csv(out, table=2)
    assert "table 2" in capsys.readouterr().out


def test_make_data_to_stdout_and_bad_lengths(capsys):
    assert main(["codon", "make-data", "--n", "3", "--max-len", "4", "--out", "-"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "rna,protein" and len(lines) == 4
    assert main(["codon", "make-data", "--min-len", "9", "--max-len", "4", "--out", "-"]) == 2
    assert "--min-len 9" in _one_line_error(capsys.readouterr().err)


def test_bad_table_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["codon", "make-data", "--table", "99", "--out", "-"])
    assert exit_info.value.code == 2
    assert "unknown genetic code table 99" in capsys.readouterr().err


# ------------------------------------------------------------------------ train
def test_train_writes_checkpoint_history_and_curve(model_path):
    history = model_path.with_name("tiny.history.csv")
    curve = model_path.with_name("tiny.learning-curve.png")
    assert model_path.is_file() and history.is_file() and _is_png(curve)
    ckpt = load_checkpoint(model_path)
    assert ckpt.step == 3
    assert ckpt.metadata["task"] == "codon" and ckpt.metadata["table"] == 1
    assert ckpt.metadata["recipe"]["d_model"] == 16
    assert ckpt.metadata["recipe"]["n_decoder_layers"] == 1
    assert ckpt.metadata["train_seconds"] > 0
    assert set(ckpt.vocabularies) == {"source", "target"}
    assert ckpt.optimizer_state is not None and ckpt.rng_state is not None
    assert "step" in pd.read_csv(history).columns


def test_the_ctrl_c_save_writes_what_the_end_of_run_save_writes(model_path, tmp_path, capsys):
    """One function writes a codon checkpoint's metadata: the save on Ctrl-C has the same
    entries as the save at the end of ``codon train``, with what it cannot know left None."""
    from types import SimpleNamespace

    from minitransformer.checkpoint import load_model
    from minitransformer.codon.checkpoints import save_on_interrupt
    from minitransformer.optim import Adam

    model, _ = load_model(model_path)
    trainer = SimpleNamespace(model=model, optimizer=Adam(model.parameters(), lr=1e-3), step=7,
                              train_seconds=1.5, stop_reason="interrupted")
    out = tmp_path / "interrupted.npz"
    save_on_interrupt(out, CodonRecipe(d_model=16), 2, data="pairs.csv")(trainer)
    assert "saved the model after 7 steps" in capsys.readouterr().err
    saved, finished = load_checkpoint(out), load_checkpoint(model_path)
    assert saved.metadata.keys() == finished.metadata.keys()
    assert saved.metadata["task"] == "codon" and saved.metadata["table"] == 2 and saved.step == 7
    assert saved.metadata["stop_reason"] == "interrupted" and saved.metadata["data"] == "pairs.csv"
    assert saved.metadata["recipe"]["d_model"] == 16 and saved.metadata["curriculum"] is None
    assert set(saved.vocabularies) == {"source", "target"} and saved.optimizer_state is not None


@pytest.mark.gpu
@pytest.mark.skipif(backend.cupy_unavailable_reason() is not None,
                    reason=f"train --backend cupy needs a GPU: {backend.cupy_unavailable_reason()}")
def test_train_on_cupy_writes_a_checkpoint_that_loads_on_the_cpu(tmp_path, capsys):
    path = tmp_path / "gpu.npz"
    assert main(["codon", "train", *TINY, "--backend", "cupy", "--max-steps", "20", "--no-progress",
                 "--out", str(path)]) == 0
    ckpt = load_checkpoint(path)
    assert ckpt.step == 20 and ckpt.metadata["table"] == 1
    history = pd.read_csv(path.with_name("gpu.history.csv"))
    assert np.isfinite(history["loss"].dropna()).all()
    # the checkpoint holds plain NumPy arrays: the CPU can translate with it
    assert main(["codon", "translate", "--model", str(path), "AUGGCC"]) == 0


def test_train_on_a_file_with_a_wrong_row_fails_early(pairs_csv, tmp_path, capsys):
    df = pd.read_csv(pairs_csv)
    df.loc[4, "protein"] = "W" * len(df.loc[4, "protein"])  # not what the RNA says
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    out = tmp_path / "never.npz"
    assert main(["codon", "train", "--data", str(bad), *TINY, "--max-steps", "1",
                 "--no-progress", "--out", str(out)]) == 2
    message = _one_line_error(capsys.readouterr().err)
    assert "rows 5" in message
    assert not out.exists()


def test_train_bad_options(tmp_path, capsys):
    assert main(["codon", "train", "--d-model", "10", "--heads", "4", "--out", str(tmp_path / "m.npz")]) == 2
    assert "divisible" in _one_line_error(capsys.readouterr().err)
    assert main(["codon", "train", "--max-steps", "1", "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["codon", "train", "--max-steps", "0"])


# ------------------------------------------------------------------------ evaluate
def test_evaluate_json_reports_and_excludes_a_wrong_row(model_path, pairs_csv, tmp_path, capsys):
    df = pd.read_csv(pairs_csv)
    df.loc[2, "protein"] = "W" * len(df.loc[2, "protein"])
    data = tmp_path / "with_error.csv"
    df.to_csv(data, index=False)
    assert main(["codon", "evaluate", "--model", str(model_path), "--data", str(data), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    for key in ("exact_match", "residue_accuracy", "n", "by_length", "table", "mismatched_rows"):
        assert key in result
    assert 0.0 <= result["exact_match"] <= 1.0 and 0.0 <= result["residue_accuracy"] <= 1.0
    assert result["mismatched_rows"] == [3]
    assert result["n"] == len(df) - 1
    assert result["table"] == 1
    assert sum(b["n"] for b in result["by_length"]) == result["n"]
    assert all(0.0 <= b["exact_match"] <= 1.0 for b in result["by_length"])
    # errors counted by alignment beside exact match, overall and by length, adding up
    assert result["edits"] == result["substitutions"] + result["insertions"] + result["deletions"]
    assert sum(b["edits"] for b in result["by_length"]) == result["edits"]
    assert (result["edits"] == 0) == (result["exact_match"] == 1.0)
    assert "rows 3" in captured.err and "left out" in captured.err


def test_evaluate_table_output_and_max_rows(model_path, pairs_csv, capsys):
    assert main(["codon", "evaluate", "--model", str(model_path), "--data", str(pairs_csv),
                 "--max-rows", "10"]) == 0
    out = capsys.readouterr().out
    assert "10 pairs" in out and "exact match" in out and "aligned errors" in out and "subst/ins/del" in out
    assert out.strip().splitlines()[-1].startswith("all")


def test_evaluate_against_another_table_leaves_out_differing_rows(model_path, tmp_path, capsys):
    data = tmp_path / "p.csv"
    pd.DataFrame({"rna": ["AUGUGA", "AUGGCC"], "protein": ["M*", "MA"]}).to_csv(data, index=False)
    assert main(["codon", "evaluate", "--model", str(model_path), "--data", str(data),
                 "--table", "2", "--json"]) == 0  # UGA is W in table 2
    result = json.loads(capsys.readouterr().out)
    assert result["table"] == 2 and result["mismatched_rows"] == [1] and result["n"] == 1


def test_evaluate_bad_data(model_path, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("rna,protein\nAUGXCC,MA\nAUGGCC,MA\n")
    assert main(["codon", "evaluate", "--model", str(model_path), "--data", str(bad)]) == 2
    message = _one_line_error(capsys.readouterr().err)
    assert "row 1" in message and "'X' at position 4" in message
    assert main(["codon", "evaluate", "--model", str(model_path), "--data", str(tmp_path / "no.csv")]) == 2
    assert "no such pairs file" in _one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------------ translate
def test_translate_accepts_dna_lowercase_and_whitespace(model_path, capsys):
    assert main(["codon", "translate", "--model", str(model_path), "atg gcc\ttaa", "AUGGCC"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    alphabet = set("ACDEFGHIKLMNPQRSTVWY*")
    assert all(set(line) <= alphabet for line in lines)


def test_translate_bad_characters_one_line_error(model_path, capsys):
    code = main(["codon", "translate", "--model", str(model_path), "AUGGCC", "AUGXCC-"])
    assert code != 0
    message = _one_line_error(capsys.readouterr().err)
    assert "sequence 2" in message
    assert "'X' at position 4" in message and "'-' at position 7" in message


def test_translate_incomplete_codon_and_nothing_to_do(model_path, capsys):
    assert main(["codon", "translate", "--model", str(model_path), "AUGG"]) == 2
    assert "multiple of 3" in _one_line_error(capsys.readouterr().err)
    assert main(["codon", "translate", "--model", str(model_path)]) == 2
    assert "nothing to translate" in _one_line_error(capsys.readouterr().err)


def test_translate_check_marks_differences(model_path, capsys):
    seq = "AUGGCCAUUGUAAUGGGCCGCUGA"
    assert main(["codon", "translate", "--model", str(model_path), seq, "--check"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = out[-1]
    assert summary.startswith("check against table 1 (Standard)")
    protein = out[0]
    if protein == "MAIVMGR*":
        assert "1 of 1 sequences translated exactly" in summary
        assert "by alignment 0 edits" in summary
    else:  # an untrained model: a marker line with a ^ under every wrong residue
        marks = out[1].split("  <-")[0]
        assert set(marks) <= {" ", "^"} and "^" in marks
        assert "0 of 1 sequences translated exactly" in summary
        assert f"by alignment {edit_counts(protein, 'MAIVMGR*').describe()} in 8 residues" in summary


def test_check_counts_a_dropped_residue_once_piece_by_piece():
    """--check aligns each piece's protein with the translation of that piece: a residue dropped
    in the first piece counts once, though every later position differs."""
    rna = "AUGGCCAUUGUAAAA" * 40                            # 200 codons, (MAIVK) x 40
    expected = translate(rna)
    pieces = split_into_pieces(rna, 90)
    parts = [translate(p) for p in pieces]
    parts[0] = parts[0][:5] + parts[0][6:]                # one residue dropped in piece 1
    parts[2] = parts[2][:10] + "W" + parts[2][11:]        # one substituted in piece 3
    lines = check_translations(["g"], [rna], [parts], 1, show_names=False, max_codons=90)
    assert "".join(parts) != expected
    assert "2 edits (1 substitution, 0 insertions, 1 deletion) in 200 residues" in lines[1]
    assert lines[-1].startswith("check against table 1 (Standard): 0 of 1 sequences translated exactly; "
                                "by alignment 2 edits (1 substitution, 0 insertions, 1 deletion) in 200 "
                                "residues (1.00%)")
    differing = int(lines[-1].split("; ")[-1].split()[0])
    assert differing > 50                                 # what counting position by position says


def test_translate_long_sequences_in_pieces(model_path, capsys):
    rna = "AUGGCC" * 20                                   # 40 codons; the tiny model trained on <= 12
    assert main(["codon", "translate", "--model", str(model_path), "--piece-codons", "0", rna]) == 0
    whole = capsys.readouterr().out.strip()
    assert main(["codon", "translate", "--model", str(model_path), "--piece-codons", "10", rna]) == 0
    in_pieces = capsys.readouterr().out.strip()
    assert main(["codon", "translate", "--model", str(model_path), rna]) == 0   # auto: trained range
    auto = capsys.readouterr().out.strip()
    from minitransformer.checkpoint import load_model
    from minitransformer.codon.train import safe_piece_codons, split_into_pieces, translate_rna
    model, ckpt = load_model(model_path)
    longest = ckpt.metadata["curriculum"][-1][2]
    # auto: pieces of 5/6 of the longest trained length, clear of the weak edge
    assert safe_piece_codons(longest) < longest
    assert auto == "".join(translate_rna(model, split_into_pieces(rna, safe_piece_codons(longest))))
    assert in_pieces == "".join(translate_rna(model, split_into_pieces(rna, 10)))
    assert whole == translate_rna(model, [rna])[0]
    assert main(["codon", "translate", "--model", str(model_path), "--piece-codons", "-3", rna]) == 2
    assert "--piece-codons" in _one_line_error(capsys.readouterr().err)


def test_difference_markers():
    assert difference_markers("MAIV", "MAIV") == ""
    assert difference_markers("MKIV", "MAIV") == " ^"
    assert difference_markers("MA", "MAIV") == "  ^^"
    assert difference_markers("MAIVK", "MAIV") == "    ^"


def test_translate_fasta_and_csv_print_names(model_path, tmp_path, capsys):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">gene1 a description\natggcc\ntaa\n>gene2\nAUGUUU\n")
    csv = tmp_path / "s.csv"
    pd.DataFrame({"name": ["x", "y"], "rna": ["AUGAAA", "aug ccc"]}).to_csv(csv, index=False)
    assert main(["codon", "translate", "--model", str(model_path), "--fasta", str(fasta),
                 "--csv", str(csv), "--check", "--beam", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line.split("\t")[0] for line in out if "\t" in line and line.split("\t")[0].strip()]
    assert names == ["gene1", "gene2", "x", "y"]
    bad = tmp_path / "bad.fa"
    bad.write_text(">g\nAUGNNN\n")
    assert main(["codon", "translate", "--model", str(model_path), "--fasta", str(bad)]) == 2
    message = _one_line_error(capsys.readouterr().err)
    assert "'g'" in message and "'N' at position 4" in message


def test_translate_too_long_for_the_model(model_path, capsys):
    long = "GCC" * 400  # 1200 nucleotides; the model reads at most 1024
    assert main(["codon", "translate", "--model", str(model_path), "--piece-codons", "0", long]) == 2
    assert "at most 1024" in _one_line_error(capsys.readouterr().err)
    # in pieces (by default, of the trained length) it fits
    assert main(["codon", "translate", "--model", str(model_path), long]) == 0


# ------------------------------------------------------------------------ attention
def test_attention_writes_png(model_path, tmp_path, capsys):
    out = tmp_path / "pics" / "attention.png"
    assert main(["codon", "attention", "--model", str(model_path), "augGCCauuGUA", "--out", str(out)]) == 0
    assert _is_png(out)
    assert "translation:" in capsys.readouterr().out
    assert main(["codon", "attention", "--model", str(model_path), "AUG", "--layer", "1",
                 "--out", str(tmp_path / "one.png")]) == 0
    assert main(["codon", "attention", "--model", str(model_path), "AUG", "--layer", "2",
                 "--out", str(tmp_path / "two.png")]) == 2
    assert "decoder layers 1 to 1" in _one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------------ broken models
@pytest.mark.parametrize("command", [
    ["evaluate", "--data", "{data}"], ["translate", "AUG"], ["attention", "AUG"]])
def test_missing_and_corrupt_model_files(command, pairs_csv, tmp_path, capsys):
    args = [a.format(data=pairs_csv) for a in command]
    missing = tmp_path / "missing.npz"
    assert main(["codon", *args, "--model", str(missing)]) != 0
    assert "no checkpoint" in _one_line_error(capsys.readouterr().err)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(os.urandom(300))
    assert main(["codon", *args, "--model", str(corrupt)]) != 0
    assert "not a valid minitransformer checkpoint" in _one_line_error(capsys.readouterr().err)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(b"PK\x03\x04" + os.urandom(100))
    assert main(["codon", *args, "--model", str(truncated)]) != 0
    _one_line_error(capsys.readouterr().err)


def test_a_model_of_another_task_is_refused(tmp_path, capsys):
    from minitransformer.transformer import Transformer, TransformerConfig
    model = Transformer(TransformerConfig(src_vocab_size=12, tgt_vocab_size=12, d_model=8, n_heads=2,
                                          d_ff=16, n_encoder_layers=1, n_decoder_layers=1))
    other = tmp_path / "other.npz"
    save_checkpoint(other, model)
    assert main(["codon", "translate", "--model", str(other), "AUG"]) == 2
    assert "not a codon model" in _one_line_error(capsys.readouterr().err)
    save_checkpoint(other, model, metadata={"task": "copy"})
    assert main(["codon", "translate", "--model", str(other), "AUG"]) == 2
    assert "'copy' task" in _one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------------ demo
class _TinyRecipe(CodonRecipe):
    """The demo's recipe, shrunk so the whole demo runs in seconds."""

    def __init__(self, **kwargs):
        super().__init__(**{"d_model": 16, "n_heads": 2, "d_ff": 32, "n_encoder_layers": 1,
                            "n_decoder_layers": 1, "check_size": 10, "final_max_len": 20, **kwargs})


def test_demo_with_a_tiny_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "CodonRecipe", _TinyRecipe)
    out_dir = tmp_path / "demo"
    assert main(["codon", "demo", "--out-dir", str(out_dir), "--time-budget", "0.5",
                 "--eval-pairs", "12", "--long-eval-pairs", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name in ("model.npz", "history.csv", "learning-curve.png", "accuracy-by-length.png",
                 "evaluation.json", "attention.png"):
        assert (out_dir / name).is_file(), name
        assert str(out_dir / name) in out
    for name in ("learning-curve.png", "accuracy-by-length.png", "attention.png"):
        assert _is_png(out_dir / name)
    evaluation = json.loads((out_dir / "evaluation.json").read_text())
    assert evaluation["in_range"]["n"] == 12 and evaluation["in_range"]["lengths"] == "1-20"
    # longer than any in training: past the 24 residues (1.2 x 20) the curriculum trains on
    assert evaluation["longer"]["n"] == 4 and evaluation["longer"]["lengths"] == "25-40"
    assert 0.0 <= evaluation["in_range"]["exact_match"] <= 1.0
    assert len(evaluation["genes"]) == 7
    assert all(0.0 <= g["residue_accuracy"] <= 1.0 for g in evaluation["genes"])
    assert "Arabidopsis thaliana cor6.6" in out
    assert load_checkpoint(out_dir / "model.npz").metadata["task"] == "codon"


def test_demo_refuses_a_file_as_out_dir(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("")
    assert main(["codon", "demo", "--out-dir", str(target), "--time-budget", "1"]) == 2
    assert "is a file" in _one_line_error(capsys.readouterr().err)


THREAD_PROBE = ("import os, sys; from minitransformer.cli import limit_blas_threads; "
                "limit_blas_threads(sys.argv[1:]); "
                "print([os.environ.get(v) for v in ('MINITRANSFORMER_THREADS', 'OPENBLAS_NUM_THREADS', "
                "'OPENBLAS_THREAD_TIMEOUT')])")


@pytest.mark.parametrize("argv, env, expected", [
    ([], {}, [None, "1", "12"]),                          # pool: every CPU (unset); BLAS: one thread
    (["--threads", "3"], {}, ["3", "1", "12"]),
    (["--threads=2"], {"OPENBLAS_NUM_THREADS": "4"}, ["2", "4", "12"]),   # the user's BLAS setting wins
    ([], {"OPENBLAS_THREAD_TIMEOUT": "0"}, [None, "1", "0"]),
])
def test_command_line_sets_thread_counts_before_numpy_loads(argv, env, expected):
    from minitransformer import cli as top_cli
    assert top_cli.THREADS_ENV_VAR == cpu.THREADS_ENV_VAR   # spelled out twice: keep them one name
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MINITRANSFORMER_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                          "MKL_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT")}
    out = subprocess.run([sys.executable, "-c", THREAD_PROBE, *argv], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(expected)
