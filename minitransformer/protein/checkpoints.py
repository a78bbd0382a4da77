"""Protein models in checkpoints: what kind of model a file holds, and building it back.

:func:`minitransformer.checkpoint.load_model` rebuilds the encoder-decoder ``Transformer``
only. A protein checkpoint therefore says what it holds in its metadata::

    {"model": "encoder_only", "task": "protein-mlm" | "protein-families", "families": [...]}

and :func:`load_protein_model` reads that, builds an :class:`~minitransformer.encoder_only.EncoderOnly`
from the saved config, and copies the saved weights in.
"""
from __future__ import annotations

from ..checkpoint import CheckpointError, load_checkpoint, restore_model, save_checkpoint
from ..encoder_only import EncoderOnly, EncoderOnlyConfig
from . import data as D

__all__ = ["MODEL_KIND", "TASKS", "save_protein_model", "load_protein_model"]

#: The ``metadata["model"]`` of every protein checkpoint.
MODEL_KIND = "encoder_only"

#: ``metadata["task"]``: masked-LM pre-training, or family classification.
TASKS = ("protein-mlm", "protein-families")


def save_protein_model(path, model: EncoderOnly, task: str, families=None, **metadata):
    """Write ``model`` to ``path`` with the metadata :func:`load_protein_model` needs;
    ``families`` (class i is ``families[i]``) is required for a classifier."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "protein-families" and (not families or len(families) != model.config.n_classes):
        raise ValueError(f"a family classifier needs its {model.config.n_classes} family names, got {families!r}")
    return save_checkpoint(path, model, metadata={"model": MODEL_KIND, "task": task,
                                                  "families": list(families or []), **metadata})


def load_protein_model(path, task: str | None = None):
    """``(model, checkpoint)``: the protein model saved at ``path``, in eval mode.

    CheckpointError, in one line, for a file that is no checkpoint, a checkpoint of another
    kind of model (a codon model, say), or, when ``task`` is given, of the other task."""
    checkpoint = load_checkpoint(path)
    metadata = checkpoint.metadata or {}
    if metadata.get("model") != MODEL_KIND or metadata.get("task") not in TASKS:
        raise CheckpointError(f"{path} is not a protein model (its metadata says model "
                              f"{metadata.get('model')!r}, task {metadata.get('task')!r}); make one with "
                              "'minitransformer protein pretrain' or 'minitransformer protein finetune'")
    if task is not None and metadata["task"] != task:
        what = {"protein-mlm": "a pre-trained (masked-LM) model", "protein-families": "a family classifier"}
        raise CheckpointError(f"{path} is {what[metadata['task']]}, not {what[task]}")
    try:
        config = EncoderOnlyConfig.from_dict(checkpoint.config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} holds no valid encoder-only config ({exc})") from exc
    if config.vocab_size != len(D.protein_vocabulary()):
        raise CheckpointError(f"{path} has a vocabulary of {config.vocab_size} tokens, not the "
                              f"{len(D.protein_vocabulary())} of the protein vocabulary")
    model = restore_model(checkpoint, EncoderOnly(config))
    model.eval()
    return model, checkpoint
