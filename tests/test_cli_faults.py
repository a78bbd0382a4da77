"""The command line never loses a user's work: outputs checked before the work, no silent
overwrite of a model, SIGTERM and SIGHUP handled like Ctrl-C, ``--resume`` bit for bit,
pictures in the format their extension names, codon metadata checked, threads as documented,
progress that says how far and how long.

The models are tiny (see ``test_codon_cli.py``); the subprocess tests take a few seconds each.
"""
import contextlib
import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from test_codon_cli import TINY, _one_line_error, model_path, pairs_csv, workdir  # noqa: F401 (fixtures)

from minitransformer import cpu
from minitransformer.checkpoint import load_checkpoint, load_model, save_checkpoint
from minitransformer.cli import main
from minitransformer.training import Trainer


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _run(*argv) -> tuple[int, str, str]:
    """``main`` on ``argv``: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def _train(out, *more, steps=3):
    return _run("codon", "train", *TINY, "--max-steps", steps, "--no-progress", "--out", out, *more)


def _params_equal(a, b) -> bool:
    a, b = load_checkpoint(a), load_checkpoint(b)
    return a.params.keys() == b.params.keys() and all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(n)``: Ctrl-C arrives once, as the trainer is about to make step n + 1
    (``then``: call it instead)."""
    def arm(n, then=None):
        real, armed = Trainer.train_step, [True]

        def step(self, batch):
            if self.step == n and armed[0]:
                armed[0] = False
                if then is None:
                    raise KeyboardInterrupt
                then()
            return real(self, batch)
        monkeypatch.setattr(Trainer, "train_step", step)
    return arm


# ------------------------------------------------------------------------ outputs checked first
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_data_and_out_may_not_be_the_same_file(command, model_path, pairs_csv, tmp_path):  # noqa: F811
    data = tmp_path / "pairs.csv"
    data.write_bytes(pairs_csv.read_bytes())
    before = _digest(data)
    extra = ["--from", model_path, "--table", "1"] if command == "finetune" else TINY
    status, out, err = _run("codon", command, *extra, "--data", data, "--out", data, "--no-progress", "--force")
    assert status == 2 and "same file as the input" in _one_line_error(err) and "--out" in err
    assert _digest(data) == before and "training" not in out


@pytest.mark.parametrize("out, words", [
    ("{tmp}/newdir/", "ends with a path separator"),
    ("{tmp}", "is a folder"),
    ("/dev/null", "not a regular file"),
    ("/proc/x.npz", "cannot be written"),
    ("{tmp}/read-only.npz", "read-only"),
])
def test_an_output_that_must_not_be_written_is_refused_before_training(out, words, tmp_path):
    readonly = tmp_path / "read-only.npz"
    readonly.write_bytes(b"precious")
    readonly.chmod(0o444)
    out = out.format(tmp=tmp_path)
    started = time.perf_counter()
    status, printed, err = _train(out, "--force", "--time-budget", "5", steps=100000)
    assert status == 2 and words in _one_line_error(err) and "--out" in err
    assert printed == "" and time.perf_counter() - started < 30   # refused before the work
    assert readonly.read_bytes() == b"precious" and stat.S_IMODE(readonly.stat().st_mode) == 0o444
    assert not (tmp_path / "newdir").exists()


def test_make_data_names_the_option_of_an_unwritable_output(capsys):
    assert main(["codon", "make-data", "--n", "2", "--out", "/proc/pairs.csv"]) == 2
    assert "--out /proc/pairs.csv cannot be written" in _one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------------ no silent overwrite
def test_train_refuses_an_existing_model_without_force(tmp_path):
    out = tmp_path / "model.npz"
    assert _train(out)[0] == 0
    before = _digest(out)
    status, _, err = _train(out, steps=4)
    assert status == 2 and "already exists" in _one_line_error(err) and "--force" in err
    assert _digest(out) == before
    assert _train(out, "--force", steps=4)[0] == 0
    assert load_checkpoint(out).step == 4


