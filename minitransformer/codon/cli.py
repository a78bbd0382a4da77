"""The ``minitransformer codon`` commands: make data, train, fine-tune, evaluate, translate,
look inside.

::

    minitransformer codon demo                                  # everything, in about 10 minutes
    minitransformer codon make-data --n 2000 --out test.csv     # random pairs as CSV
    minitransformer codon train --time-budget 300 --out model.npz
    minitransformer codon finetune --from model.npz --table 2 --n 500 --out mito.npz
    minitransformer codon evaluate --model model.npz --data test.csv
    minitransformer codon translate --model model.npz atggcctaa --check
    minitransformer codon attention --model model.npz AUGGCCAUUGUAAUGGGC --out attention.png

Every command takes pairs files in the task's CSV format (columns ``rna,protein``) and
models as ``.npz`` checkpoints whose metadata records the genetic code they were trained
for. Bad input (a sequence with a stray letter, a file that is not a checkpoint, a protein
that is not the translation of its RNA) is one line on stderr and a non-zero exit status,
never a traceback: the errors are raised here as ``ValueError``, ``CommandError`` or
``CheckpointError`` and printed by :func:`minitransformer.cli.main`.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..cli import CommandError
from .finetune import FREEZE_CHOICES, finetune_codon_model, frozen_parameter_names
from .genetic_code import AVAILABLE_TABLES, get_genetic_code
from .train import CodonRecipe

__all__ = ["add_codon_commands", "difference_markers"]

#: How many offending rows a one-line message lists before "and N more".
SHOWN_ROWS = 5


# ======================================================================================
# Argument helpers
# ======================================================================================
class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and "(default: X)" after every option that has a default
    (but not after flags, or options whose default is "none")."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _table(text: str) -> int:
    """A genetic code by NCBI number (``2``) or name (``mitochondrial``) -> its number."""
    try:
        return get_genetic_code(text).table_id
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None


_TABLE_HELP = ("genetic code: NCBI table number or name (" +
               ", ".join(str(get_genetic_code(t).table_id) + " " + get_genetic_code(t).aliases[0]
                         for t in AVAILABLE_TABLES) + ")")


def _add_backend(p):
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $MINITRANSFORMER_BACKEND, else numpy)")


def _add_model(p):
    p.add_argument("--model", required=True, metavar="MODEL.npz",
                   help="a codon model checkpoint (from 'codon train' or 'codon demo')")


# ======================================================================================
# Shared pieces
# ======================================================================================
def _one_line(exc: BaseException) -> str:
    """A multi-line error message (e.g. a list of bad rows) joined into one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def _row_list(rows) -> str:
    """``3, 17, 20 and 4 more`` for data-row numbers."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:SHOWN_ROWS])
    return shown + (f" and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else "")


def _read_pairs(path):
    """A pairs CSV, normalised; its errors (one per bad row) folded into one line."""
    from .data import read_pairs_csv
    try:
        return read_pairs_csv(path)
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise ValueError(_one_line(err)) from err


def _mismatched_rows(df, table: int) -> list:
    """1-based data-row numbers of ``df`` whose protein is not the translation of its RNA."""
    from .data import check_pairs
    wrong = check_pairs(df.reset_index(drop=True), table)
    return [int(i) + 1 for i in wrong.index]


def _check_lengths(rnas, labels, model, what="sequence"):
    """A clear error for sources longer than the model's positional encoding covers."""
    limit = int(model.config.max_len)
    too_long = [(label, len(r)) for label, r in zip(labels, rnas) if len(r) > limit]
    if too_long:
        shown = ", ".join(f"{label} ({n} nucleotides)" for label, n in too_long[:SHOWN_ROWS])
        more = f" and {len(too_long) - SHOWN_ROWS} more" if len(too_long) > SHOWN_ROWS else ""
        raise CommandError(f"{what} too long for this model, which reads at most {limit} "
                           f"nucleotides (its max_len): {shown}{more}")


def _load_codon_model(path, backend=None):
    """``(model, checkpoint)`` for a codon model; CheckpointError for anything else."""
    from ..checkpoint import CheckpointError, load_model
    from .data import protein_vocabulary, rna_vocabulary

    model, ckpt = load_model(path, backend=backend)
    meta = ckpt.metadata or {}
    task = meta.get("task")
    if task is not None and task != "codon":
        raise CheckpointError(f"{path} is a model for the {task!r} task, not a codon model")
    sizes = (model.config.src_vocab_size, model.config.tgt_vocab_size)
    expected = (len(rna_vocabulary()), len(protein_vocabulary()))
    if sizes != expected:
        raise CheckpointError(f"{path} is not a codon model: its vocabularies have {sizes[0]} and "
                              f"{sizes[1]} tokens, a codon model's have {expected[0]} and {expected[1]}")
    model.eval()
    return model, ckpt


def _model_table(ckpt, override) -> int:
    """The genetic code to check against: --table if given, else the model's own."""
    if override is not None:
        return override
    table = (ckpt.metadata or {}).get("table", 1)
    try:
        return get_genetic_code(table).table_id
    except (TypeError, ValueError):
        return 1


def _sidecar(out: Path, suffix: str) -> Path:
    """``model.npz`` -> ``model<suffix>`` in the same folder (``.history.csv`` etc.)."""
    name = out.name[:-4] if out.name.endswith(".npz") else out.name
    return out.with_name(name + suffix)


def _check_output_path(out: Path) -> None:
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


def _save_run(out: Path, run, *, data=None, extra: dict | None = None) -> None:
    """The checkpoint of a finished (or interrupted) codon training run; ``extra``: more
    metadata entries (how a fine-tuned model was made, for instance)."""
    from ..checkpoint import save_checkpoint
    from .data import protein_vocabulary, rna_vocabulary

    trainer = run.trainer
    metadata = {"task": "codon", "table": run.table, "recipe": run.recipe.to_dict(),
                "curriculum": [list(c) for c in run.curriculum],
                "train_seconds": float(trainer.train_seconds),
                "stop_reason": getattr(trainer, "stop_reason", None),
                "data": None if data is None else str(data), **(extra or {})}
    save_checkpoint(out, run.model, optimizer=trainer.optimizer, step=trainer.step, rng=run.data_rng,
                    vocabularies={"source": rna_vocabulary(), "target": protein_vocabulary()},
                    metadata=metadata)


