"""The ``minitransformer codon`` commands: make data, train, fine-tune, evaluate, translate,
look inside.

::

    minitransformer codon demo                                  # everything: about five minutes, ten at most
    minitransformer codon make-data --n 2000 --out test.csv     # random pairs as CSV
    minitransformer codon train --time-budget 300 --out model.npz
    minitransformer codon finetune --from model.npz --table 2 --n 500 --out mito.npz
    minitransformer codon evaluate --model model.npz --data test.csv
    minitransformer codon translate --model model.npz atggcctaa --check
    minitransformer codon attention --model model.npz AUGGCCAUUGUAAUGGGC --out attention.png

The command layer only: each command's options (``_add_*``) and a short ``_run_*`` that
calls the codon API (:mod:`.demo`, :mod:`.runs`, :mod:`.evaluation`, :mod:`.checkpoints`,
:mod:`.inputs`, :mod:`.report`) and prints. Bad input (a sequence with a stray letter, a
file that is not a checkpoint, a protein that is not the translation of its RNA) is one
line on stderr and a non-zero exit status, never a traceback: the errors are raised as
``ValueError``, ``CommandError`` or ``CheckpointError`` and printed by
:func:`minitransformer.cli.main`.
"""
from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from ..errors import CommandError, number_type, read_option_number
from ..files import check_output_path
from . import demo, evaluation, runs
from .checkpoints import load_codon_model, model_table, trained_lengths
from .finetune import FINETUNE_DEFAULTS, FREEZE_CHOICES
from .genetic_code import get_genetic_code
from .inputs import picture_output, translate_inputs
from .options import (ARCHITECTURE_OPTIONS, NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER,
                      TABLE_HELP, add_architecture, add_backend, add_command, add_force, add_model,
                      add_no_progress, add_resume, add_seed, HelpFormatter, progress_mode,
                      table_type)
from .report import score_table
from .train import CodonRecipe, safe_piece_codons

__all__ = ["add_codon_commands"]


# ======================================================================================
# demo
# ======================================================================================
def _add_demo(sub):
    p = add_command(
        sub, "demo", _run_demo,
        help="train, evaluate and inspect the default codon model in one go (about five minutes, ten at most)",
        description="The whole codon story in one command: train the default model on fresh random\n"
                    "pairs (proteins of 1-120 residues, standard genetic code; promised: 1-100) for\n"
                    "--time-budget seconds, score it on fresh pairs of the promised lengths and of\n"
                    "lengths past the training range, translate real genes, and draw its learning\n"
                    "curve, its accuracy by length and its attention. Everything is written to\n"
                    "--out-dir. On a laptop CPU it takes about five minutes, ten at most (training\n"
                    "stops after --time-budget seconds).",
        epilog="example:\n  minitransformer codon demo --out-dir codon-demo")
    p.add_argument("--out-dir", default="codon-demo", metavar="DIR", help="where to write everything")
    p.add_argument("--time-budget", type=POSITIVE_NUMBER, default=480.0, metavar="SECONDS",
                   help="seconds of training, curriculum checks included (the final evaluation "
                        "comes on top); training stops earlier once the target accuracy is reached")
    add_backend(p)
    add_seed(p, help="seed for the model and the training data")
    p.add_argument("--eval-pairs", type=POSITIVE_INT, default=2000, metavar="N",
                   help="fresh pairs of the promised lengths (1-100 residues) to score the model on")
    p.add_argument("--long-eval-pairs", type=NON_NEGATIVE_INT, default=300, metavar="N",
                   help="fresh pairs longer than any in training to score it on (0: skip)")
    add_force(p, what="the model of an earlier demo in --out-dir")
    add_no_progress(p)


def _run_demo(args):
    return demo.run_demo(args.out_dir, time_budget=args.time_budget, seed=args.seed, backend=args.backend,
                         eval_pairs=args.eval_pairs, long_eval_pairs=args.long_eval_pairs,
                         progress=progress_mode(args), force=args.force)


