"""Codon models on disk: load one and read what its metadata says, save a training run.

A codon checkpoint is an ordinary ``.npz`` checkpoint (:mod:`minitransformer.checkpoint`)
whose metadata says ``"task": "codon"`` and records the genetic code it was trained for,
its recipe and how far its curriculum got. :func:`save_codon_model` is the one place that
metadata is written: the save at the end of a run (:func:`save_run`) and the save on Ctrl-C
(:func:`save_on_interrupt`) both call it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..checkpoint import CheckpointError, load_model, save_checkpoint
from .data import protein_vocabulary, rna_vocabulary
from .genetic_code import get_genetic_code
from .train import CodonRecipe

__all__ = ["load_codon_model", "model_table", "checkpoint_recipe", "trained_lengths",
           "save_codon_model", "save_run", "save_on_interrupt"]


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------
def load_codon_model(path, backend=None):
    """``(model, checkpoint)`` for a codon model, in eval mode; CheckpointError for anything else."""
    model, ckpt = load_model(path, backend=backend)
    task = (ckpt.metadata or {}).get("task")
    if task is not None and task != "codon":
        raise CheckpointError(f"{path} is a model for the {task!r} task, not a codon model")
    sizes = (model.config.src_vocab_size, model.config.tgt_vocab_size)
    expected = (len(rna_vocabulary()), len(protein_vocabulary()))
    if sizes != expected:
        raise CheckpointError(f"{path} is not a codon model: its vocabularies have {sizes[0]} and "
                              f"{sizes[1]} tokens, a codon model's have {expected[0]} and {expected[1]}")
    model.eval()
    return model, ckpt


def model_table(ckpt, override=None) -> int:
    """The genetic code to check a model against: ``override`` if given, else the model's own
    (the standard code, 1, when the checkpoint does not say)."""
    if override is not None:
        return override
    table = (ckpt.metadata or {}).get("table", 1)
    try:
        return get_genetic_code(table).table_id
    except (TypeError, ValueError):
        return 1


def checkpoint_recipe(model, ckpt) -> CodonRecipe:
    """The recipe a codon checkpoint was trained with; its architecture always the model's own."""
    recorded = (ckpt.metadata or {}).get("recipe")
    architecture = {name: getattr(model.config, name) for name in
                    ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "dropout",
                     "attention_dropout", "norm_first", "max_len")}
    return CodonRecipe.from_dict({**(recorded if isinstance(recorded, dict) else {}), **architecture})


def trained_lengths(ckpt):
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


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------
def save_codon_model(path, trainer, recipe: CodonRecipe, table: int, *, curriculum=None, rng=None,
                     data=None, extra: dict | None = None) -> None:
    """Save ``trainer``'s model and optimizer as a codon checkpoint, with its metadata.

    ``curriculum``: the run's ``(step, seconds, max_len)`` list, when known; ``rng``: the
    data generator, so that a resumed run draws on; ``data``: the pairs file trained on
    (None: fresh random pairs); ``extra``: more metadata entries (how a fine-tuned model was
    made, for instance).
    """
    metadata = {"task": "codon", "table": table, "recipe": recipe.to_dict(),
                "curriculum": None if curriculum is None else [list(c) for c in curriculum],
                "train_seconds": float(trainer.train_seconds),
                "stop_reason": getattr(trainer, "stop_reason", None),
                "data": None if data is None else str(data), **(extra or {})}
    save_checkpoint(path, trainer.model, optimizer=trainer.optimizer, step=trainer.step, rng=rng,
                    vocabularies={"source": rna_vocabulary(), "target": protein_vocabulary()},
                    metadata=metadata)


def save_run(path, run, *, data=None, extra: dict | None = None) -> None:
    """Save a finished (or interrupted) :class:`~minitransformer.codon.train.CodonRun`."""
    save_codon_model(path, run.trainer, run.recipe, run.table, curriculum=run.curriculum,
                     rng=run.data_rng, data=data, extra=extra)


def save_on_interrupt(path: Path, recipe: CodonRecipe, table: int, data=None):
    """A ``checkpoint_fn`` for the trainer: on Ctrl-C, keep what was learned so far at ``path``."""
    def save(trainer):
        save_codon_model(path, trainer, recipe, table, data=data)
        print(f"saved the model after {trainer.step} steps to {path}", file=sys.stderr)
    return save
