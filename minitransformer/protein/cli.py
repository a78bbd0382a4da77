"""The ``minitransformer protein`` commands: pre-train a protein language model, fine-tune it
to classify families, and the demo that compares pre-trained with from scratch.

::

    minitransformer protein demo --out-dir protein-demo         # both, in about 8 minutes on a 2-core CPU
    minitransformer protein pretrain --out pretrained.npz       # masked-LM pre-training
    minitransformer protein finetune --from pretrained.npz --out families.npz
    minitransformer protein finetune --out scratch.npz          # the same, from scratch

The command layer only: each command's options and a short ``_run_*`` that calls the
protein API (:mod:`.demo`, :mod:`.train`, :mod:`.checkpoints`) and prints. Bad input is one
line on stderr and exit status 2 (``CommandError``, ``ValueError``, ``CheckpointError``,
printed by :func:`minitransformer.cli.main`); every output path is checked before any work.
"""
from __future__ import annotations

import argparse
import dataclasses

from ..codon.options import add_command, add_force, add_seed
from ..errors import CommandError, number_type
from ..files import check_output_path
from .checkpoints import checkpoint_vocabulary, load_protein_model, save_protein_model
from .demo import finetune_model, load_demo_data, pretrain_model, run_demo
from .train import DemoSettings, wilson_interval

__all__ = ["add_protein_commands"]

_DEFAULTS = DemoSettings()

#: option -> (DemoSettings field, kind of number, help)
SETTING_OPTIONS = {
    "--d-model": ("d_model", "positive integer", "model width"),
    "--heads": ("n_heads", "positive integer", "attention heads (must divide --d-model)"),
    "--d-ff": ("d_ff", "positive integer", "feed-forward width"),
    "--layers": ("n_layers", "positive integer", "encoder layers"),
    "--window": ("window", "positive integer", "tokens per sequence window (residues without --words; "
                                               "longer sequences are cut)"),
    "--words": ("words", "non-negative integer",
                "multi-residue words learned from the pre-training sequences, as tokens (0: one token per residue)"),
    "--batch-size": ("batch_size", "positive integer", "windows per pre-training step"),
    "--pretrain-steps": ("pretrain_steps", "positive integer", "masked-LM training steps"),
    "--pretrain-lr": ("pretrain_lr", "positive number", "peak learning rate of pre-training"),
    "--finetune-steps": ("finetune_steps", "positive integer", "classification training steps (both arms)"),
    "--finetune-lr": ("finetune_lr", "positive number", "peak learning rate of fine-tuning"),
    "--finetune-batch": ("finetune_batch", "positive integer", "windows per fine-tuning step"),
    "--encoder-lr-scale": ("encoder_lr_scale", "probability",
                           "the pre-trained encoder's learning rate over the classifier's (0: frozen)"),
    "--eval-windows": ("eval_windows", "positive integer", "windows per test sequence, class logits averaged"),
    "--curve-points": ("curve_points", "positive integer", "fine-tuning steps at which the test accuracy is recorded"),
    "--per-family": ("per_family", "positive integer",
                     "labelled training sequences per family (the demo's headline comparison)"),
}
ARCHITECTURE = ("--d-model", "--heads", "--d-ff", "--layers", "--words")
PRETRAIN = ARCHITECTURE + ("--window", "--batch-size", "--pretrain-steps", "--pretrain-lr")
FINETUNE = ("--window", "--finetune-steps", "--finetune-lr", "--finetune-batch", "--encoder-lr-scale",
            "--eval-windows", "--curve-points", "--per-family")


def _add_settings(p, options):
    for option in options:
        field, kind, what = SETTING_OPTIONS[option]
        p.add_argument(option, dest=field, type=number_type(kind), default=None,
                       metavar={"probability": "P", "positive number": "LR"}.get(kind, "N"),
                       help=f"{what} (default: {getattr(_DEFAULTS, field)})")


def _settings(args, options) -> DemoSettings:
    """DemoSettings with the options given on the command line; a bad combination is one line."""
    given = {SETTING_OPTIONS[o][0]: getattr(args, SETTING_OPTIONS[o][0]) for o in options}
    settings = dataclasses.replace(_DEFAULTS, seed=args.seed,
                                   **{k: v for k, v in given.items() if v is not None})
    if settings.d_model % settings.n_heads:
        raise CommandError(f"--heads {settings.n_heads} must divide --d-model {settings.d_model}")
    return settings


def _check_model_output(path, force, inputs=()):
    return check_output_path(path, "--out", inputs=inputs, overwrite=force)


