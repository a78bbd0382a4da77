"""The files and sequences a codon command is given, checked before any work starts.

A pairs file with a wrong row, a sequence longer than the model reads, an output path in
a folder that cannot be written: each is one :class:`~minitransformer.errors.CommandError`
(or ``ValueError``) whose single line says what is wrong and where, raised before a long
training run rather than after it.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import CommandError
from ..figures import figure_format
from ..files import check_output_path
from .data import check_pairs, read_pairs_csv
from .genetic_code import get_genetic_code
from .report import SHOWN_ROWS, row_list

__all__ = ["one_line", "read_pairs", "mismatched_rows", "read_training_pairs", "check_lengths",
           "translate_inputs", "ModelOutput", "picture_output", "same_file", "SIDECARS", "sidecar"]


# --------------------------------------------------------------------------------------
# Pairs files
# --------------------------------------------------------------------------------------
def one_line(exc: BaseException) -> str:
    """A multi-line error message (e.g. a list of bad rows) joined into one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def read_pairs(path):
    """A pairs CSV, normalised; its errors (one per bad row) folded into one line."""
    try:
        return read_pairs_csv(path)
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise ValueError(one_line(err)) from err


def mismatched_rows(df, table: int) -> list:
    """1-based data-row numbers of ``df`` whose protein is not the translation of its RNA."""
    wrong = check_pairs(df.reset_index(drop=True), table)
    return [int(i) + 1 for i in wrong.index]


def read_training_pairs(path, table: int, max_nucleotides: int):
    """The pairs of ``path``, refused unless every row translates under ``table`` and fits a
    model that reads ``max_nucleotides``."""
    pairs = read_pairs(path)
    if pairs.empty:
        raise CommandError(f"{path} holds no pairs")
    wrong = mismatched_rows(pairs, table)
    if wrong:
        raise CommandError(f"{len(wrong)} rows of {path} have a protein that is not the translation of "
                           f"their RNA under {get_genetic_code(table)} (rows {row_list(wrong)}; row 1 "
                           f"is line 2); fix them, or choose the right --table")
    too_long = [i + 1 for i, r in enumerate(pairs["rna"]) if len(r) > max_nucleotides]
    if too_long:
        raise CommandError(f"{len(too_long)} rows of {path} have RNA longer than the model reads "
                           f"({max_nucleotides} nucleotides): rows {row_list(too_long)}")
    return pairs


# --------------------------------------------------------------------------------------
# Sequences to translate
# --------------------------------------------------------------------------------------
def check_lengths(rnas, labels, model, what="sequence") -> None:
    """A clear error for sources longer than the model's positional encoding covers."""
    limit = int(model.config.max_len)
    too_long = [(label, len(r)) for label, r in zip(labels, rnas) if len(r) > limit]
    if too_long:
        shown = ", ".join(f"{label} ({n} nucleotides)" for label, n in too_long[:SHOWN_ROWS])
        more = f" and {len(too_long) - SHOWN_ROWS} more" if len(too_long) > SHOWN_ROWS else ""
        raise CommandError(f"{what} too long for this model, which reads at most {limit} "
                           f"nucleotides (its max_len): {shown}{more}")


def translate_inputs(sequences, fasta=None, csv=None) -> tuple[list, bool]:
    """``([(name, label, raw sequence), ...], names_from_files)`` from sequences given as
    arguments, a FASTA file and a CSV file (column ``rna``; a ``name`` or ``id`` column
    names the rows)."""
    import pandas as pd

    from .sequences import read_fasta

    inputs = [(f"seq{i}", f"sequence {i}", s) for i, s in enumerate(sequences, start=1)]
    from_files = False
    if fasta:
        from_files = True
        for name, seq in read_fasta(Path(fasta)):
            short = name.split()[0]
            inputs.append((short, f"FASTA record {short!r} in {fasta}", seq))
    if csv:
        from_files = True
        if not os.path.isfile(csv):
            raise FileNotFoundError(f"no such CSV file: '{csv}'")
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        if "rna" not in table.columns:
            raise CommandError(f"{csv} has no column 'rna' (columns: "
                               f"{', '.join(map(repr, table.columns)) or 'none'})")
        if table.empty:
            raise CommandError(f"{csv} has a header but no rows: nothing to translate")
        name_col = next((c for c in ("name", "id") if c in table.columns), None)
        for i, seq in enumerate(table["rna"], start=1):
            name = str(table[name_col].iloc[i - 1]) if name_col else f"row{i}"
            inputs.append((name, f"row {i} of {csv}", seq))
    if not inputs:
        raise CommandError("nothing to translate: give sequences as arguments, --fasta FILE or --csv FILE")
    return inputs, from_files