def _interrupt_saver(out: Path, recipe, table: int, data=None):
    """A ``checkpoint_fn`` for the trainer: on Ctrl-C, keep what was learned so far at ``out``."""
    def save(trainer):
        from ..checkpoint import save_checkpoint
        from .data import protein_vocabulary, rna_vocabulary
        save_checkpoint(out, trainer.model, optimizer=trainer.optimizer, step=trainer.step,
                        vocabularies={"source": rna_vocabulary(), "target": protein_vocabulary()},
                        metadata={"task": "codon", "table": table, "recipe": recipe.to_dict(),
                                  "train_seconds": float(trainer.train_seconds), "interrupted": True,
                                  "data": None if data is None else str(data)})
        print(f"saved the model after {trainer.step} steps to {out}", file=sys.stderr)
    return save


def _curriculum_marks(run) -> list:
    """Where the curriculum moved on, as marks for the learning curve."""
    return [(int(step), f"up to {int(length)}") for step, _, length in run.curriculum[1:]]


def _last_check(history):
    """The last curriculum check in a training history, or None."""
    if "eval_exact_match" not in history.columns:
        return None
    rows = history.dropna(subset=["eval_exact_match"])
    return None if rows.empty else rows.iloc[-1]


def _describe_training(run, curriculum: bool = True) -> list[str]:
    trainer = run.trainer
    lines = [f"trained for {trainer.step} steps ({trainer.train_seconds:.0f} s of optimizer steps); "
             f"stopped: {getattr(trainer, 'stop_reason', None) or 'unknown'}"]
    if curriculum:
        steps = ", ".join(f"up to {int(c[2])} residues from step {int(c[0])}" for c in run.curriculum)
        lines.append(f"curriculum: {steps}")
    check = _last_check(run.history)
    if check is not None:
        span = (f"{run.recipe.min_len}-{int(check['eval_max_len'])} residues" if "eval_max_len" in check
                else "its range")
        lines.append(f"last check: {check['eval_exact_match']:.1%} exact match, "
                     f"{check['eval_residue_accuracy']:.2%} residue accuracy on fresh proteins of {span}")
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _score_table(overall, by_length) -> str:
    """Scores by length bucket and (unless ``overall`` is None) overall, as aligned text."""
    rows = [(str(r["lengths"]), int(r["n"]), r["exact_match"], r["residue_accuracy"])
            for _, r in by_length.iterrows()]
    if overall is not None:
        rows.append(("all", int(overall["n"]), overall["exact_match"], overall["residue_accuracy"]))
    out = [f"{'lengths':<10} {'n':>7} {'exact match':>12} {'residue accuracy':>17}"]
    for label, n, exact, residues in rows:
        if label == "all":
            out.append("-" * 49)
        out.append(f"{label:<10} {n:>7} {_pct(exact):>12} {_pct(residues):>17}")
    return "\n".join(out)


def _json_scores(overall: dict, by_length) -> dict:
    return {"exact_match": float(overall["exact_match"]),
            "residue_accuracy": float(overall["residue_accuracy"]),
            "n": int(overall["n"]),
            "by_length": [{"lengths": str(r["lengths"]), "n": int(r["n"]),
                           "exact_match": float(r["exact_match"]),
                           "residue_accuracy": float(r["residue_accuracy"])}
                          for _, r in by_length.iterrows()]}


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


# ======================================================================================
# make-data
# ======================================================================================
def _add_make_data(sub):
    recipe = CodonRecipe()
    p = sub.add_parser(
        "make-data", formatter_class=_HelpFormatter,
        help="write random (RNA, protein) pairs to a CSV file",
        description="Write random (RNA, protein) pairs to a CSV file with columns rna,protein.\n\n"
                    "Each protein is drawn first (length uniform in --min-len..--max-len, each residue\n"
                    "one of the 20 amino acids, or a stop '*' with probability --stop-rate), then\n"
                    "written as RNA with a codon chosen uniformly among its synonymous codons.",
        epilog="example:\n  minitransformer codon make-data --n 2000 --min-len 1 --max-len 100 --out test.csv")
    p.add_argument("--n", type=_positive_int, default=1000, metavar="N", help="number of pairs")
    p.add_argument("--min-len", type=_positive_int, default=recipe.min_len, metavar="L",
                   help="shortest protein, in residues")
    p.add_argument("--max-len", type=_positive_int, default=recipe.final_max_len, metavar="L",
                   help="longest protein, in residues (the RNA is three times as long)")
    p.add_argument("--table", type=_table, default=1, help=_TABLE_HELP)
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same file)")
    p.add_argument("--stop-rate", type=float, default=recipe.stop_rate, metavar="P",
                   help="probability that a residue is a stop codon '*'")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the pairs ('-': stdout)")
    p.set_defaults(func=_run_make_data)


def _run_make_data(args):
    from .data import generate_pairs, write_pairs_csv
    if args.min_len > args.max_len:
        raise CommandError(f"--min-len {args.min_len} is larger than --max-len {args.max_len}")
    pairs = generate_pairs(args.n, args.min_len, args.max_len, args.table, args.stop_rate, args.seed)
    longest = CodonRecipe().max_len // 3
    if args.max_len > longest:
        print(f"note: proteins longer than {longest} residues are longer than a model of the default "
              f"recipe reads ({CodonRecipe().max_len} nucleotides)", file=sys.stderr)
    if args.out == "-":
        write_pairs_csv(pairs, sys.stdout)
        return 0
    out = Path(args.out)
    _check_output_path(out)
    write_pairs_csv(pairs, out)
    print(f"wrote {len(pairs)} pairs (proteins of {args.min_len}-{args.max_len} residues, "
          f"{get_genetic_code(args.table)}) to {out}")
    return 0


