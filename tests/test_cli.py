"""Tests for the command line's plumbing: the one number check every option uses, and the
way the command modules import each other (no circle)."""
import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from minitransformer.cli import main
from minitransformer.errors import NUMBER_KINDS, CommandError, read_option_number, number_type

PACKAGE = Path(__file__).resolve().parent.parent / "minitransformer"


# ------------------------------------------------------------------------ number options
@pytest.mark.parametrize("kind, good, bad, words", [
    ("positive integer", [("1", 1), ("42", 42)], ["0", "-3", "1.5", "x"], "a positive integer"),
    ("non-negative integer", [("0", 0), ("7", 7)], ["-1", "2.0", ""], "a non-negative integer"),
    ("positive number", [("0.5", 0.5), ("3", 3.0)], ["0", "-1", "inf", "nan", "abc"], "a positive number"),
    ("probability", [("0", 0.0), ("1", 1.0), ("0.25", 0.25)], ["-0.1", "1.01", "nan"], "a probability"),
    ("probability below 1", [("0", 0.0), ("0.999", 0.999)], ["1", "-0.5"], "up to, but not including, 1"),
    ("positive probability", [("1", 1.0), ("0.01", 0.01)], ["0", "1.5"], "above 0 and at most 1"),
])
def test_each_number_kind_accepts_and_refuses(kind, good, bad, words):
    for text, value in good:
        assert read_option_number(text, kind, "--x") == value
        assert type(read_option_number(text, kind, "--x")) is type(value)
        assert number_type(kind)(text) == value
    for text in bad:
        with pytest.raises(CommandError) as err:
            read_option_number(text, kind, "--some-option")
        message = str(err.value)
        assert message.startswith("--some-option: expected ") and words in message, message
        assert message.endswith(f"got {text}") or message.endswith(f"got {text!r}"), message
        with pytest.raises(argparse.ArgumentTypeError, match=words.replace("(", r"\(")):
            number_type(kind)(text)


def test_every_kind_is_tested():
    assert set(NUMBER_KINDS) == {"positive integer", "non-negative integer", "positive number", "probability",
                                 "probability below 1", "positive probability"}


def test_the_message_names_the_option():
    with pytest.raises(CommandError, match=r"^--seed: expected a non-negative integer, got -1$"):
        read_option_number("-1", "non-negative integer", "--seed")
    with pytest.raises(ValueError, match="unknown number kind 'whole'"):
        number_type("whole")


@pytest.mark.parametrize("argv, message", [
    (["codon", "make-data", "--seed", "-1", "--out", "-"], "--seed: expected a non-negative integer, got -1"),
    (["codon", "train", "--dropout", "1"], "--dropout: expected a number from 0 up to, but not including, 1"),
    (["codon", "make-data", "--stop-rate", "2", "--out", "-"], "--stop-rate: expected a probability"),
    (["codon", "demo", "--time-budget", "0"], "--time-budget: expected a positive number, got 0"),
    (["toy", "--steps", "0"], "--steps: expected a positive integer, got 0"),
    (["--threads", "-1", "toy"], "--threads: expected a positive integer, got -1"),
])
def test_the_command_line_refuses_bad_numbers_by_name(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------ no import circle
def _imported_modules(path: Path, root: Path = PACKAGE.parent) -> set:
    """The absolute names of the modules ``path`` (a file under ``root``) imports:
    ``from ..cli import x`` and ``from .. import cli`` both give ``minitransformer.cli``."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_static_check_sees_relative_imports(tmp_path):
    codon = tmp_path / "minitransformer" / "codon"
    codon.mkdir(parents=True)
    for line in ("from ..cli import CommandError", "from .. import cli", "import minitransformer.cli"):
        (codon / "x.py").write_text(line + "\n")
        assert "minitransformer.cli" in _imported_modules(codon / "x.py", tmp_path), line
    (codon / "x.py").write_text("from ..cpu import threads\nfrom .cli import main\n")
    assert "minitransformer.cli" not in _imported_modules(codon / "x.py", tmp_path)


def test_no_codon_module_imports_the_top_level_command_line():
    modules = sorted((PACKAGE / "codon").glob("*.py"))
    assert PACKAGE / "codon" / "cli.py" in modules
    for path in modules:
        assert "minitransformer.cli" not in _imported_modules(path), f"{path.name} imports minitransformer.cli"


def test_the_codon_command_line_imports_first_in_a_fresh_process():
    code = ("import sys, minitransformer.codon.cli as c; "
            "assert 'minitransformer.cli' not in sys.modules, 'codon.cli loaded the top-level cli'; "
            "import minitransformer.cli as top; assert top.CommandError is c.CommandError; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