# ======================================================================================
# make-data
# ======================================================================================
def _add_make_data(sub):
    recipe = CodonRecipe()
    p = add_command(
        sub, "make-data", _run_make_data,
        help="write random (RNA, protein) pairs to a CSV file",
        description="Write random (RNA, protein) pairs to a CSV file with columns rna,protein.\n\n"
                    "Each protein is drawn first (length uniform in --min-len..--max-len, each residue\n"
                    "one of the 20 amino acids, or a stop '*' with probability --stop-rate), then\n"
                    "written as RNA with a codon chosen uniformly among its synonymous codons.",
        epilog="example:\n  minitransformer codon make-data --n 2000 --min-len 1 --max-len 100 --out test.csv")
    p.add_argument("--n", type=POSITIVE_INT, default=1000, metavar="N", help="number of pairs")
    p.add_argument("--min-len", type=POSITIVE_INT, default=recipe.min_len, metavar="L",
                   help="shortest protein, in residues")
    p.add_argument("--max-len", type=POSITIVE_INT, default=recipe.final_max_len, metavar="L",
                   help="longest protein, in residues (the RNA is three times as long)")
    p.add_argument("--table", type=table_type, default=1, help=TABLE_HELP)
    add_seed(p, help="random seed (the same seed gives the same file)")
    p.add_argument("--stop-rate", type=number_type("probability"), default=recipe.stop_rate, metavar="P",
                   help="probability that a residue is a stop codon '*'")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the pairs ('-': stdout)")


def _run_make_data(args):
    from .data import generate_pairs, write_pairs_csv
    if args.min_len > args.max_len:
        raise CommandError(f"--min-len {args.min_len} is larger than --max-len {args.max_len}")
    out = None if args.out == "-" else check_output_path(args.out, "--out")
    pairs = generate_pairs(args.n, args.min_len, args.max_len, args.table, args.stop_rate, args.seed)
    longest = CodonRecipe().max_len // 3
    if args.max_len > longest:
        print(f"note: proteins longer than {longest} residues are longer than a model of the default "
              f"recipe reads ({CodonRecipe().max_len} nucleotides)", file=sys.stderr)
    if args.out == "-":
        write_pairs_csv(pairs, sys.stdout)
        return 0
    write_pairs_csv(pairs, out)
    print(f"wrote {len(pairs)} pairs (proteins of {args.min_len}-{args.max_len} residues, "
          f"{get_genetic_code(args.table)}) to {out}")
    return 0


# ======================================================================================
# train
# ======================================================================================
def _add_train(sub):
    recipe = CodonRecipe()
    p = add_command(
        sub, "train", _run_train,
        help="train a codon model and save it as a checkpoint",
        description="Train a Transformer to translate RNA into protein with the codon recipe: a\n"
                    "curriculum from short proteins to long ones, batches of one protein length,\n"
                    "Adam with warm-up. Without --data it trains on fresh random pairs every step.\n\n"
                    f"The curriculum trains on proteins of up to {recipe.train_max_len} residues for a promise of "
                    f"{recipe.final_max_len}.\nOnce a check and then a confirm set of {recipe.confirm_size:,} "
                    f"pairs of 1-{recipe.final_max_len} residues are\ntranslated well enough "
                    f"({recipe.target_exact:.1%} exact), {recipe.final_steps:,} more steps let the learning rate\n"
                    "fall to 0 and training stops; it also stops at --max-steps, at --time-budget, or on\n"
                    "Ctrl-C or SIGTERM (which save the model first; --resume continues from it). Writes the\n"
                    "checkpoint, its training history (MODEL.history.csv) and a learning-curve picture\n"
                    "(MODEL.learning-curve.png).",
        epilog="example:\n  minitransformer codon train --time-budget 300 --out runs/codon.npz")
    p.add_argument("--data", metavar="FILE.csv",
                   help="train on these pairs (columns rna,protein) instead of fresh random ones")
    # the defaults are filled in by _recipe_from_args: None says "not given", which --resume needs
    p.add_argument("--table", type=table_type, default=None, help=TABLE_HELP + " (default: 1)")
    add_backend(p)
    add_architecture(p, recipe)
    p.add_argument("--max-steps", type=POSITIVE_INT, default=None, metavar="N",
                   help="stop after this many optimizer steps (default: no limit)")
    p.add_argument("--time-budget", type=POSITIVE_NUMBER, default=None, metavar="SECONDS",
                   help="stop after this many seconds of training, curriculum checks included "
                        "(default: no limit)")
    add_seed(p, help="seed for the weights, dropout and data order")
    p.add_argument("--out", default="model.npz", metavar="MODEL.npz",
                   help="where to save the model: a new file, or an existing one with --force")
    add_force(p)
    add_resume(p, "train")
    add_no_progress(p)