# ======================================================================================
# train
# ======================================================================================
def _add_train(sub):
    recipe = CodonRecipe()
    p = sub.add_parser(
        "train", formatter_class=_HelpFormatter,
        help="train a codon model and save it as a checkpoint",
        description="Train a Transformer to translate RNA into protein with the codon recipe: a\n"
                    "curriculum from short proteins to long ones, batches of one protein length,\n"
                    "Adam with warm-up. Without --data it trains on fresh random pairs every step.\n\n"
                    "Training stops when a check set of the full length range is translated well\n"
                    f"enough ({recipe.target_exact:.1%} exact), at --max-steps, at --time-budget, "
                    "or on Ctrl-C\n(which saves the model first). Writes the checkpoint, its training "
                    "history\n(MODEL.history.csv) and a learning-curve picture (MODEL.learning-curve.png).",
        epilog="example:\n  minitransformer codon train --time-budget 300 --out runs/codon.npz")
    p.add_argument("--data", metavar="FILE.csv",
                   help="train on these pairs (columns rna,protein) instead of fresh random ones")
    p.add_argument("--table", type=_table, default=1, help=_TABLE_HELP)
    _add_backend(p)
    p.add_argument("--d-model", type=_positive_int, default=recipe.d_model, metavar="N", help="model width")
    p.add_argument("--heads", type=_positive_int, default=recipe.n_heads, metavar="N",
                   help="attention heads (must divide --d-model)")
    p.add_argument("--d-ff", type=_positive_int, default=recipe.d_ff, metavar="N", help="feed-forward width")
    p.add_argument("--layers", type=_positive_int, default=recipe.n_encoder_layers, metavar="N",
                   help="encoder layers, and as many decoder layers")
    p.add_argument("--dropout", type=_fraction, default=recipe.dropout, metavar="P",
                   help="dropout rate (embeddings, residuals, feed-forward)")
    p.add_argument("--max-steps", type=_positive_int, default=None, metavar="N",
                   help="stop after this many optimizer steps (default: no limit)")
    p.add_argument("--time-budget", type=_positive_float, default=None, metavar="SECONDS",
                   help="stop after this many seconds of training, curriculum checks included "
                        "(default: no limit)")
    p.add_argument("--seed", type=int, default=0, help="seed for the weights, dropout and data order")
    p.add_argument("--out", default="model.npz", metavar="MODEL.npz", help="where to save the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _recipe_from_args(args) -> CodonRecipe:
    recipe = CodonRecipe()
    recipe.d_model, recipe.n_heads, recipe.d_ff = args.d_model, args.heads, args.d_ff
    recipe.n_encoder_layers = recipe.n_decoder_layers = args.layers
    recipe.dropout = args.dropout
    if recipe.d_model % recipe.n_heads:
        raise CommandError(f"--d-model {recipe.d_model} must be divisible by --heads {recipe.n_heads}")
    return recipe


def _read_training_pairs(path, table: int, max_nucleotides: int):
    pairs = _read_pairs(path)
    if pairs.empty:
        raise CommandError(f"{path} holds no pairs")
    wrong = _mismatched_rows(pairs, table)
    if wrong:
        raise CommandError(f"{len(wrong)} rows of {path} have a protein that is not the translation of "
                           f"their RNA under {get_genetic_code(table)} (rows {_row_list(wrong)}; row 1 "
                           f"is line 2); fix them, or choose the right --table")
    too_long = [i + 1 for i, r in enumerate(pairs["rna"]) if len(r) > max_nucleotides]
    if too_long:
        raise CommandError(f"{len(too_long)} rows of {path} have RNA longer than the model reads "
                           f"({max_nucleotides} nucleotides): rows {_row_list(too_long)}")
    return pairs


def _run_train(args):
    from ..plotting import plot_learning_curves
    from .train import train_codon_model

    recipe = _recipe_from_args(args)
    data = _read_training_pairs(args.data, args.table, recipe.max_len) if args.data else None
    out = Path(args.out)
    _check_output_path(out)
    source = f"{len(data)} pairs from {args.data}" if data is not None else "fresh random pairs"
    limit = []
    if args.max_steps:
        limit.append(f"at most {args.max_steps} steps")
    if args.time_budget:
        limit.append(f"at most {args.time_budget:g} s")
    print(f"training a codon model ({get_genetic_code(args.table)}) on {source}"
          f"{' (' + ', '.join(limit) + ')' if limit else ' until it translates well (Ctrl-C stops and saves)'}")
    run = train_codon_model(recipe, table=args.table, data=data, seed=args.seed, backend=args.backend,
                            max_steps=args.max_steps, time_budget=args.time_budget,
                            progress=not args.no_progress,
                            checkpoint_fn=_interrupt_saver(out, recipe, args.table, args.data))
    _save_run(out, run, data=args.data)
    history_path, curve_path = _sidecar(out, ".history.csv"), _sidecar(out, ".learning-curve.png")
    run.history.to_csv(history_path, index=False)
    plot_learning_curves(run.history, curve_path, title=f"codon model, {get_genetic_code(run.table)}",
                         marks=_curriculum_marks(run))
    for line in _describe_training(run):
        print(line)
    print(f"model:          {out}")
    print(f"history:        {history_path}")
    print(f"learning curve: {curve_path}")
    if getattr(run.trainer, "stop_reason", None) == "interrupted":
        return 130
    return 0


# ======================================================================================
# finetune
# ======================================================================================
#: ``--no-early-stop``: a target that no exact match reaches (it never exceeds 1).
_NO_TARGET = 2.0
#: The library's defaults (lr, warm-up, steps, ...) are the command's defaults.
_FINETUNE_DEFAULTS = {name: parameter.default for name, parameter
                      in inspect.signature(finetune_codon_model).parameters.items()}
#: Protein lengths to fine-tune on when the --from checkpoint does not record its own.
_DEFAULT_LENGTHS = (1, 100)


def _target_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def _add_finetune(sub):
    d = _FINETUNE_DEFAULTS
    p = sub.add_parser(
        "finetune", formatter_class=_HelpFormatter,
        help="fine-tune a trained model to another genetic code (transfer learning)",
        description="Transfer learning: start from a trained codon model (--from) and train it a\n"
                    "little more on pairs of another genetic code (--table), for instance the\n"
                    "vertebrate mitochondrial code (table 2), which reads 4 of the 64 codons differently.\n\n"
                    "The pairs are a CSV file (--data, checked against --table as in 'codon train') or\n"
                    "--n random pairs of --table drawn once: a small, fixed data set. Frozen parts of\n"
                    "the model (--freeze) are left out of the optimizer: they do not change. The\n"
                    "learning rate warms up to --lr, then decays along a cosine to --lr/10 at --steps.\n\n"
                    "Training stops at --steps, at --time-budget, once a check of fresh pairs reaches\n"
                    "--target exact match (never with --no-early-stop), or on Ctrl-C. Writes the new\n"
                    "model (its metadata records --table, so 'evaluate' and 'translate' check against\n"
                    "it), its history (OUT.history.csv) and learning curve (OUT.learning-curve.png),\n"
                    "and scores the model before and after on --check-pairs fresh pairs of --table.\n"
                    "The --from file is never written to.",
        epilog="examples:\n"
               "  minitransformer codon finetune --from model.npz --table 2 --n 500 --out mito.npz\n"
               "  minitransformer codon finetune --from model.npz --table 2 --data mito.csv \\\n"
               "      --freeze encoder --steps 300 --no-early-stop --out mito-frozen-encoder.npz")
    p.add_argument("--from", dest="from_model", required=True, metavar="MODEL.npz",
                   help="the trained codon model to start from (from 'codon train'; left unchanged)")
    # checked in _run_finetune rather than by argparse, so an unknown table is a one-line error
    p.add_argument("--table", required=True, metavar="TABLE",
                   help=_TABLE_HELP.replace("genetic code:", "the genetic code to fine-tune to:", 1))
    p.add_argument("--out", required=True, metavar="OUT.npz",
                   help="where to save the fine-tuned model (not the --from file)")
    p.add_argument("--data", metavar="FILE.csv",
                   help="fine-tune on these pairs (columns rna,protein) instead of random ones")
    p.add_argument("--n", type=_positive_int, default=None, metavar="N",
                   help=f"without --data: fine-tune on N random pairs of --table, drawn once with --seed "
                        f"(default: {d['n_pairs']})")
    p.add_argument("--min-len", type=_positive_int, default=None, metavar="L",
                   help="without --data: shortest protein of the random pairs, in residues (default: the "
                        f"shortest the --from model was trained on, else {_DEFAULT_LENGTHS[0]})")
    p.add_argument("--max-len", type=_positive_int, default=None, metavar="L",
                   help="without --data: longest protein of the random pairs (default: the longest the "
                        f"--from model was trained on, else {_DEFAULT_LENGTHS[1]})")
    p.add_argument("--freeze", choices=FREEZE_CHOICES, default=d["freeze"],
                   help="parts kept as they are: none; embeddings (token and position embeddings); "
                        "encoder (the source embedding and the whole encoder)")
    p.add_argument("--lr", type=_positive_float, default=d["lr"], metavar="LR",
                   help="peak learning rate of the fine-tuning (not the --from model's)")
    p.add_argument("--warmup", type=_non_negative_int, default=d["warmup_steps"], metavar="N",
                   help="steps of linear warm-up (at most half of --steps)")
    p.add_argument("--steps", "--max-steps", dest="steps", type=_positive_int, default=d["max_steps"],
                   metavar="N", help="the step budget: at most this many optimizer steps, and the length "
                                     "of the learning-rate schedule")
    p.add_argument("--time-budget", type=_positive_float, default=None, metavar="SECONDS",
                   help="stop after this many seconds of training, checks included (default: no limit)")
    p.add_argument("--target", type=_target_fraction, default=d["target_exact"], metavar="P",
                   help="stop early once this fraction of a check set of fresh pairs is translated exactly")
    p.add_argument("--no-early-stop", action="store_true",
                   help="no target: train for all --steps steps (or --time-budget)")
    p.add_argument("--check-every", type=_positive_int, default=d["check_every"], metavar="N",
                   help="steps between checks on fresh pairs (the points of the learning curve)")
    p.add_argument("--check-pairs", type=_non_negative_int, default=500, metavar="N",
                   help="fresh pairs of --table, none of them in the fine-tuning data, to score the model "
                        "on before and after (0: skip)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="seed for the random pairs, dropout and data order")
    _add_backend(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_finetune)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same path, a link to it, or a hard link)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _checkpoint_recipe(model, ckpt) -> CodonRecipe:
    """The recipe a codon checkpoint was trained with; its architecture always the model's own."""
    recorded = (ckpt.metadata or {}).get("recipe")
    architecture = {name: getattr(model.config, name) for name in
                    ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "dropout",
                     "attention_dropout", "norm_first", "max_len")}
    return CodonRecipe.from_dict({**(recorded if isinstance(recorded, dict) else {}), **architecture})