# ======================================================================================
# demo
# ======================================================================================
def _add_demo(sub):
    p = add_command(
        sub, "demo", _run_demo,
        help="pre-train, fine-tune pre-trained and from scratch, compare (about 8 minutes on a 2-core CPU)",
        description="The talk's point, measured: pre-train an encoder-only Transformer on protein\n"
                    "sequences by masked language modelling, fine-tune it on a few labelled sequences\n"
                    "per family (1, 2, 4 and 8, and --per-family), and train the same model on them\n"
                    "from scratch, for the same steps; score both on test sequences split off by\n"
                    "similarity. Writes model.npz, pretrained.npz, evaluation.json and demo.png to --out-dir.",
        epilog="example:\n  minitransformer protein demo --out-dir protein-demo")
    p.add_argument("--out-dir", default="protein-demo", metavar="DIR", help="where to write everything")
    p.add_argument("--seeds", type=number_type("positive integer"), default=len(_DEFAULTS.seeds), metavar="N",
                   help="fine-tuning runs of each arm (seeds 0..N-1), averaged")
    p.add_argument("--validation", action="store_true",
                   help="score on a validation split carved from the training side instead of the "
                        "test split (to choose settings without looking at the test split)")
    _add_settings(p, tuple(SETTING_OPTIONS))
    add_seed(p, help="seed of the split, the pre-training and the model")
    add_force(p, what="the models of an earlier demo in --out-dir")


def _run_demo(args):
    settings = dataclasses.replace(_settings(args, tuple(SETTING_OPTIONS)), seeds=tuple(range(args.seeds)))
    e = run_demo(args.out_dir, settings, force=args.force, validation=args.validation)
    ci = {k: "[{:.3f}, {:.3f}]".format(*e[f"classification_ci95_{k}"]) for k in ("pretrained", "scratch")}
    print(f"masked-LM accuracy {e['mlm_accuracy']:.3f} (unigram baseline {e['mlm_unigram_baseline']:.3f}); "
          f"{e['split']} accuracy pre-trained {e['classification_accuracy_pretrained']:.3f} {ci['pretrained']}, "
          f"from scratch {e['classification_accuracy_scratch']:.3f} {ci['scratch']} (n = {e['n_test']}, "
          f"chance {e['chance']:.3f}); {e['seconds']:.0f} s")
    for row in e["by_labels"]:
        print(f"  {row['per_family']} labelled per family: pre-trained {row['pretrained']:.3f}, "
              f"from scratch {row['scratch']:.3f}, difference {row['difference']:+.3f} "
              f"[{row['ci95_difference'][0]:+.3f}, {row['ci95_difference'][1]:+.3f}] (paired)")
    return 0


# ======================================================================================
# pretrain
# ======================================================================================
def _add_pretrain(sub):
    p = add_command(
        sub, "pretrain", _run_pretrain,
        help="pre-train a protein language model (masked language modelling)",
        description="Masked language modelling (BERT's 15% chosen: 80% masked, 10% random, 10% kept)\n"
                    "on random windows of unlabelled protein sequences: the shipped UniProt sequences\n"
                    "or a CSV file with a 'sequence' column. A fifth of them (at most 500) are held out\n"
                    "to score the masked-LM accuracy against always guessing the commonest residue.",
        epilog="example:\n  minitransformer protein pretrain --out pretrained.npz --pretrain-steps 450")
    p.add_argument("--out", required=True, metavar="MODEL.npz", help="where to save the pre-trained model")
    p.add_argument("--data", metavar="FILE.csv", help="unlabelled sequences (default: the shipped ones)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the masked-LM loss curve here")
    _add_settings(p, PRETRAIN)
    add_seed(p, help="seed of the model and the batches")
    add_force(p)


def _run_pretrain(args):
    settings = _settings(args, PRETRAIN)
    out = _check_model_output(args.out, args.force, inputs=[args.data])
    plot = check_output_path(args.plot, "--plot", inputs=[args.data, args.out]) if args.plot else None
    data = load_demo_data(settings, pretraining_csv=args.data)
    tokens = f"tokens ({len(data.vocab.words)} words and the 20 residues)" if data.vocab.words else "residues"
    print(f"pre-training on {len(data.unlabelled)} sequences ({len(data.held_out)} held out), "
          f"{settings.pretrain_steps} steps of {settings.batch_size} windows of {settings.window} {tokens}")
    model, scores, losses = pretrain_model(data, settings)
    save_protein_model(out, model, "protein-mlm", words=data.vocab.words, **scores)
    if plot:
        _plot(range(1, len(losses) + 1), losses, plot, "masked-LM loss")
    print(f"saved {out}")
    return 0


