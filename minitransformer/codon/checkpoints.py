"""Codon models on disk: load one and read what its metadata says, save a training run.

A codon checkpoint is an ordinary ``.npz`` checkpoint (:mod:`minitransformer.checkpoint`)
whose metadata says ``"task": "codon"`` and records the genetic code it was trained for,
its recipe, how far its curriculum got and where its data streams stood (``resume``, for
``--resume``). :func:`save_codon_model` is the one place that metadata is written: the save
of a finished or interrupted run (:func:`save_run`) and a trainer's save on Ctrl-C
(:func:`save_on_interrupt`) both call it. :func:`check_codon_metadata` is the one place it is
checked when a model is loaded: a field that is wrong is an error naming the file and the
field, never replaced by a default.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..checkpoint import CheckpointError, load_model, save_checkpoint
from .data import protein_vocabulary, rna_vocabulary
from .genetic_code import get_genetic_code
from .train import CodonRecipe

__all__ = ["load_codon_model", "check_codon_metadata", "model_table", "checkpoint_recipe", "trained_lengths",
           "save_codon_model", "save_run", "save_on_interrupt"]


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------
def load_codon_model(path, backend=None):
    """``(model, checkpoint)`` for a codon model, in eval mode; CheckpointError for anything else."""
    model, ckpt = load_model(path, backend=backend)
    check_codon_metadata(ckpt)
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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _curriculum_ok(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(c, list) and len(c) == 3 and _is_int(c[0]) and _is_number(c[1]) and _is_int(c[2])
        and c[0] >= 0 and c[2] >= 1 for c in value)


def _recipe_ok(value) -> str | None:
    """None if ``value`` is a recipe dict whose known fields have their types, else the bad field."""
    if not isinstance(value, dict):
        return ""
    for name, default in CodonRecipe().to_dict().items():
        if name in value and not (_is_number(value[name]) if isinstance(default, float) and
                                  not isinstance(default, bool) else type(value[name]) is type(default)):
            return f".{name}"
    return None


#: metadata field -> (is the value right?, what it should be); a field that is absent is not checked
_FIELDS = {
    "table": (lambda v: _is_int(v) and _known_table(v), "the NCBI number of a genetic code (1, 2, ...)"),
    "seed": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "train_seconds": (lambda v: _is_number(v) and v >= 0, "a non-negative number of seconds"),
    "curriculum": (lambda v: v is None or _curriculum_ok(v), "a list of [step, seconds, max_len]"),
    "data": (lambda v: v is None or isinstance(v, str), "a file name"),
    "stop_reason": (lambda v: v is None or isinstance(v, str), "a short text"),
}


def _known_table(table) -> bool:
    try:
        get_genetic_code(table)
    except (TypeError, ValueError):
        return False
    return True


def check_codon_metadata(ckpt) -> None:
    """Refuse, in one line naming the file and the field, a codon checkpoint whose metadata
    says something a codon model's cannot (``table`` 99, ``seed`` "abc", ...): such a value
    is never replaced by a default behind the user's back."""
    meta = ckpt.metadata
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise CheckpointError(f"{ckpt.path}: header field 'metadata' is a {type(meta).__name__}, not a dict")
    sections = [("", meta)] + [(f"{key}.", meta[key]) for key in ("finetune",) if isinstance(meta.get(key), dict)]
    for prefix, section in sections:
        for name, (ok, what) in _FIELDS.items():
            if name in section and not ok(section[name]):
                raise CheckpointError(f"{ckpt.path}: metadata field '{prefix}{name}' is {section[name]!r}, "
                                      f"not {what}; the file was not written by a codon command")
    if "recipe" in meta and (bad := _recipe_ok(meta["recipe"])) is not None:
        raise CheckpointError(f"{ckpt.path}: metadata field 'recipe{bad}' is not what a codon recipe holds "
                              f"(its value: {(meta['recipe'][bad[1:]] if bad else meta['recipe'])!r})")


def model_table(ckpt, override=None) -> int:
    """The genetic code to check a model against: ``override`` if given, else the model's own
    (the standard code, 1, when the checkpoint does not say; a table it records that is no
    genetic code is an error, see :func:`check_codon_metadata`)."""
    if override is not None:
        return override
    check_codon_metadata(ckpt)
    return get_genetic_code((ckpt.metadata or {}).get("table", 1)).table_id


#: recipe fields newer than the first codon checkpoints, and the values that give the recipe
#: such a checkpoint was trained with (no training past final_max_len, no extra short
#: proteins, no final phase): a resumed run goes on as it began
_FIELDS_ADDED = {"train_past": 1.0, "short_share": 0.0, "final_steps": 0}


def checkpoint_recipe(model, ckpt) -> CodonRecipe:
    """The recipe a codon checkpoint was trained with; its architecture always the model's own
    (a recorded recipe without a field of :data:`_FIELDS_ADDED` gets that field's old value)."""
    recorded = (ckpt.metadata or {}).get("recipe")
    if isinstance(recorded, dict):
        recorded = {**_FIELDS_ADDED, **recorded}
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
                     data=None, resume_state: dict | None = None, extra: dict | None = None) -> None:
    """Save ``trainer``'s model and optimizer as a codon checkpoint, with its metadata.

    ``curriculum``: the run's ``(step, seconds, max_len)`` list, when known; ``rng``: the
    data generator, so that a resumed run draws on; ``data``: the pairs file trained on
    (None: fresh random pairs); ``extra``: more metadata entries (how a fine-tuned model was
    made, for instance); ``resume_state``: where the run stands (``CodonRun.resume_state()``),
    for ``--resume``.
    """
    metadata = {"task": "codon", "table": table, "recipe": recipe.to_dict(),
                "curriculum": None if curriculum is None else [list(c) for c in curriculum],
                "train_seconds": float(trainer.train_seconds),
                "stop_reason": getattr(trainer, "stop_reason", None),
                "data": None if data is None else str(data), "resume": resume_state, **(extra or {})}
    save_checkpoint(path, trainer.model, optimizer=trainer.optimizer, step=trainer.step, rng=rng,
                    vocabularies={"source": rna_vocabulary(), "target": protein_vocabulary()},
                    metadata=metadata)


def save_run(path, run, *, data=None, extra: dict | None = None) -> None:
    """Save a finished (or interrupted) :class:`~minitransformer.codon.train.CodonRun`."""
    save_codon_model(path, run.trainer, run.recipe, run.table, curriculum=run.curriculum,
                     rng=run.data_rng, data=data, extra=extra,
                     resume_state=run.resume_state() if run.resume_state is not None else None)


def save_on_interrupt(path: Path, recipe: CodonRecipe, table: int, data=None):
    """A ``checkpoint_fn`` for the trainer: on Ctrl-C, keep what was learned so far at ``path``."""
    def save(trainer):
        save_codon_model(path, trainer, recipe, table, data=data)
        print(f"saved the model after {trainer.step} steps to {path}", file=sys.stderr)
    return save
