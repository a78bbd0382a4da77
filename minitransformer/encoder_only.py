"""An encoder-only Transformer (BERT, Devlin et al., 2019) built from the encoder-decoder's blocks.

BERT is the encoder half of the Transformer alone: token and position embeddings, the
encoder stack of :mod:`transformer` (the same ``Encoder`` and ``EncoderLayer``, not a
copy; built by :class:`~minitransformer.heads.StackModel`), and a head on top:

* the **masked-language-model head** (pre-training): some tokens of the input are hidden
  (:func:`mask_tokens`) and the model predicts them from both sides, left and right;
* the **sequence-classification head** (fine-tuning): the mean of the real tokens' vectors,
  then a linear layer to the classes (why the mean and not a [CLS] token:
  :class:`~minitransformer.heads.SequenceClassifier`).

A training step::

    inputs, targets = mask_tokens(ids, rng, mask_id=MASK, special_ids=SPECIAL, vocab_size=V)
    logits = model.forward(inputs, head="mlm")                 # (B, T, V)
    loss = CrossEntropyLoss(ignore_index=IGNORE_INDEX).forward(logits, targets)
    model.zero_grad(); model.backward(criterion.backward())

and for classification ``model.forward(ids, head="classify")`` gives (B, n_classes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import backend as _backend
from .heads import MaskedLMHead, SequenceClassifier, StackConfig, StackModel
from .nn import as_generator
from .transformer import padding_mask
from .validation import check_id_batch, check_int

__all__ = ["EncoderOnlyConfig", "EncoderOnly", "mask_tokens", "IGNORE_INDEX", "HEADS"]

#: The target of a position the loss must skip (PyTorch's default ``ignore_index``).
IGNORE_INDEX = -100

#: The heads :meth:`EncoderOnly.forward` can run.
HEADS = ("mlm", "classify")


@dataclass
class EncoderOnlyConfig(StackConfig):
    """:class:`~minitransformer.heads.StackConfig` plus the classification head's size.

    Defaults follow BERT: post-LN, GELU, tied output embedding.
    """

    n_classes: int = 0              #: classes of the classification head; 0: no such head

    def _problems(self) -> list[str]:
        problems = super()._problems()
        try:
            check_int("n_classes", self.n_classes, minimum=0)
        except ValueError as exc:
            problems.append(f"{exc} (0: no classification head)")
        return problems


class EncoderOnly(StackModel):
    """Token ids (B, T) -> per-token vocabulary logits (MLM) or per-sequence class logits.

    ``forward(ids, head="mlm")`` -> (B, T, vocab_size); ``forward(ids, head="classify")`` ->
    (B, n_classes). ``backward(dlogits)`` runs the head used by the last forward pass, then
    the stack, and adds every parameter's gradient into ``.grad``. Padding (``pad_id``) is
    hidden from attention and from the pooling.
    """

    def build_heads(self, rng, dropout_rng, table):
        self.mlm_head = MaskedLMHead(self.config, table, rng)
        self.classifier = SequenceClassifier(self.config, rng, dropout_rng) if self.config.n_classes else None
        self._head = None

    def encode(self, ids):
        """Token ids (B, T) -> (last layer's vectors h (B, T, d), keep (B, T): True at real tokens)."""
        check_id_batch("ids", ids, self.config.max_len, self.config.vocab_size)
        keep = ids != self.config.pad_id
        if not bool(keep.any(axis=1).all()):
            raise ValueError("every sequence needs at least one token that is not padding; "
                             f"row(s) {_backend.to_numpy(~keep.any(axis=1)).nonzero()[0].tolist()} are all padding")
        h = self.stack.forward(self.embeddings.forward(ids), padding_mask(ids, self.config.pad_id))
        return h, keep

    def forward(self, ids, head="mlm"):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if head == "classify" and self.classifier is None:
            raise ValueError("this model has no classification head: build it with n_classes > 0 "
                             "(EncoderOnlyConfig(..., n_classes=...))")
        h, keep = self.encode(ids)
        self._head = head
        if head == "mlm":
            return self.mlm_head.forward(h)
        return self.classifier.forward(h, keep)

    def backward(self, dlogits):
        """The forward pass in reverse: the head, the stack, the embeddings."""
        if self._head is None:
            raise RuntimeError("EncoderOnly.backward() called before forward()")
        head = self.mlm_head if self._head == "mlm" else self.classifier
        self._head = None
        self.embeddings.backward(self.stack.backward(head.backward(dlogits)))


# --------------------------------------------------------------------------------------
# Masked language modelling: what to hide and what to predict
# --------------------------------------------------------------------------------------
def mask_tokens(ids, rng, *, mask_id, special_ids, vocab_size, mask_prob=0.15,
                ignore_index=IGNORE_INDEX):
    """BERT's corruption of a batch: returns ``(inputs, targets)``, both like ``ids``.

    In each sequence, ``round(mask_prob * n)`` of its n non-special tokens (at least one
    when n > 0) are *chosen*, uniformly at random. Of the chosen tokens, 80% become
    ``mask_id``, 10% a random token, 10% stay as they are (each decided by one draw). The
    targets are the original ids at the chosen positions and ``ignore_index`` everywhere
    else, so the loss reads only those. Random tokens are drawn uniformly from the
    non-special ids of ``[0, vocab_size)``.

    Why not always [MASK]: the model never sees [MASK] when it is used later, so it must
    also predict at positions that look like ordinary tokens; and since 10% of chosen
    tokens are left alone, it cannot assume that an ordinary-looking token is right.

    ``ids`` (B, T) integer array (host or device); ``rng`` a NumPy ``Generator`` or seed
    (drawn on the host, so every backend gets the same masks); ``special_ids`` the ids
    never chosen nor drawn (padding, [MASK], start, end, ...).
    """
    rng = as_generator(rng)
    host = _backend.to_numpy(ids)
    special = np.asarray(sorted(set(int(s) for s in special_ids)), dtype=np.int64)
    if host.ndim != 2 or not np.issubdtype(host.dtype, np.integer):
        raise ValueError(f"ids must be a 2-D integer array (batch, length), got shape "
                         f"{getattr(host, 'shape', None)} and dtype {host.dtype}")
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    if int(mask_id) not in set(special.tolist()):
        raise ValueError(f"mask_id={mask_id} must be one of special_ids {special.tolist()} "
                         "(a [MASK] token must never be chosen as a target)")
    ordinary = np.setdiff1d(np.arange(vocab_size), special)
    if ordinary.size == 0:
        raise ValueError(f"every id of the vocabulary (size {vocab_size}) is special: nothing to predict")
    if host.size and (host.min() < 0 or host.max() >= vocab_size):
        raise ValueError(f"ids hold values from {host.min()} to {host.max()}, outside the vocabulary "
                         f"[0, {vocab_size})")

    candidate = ~np.isin(host, special)                      # (B, T): may be chosen
    n = candidate.sum(axis=1)
    n_chosen = np.where(n > 0, np.maximum(1, np.rint(mask_prob * n)), 0).astype(np.int64)
    # choose n_chosen[b] candidates of row b: the ones with the smallest random keys
    keys = np.where(candidate, rng.random(host.shape), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = rank < n_chosen[:, None]

    action = rng.random(host.shape)                          # < 0.8 mask, < 0.9 random, else keep
    random_tokens = ordinary[rng.integers(0, ordinary.size, size=host.shape)]
    inputs = host.copy()
    inputs[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_tokens[swap]
    targets = np.where(chosen, host, ignore_index).astype(host.dtype)
    backend = _backend.get_array_module_name(ids)
    return _backend.asarray(inputs, backend), _backend.asarray(targets, backend)