def _trained_lengths(ckpt):
    """``(shortest, longest)`` protein a codon checkpoint was trained on, or None if it does not
    say: its recipe's ``min_len`` and where its curriculum got to (``codon train`` records both)."""
    meta = ckpt.metadata or {}
    try:
        shortest = int(meta["recipe"]["min_len"])
        curriculum = meta.get("curriculum")
        longest = int(curriculum[-1][2]) if curriculum else int(meta["recipe"]["final_max_len"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return (shortest, longest) if 1 <= shortest <= longest else None


def _scores_line(scores) -> str:
    return f"{_pct(scores['exact_match'])} exact match, {scores['residue_accuracy']:.2%} residue accuracy"


def _run_finetune(args):
    from ..plotting import plot_learning_curves
    from .data import generate_pairs
    from .genetic_code import translate
    from .train import score_translations, translate_rna

    try:
        table = _table(args.table)
    except argparse.ArgumentTypeError as err:
        raise CommandError(f"--table {args.table}: {err}") from None
    source, out = Path(args.from_model), Path(args.out)
    if _same_file(source, out):
        raise CommandError(f"--out {out} is the --from model itself, which is never overwritten; "
                           f"give another file name")
    if args.data and args.n is not None:
        raise CommandError("give --data FILE or --n N, not both")
    if args.data and (args.min_len or args.max_len):
        raise CommandError("--min-len and --max-len are for random pairs; with --data the lengths are "
                           "the file's")
    _check_output_path(out)
    model, ckpt = _load_codon_model(source, args.backend)
    from_table, code = _model_table(ckpt, None), get_genetic_code(table)
    recipe = _checkpoint_recipe(model, ckpt)
    limit = int(model.config.max_len)

    # the fine-tuning pairs: a file, or random ones drawn once
    if args.data:
        data = _read_training_pairs(args.data, table, limit)
        lengths = data["protein"].str.len()
        lo, hi = max(1, int(lengths.min())), max(1, int(lengths.max()))
        described = f"{len(data)} pairs from {args.data}"
    else:
        trained = _trained_lengths(ckpt) or _DEFAULT_LENGTHS
        lo, hi = args.min_len or trained[0], args.max_len or trained[1]
        if lo > hi:
            raise CommandError(f"--min-len {lo} is larger than --max-len {hi}")
        if 3 * hi > limit:
            raise CommandError(f"--max-len {hi}: proteins of {hi} residues have {3 * hi} nucleotides, more "
                               f"than {source} reads ({limit}, its max_len)")
        n = args.n or _FINETUNE_DEFAULTS["n_pairs"]
        data = generate_pairs(n, lo, hi, table, recipe.stop_rate, np.random.default_rng(args.seed))
        described = f"{n} random pairs of {lo}-{hi} residues (drawn once, seed {args.seed})"
    recipe.min_len = lo  # the checks during fine-tuning draw proteins of lo..(longest in data)

    # the held-out check: fresh pairs of the new code, none of them in the fine-tuning data
    held_out = generate_pairs(args.check_pairs, lo, hi, table, recipe.stop_rate,
                              np.random.default_rng([args.seed, 2024])) if args.check_pairs else data[:0]
    held_out = held_out[~held_out["rna"].isin(set(data["rna"]))].reset_index(drop=True)
    expected = list(held_out["protein"])
    differs = [i for i, (rna, protein) in enumerate(zip(held_out["rna"], expected))
               if from_table != table and translate(rna, from_table) != protein]

    def check():
        predicted = translate_rna(model, held_out["rna"])
        return (score_translations(predicted, expected),
                score_translations([predicted[i] for i in differs], [expected[i] for i in differs]))

    frozen = set(frozen_parameter_names(model, args.freeze))
    named = list(model.named_parameters())
    n_weights = sum(int(p.data.size) for _, p in named)
    n_frozen = sum(int(p.data.size) for name, p in named if name in frozen)
    stops = [f"at most {args.steps} steps"]
    if args.time_budget:
        stops.append(f"at most {args.time_budget:g} s")
    stops.append("no early stop" if args.no_early_stop
                 else f"stops early at {_pct(args.target)} exact on a check")
    print(f"fine-tuning {source} ({get_genetic_code(from_table)}) to {code} on {described}")
    if frozen:
        kept = f"{len(frozen)} of {len(named)} parameter arrays ({n_frozen:,} of {n_weights:,} weights) stay"
    else:
        kept = f"all {len(named)} parameter arrays ({n_weights:,} weights) are trained"
    print(f"freeze {args.freeze}: {kept}; lr {args.lr:g}, {min(args.warmup, args.steps // 2)} warm-up steps, "
          + ", ".join(stops))
    before = check() if expected else None

    run = finetune_codon_model(model, table=table, data=data, freeze=args.freeze, lr=args.lr,
                               warmup_steps=args.warmup, max_steps=args.steps, time_budget=args.time_budget,
                               seed=args.seed, target_exact=_NO_TARGET if args.no_early_stop else args.target,
                               check_every=args.check_every, progress=not args.no_progress, recipe=recipe)
    how = {"from": str(source), "from_table": from_table, "freeze": args.freeze, "lr": args.lr,
           "warmup_steps": args.warmup, "max_steps": args.steps,
           "target_exact": None if args.no_early_stop else args.target, "pairs": len(data),
           "lengths": [lo, hi], "seed": args.seed}
    _save_run(out, run, data=args.data, extra={"finetune": how})
    history_path, curve_path = _sidecar(out, ".history.csv"), _sidecar(out, ".learning-curve.png")
    run.history.to_csv(history_path, index=False)
    plot_learning_curves(run.history, curve_path, title=f"fine-tuning to {code}, freeze {args.freeze}",
                         marks=_curriculum_marks(run))
    for line in _describe_training(run, curriculum=False):
        print(line)
    interrupted = getattr(run.trainer, "stop_reason", None) == "interrupted"
    if before is not None and not interrupted:
        after = check()
        print(f"held-out check on {len(expected)} fresh pairs of {code} ({lo}-{hi} residues, none in the "
              f"fine-tuning data):")
        print(f"  before fine-tuning: {_scores_line(before[0])}")
        print(f"  after fine-tuning:  {_scores_line(after[0])}")
        if differs:
            print(f"  the {len(differs)} whose translation differs under {get_genetic_code(from_table)}: "
                  f"{_pct(before[1]['exact_match'])} exact before, {_pct(after[1]['exact_match'])} after")
    elif before is None and args.check_pairs:
        print(f"held-out check skipped: every fresh pair of {lo}-{hi} residues drawn is in the "
              f"fine-tuning data")
    print(f"model:          {out}")
    print(f"history:        {history_path}")
    print(f"learning curve: {curve_path}")
    return 130 if interrupted else 0


# ======================================================================================
# evaluate
# ======================================================================================
def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate", formatter_class=_HelpFormatter,
        help="score a model on a CSV file of pairs",
        description="Translate every RNA of a pairs file (columns rna,protein) with the model and\n"
                    "compare with the protein: exact match (the whole protein right) and residue\n"
                    "accuracy (position by position), overall and by protein length.\n\n"
                    "Rows whose protein is not the translation of their RNA under the genetic code\n"
                    "(the model's own, or --table) are reported and left out of the score.",
        epilog="example:\n  minitransformer codon evaluate --model model.npz --data test.csv --json")
    _add_model(p)
    p.add_argument("--data", required=True, metavar="FILE.csv", help="pairs to score the model on")
    p.add_argument("--table", type=_table, default=None,
                   help=_TABLE_HELP + "; default: the table the model was trained for")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--max-rows", type=_positive_int, default=None, metavar="N",
                   help="use only the first N rows of the file")
    _add_backend(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args):
    from .train import evaluate_on_pairs

    model, ckpt = _load_codon_model(args.model, args.backend)
    table = _model_table(ckpt, args.table)
    pairs = _read_pairs(args.data)
    if args.max_rows is not None:
        pairs = pairs.head(args.max_rows)
    pairs = pairs.reset_index(drop=True)
    if pairs.empty:
        raise CommandError(f"{args.data} holds no pairs")
    wrong = _mismatched_rows(pairs, table)
    if wrong:
        print(f"warning: {len(wrong)} of {len(pairs)} rows of {args.data} have a protein that is not the "
              f"translation of their RNA under {get_genetic_code(table)}, left out of the score: "
              f"rows {_row_list(wrong)} (row 1 is line 2)", file=sys.stderr)
    scored = pairs.drop(index=[r - 1 for r in wrong]).reset_index(drop=True)
    if scored.empty:
        raise CommandError(f"no row of {args.data} agrees with {get_genetic_code(table)}: nothing to score "
                           f"(is --table right?)")
    _check_lengths(scored["rna"], [f"row {i + 1}" for i in range(len(scored))], model, "rows")
    started = time.perf_counter()
    overall, by_length, _ = evaluate_on_pairs(model, scored)
    seconds = time.perf_counter() - started
    if args.json:
        result = {**_json_scores(overall, by_length), "table": table, "mismatched_rows": wrong,
                  "n_mismatched": len(wrong), "rows_read": len(pairs), "model": str(args.model),
                  "data": str(args.data), "seconds": round(seconds, 3)}
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.model} on {args.data}: {overall['n']} pairs, {get_genetic_code(table)}"
          + (f" ({len(wrong)} rows left out)" if wrong else ""))
    print(_score_table(overall, by_length))
    return 0