def test_finetune_refuses_an_existing_out_without_force(model_path, tmp_path):  # noqa: F811
    out = tmp_path / "mito.npz"
    out.write_bytes(b"someone's model")
    status, _, err = _run("codon", "finetune", "--from", model_path, "--table", "2", "--out", out,
                          "--steps", "2", "--n", "20", "--check-pairs", "0", "--no-progress")
    assert status == 2 and "already exists" in _one_line_error(err)
    assert out.read_bytes() == b"someone's model"


def test_demo_refuses_the_model_of_an_earlier_demo_without_force(tmp_path):
    (tmp_path / "model.npz").write_bytes(b"an earlier demo's model")
    status, _, err = _run("codon", "demo", "--out-dir", tmp_path, "--time-budget", "1")
    assert status == 2 and "--out-dir (model)" in _one_line_error(err) and "--force" in err
    assert (tmp_path / "model.npz").read_bytes() == b"an earlier demo's model"


def test_an_interrupted_run_never_replaces_a_model_it_did_not_make(tmp_path, interrupt_at):
    out = tmp_path / "model.npz"
    assert _train(out, steps=6)[0] == 0
    before = _digest(out)
    interrupt_at(2)
    status, printed, err = _train(out, "--force", steps=50)
    assert status == 130
    assert _digest(out) == before                       # the 6-step model is intact
    sibling = tmp_path / "model.interrupted.npz"
    assert load_checkpoint(sibling).step == 2
    assert f"saved to {sibling}" in err and "left as it is" in err
    assert (tmp_path / "model.interrupted.history.csv").is_file()


def test_an_interrupted_run_saves_to_a_new_out(tmp_path, interrupt_at):
    out = tmp_path / "new.npz"
    interrupt_at(2)
    status, _, err = _train(out, steps=50)
    assert status == 130 and load_checkpoint(out).step == 2
    assert f"saved to {out}; continue with --resume {out}" in err


def test_a_model_written_meanwhile_by_another_run_is_not_replaced(tmp_path, interrupt_at):
    out = tmp_path / "shared.npz"
    interrupt_at(2, then=lambda: out.write_bytes(b"the other run's model"))
    status, _, err = _train(out, steps=4)
    assert status == 0 and out.read_bytes() == b"the other run's model"
    assert load_checkpoint(tmp_path / "shared.new.npz").step == 4
    assert "another program wrote it" in err


# ------------------------------------------------------------------------ signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_save_the_run_like_ctrl_c(signum, tmp_path):
    out = tmp_path / "model.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "minitransformer", "codon", "train", *TINY, "--time-budget", "600",
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:            # piped: no bar, and the check lines come through
            if line.startswith("step 100:"):   # the first check: a hundred steps are done
                break
        else:
            pytest.fail(f"no progress before the end: {process.stderr.read()}")
        process.send_signal(signum)
        status = process.wait(timeout=120)
        err = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert status == 130, err
    assert "interrupted: the model after" in err and "Traceback" not in err
    ckpt = load_checkpoint(out)
    assert ckpt.step >= 100 and ckpt.metadata["stop_reason"] == "interrupted"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


# ------------------------------------------------------------------------ resume
def test_train_resume_equals_an_uninterrupted_run(tmp_path, interrupt_at):
    straight, half = tmp_path / "straight.npz", tmp_path / "half.npz"
    assert _train(straight, steps=30)[0] == 0
    interrupt_at(13)
    assert _train(half, steps=30)[0] == 130
    status, printed, _ = _run("codon", "train", "--resume", half, "--max-steps", "30", "--no-progress",
                              "--out", half)   # in place: no --force needed
    assert status == 0 and "resuming at step 13" in printed
    assert load_checkpoint(half).step == 30 and _params_equal(straight, half)
    history = pd.read_csv(tmp_path / "half.history.csv")
    assert history["step"].min() <= 10 and history["step"].max() == 30   # the first part kept


