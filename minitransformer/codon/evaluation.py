"""Using a trained codon model: score it on a pairs file, translate sequences (and check
them against the genetic code), draw where its decoder looks.

These are the work of ``codon evaluate``, ``codon translate`` and ``codon attention``;
each takes a loaded model (:func:`~minitransformer.codon.checkpoints.load_codon_model`),
refuses input the model cannot read in one line, and returns what it found.
"""
from __future__ import annotations

import time
from ..errors import CommandError
from .alignment import EditCounts, align_in_pieces
from .genetic_code import get_genetic_code, translate
from .inputs import check_lengths, mismatched_rows, picture_output, read_pairs
from .report import cross_attention, difference_markers, json_scores, plot_cross_attention, row_list
from .sequences import SequenceError, normalize_rna
from .train import evaluate_on_pairs, split_into_pieces, translate_pieces, translate_rna

__all__ = ["evaluate_file", "clean_sequences", "translate_sequences", "check_translations", "draw_attention_file"]


def evaluate_file(model, path, table: int, max_rows=None, warn=print) -> dict:
    """Scores of ``model`` on the pairs of ``path`` (its first ``max_rows``), as JSON values.

    Rows whose protein is not the translation of their RNA under ``table`` are left out of the
    score, listed in ``mismatched_rows`` and reported through ``warn``.
    """
    pairs = read_pairs(path)
    if max_rows is not None:
        pairs = pairs.head(max_rows)
    pairs = pairs.reset_index(drop=True)
    if pairs.empty:
        raise CommandError(f"{path} holds no pairs")
    wrong = mismatched_rows(pairs, table)
    if wrong:
        warn(f"warning: {len(wrong)} of {len(pairs)} rows of {path} have a protein that is not the "
             f"translation of their RNA under {get_genetic_code(table)}, left out of the score: "
             f"rows {row_list(wrong)} (row 1 is line 2)")
    scored = pairs.drop(index=[r - 1 for r in wrong]).reset_index(drop=True)
    if scored.empty:
        raise CommandError(f"no row of {path} agrees with {get_genetic_code(table)}: nothing to score "
                           f"(is --table right?)")
    check_lengths(scored["rna"], [f"row {i + 1}" for i in range(len(scored))], model, "rows")
    started = time.perf_counter()
    overall, by_length, _ = evaluate_on_pairs(model, scored)
    return {**json_scores(overall, by_length), "table": table, "mismatched_rows": wrong,
            "n_mismatched": len(wrong), "rows_read": len(pairs),
            "seconds": round(time.perf_counter() - started, 3)}


def clean_sequences(inputs) -> list[str]:
    """The RNA of each ``(name, label, raw sequence)`` of ``inputs``, cleaned (DNA letters,
    lower case and whitespace accepted); a bad one is an error that names its label."""
    rnas = []
    for _, label, raw in inputs:
        try:
            rnas.append(normalize_rna(raw))
        except SequenceError as err:
            raise CommandError(f"{label}: {err}") from err
    return rnas


def translate_sequences(model, rnas, labels, *, beam_width: int = 1, max_codons=None) -> list[list[str]]:
    """For each of ``rnas``, the proteins of its pieces of at most ``max_codons`` codons (one
    piece, the whole sequence, when None); each piece checked first to fit the model (an
    error names its label). Join a sequence's pieces for its protein."""
    longest_piece = [r if max_codons is None else max(split_into_pieces(r, max_codons), key=len) for r in rnas]
    check_lengths(longest_piece, labels, model)
    if max_codons is None:
        return [[p] for p in translate_rna(model, rnas, beam_width=beam_width)]
    return translate_pieces(model, rnas, max_codons, beam_width=beam_width)


def check_translations(names, rnas, pieces, table: int, show_names: bool, max_codons=None) -> list[str]:
    """Each protein (the join of its ``pieces``, translated from ``rnas`` cut with
    ``max_codons``), and under each one that differs from ``table``'s translation a line with
    ``^`` under every position that differs and the errors counted by alignment; a summary
    line last.

    The errors are counted piece by piece, each piece's protein against the translation of
    that piece (:func:`~minitransformer.codon.alignment.align_in_pieces`): a residue dropped in
    one piece counts once, and a million-residue input needs only small tables.
    """
    lines = []
    n_exact = differing = positions = residues = 0
    edits = EditCounts()
    for name, rna, parts in zip(names, rnas, pieces):
        protein = "".join(parts)
        lines.append((f"{name}\t" if show_names else "") + protein)
        rna_pieces = [rna] if max_codons is None else split_into_pieces(rna, max_codons)
        expected_parts = [translate(r, table) for r in rna_pieces]
        expected = "".join(expected_parts)
        counts = align_in_pieces(parts, expected_parts)
        marks = difference_markers(protein, expected)
        n_exact += protein == expected
        differing += marks.count("^")
        positions += max(len(protein), len(expected))
        residues += len(expected)
        edits = edits + counts
        if protein != expected:
            pad = (" " * len(name) + "\t") if show_names else ""
            lines.append(f"{pad}{marks}  <- {counts.describe()} in {len(expected)} residues; "
                         f"{marks.count('^')} positions differ")
    lines.append(f"check against {get_genetic_code(table)}: {n_exact} of {len(rnas)} sequences translated "
                 f"exactly; by alignment {edits.describe()} in {residues} residues "
                 f"({edits.distance / max(residues, 1):.2%}); {differing} of {positions} positions differ")
    return lines


def draw_attention_file(model, rna: str, out, layer=None) -> tuple[str, list, int]:
    """Draw the cross-attention of decoder layer ``layer`` (counted from 1; None: every layer)
    on ``rna`` to ``out``, in the format its extension names. ``(translation, the layers drawn from 0, heads per layer)``."""
    check_lengths([rna], ["SEQUENCE"], model)
    n_layers = len(model.decoder.layers)
    if n_layers == 0:
        raise CommandError("the model has no decoder layers, so no cross-attention to draw")
    if layer is not None and not 1 <= layer <= n_layers:
        raise CommandError(f"--layer {layer} does not exist: the model has decoder layers 1 to {n_layers}")
    chosen = list(range(n_layers)) if layer is None else [layer - 1]
    out = picture_output(out, "--out")
    weights, labels, protein = cross_attention(model, rna)
    shown = (protein or "(empty)") if len(protein) <= 40 else f"{len(protein)} residues"
    plot_cross_attention([weights[i] for i in chosen], labels, rna, out,
                         title=f"cross-attention: {len(rna)} nucleotides -> {shown}", layers=chosen)
    return protein, chosen, weights[0].shape[0]