def _recipe_from_args(args) -> CodonRecipe:
    given = {name: getattr(args, option[2:].replace("-", "_")) for option, name, _ in ARCHITECTURE_OPTIONS}
    if args.resume is not None:
        named = [option for option, name, _ in ARCHITECTURE_OPTIONS if given[name] is not None]
        if named:
            raise CommandError(f"{named[0]}: a resumed run keeps the model it resumes; leave "
                               f"{', '.join(named)} out")
        return CodonRecipe()  # replaced by the checkpoint's own
    recipe = CodonRecipe(**{name: value for name, value in given.items() if value is not None})
    recipe.n_decoder_layers = recipe.n_encoder_layers
    if recipe.d_model % recipe.n_heads:
        raise CommandError(f"--d-model {recipe.d_model} must be divisible by --heads {recipe.n_heads}")
    return recipe


def _run_train(args):
    return runs.train_to_file(args.out, _recipe_from_args(args), table=args.table, data_path=args.data,
                              seed=args.seed, backend=args.backend, max_steps=args.max_steps,
                              time_budget=args.time_budget, progress=progress_mode(args),
                              force=args.force, resume=args.resume)


# ======================================================================================
# finetune
# ======================================================================================
def _add_finetune(sub):
    d = FINETUNE_DEFAULTS  # the library's defaults are the command's
    p = add_command(
        sub, "finetune", _run_finetune,
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
                   help=TABLE_HELP.replace("genetic code:", "the genetic code to fine-tune to:", 1))
    p.add_argument("--out", required=True, metavar="OUT.npz",
                   help="where to save the fine-tuned model (not the --from file): a new file, or an "
                        "existing one with --force")
    p.add_argument("--data", metavar="FILE.csv",
                   help="fine-tune on these pairs (columns rna,protein) instead of random ones")
    p.add_argument("--n", type=POSITIVE_INT, default=None, metavar="N",
                   help=f"without --data: fine-tune on N random pairs of --table, drawn once with --seed "
                        f"(default: {d['n_pairs']})")
    p.add_argument("--min-len", type=POSITIVE_INT, default=None, metavar="L",
                   help="without --data: shortest protein of the random pairs, in residues (default: the "
                        f"shortest the --from model was trained on, else {runs.FINETUNE_DEFAULT_LENGTHS[0]})")
    p.add_argument("--max-len", type=POSITIVE_INT, default=None, metavar="L",
                   help="without --data: longest protein of the random pairs (default: the longest the "
                        f"--from model was trained on, else {runs.FINETUNE_DEFAULT_LENGTHS[1]})")
    p.add_argument("--freeze", choices=FREEZE_CHOICES, default=d["freeze"],
                   help="parts kept as they are: none; embeddings (token and position embeddings); "
                        "encoder (the source embedding and the whole encoder)")
    p.add_argument("--lr", type=POSITIVE_NUMBER, default=d["lr"], metavar="LR",
                   help="peak learning rate of the fine-tuning (not the --from model's)")
    p.add_argument("--warmup", type=NON_NEGATIVE_INT, default=d["warmup_steps"], metavar="N",
                   help="steps of linear warm-up (at most half of --steps)")
    p.add_argument("--steps", "--max-steps", dest="steps", type=POSITIVE_INT, default=d["max_steps"],
                   metavar="N", help="the step budget: at most this many optimizer steps, and the length "
                                     "of the learning-rate schedule")
    p.add_argument("--time-budget", type=POSITIVE_NUMBER, default=None, metavar="SECONDS",
                   help="stop after this many seconds of training, checks included (default: no limit)")
    p.add_argument("--target", type=number_type("positive probability"), default=d["target_exact"], metavar="P",
                   help="stop early once this fraction of a check set of fresh pairs is translated exactly")
    p.add_argument("--no-early-stop", action="store_true",
                   help="no target: train for all --steps steps (or --time-budget)")
    p.add_argument("--check-every", type=POSITIVE_INT, default=d["check_every"], metavar="N",
                   help="steps between checks on fresh pairs (the points of the learning curve)")
    p.add_argument("--check-pairs", type=NON_NEGATIVE_INT, default=500, metavar="N",
                   help="fresh pairs of --table, none of them in the fine-tuning data, to score the model "
                        "on before and after (0: skip)")
    add_seed(p, default=d["seed"], help="seed for the random pairs, dropout and data order")
    add_backend(p)
    add_force(p)
    add_resume(p, "finetune")
    add_no_progress(p)