def test_finetune_resume_equals_an_uninterrupted_run(model_path, tmp_path, interrupt_at):  # noqa: F811
    common = ["--from", model_path, "--table", "2", "--steps", "8", "--n", "20", "--check-every", "3",
              "--check-pairs", "0", "--no-early-stop", "--no-progress"]
    straight, half = tmp_path / "straight.npz", tmp_path / "half.npz"
    assert _run("codon", "finetune", *common, "--out", straight)[0] == 0
    interrupt_at(4)
    assert _run("codon", "finetune", *common, "--out", half)[0] == 130
    assert load_checkpoint(half).step == 4
    status, _, err = _run("codon", "finetune", *common[:-1], "--lr", "0.01", "--resume", half, "--out", half)
    assert status == 2 and "--lr" in _one_line_error(err)   # other options than the run's: refused
    assert _run("codon", "finetune", *common, "--resume", half, "--out", half)[0] == 0
    assert load_checkpoint(half).step == 8 and _params_equal(straight, half)


def test_resume_refuses_what_it_cannot_continue(model_path, tmp_path):  # noqa: F811
    out = tmp_path / "r.npz"
    status, _, err = _run("codon", "train", "--resume", model_path, "--d-model", "32", "--out", out)
    assert status == 2 and "--d-model" in _one_line_error(err)
    status, _, err = _run("codon", "train", "--resume", model_path, "--table", "2", "--max-steps", "5",
                          "--out", out)
    assert status == 2 and "--table 2" in _one_line_error(err)


# ------------------------------------------------------------------------ pictures
@pytest.mark.parametrize("name, magic", [("a.pdf", b"%PDF"), ("a.svg", b"<?xml"), ("a.png", b"\x89PNG")])
def test_attention_saves_the_format_its_extension_names(name, magic, model_path, tmp_path):  # noqa: F811
    out = tmp_path / name
    assert _run("codon", "attention", "--model", model_path, "AUGGCC", "--out", out)[0] == 0
    assert out.read_bytes().startswith(magic)


def test_attention_refuses_an_extension_matplotlib_cannot_write(model_path, tmp_path):  # noqa: F811
    status, _, err = _run("codon", "attention", "--model", model_path, "AUGGCC", "--out", tmp_path / "a.xyz")
    assert status == 2 and ".xyz" in _one_line_error(err) and ".pdf" in err
    assert not (tmp_path / "a.xyz").exists()


# ------------------------------------------------------------------------ metadata
@pytest.mark.parametrize("change, field", [
    ({"table": 99}, "'table'"),
    ({"table": "abc"}, "'table'"),
    ({"seed": "abc"}, "'seed'"),
    ({"finetune": {"seed": -1}}, "'finetune.seed'"),
    ({"curriculum": [["a", 0, 10]]}, "'curriculum'"),
    ({"recipe": {"min_len": "1"}}, "'recipe.min_len'"),
])
def test_invalid_codon_metadata_names_the_file_and_the_field(change, field, model_path, tmp_path):  # noqa: F811
    model, ckpt = load_model(model_path)
    bad = tmp_path / "bad.npz"
    save_checkpoint(bad, model, metadata={**ckpt.metadata, **change})
    for command in (["translate", "AUG", "--check"], ["attention", "AUG", "--out", tmp_path / "a.png"]):
        status, _, err = _run("codon", *command, "--model", bad)
        message = _one_line_error(err)
        assert status == 2 and str(bad) in message and field in message


# ------------------------------------------------------------------------ messages
def test_translate_a_csv_with_a_header_and_no_rows(model_path, tmp_path):  # noqa: F811
    empty = tmp_path / "empty.csv"
    empty.write_text("name,rna\n")
    status, _, err = _run("codon", "translate", "--model", model_path, "--csv", empty)
    assert status == 2 and f"{empty} has a header but no rows" in _one_line_error(err)


