"""The options several ``minitransformer codon`` commands share, and how their help reads.

The number options take :func:`minitransformer.errors.number_type` as their ``type``, so a
wrong value is refused by ``argparse`` with a message that names the option
(``argument --seed: expected a non-negative integer, got -1``).
"""
from __future__ import annotations

import argparse

from ..errors import number_type
from .genetic_code import AVAILABLE_TABLES, get_genetic_code

__all__ = ["HelpFormatter", "POSITIVE_INT", "NON_NEGATIVE_INT", "POSITIVE_NUMBER", "table_type",
           "TABLE_HELP", "add_backend", "add_model", "add_seed", "add_no_progress", "progress_mode", "add_force",
           "add_resume", "ARCHITECTURE_OPTIONS", "add_architecture"]

POSITIVE_INT = number_type("positive integer")
NON_NEGATIVE_INT = number_type("non-negative integer")
POSITIVE_NUMBER = number_type("positive number")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and "(default: X)" after every option that has a default
    (but not after flags, or options whose default is "none")."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def add_command(sub, name: str, run, **texts) -> argparse.ArgumentParser:
    """The parser of one command (``texts``: its help, description and epilog), which runs
    ``run``; the codon and protein commands are all made by it."""
    p = sub.add_parser(name, formatter_class=HelpFormatter, **texts)
    p.set_defaults(func=run)
    return p


def table_type(text: str) -> int:
    """A genetic code by NCBI number (``2``) or name (``mitochondrial``) -> its number."""
    try:
        return get_genetic_code(text).table_id
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None


TABLE_HELP = ("genetic code: NCBI table number or name (" +
              ", ".join(str(get_genetic_code(t).table_id) + " " + get_genetic_code(t).aliases[0]
                        for t in AVAILABLE_TABLES) + ")")


def add_backend(p):
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $MINITRANSFORMER_BACKEND, else numpy)")


def add_model(p):
    p.add_argument("--model", required=True, metavar="MODEL.npz",
                   help="a codon model checkpoint (from 'codon train' or 'codon demo')")


def add_seed(p, help: str, default: int = 0):
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=default, help=help)


def add_no_progress(p):
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the lines of the periodic checks are still printed)")


def progress_mode(args):
    """What ``Trainer.fit`` shows (:class:`~minitransformer.training.Progress`): a bar or
    periodic lines, or with ``--no-progress`` only the lines of the checks."""
    return "checks" if args.no_progress else True


def add_force(p, what: str = "an existing --out model"):
    p.add_argument("--force", action="store_true",
                   help=f"replace {what} (without it, a run refuses to start rather than overwrite a "
                        f"model; an interrupted run never replaces a model it did not make)")


def add_resume(p, command: str):
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help=f"continue the run saved in CHECKPOINT (by an interrupted or shorter 'codon {command}'; "
                        f"--out may be CHECKPOINT itself): the same steps, bit for bit, as a run that was "
                        f"never stopped" + (" (give the options of the run you resume)" if command == "finetune"
                                            else "; the model, recipe, table and data are the checkpoint's"))


#: (option, CodonRecipe field, help) of the model's shape; --layers sets both layer counts
ARCHITECTURE_OPTIONS = (("--d-model", "d_model", "model width"),
                        ("--heads", "n_heads", "attention heads (must divide --d-model)"),
                        ("--d-ff", "d_ff", "feed-forward width"),
                        ("--layers", "n_encoder_layers", "encoder layers, and as many decoder layers"),
                        ("--dropout", "dropout", "dropout rate (embeddings, residuals, feed-forward)"))


def add_architecture(p, recipe):
    """The options of the model's shape, :data:`ARCHITECTURE_OPTIONS`. Their default is None
    ("not given", which ``--resume`` needs to know); the help says ``recipe``'s value."""
    for option, name, what in ARCHITECTURE_OPTIONS:
        p.add_argument(option, type=number_type("probability below 1") if name == "dropout" else POSITIVE_INT,
                       default=None, metavar="P" if name == "dropout" else "N",
                       help=f"{what} (default: {getattr(recipe, name)})")
