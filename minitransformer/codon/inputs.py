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
from .data import check_pairs, read_pairs_csv
from .genetic_code import get_genetic_code
from .report import SHOWN_ROWS, row_list

__all__ = ["one_line", "read_pairs", "mismatched_rows", "read_training_pairs", "check_lengths",
           "translate_inputs", "check_output_path", "same_file", "sidecar"]


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
def check_output_path(out: Path) -> None:
    """Fail before a long training run, not after it, if the model cannot be written."""
    if out.is_dir():
        raise CommandError(f"--out {out} is a folder; give a file name such as {out / 'model.npz'}")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CommandError(f"cannot create the folder {parent} for {out}: {err.strerror or err}") from err
    if not os.access(parent, os.W_OK):
        raise CommandError(f"cannot write {out}: the folder {parent} is not writable")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same path, a link to it, or a hard link)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def sidecar(out: Path, suffix: str) -> Path:
    """``model.npz`` -> ``model<suffix>`` in the same folder (``.history.csv`` etc.)."""
    name = out.name[:-4] if out.name.endswith(".npz") else out.name
    return out.with_name(name + suffix)