# --------------------------------------------------------------------------------------
# Where results go
# --------------------------------------------------------------------------------------
class ModelOutput:
    """Where a run saves its model, decided so that no model the run did not make is replaced.

    Checked before the work (:func:`~minitransformer.files.check_output_path`): ``out`` must
    be a new path, or ``force`` given, or ``out`` the ``resume`` checkpoint itself (a run
    continued in place replaces its own earlier state); it may not be one of ``inputs``.
    When the run ends, :meth:`path` says where the model goes: ``out``, unless something
    else is there by then (another run wrote it meanwhile: ``OUT.new.npz``), or the run was
    interrupted and ``out`` holds a model it did not make (``OUT.interrupted.npz``): a
    model of 65 steps never replaces the one of 9,900 the user had.
    """

    def __init__(self, out, option: str = "--out", *, force: bool = False, inputs=(), resume=None):
        self.out = Path(out)   # (checked as given: "newdir/" names a folder, Path("newdir/") does not)
        self.in_place = resume is not None and same_file(self.out, Path(resume))
        check_output_path(out, option, inputs=[i for i in inputs if i is not None],
                          overwrite=force or self.in_place)
        for suffix in SIDECARS:   # the history and learning curve written beside the model
            check_output_path(sidecar(self.out, suffix), f"{option} (the file beside it)")
        self.option, self.force = option, force
        self.found = _identity(self.out)

    def path(self, interrupted: bool = False) -> Path:
        """The file to save the model to now (``out`` or a free sibling; see the class)."""
        now = _identity(self.out)
        if now is None:
            return self.out
        unchanged = now == self.found
        if unchanged and (self.in_place or (self.force and not interrupted)):
            return self.out
        return _free_sibling(self.out, "interrupted" if interrupted else "new")

    def note(self, path: Path, interrupted: bool = False) -> str | None:
        """The line that says why the model went to ``path`` rather than ``out`` (None if it did not)."""
        if path == self.out:
            return None
        why = ("the run was interrupted and it holds a model this run did not make" if interrupted
               else "another program wrote it while this run trained")
        return f"{self.option} {self.out} is left as it is ({why}): the model is saved to {path}"


def _identity(path: Path):
    """What sits at ``path`` (inode, size, modification time), or None: a change means a new file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _free_sibling(out: Path, word: str) -> Path:
    """``model.npz`` -> ``model.WORD.npz`` (then ``model.WORD-2.npz``, ...): the first that does not exist."""
    stem = out.name[:-4] if out.name.endswith(".npz") else out.name
    for i in range(1, 10_000):
        candidate = out.with_name(f"{stem}.{word}{'' if i == 1 else f'-{i}'}.npz")
        if not candidate.exists():
            return candidate
    raise CommandError(f"no free file name beside {out} to save the model to")  # pragma: no cover


def picture_output(path, option: str = "--out") -> Path:
    """``path`` checked as a picture to write: a format matplotlib writes (by the extension:
    ``.png``, ``.pdf``, ``.svg``, ...) and a writable place; refused in one line otherwise."""
    path = check_output_path(path, option)
    try:
        figure_format(path)
    except ValueError as exc:   # "PATH: the extension .x names no picture format ..."
        raise CommandError(f"{option} {exc}") from None
    return path


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same path, a link to it, or a hard link)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


#: what a training run writes beside its model: its history and learning curve
SIDECARS = (".history.csv", ".learning-curve.png")


def sidecar(out: Path, suffix: str) -> Path:
    """``model.npz`` -> ``model<suffix>`` in the same folder (``.history.csv`` etc.)."""
    name = out.name[:-4] if out.name.endswith(".npz") else out.name
    return out.with_name(name + suffix)
