"""Protein models in checkpoints: what kind of model a file holds, and building it back.

:func:`minitransformer.checkpoint.load_model` rebuilds the encoder-decoder ``Transformer``
only. A protein checkpoint therefore says what it holds in its metadata::

    {"model": "encoder_only", "task": "protein-mlm" | "protein-families", "families": [...],
     "words": [...]}

(``words``: the multi-residue tokens of its vocabulary, none for one token per residue;
:func:`checkpoint_vocabulary` builds the vocabulary back) and :func:`load_protein_model`
reads that, builds an :class:`~minitransformer.encoder_only.EncoderOnly` from the saved
config, and copies the saved weights in.
"""
from __future__ import annotations

from ..checkpoint import CheckpointError, load_checkpoint, restore_model, save_checkpoint
from ..encoder_only import EncoderOnly, EncoderOnlyConfig
from . import data as D

__all__ = ["MODEL_KIND", "TASKS", "save_protein_model", "load_protein_model", "checkpoint_vocabulary"]

#: The ``metadata["model"]`` of every protein checkpoint.
MODEL_KIND = "encoder_only"

#: ``metadata["task"]``: masked-LM pre-training, or family classification.
TASKS = ("protein-mlm", "protein-families")


def save_protein_model(path, model: EncoderOnly, task: str, families=None, words=(), **metadata):
    """Write ``model`` to ``path`` with the metadata :func:`load_protein_model` needs;
    ``families`` (class i is ``families[i]``) is required for a classifier, ``words`` for a
    model that reads words (:class:`~.data.ProteinVocabulary`)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "protein-families" and (not families or len(families) != model.config.n_classes):
        raise ValueError(f"a family classifier needs its {model.config.n_classes} family names, got {families!r}")
    vocab = D.protein_vocabulary(words)
    if model.config.vocab_size != len(vocab):
        raise ValueError(f"the model reads {model.config.vocab_size} tokens, a protein vocabulary with "
                         f"{len(vocab.words)} words has {len(vocab)}: give the model's words")
    return save_checkpoint(path, model, metadata={"model": MODEL_KIND, "task": task,
                                                  "families": list(families or []), "words": list(vocab.words),
                                                  **metadata})


def checkpoint_vocabulary(checkpoint) -> D.ProteinVocabulary:
    """The vocabulary a protein checkpoint's model reads (its ``words``; none in a
    checkpoint saved before words existed)."""
    return D.protein_vocabulary((checkpoint.metadata or {}).get("words", ()))


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
    try:
        vocab = checkpoint_vocabulary(checkpoint)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} lists words that are no protein words ({exc})") from exc
    if config.vocab_size != len(vocab):
        raise CheckpointError(f"{path} has a vocabulary of {config.vocab_size} tokens, not the "
                              f"{len(vocab)} of the protein vocabulary with its {len(vocab.words)} words")
    model = restore_model(checkpoint, EncoderOnly(config))
    model.eval()
    return model, checkpoint