@pytest.fixture
def threads_env(monkeypatch):
    yield monkeypatch
    cpu.use_threads(None)


def test_threads_default_to_every_cpu_or_the_variable(threads_env):
    threads_env.delenv(cpu.THREADS_ENV_VAR, raising=False)
    assert cpu.tune_for_training() == cpu.available_cpus()
    threads_env.setenv(cpu.THREADS_ENV_VAR, "3")
    assert cpu.tune_for_training() == 3
    assert cpu.tune_for_training(2) == 2                   # --threads wins
    for bad in ("abc", "0", "-1"):
        threads_env.setenv(cpu.THREADS_ENV_VAR, bad)
        with pytest.raises(ValueError, match=f"{cpu.THREADS_ENV_VAR}='{bad}' is not a positive integer"):
            cpu.tune_for_training()


def test_a_bad_threads_variable_is_one_line_from_the_command_line(threads_env, model_path):  # noqa: F811
    threads_env.setenv(cpu.THREADS_ENV_VAR, "abc")
    status, _, err = _run("codon", "translate", "--model", model_path, "AUG")
    assert status == 2 and cpu.THREADS_ENV_VAR in _one_line_error(err)


# ------------------------------------------------------------------------ progress
def test_piped_progress_is_plain_lines_with_the_total_and_time_left(tmp_path, monkeypatch):
    from minitransformer.training import Progress
    monkeypatch.setattr(Progress, "EVERY_SECONDS", 0.0)
    status, printed, err = _run("codon", "train", *TINY, "--max-steps", "12", "--time-budget", "600",
                                "--out", tmp_path / "m.npz")
    assert status == 0 and "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("codon: step")]
    assert len(lines) == 12 and lines[-1].startswith("codon: step 12 of 12 (100%)")
    assert all("s left" in line for line in lines)


def test_no_progress_keeps_the_check_lines(tmp_path, monkeypatch):
    from minitransformer.training import Progress
    monkeypatch.setattr(Progress, "EVERY_SECONDS", 0.0)
    status, printed, err = _run("codon", "train", *TINY, "--max-steps", "100", "--no-progress",
                                "--out", tmp_path / "m.npz")
    assert status == 0 and "step 100: exact_match=" in printed and "codon: step" not in err


def test_a_terminal_gets_a_bar_of_the_time_budget(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "minitransformer", "codon", "train", *TINY,
                                "--time-budget", "2", "--out", str(tmp_path / "m.npz")],
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0
    redraws = shown.decode(errors="replace").split("\r")
    bar = [text for text in redraws if "s of the time budget" in text]
    assert bar and "/2 s of the time budget" in bar[-1] and "left=" in bar[-1] and "step=" in bar[-1]


def test_ctrl_c_during_the_last_check_keeps_the_steps(tmp_path, monkeypatch):
    from minitransformer.codon import train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "translate_rna", interrupted)   # the check after step 7
    out = tmp_path / "m.npz"
    status, _, err = _train(out, steps=7)
    assert status == 130 and "after 7 steps is saved" in err
    assert load_checkpoint(out).step == 7


def test_a_signal_during_the_save_waits_until_the_model_is_written(tmp_path, interrupt_at, monkeypatch):
    from minitransformer.codon import runs

    real = runs.save_run

    def save_and_be_killed(path, run, **kw):
        os.kill(os.getpid(), signal.SIGTERM)   # a second stop, while the first one's save runs
        time.sleep(0.1)
        return real(path, run, **kw)
    monkeypatch.setattr(runs, "save_run", save_and_be_killed)
    interrupt_at(3)
    out = tmp_path / "m.npz"
    status, _, err = _train(out, steps=50)
    assert status == 130 and load_checkpoint(out).step == 3
    assert (tmp_path / "m.history.csv").is_file() and (tmp_path / "m.learning-curve.png").is_file()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