# ======================================================================================
# translate
# ======================================================================================
def _add_translate(sub):
    p = sub.add_parser(
        "translate", formatter_class=_HelpFormatter,
        help="translate RNA (or DNA) sequences with a model",
        description="Translate sequences given as arguments, in a FASTA file or in a CSV file\n"
                    "(column rna; a name or id column names the rows). DNA letters (T), lower case\n"
                    "and whitespace are accepted; any other character is an error that says where.\n\n"
                    "Prints one protein per line, or name<TAB>protein when names come from a file.\n"
                    "With --check, each protein that differs from the genetic code's translation\n"
                    "gets a second line with '^' under every wrong residue, and a summary follows.",
        epilog="examples:\n"
               "  minitransformer codon translate --model model.npz AUGGCCAUUGUAAUGGGCCGC\n"
               "  minitransformer codon translate --model model.npz --fasta genes.fa --check")
    _add_model(p)
    p.add_argument("sequences", nargs="*", metavar="SEQUENCE", help="RNA or DNA sequences to translate")
    p.add_argument("--fasta", metavar="FILE", help="translate the records of this FASTA file")
    p.add_argument("--csv", metavar="FILE", help="translate the 'rna' column of this CSV file")
    p.add_argument("--check", action="store_true",
                   help="mark residues that differ from the genetic code's translation")
    p.add_argument("--table", type=_table, default=None,
                   help=_TABLE_HELP + " for --check; default: the table the model was trained for")
    p.add_argument("--beam", type=_positive_int, default=1, metavar="N",
                   help="beam search with N beams (1: greedy decoding)")
    p.add_argument("--piece-codons", default="auto", metavar="N",
                   help="translate a sequence longer than N codons in near-equal pieces of at most N codons "
                        "and join the proteins; 'auto': the longest protein the model was trained on "
                        "(models do not extrapolate past it); 0: always whole")
    _add_backend(p)
    p.set_defaults(func=_run_translate)


