"""What the codon commands print and draw: score tables, training summaries, marked
translations, and the library's pictures labelled in the task's words (proteins,
residues, nucleotides).

Everything here reads results (a training run, scores by length, a translation) and
returns text or a Figure; nothing trains or saves a model.
"""
from __future__ import annotations

import numpy as np

from ..plotting import plot_accuracy_by_length, plot_attention_layers, plot_learning_curves
from ..schedules import LinearTailSchedule

__all__ = ["SHOWN_ROWS", "pct", "row_list", "scores_line", "score_table", "json_scores",
           "describe_training", "difference_markers", "plot_codon_learning_curves",
           "plot_codon_accuracy_by_length", "cross_attention", "plot_cross_attention"]

#: How many offending rows a one-line message lists before "and N more".
SHOWN_ROWS = 5


# --------------------------------------------------------------------------------------
# Numbers and rows as text
# --------------------------------------------------------------------------------------
def pct(x: float) -> str:
    """``0.9876`` -> ``'98.8%'``."""
    return f"{100 * x:.1f}%"


def row_list(rows) -> str:
    """``3, 17, 20 and 4 more`` for data-row numbers."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:SHOWN_ROWS])
    return shown + (f" and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else "")


# --------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------
def scores_line(scores) -> str:
    """``98.8% exact match, 99.95% residue accuracy``."""
    return f"{pct(scores['exact_match'])} exact match, {scores['residue_accuracy']:.2%} residue accuracy"


def score_table(overall, by_length) -> str:
    """Scores by length bucket and (unless ``overall`` is None) overall, as aligned text: exact
    match, residue accuracy (position by position) and, where the scores have them, the errors
    counted by alignment (edits per expected residue, and the edits by kind)."""
    aligned = "residue_error_rate" in by_length.columns
    rows = [r for _, r in by_length.iterrows()]
    if overall is not None:
        rows.append({**overall, "lengths": "all"})
    head = f"{'lengths':<10} {'n':>7} {'exact match':>12} {'residue accuracy':>17}"
    if aligned:
        head += f" {'aligned errors':>15} {'subst/ins/del':>15}"
    out = [head]
    for r in rows:
        if r["lengths"] == "all":
            out.append("-" * len(head))
        line = f"{str(r['lengths']):<10} {int(r['n']):>7} {pct(r['exact_match']):>12} {pct(r['residue_accuracy']):>17}"
        if aligned:
            kinds = f"{int(r['substitutions'])}/{int(r['insertions'])}/{int(r['deletions'])}"
            line += f" {r['residue_error_rate']:>15.2%} {kinds:>15}"
        out.append(line)
    return "\n".join(out)


def json_scores(overall: dict, by_length) -> dict:
    """Overall scores and scores by length as plain JSON values (the errors counted by
    alignment too, where the scores have them)."""
    def plain(scores) -> dict:
        out = {"exact_match": float(scores["exact_match"]), "residue_accuracy": float(scores["residue_accuracy"]),
               "n": int(scores["n"])}
        if "residue_error_rate" in scores:
            out["residue_error_rate"] = float(scores["residue_error_rate"])
            out.update({k: int(scores[k]) for k in ("edits", "substitutions", "insertions", "deletions")})
        return out
    return {**plain(overall),
            "by_length": [{"lengths": str(r["lengths"]), **plain(r)} for _, r in by_length.iterrows()]}


# --------------------------------------------------------------------------------------
# A training run
# --------------------------------------------------------------------------------------
def describe_training(run, curriculum: bool = True) -> list[str]:
    """Lines about a :class:`~minitransformer.codon.train.CodonRun`: steps, why it stopped,
    its curriculum (unless ``curriculum`` is False), its final phase and its last check."""
    trainer = run.trainer
    lines = [f"trained for {trainer.step} steps ({trainer.train_seconds:.0f} s of optimizer steps); "
             f"stopped: {getattr(trainer, 'stop_reason', None) or 'unknown'}"]
    if curriculum:
        steps = ", ".join(f"up to {int(c[2])} residues from step {int(c[0])}" for c in run.curriculum)
        lines.append(f"curriculum: {steps}")
    tail = getattr(trainer.optimizer, "schedule", None)
    if isinstance(tail, LinearTailSchedule):
        lines.append(f"final phase: the target confirmed at step {tail.start}, then {tail.steps} steps with the "
                     f"learning rate falling linearly to 0")
    check = _last_check(run.history)
    if check is not None:
        span = (f"{run.recipe.min_len}-{int(check['eval_max_len'])} residues" if "eval_max_len" in check
                else "its range")
        lines.append(f"last check: {check['eval_exact_match']:.1%} exact match, "
                     f"{check['eval_residue_accuracy']:.2%} residue accuracy on fresh proteins of {span}")
    return lines


def _last_check(history):
    """The last curriculum check in a training history, or None."""
    if "eval_exact_match" not in history.columns:
        return None
    rows = history.dropna(subset=["eval_exact_match"])
    return None if rows.empty else rows.iloc[-1]


# --------------------------------------------------------------------------------------
# A translation against the genetic code's
# --------------------------------------------------------------------------------------
def difference_markers(predicted: str, expected: str) -> str:
    """A line with ``^`` under each residue of ``predicted`` that differs from ``expected``.

    Residues missing from ``predicted`` (it is shorter) are marked past its end, extra ones
    (it is longer) under themselves, so the count of ``^`` is the number of wrong positions.

    >>> difference_markers("MAIV", "MKIV")
    ' ^'
    >>> difference_markers("MA", "MAK")
    '  ^'
    """
    n = max(len(predicted), len(expected))
    marks = "".join(" " if i < len(predicted) and i < len(expected) and predicted[i] == expected[i]
                    else "^" for i in range(n))
    return marks.rstrip()


# --------------------------------------------------------------------------------------
# Pictures, in the task's words
# --------------------------------------------------------------------------------------
def plot_codon_learning_curves(run, path, title):
    """The learning curve of a codon run, a dotted line where its curriculum moved on."""
    marks = [(int(step), f"up to {int(length)}") for step, _, length in run.curriculum[1:]]
    return plot_learning_curves(run.history, path, title=title, marks=marks)


def plot_codon_accuracy_by_length(by_length, path, title, train_max_len=None):
    """Exact match and residue accuracy by protein length (from ``accuracy_by_length``)."""
    return plot_accuracy_by_length(by_length, path, title=title, train_max_len=train_max_len,
                                   scores={"exact_match": "exact match (whole protein)",
                                           "residue_accuracy": "residue accuracy"},
                                   xlabel="protein length (residues)")


def cross_attention(model, rna: str):
    """``(weights per decoder layer (H, Tq, Tk), row labels, protein)`` for one sequence.

    The model translates ``rna``, then reads it once more with its own translation as the
    decoder input (teacher forcing, eval mode); row ``i`` of a layer's weights is where the
    decoder looked while predicting the ``i``-th label.
    """
    from ..backend import asarray, to_numpy
    from .data import protein_vocabulary, rna_vocabulary
    from .train import translate_rna

    rna_vocab, protein_vocab = rna_vocabulary(), protein_vocabulary()
    protein = translate_rna(model, [rna])[0]
    src = asarray(np.array([rna_vocab.encode(rna)], dtype=np.int64), model.backend_name)
    tgt_in = asarray(np.array([[protein_vocab.bos_id] + protein_vocab.encode(protein)], dtype=np.int64),
                     model.backend_name)
    model.eval()
    logits = model.forward(src, tgt_in)
    predicted = to_numpy(logits[0]).argmax(axis=-1)
    labels = [protein_vocab.tokens[int(i)] for i in predicted]  # what each query row predicts
    weights = [to_numpy(layer.cross_attn.attention_weights)[0] for layer in model.decoder.layers]
    return weights, labels, protein


def plot_cross_attention(weights, labels, rna: str, path, title, layers):
    """Cross-attention heatmaps: a row per decoder layer (``layers``: their 0-based numbers,
    one per entry of ``weights``), a column per head."""
    return plot_attention_layers(weights, labels, list(rna), path, title=title,
                                 layer_names=[f"decoder layer {i + 1}" for i in layers],
                                 xlabel="nucleotide (source)", ylabel="predicted residue")