def _run_finetune(args):
    try:  # checked here rather than by argparse, so that an unknown table is a one-line error
        table = table_type(args.table)
    except argparse.ArgumentTypeError as err:
        raise CommandError(f"--table {args.table}: {err}") from None
    return runs.finetune_to_file(args.from_model, args.out, table, data_path=args.data, n_pairs=args.n,
                                 min_len=args.min_len, max_len=args.max_len, freeze=args.freeze, lr=args.lr,
                                 warmup_steps=args.warmup, max_steps=args.steps, time_budget=args.time_budget,
                                 target_exact=None if args.no_early_stop else args.target,
                                 check_every=args.check_every, check_pairs=args.check_pairs, seed=args.seed,
                                 backend=args.backend, progress=progress_mode(args), force=args.force,
                                 resume=args.resume)


# ======================================================================================
# evaluate
# ======================================================================================
def _add_evaluate(sub):
    p = add_command(
        sub, "evaluate", _run_evaluate,
        help="score a model on a CSV file of pairs",
        description="Translate every RNA of a pairs file (columns rna,protein) with the model and\n"
                    "compare with the protein: exact match (the whole protein right) and residue\n"
                    "accuracy (position by position), overall and by protein length.\n\n"
                    "Rows whose protein is not the translation of their RNA under the genetic code\n"
                    "(the model's own, or --table) are reported and left out of the score.",
        epilog="example:\n  minitransformer codon evaluate --model model.npz --data test.csv --json")
    add_model(p)
    p.add_argument("--data", required=True, metavar="FILE.csv", help="pairs to score the model on")
    p.add_argument("--table", type=table_type, default=None,
                   help=TABLE_HELP + "; default: the table the model was trained for")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--max-rows", type=POSITIVE_INT, default=None, metavar="N",
                   help="use only the first N rows of the file")
    add_backend(p)


def _run_evaluate(args):
    model, ckpt = load_codon_model(args.model, args.backend)
    table = model_table(ckpt, args.table)
    scores = evaluation.evaluate_file(model, args.data, table, args.max_rows,
                                      warn=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps({**scores, "model": str(args.model), "data": str(args.data)}, indent=2))
        return 0
    print(f"{args.model} on {args.data}: {scores['n']} pairs, {get_genetic_code(table)}"
          + (f" ({scores['n_mismatched']} rows left out)" if scores["mismatched_rows"] else ""))
    print(score_table(scores, pd.DataFrame(scores["by_length"])))
    return 0