def _piece_codons(value, ckpt):
    """The ``max_codons`` for translate_rna from --piece-codons (None: whole sequences)."""
    if value == "auto":
        trained = _trained_lengths(ckpt)
        return trained[1] if trained else None
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise CommandError(f"--piece-codons must be 'auto' or a whole number of codons (0: whole), got {value!r}")
    return n or None


def _translate_inputs(args) -> tuple[list, bool]:
    """``([(name, label, raw sequence), ...], names_from_files)`` from every input given."""
    import pandas as pd

    from .sequences import read_fasta

    inputs = [(f"seq{i}", f"sequence {i}", s) for i, s in enumerate(args.sequences, start=1)]
    from_files = False
    if args.fasta:
        from_files = True
        for name, seq in read_fasta(Path(args.fasta)):
            short = name.split()[0]
            inputs.append((short, f"FASTA record {short!r} in {args.fasta}", seq))
    if args.csv:
        from_files = True
        if not os.path.isfile(args.csv):
            raise FileNotFoundError(f"no such CSV file: '{args.csv}'")
        table = pd.read_csv(args.csv, dtype=str, keep_default_na=False)
        if "rna" not in table.columns:
            raise CommandError(f"{args.csv} has no column 'rna' (columns: "
                               f"{', '.join(map(repr, table.columns)) or 'none'})")
        name_col = next((c for c in ("name", "id") if c in table.columns), None)
        for i, seq in enumerate(table["rna"], start=1):
            name = str(table[name_col].iloc[i - 1]) if name_col else f"row{i}"
            inputs.append((name, f"row {i} of {args.csv}", seq))
    if not inputs:
        raise CommandError("nothing to translate: give sequences as arguments, --fasta FILE or --csv FILE")
    return inputs, from_files


def _run_translate(args):
    from .genetic_code import translate
    from .sequences import SequenceError, normalize_rna
    from .train import split_into_pieces, translate_rna

    inputs, show_names = _translate_inputs(args)
    rnas = []
    for _, label, raw in inputs:
        try:
            rnas.append(normalize_rna(raw))
        except SequenceError as err:
            raise CommandError(f"{label}: {err}") from err
    model, ckpt = _load_codon_model(args.model, args.backend)
    max_codons = _piece_codons(args.piece_codons, ckpt)
    longest_piece = [r if max_codons is None else max(split_into_pieces(r, max_codons), key=len) for r in rnas]
    _check_lengths(longest_piece, [label for _, label, _ in inputs], model)
    proteins = translate_rna(model, rnas, beam_width=args.beam, max_codons=max_codons)
    table = _model_table(ckpt, args.table) if args.check else None
    n_exact = wrong_residues = total_residues = 0
    for (name, _, _), rna, protein in zip(inputs, rnas, proteins):
        prefix = f"{name}\t" if show_names else ""
        print(prefix + protein)
        if args.check:
            expected = translate(rna, table)
            marks = difference_markers(protein, expected)
            n_wrong = marks.count("^")
            n_exact += n_wrong == 0
            wrong_residues += n_wrong
            total_residues += max(len(protein), len(expected))
            if n_wrong:
                pad = (" " * len(name) + "\t") if show_names else ""
                print(f"{pad}{marks}  <- {n_wrong} of {max(len(protein), len(expected))} residues differ")
    if args.check:
        print(f"check against {get_genetic_code(table)}: {n_exact} of {len(proteins)} sequences "
              f"translated exactly; {wrong_residues} of {total_residues} residues differ")
    return 0