def _plot(steps, values, path, what):
    from ..figures import _new_figure, save_figure
    fig = _new_figure(5, 3.2)
    ax = fig.subplots()
    ax.plot(list(steps), list(values), "o-" if len(values) < 20 else "-")
    ax.set(xlabel="step", ylabel=what)
    save_figure(fig, path)


# ======================================================================================
# finetune
# ======================================================================================
def _add_finetune(sub):
    p = add_command(
        sub, "finetune", _run_finetune,
        help="fine-tune a pre-trained model (or train one from scratch) to classify protein families",
        description="Classification of protein families from a few labelled sequences per family\n"
                    "(the shipped UniProt families, or a CSV file with columns 'family' and\n"
                    "'sequence'), split by similarity into train and test sides; the class is read\n"
                    "from the mean of the encoder's vectors. With --from, the encoder starts from a\n"
                    "pre-trained model (its shape); without it, from random weights. Prints the test\n"
                    "accuracy with its 95% Wilson interval.",
        epilog="examples:\n  minitransformer protein finetune --from pretrained.npz --out families.npz\n"
               "  minitransformer protein finetune --out scratch.npz")
    p.add_argument("--out", required=True, metavar="MODEL.npz", help="where to save the classifier")
    p.add_argument("--from", dest="pretrained", metavar="MODEL.npz",
                   help="a pre-trained model (from 'protein pretrain' or the demo's pretrained.npz); "
                        "without it the model is trained from scratch")
    p.add_argument("--data", metavar="FILE.csv", help="labelled sequences (default: the shipped families)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the test accuracy along fine-tuning here")
    _add_settings(p, ARCHITECTURE + FINETUNE)
    add_seed(p, help="seed of the split, the labelled sequences drawn, the model and the batches")
    add_force(p)


def _run_finetune(args):
    settings = _settings(args, ARCHITECTURE + FINETUNE)
    inputs = [args.data, args.pretrained]
    out = _check_model_output(args.out, args.force, inputs=inputs)
    plot = check_output_path(args.plot, "--plot", inputs=inputs + [args.out]) if args.plot else None
    pretrained, vocab = None, None
    if args.pretrained:
        shape = [o for o in ARCHITECTURE if getattr(args, SETTING_OPTIONS[o][0]) is not None]
        if shape:
            raise CommandError(f"{', '.join(shape)} cannot be given with --from: the model has the "
                               f"pre-trained model's shape")
        pretrained, checkpoint = load_protein_model(args.pretrained, task="protein-mlm")
        vocab = checkpoint_vocabulary(checkpoint)
        if settings.window > pretrained.config.max_len:
            raise CommandError(f"--window {settings.window} is longer than the pre-trained model reads "
                               f"({pretrained.config.max_len} tokens)")
    data = load_demo_data(dataclasses.replace(settings, mlm_eval_sequences=0), families_csv=args.data,
                          vocab=vocab)
    print(f"{'fine-tuning ' + args.pretrained if pretrained else 'training from scratch'}: "
          f"{len(data.families)} families, at most {settings.per_family} labelled sequences each, "
          f"{settings.finetune_steps} steps; {len(data.test)} test sequences split off by similarity")
    model, accuracy, curve, _ = finetune_model(data, settings, args.seed, pretrained)
    low, high = wilson_interval(accuracy * len(data.test), len(data.test))
    save_protein_model(out, model, "protein-families", data.families, words=data.vocab.words,
                       test_accuracy=accuracy, n_test=len(data.test), pretrained=args.pretrained)
    if plot:
        _plot(curve.keys(), curve.values(), plot, "test accuracy")
    print(f"test accuracy {accuracy:.3f} [{low:.3f}, {high:.3f}] (n = {len(data.test)}, "
          f"chance {1 / len(data.families):.3f}); saved {out}")
    return 0


def add_protein_commands(subparsers) -> None:
    """Add ``protein`` and its sub-commands to the top-level parser's sub-parsers."""
    protein = subparsers.add_parser(
        "protein", help="pre-train a protein language model and fine-tune it to classify families",
        description="Encoder-only (BERT-style) models of protein sequences: pre-training by masked\n"
                    "language modelling, fine-tuning to classify families, and the demo comparing\n"
                    "the two with training from scratch.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = protein.add_subparsers(dest="protein_command", metavar="COMMAND", required=True)
    _add_demo(sub)
    _add_pretrain(sub)
    _add_finetune(sub)