# ======================================================================================
# translate
# ======================================================================================
def _add_translate(sub):
    p = add_command(
        sub, "translate", _run_translate,
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
    add_model(p)
    p.add_argument("sequences", nargs="*", metavar="SEQUENCE", help="RNA or DNA sequences to translate")
    p.add_argument("--fasta", metavar="FILE", help="translate the records of this FASTA file")
    p.add_argument("--csv", metavar="FILE", help="translate the 'rna' column of this CSV file")
    p.add_argument("--check", action="store_true",
                   help="mark residues that differ from the genetic code's translation")
    p.add_argument("--table", type=table_type, default=None,
                   help=TABLE_HELP + " for --check; default: the table the model was trained for")
    p.add_argument("--beam", type=POSITIVE_INT, default=1, metavar="N",
                   help="beam search with N beams (1: greedy decoding)")
    p.add_argument("--piece-codons", default="auto", metavar="N",
                   help="translate a sequence longer than N codons in near-equal pieces of at most N codons "
                        "and join the proteins; 'auto': 5/6 of the longest protein the model was trained on "
                        "(models do not extrapolate past it, and are weakest right at it); 0: always whole")
    add_backend(p)


def _piece_codons(value, ckpt):
    """The ``max_codons`` for translate_rna from --piece-codons (None: whole sequences)."""
    if value == "auto":
        trained = trained_lengths(ckpt)
        return safe_piece_codons(trained[1]) if trained else None
    return read_option_number(value, "non-negative integer", "--piece-codons (or 'auto'; 0: whole)") or None


def _run_translate(args):
    inputs, show_names = translate_inputs(args.sequences, args.fasta, args.csv)
    rnas = evaluation.clean_sequences(inputs)
    model, ckpt = load_codon_model(args.model, args.backend)
    max_codons = _piece_codons(args.piece_codons, ckpt)
    pieces = evaluation.translate_sequences(model, rnas, [label for _, label, _ in inputs],
                                            beam_width=args.beam, max_codons=max_codons)
    names = [name for name, _, _ in inputs]
    if args.check:
        lines = evaluation.check_translations(names, rnas, pieces, model_table(ckpt, args.table), show_names,
                                              max_codons)
    else:
        lines = [(f"{name}\t" if show_names else "") + "".join(parts) for name, parts in zip(names, pieces)]
    print("\n".join(lines))
    return 0


# ======================================================================================
# attention
# ======================================================================================
def _add_attention(sub):
    p = add_command(
        sub, "attention", _run_attention,
        help="draw where the decoder looks in the RNA while it writes each residue",
        description="Translate one sequence, run the model once more on it with its own translation\n"
                    "as the decoder input (teacher forcing, no dropout), and draw the cross-attention\n"
                    "weights of the decoder layers: one panel per layer and head, a row per predicted\n"
                    "residue, a column per nucleotide. A model that has learned the task reads residue\n"
                    "i from nucleotides 3i+1..3i+3: a staircase of slope 3.",
        epilog="example:\n  minitransformer codon attention --model model.npz AUGGCCAUUGUAAUGGGC --out attn.png")
    add_model(p)
    p.add_argument("sequence", metavar="SEQUENCE", help="the RNA or DNA sequence")
    p.add_argument("--out", default="attention.png", metavar="FILE.png",
                   help="where to save the picture, in the format its extension names (.png, .pdf, .svg, ...)")
    p.add_argument("--layer", default="all",
                   help="which decoder layer: 'all', or a number counted from 1")
    add_backend(p)


def _run_attention(args):
    picture_output(args.out, "--out")
    rna = evaluation.clean_sequences([("", "SEQUENCE", args.sequence)])[0]
    model, _ = load_codon_model(args.model, args.backend)
    layer = None if args.layer == "all" else read_option_number(args.layer, "positive integer",
                                                          "--layer ('all' or a layer number)")
    protein, chosen, heads = evaluation.draw_attention_file(model, rna, args.out, layer)
    print(f"translation: {protein}")
    print(f"attention of decoder layer{'s' if len(chosen) > 1 else ''} "
          f"{', '.join(str(i + 1) for i in chosen)} ({heads} heads each) saved to {args.out}")
    return 0


# ======================================================================================
# The group
# ======================================================================================
def add_codon_commands(subparsers) -> argparse.ArgumentParser:
    """Add the ``codon`` command and its subcommands to the top-level CLI's subparsers."""
    codon = subparsers.add_parser(
        "codon", formatter_class=HelpFormatter,
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