# ======================================================================================
# attention
# ======================================================================================
def _add_attention(sub):
    p = sub.add_parser(
        "attention", formatter_class=_HelpFormatter,
        help="draw where the decoder looks in the RNA while it writes each residue",
        description="Translate one sequence, run the model once more on it with its own translation\n"
                    "as the decoder input (teacher forcing, no dropout), and draw the cross-attention\n"
                    "weights of the decoder layers: one panel per layer and head, a row per predicted\n"
                    "residue, a column per nucleotide. A model that has learned the task reads residue\n"
                    "i from nucleotides 3i+1..3i+3: a staircase of slope 3.",
        epilog="example:\n  minitransformer codon attention --model model.npz AUGGCCAUUGUAAUGGGC --out attn.png")
    _add_model(p)
    p.add_argument("sequence", metavar="SEQUENCE", help="the RNA or DNA sequence")
    p.add_argument("--out", default="attention.png", metavar="FILE.png", help="where to save the picture")
    p.add_argument("--layer", default="all",
                   help="which decoder layer: 'all', or a number counted from 1")
    _add_backend(p)
    p.set_defaults(func=_run_attention)


def _cross_attention(model, rna: str):
    """``(weights per decoder layer (H, Tq, Tk), row labels, protein)`` for one sequence."""
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


def _run_attention(args):
    from ..plotting import plot_attention_layers
    from .sequences import SequenceError, normalize_rna

    try:
        rna = normalize_rna(args.sequence)
    except SequenceError as err:
        raise CommandError(f"SEQUENCE: {err}") from err
    model, _ = _load_codon_model(args.model, args.backend)
    _check_lengths([rna], ["SEQUENCE"], model)
    n_layers = len(model.decoder.layers)
    if n_layers == 0:
        raise CommandError(f"{args.model} has no decoder layers, so no cross-attention to draw")
    if args.layer == "all":
        chosen = list(range(n_layers))
    else:
        try:
            layer = int(args.layer)
        except ValueError:
            raise CommandError(f"--layer must be 'all' or a layer number, got {args.layer!r}") from None
        if not 1 <= layer <= n_layers:
            raise CommandError(f"--layer {layer} does not exist: the model has decoder layers 1 to {n_layers}")
        chosen = [layer - 1]
    out = Path(args.out)
    _check_output_path(out)
    weights, labels, protein = _cross_attention(model, rna)
    plot_attention_layers([weights[i] for i in chosen], labels, list(rna), out,
                          title=f"cross-attention: {len(rna)} nucleotides -> {protein or '(empty)'}"
                          if len(protein) <= 40 else f"cross-attention: {len(rna)} nucleotides -> "
                                                      f"{len(protein)} residues",
                          layer_names=[f"decoder layer {i + 1}" for i in chosen],
                          xlabel="nucleotide (source)", ylabel="predicted residue")
    print(f"translation: {protein}")
    print(f"attention of decoder layer{'s' if len(chosen) > 1 else ''} "
          f"{', '.join(str(i + 1) for i in chosen)} ({weights[0].shape[0]} heads each) saved to {out}")
    return 0


# ======================================================================================
# demo
# ======================================================================================
def _add_demo(sub):
    p = sub.add_parser(
        "demo", formatter_class=_HelpFormatter,
        help="train, evaluate and inspect the default codon model in one go (about 10 minutes)",
        description="The whole codon story in one command: train the default model on fresh random\n"
                    "pairs (proteins of 1-100 residues, standard genetic code) for --time-budget seconds,\n"
                    "score it on fresh pairs of the training lengths and of twice the longest training\n"
                    "length, translate real genes, and draw its learning curve, its accuracy by length\n"
                    "and its attention. Everything is written to --out-dir.",
        epilog="example:\n  minitransformer codon demo --out-dir codon-demo")
    p.add_argument("--out-dir", default="codon-demo", metavar="DIR", help="where to write everything")
    p.add_argument("--time-budget", type=_positive_float, default=480.0, metavar="SECONDS",
                   help="seconds of training, curriculum checks included (the final evaluation "
                        "comes on top); training stops earlier once the target accuracy is reached")
    _add_backend(p)
    p.add_argument("--seed", type=int, default=0, help="seed for the model and the training data")
    p.add_argument("--eval-pairs", type=_positive_int, default=2000, metavar="N",
                   help="fresh pairs of the training lengths to score the model on")
    p.add_argument("--long-eval-pairs", type=_non_negative_int, default=300, metavar="N",
                   help="fresh pairs longer than any in training to score it on (0: skip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    import pandas as pd

    from ..plotting import plot_accuracy_by_length, plot_learning_curves
    from .data import generate_pairs, load_example_genes
    from .train import (evaluate_on_pairs, score_translations, split_into_pieces, train_codon_model,
                        translate_rna)

    started = time.perf_counter()
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out-dir {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"model": out_dir / "model.npz", "history": out_dir / "history.csv",
             "learning curve": out_dir / "learning-curve.png",
             "accuracy by length": out_dir / "accuracy-by-length.png",
             "evaluation": out_dir / "evaluation.json", "attention": out_dir / "attention.png"}
    recipe, table = CodonRecipe(), 1
    code = get_genetic_code(table)

    # 1. train
    print(f"[1/4] training the default codon model ({code}) on fresh random proteins of "
          f"{recipe.min_len}-{recipe.final_max_len} residues, for at most {args.time_budget:g} s")
    t0 = time.perf_counter()
    run = train_codon_model(recipe, table=table, seed=args.seed, backend=args.backend,
                            time_budget=args.time_budget, progress=not args.no_progress,
                            checkpoint_fn=_interrupt_saver(files["model"], recipe, table))
    train_wall = time.perf_counter() - t0
    _save_run(files["model"], run)
    run.history.to_csv(files["history"], index=False)
    plot_learning_curves(run.history, files["learning curve"], title=f"codon demo, {code}",
                         marks=_curriculum_marks(run))
    for line in _describe_training(run):
        print("      " + line)
    print(f"      training took {train_wall:.0f} s in all (curriculum checks included)")
    if getattr(run.trainer, "stop_reason", None) == "interrupted":
        print(f"interrupted: the model so far is in {files['model']}")
        return 130
    model = run.model
    trained_up_to = int(run.curriculum[-1][2])

    # 2. fresh pairs: a generator of its own, never the training one
    print("[2/4] scoring on fresh random pairs")
    eval_rng = np.random.default_rng([args.seed, 2024])
    sets = [("in_range", "the training lengths", recipe.min_len, recipe.final_max_len, args.eval_pairs)]
    if args.long_eval_pairs:
        sets.append(("longer", "longer than any in training", recipe.final_max_len + 1,
                     2 * recipe.final_max_len, args.long_eval_pairs))
    evaluation = {"table": table, "seed": args.seed,
                  "train": {"steps": run.trainer.step, "train_seconds": float(run.trainer.train_seconds),
                            "stop_reason": getattr(run.trainer, "stop_reason", None),
                            "wall_seconds": round(train_wall, 1),
                            "curriculum": [list(c) for c in run.curriculum],
                            "trained_up_to": trained_up_to, "recipe": recipe.to_dict()}}
    by_length_all = []
    for key, what, lo, hi, n in sets:
        pairs = generate_pairs(n, lo, hi, table, recipe.stop_rate, eval_rng)
        t0 = time.perf_counter()
        overall, by_length, _ = evaluate_on_pairs(model, pairs)
        evaluation[key] = {"lengths": f"{lo}-{hi}", **_json_scores(overall, by_length),
                           "seconds": round(time.perf_counter() - t0, 1)}
        by_length_all.append(by_length)
        print(f"      {n} proteins of {lo}-{hi} residues ({what}): {_pct(overall['exact_match'])} exact, "
              f"{overall['residue_accuracy']:.2%} of residues right ({evaluation[key]['seconds']:.0f} s)")
    by_length = pd.concat(by_length_all, ignore_index=True)
    print("\n".join("      " + line for line in _score_table(None, by_length).splitlines()))
    plot_accuracy_by_length(by_length, files["accuracy by length"], train_max_len=trained_up_to,
                            title=f"codon demo: accuracy on fresh proteins ({run.trainer.step} steps)")

    # 3. real genes
    genes = load_example_genes("standard")
    fits = [len(r) <= model.config.max_len for r in genes["rna"]]
    genes = genes[fits].reset_index(drop=True)
    print(f"[3/4] translating {len(genes)} real genes ({code}); genes longer than {trained_up_to} codons "
          f"in pieces of at most {trained_up_to} (the longest proteins the model was trained on)")
    predicted = translate_rna(model, genes["rna"], max_codons=trained_up_to)
    pieces = [len(split_into_pieces(rna, trained_up_to)) for rna in genes["rna"]]
    # a gene of one piece was already translated whole; only the longer ones are decoded again
    cut = [i for i, n in enumerate(pieces) if n > 1]
    whole = list(predicted)
    for i, protein in zip(cut, translate_rna(model, [genes["rna"][i] for i in cut])):
        whole[i] = protein
    gene_rows = []
    width = max([len(n) for n in genes["name"]] + [4])
    print(f"      {'gene':<{width}}  {'length':>6}  {'pieces':>6}  {'exact':>5}  {'residues right':>14}  "
          f"{'exact if whole':>14}")
    for name, expected, protein, protein_whole, n_pieces in zip(genes["name"], genes["protein"], predicted,
                                                                whole, pieces):
        s = score_translations([protein], [expected])
        gene_rows.append({"name": name, "length": len(expected), "pieces": n_pieces,
                          "exact_match": bool(protein == expected), "residue_accuracy": float(s["residue_accuracy"]),
                          "exact_match_whole": bool(protein_whole == expected)})
        print(f"      {name:<{width}}  {len(expected):>6}  {n_pieces:>6}  {'yes' if protein == expected else 'no':>5}  "
              f"{s['residue_accuracy']:>14.1%}  {'yes' if protein_whole == expected else 'no':>14}")
    evaluation["genes"] = gene_rows

    # 4. attention on the first codons of a real gene
    print("[4/4] drawing the attention")
    from ..plotting import plot_attention_layers
    gene = genes.iloc[0] if len(genes) else None
    if gene is not None:
        rna, what = gene["rna"][:36], f"first 12 codons of {gene['name']}"
    else:  # pragma: no cover - the package ships its genes
        rna, what = generate_pairs(1, 12, 12, table, 0.0, eval_rng)["rna"][0], "a random 12-codon RNA"
    weights, labels, protein = _cross_attention(model, rna)
    plot_attention_layers(weights, labels, list(rna), files["attention"],
                          title=f"cross-attention on the {what}: {protein or '(empty)'}",
                          layer_names=[f"decoder layer {i + 1}" for i in range(len(weights))],
                          xlabel="nucleotide (source)", ylabel="predicted residue")
    evaluation["attention"] = {"rna": rna, "translation": protein, "source": what}
    evaluation["seconds"] = round(time.perf_counter() - started, 1)
    evaluation["files"] = {k: str(v) for k, v in files.items()}
    files["evaluation"].write_text(json.dumps(evaluation, indent=2) + "\n")

    # summary
    n_genes_exact = sum(g["exact_match"] for g in gene_rows)
    print()
    print(f"codon demo done in {evaluation['seconds']:.0f} s: {run.trainer.step} steps, "
          f"curriculum up to {trained_up_to} residues")
    for key, _, lo, hi, _ in sets:
        e = evaluation[key]
        print(f"  fresh proteins of {lo}-{hi} residues: {_pct(e['exact_match'])} exact match, "
              f"{e['residue_accuracy']:.2%} residue accuracy (n={e['n']})")
    n_whole = sum(g["exact_match_whole"] for g in gene_rows)
    print(f"  real genes: {n_genes_exact} of {len(gene_rows)} translated exactly "
          f"({n_whole} of {len(gene_rows)} when the long ones are not cut into pieces)")
    for name, path in files.items():
        print(f"  {name + ':':<20}{path}")
    print(f"try: minitransformer codon translate --model {files['model']} AUGGCCAUUGUAAUGGGCCGCUGA --check")
    return 0


# ======================================================================================
# The group
# ======================================================================================
def add_codon_commands(subparsers) -> argparse.ArgumentParser:
    """Add the ``codon`` command and its subcommands to the top-level CLI's subparsers."""
    codon = subparsers.add_parser(
        "codon", formatter_class=_HelpFormatter,
        help="translate RNA into protein: make data, train, fine-tune, evaluate, translate, inspect",
        description="The codon task: a Transformer learns to translate RNA into protein, one\n"
                    "nucleotide per source token and one residue per target token, without being\n"
                    "told that three nucleotides make a codon. Start with 'minitransformer codon demo'.",
        epilog="run 'minitransformer codon COMMAND --help' for the options of each command")
    sub = codon.add_subparsers(dest="codon_command", metavar="COMMAND")
    for add in (_add_demo, _add_make_data, _add_train, _add_finetune, _add_evaluate, _add_translate,
                _add_attention):
        add(sub)

    def show_help(args):
        codon.print_help()
        return 2
    codon.set_defaults(func=show_help)
    return codon
