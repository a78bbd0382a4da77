"""Pre-train a protein language model and fine-tune it to classify families: the training
loops and the scores.

* :func:`pretrain` — masked language modelling on random windows of unlabelled sequences;
  :func:`mlm_accuracy` scores it against always guessing the most frequent residue;
* :func:`finetune` — family classification on random windows of a few labelled sequences,
  the encoder at its own learning rate (:func:`finetuning_optimizer`);
  :func:`class_logits` averages the class logits of several windows of each test
  sequence;
* :func:`wilson_interval` — the 95% interval reported with every accuracy;
  :func:`paired_difference` — the difference of two arms' accuracies on the same test
  sequences, with its paired 95% interval.

:mod:`.demo` puts them together: pre-trained against from scratch, on the same few sequences.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import backend as _backend
from ..encoder_only import IGNORE_INDEX, EncoderOnly, EncoderOnlyConfig, mask_tokens
from ..heads import MeanPooling
from ..losses import CrossEntropyLoss
from ..optim import AdamW, WarmupCosineSchedule, clip_grad_norm
from . import data as D


@dataclass
class DemoSettings:
    """Model size and training lengths of the demo, chosen on the validation split (see
    :mod:`.demo`): fine-tuning runs to convergence on the few labelled sequences, for both
    arms; 2,000 words (:func:`~.data.learn_words`), so that a window of 128 tokens holds
    about 315 residues. A pre-training step of 32 windows takes about 0.2 s on one core;
    the whole demo took 485 s on an otherwise idle 2-core machine."""

    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    n_layers: int = 2
    window: int = 128               #: tokens per sequence window (residues, without words)
    words: int = 2000               #: multi-residue words learned from the pre-training sequences (0: none)
    batch_size: int = 32
    pretrain_steps: int = 900
    pretrain_lr: float = 2e-3
    pretrain_on_train_side: bool = True  #: pre-train on the labelled training side's sequences too, unlabelled
    finetune_steps: int = 300       #: both arms, at per_family: about 50 passes over 8 x 12 labelled sequences
    finetune_lr: float = 3e-3
    finetune_batch: int = 16        #: windows per fine-tuning step
    encoder_lr_scale: float = 1.0   #: pre-trained arm: the encoder's learning rate over the head's (0: frozen)
    curve_points: int = 3           #: fine-tuning steps at which the test accuracy is also recorded, evenly spaced
    eval_windows: int = 4           #: windows per test sequence, evenly spaced; their class logits averaged
    per_family: int = 8             #: labelled training sequences per family (the headline comparison)
    label_counts: tuple = (1, 2, 4, 8)  #: the demo compares both arms at each of these per family, too
    mlm_eval_sequences: int = 500   #: pre-training sequences held out to score masked-LM accuracy
    seeds: tuple = (0, 1, 2)        #: fine-tuning runs, each pre-trained and from scratch
    seed: int = 0

    def model_config(self, n_classes: int, seed: int, vocab: D.ProteinVocabulary | None = None) -> EncoderOnlyConfig:
        """The model of these settings, reading ``vocab``'s tokens (default: one per residue)."""
        return EncoderOnlyConfig(vocab_size=len(vocab or D.protein_vocabulary()), d_model=self.d_model,
                                 n_heads=self.n_heads, d_ff=self.d_ff, n_layers=self.n_layers,
                                 max_len=self.window, n_classes=n_classes, dropout=0.1, seed=seed)


def _step(model, optimizer, ids, targets, head, criterion):
    loss = criterion.forward(model.forward(ids, head=head), targets)
    model.zero_grad()
    model.backward(criterion.backward())
    clip_grad_norm(model.parameters(), 1.0)
    optimizer.step()
    return float(loss)


def _optimizer(params, peak_lr, steps):
    """AdamW with a linear warm-up over the first tenth of the steps, then a cosine decay."""
    return AdamW(params, lr=WarmupCosineSchedule(peak_lr, max(1, steps // 10), steps), weight_decay=0.01)


class _Optimizers:
    """Several optimisers stepped as one (the head and the encoder at different rates)."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()


def finetuning_optimizer(model: EncoderOnly, peak_lr, steps, encoder_lr_scale=1.0):
    """The classifier at ``peak_lr``, everything below it at ``encoder_lr_scale * peak_lr``
    (0: the encoder stays frozen, only the classifier learns)."""
    named = list(model.named_parameters())
    head = [p for name, p in named if name.startswith("classifier.")]
    encoder = [p for name, p in named if not name.startswith("classifier.")]
    if encoder_lr_scale == 1.0:
        return _optimizer(head + encoder, peak_lr, steps)
    if encoder_lr_scale == 0.0:
        return _optimizer(head, peak_lr, steps)
    return _Optimizers(_optimizer(head, peak_lr, steps), _optimizer(encoder, encoder_lr_scale * peak_lr, steps))


def pretrain(model: EncoderOnly, sequences, settings: DemoSettings, log=print, vocab=None):
    """Masked language modelling on random windows of ``sequences`` (cut into ``vocab``'s
    tokens; default: one per residue); returns the losses.

    A sequence is drawn with a probability in proportion to the windows it holds (its length
    over ``settings.window``, at least 1), so that every residue is about as likely to be read:
    a protein of 800 residues is not read as often as one of 128."""
    vocab, rng = vocab or D.protein_vocabulary(), np.random.default_rng(settings.seed)
    optimizer = _optimizer(model.parameters(), settings.pretrain_lr, settings.pretrain_steps)
    criterion, losses, start = CrossEntropyLoss(ignore_index=IGNORE_INDEX), [], time.perf_counter()
    weights = np.maximum(1.0, np.array([len(vocab.split(s)) for s in sequences]) / settings.window)
    model.train()
    for step in range(settings.pretrain_steps):
        rows = rng.choice(len(sequences), settings.batch_size, replace=False, p=weights / weights.sum())
        ids = D.encode(vocab, [sequences[i] for i in rows], settings.window, rng)
        inputs, targets = mask_tokens(ids, rng, mask_id=vocab.token_to_id(D.MASK),
                                      special_ids=D.special_ids(vocab), vocab_size=len(vocab))
        losses.append(_step(model, optimizer, inputs, targets, "mlm", criterion))
        if (step + 1) % 50 == 0 or step + 1 == settings.pretrain_steps:
            log(f"pre-training step {step + 1}/{settings.pretrain_steps}: masked-LM loss "
                f"{np.mean(losses[-100:]):.3f}, {time.perf_counter() - start:.0f} s")
    return losses


def mlm_accuracy(model: EncoderOnly, sequences, settings: DemoSettings, unigram_from=None, vocab=None):
    """``(accuracy, unigram_accuracy, n)`` at the masked positions of centred windows.

    The baseline always guesses the most frequent token of ``unigram_from`` (default: the
    evaluated sequences themselves, which flatters the baseline)."""
    vocab, rng = vocab or D.protein_vocabulary(), np.random.default_rng(settings.seed + 100)
    ids = D.encode(vocab, sequences, settings.window)
    inputs, targets = mask_tokens(ids, rng, mask_id=vocab.token_to_id(D.MASK),
                                  special_ids=D.special_ids(vocab), vocab_size=len(vocab))
    model.eval()
    chosen = targets != IGNORE_INDEX
    predicted = np.concatenate([model.forward(inputs[i:i + 64]).argmax(-1)[chosen[i:i + 64]]
                                for i in range(0, len(inputs), 64)])
    counts = np.bincount(D.encode(vocab, unigram_from or sequences, settings.window).ravel(),
                         minlength=len(vocab))
    counts[D.special_ids(vocab)] = 0
    return float((predicted == targets[chosen]).mean()), float((targets[chosen] == counts.argmax()).mean()), \
        int(chosen.sum())


def finetune(model: EncoderOnly, sequences, labels, settings: DemoSettings, seed: int, encoder_lr_scale=1.0,
             after_step=None, vocab=None):
    """Classification training on random windows of the labelled sequences (in ``vocab``'s
    tokens; default: one per residue); returns the losses.
    ``after_step(step)``, if given, is called after each step (1, 2, ...), e.g. to score the
    model along the way (it must put the model back in training mode)."""
    vocab, rng = vocab or D.protein_vocabulary(), np.random.default_rng(seed)
    optimizer = finetuning_optimizer(model, settings.finetune_lr, settings.finetune_steps, encoder_lr_scale)
    criterion, losses = CrossEntropyLoss(), []
    labels = np.asarray(labels)
    model.train()
    for step in range(settings.finetune_steps):
        rows = rng.choice(len(sequences), min(settings.finetune_batch, len(sequences)), replace=False)
        ids = D.encode(vocab, [sequences[i] for i in rows], settings.window, rng)
        losses.append(_step(model, optimizer, ids, labels[rows], "classify", criterion))
        if after_step is not None:
            after_step(step + 1)
    return losses


def window_average(read, sequences, settings: DemoSettings, vocab=None) -> np.ndarray:
    """(N, k): ``read(ids)`` (a batch of windows -> (B, k)) averaged over ``settings.eval_windows``
    evenly spaced windows of each sequence, in ``vocab``'s tokens (a long protein is read in
    several pieces)."""
    vocab = vocab or D.protein_vocabulary()
    pieces = [D.spaced_windows(vocab.split(s), settings.window, settings.eval_windows) for s in sequences]
    ids = vocab.encode_batch([w for windows in pieces for w in windows], strict=False)
    out = np.concatenate([_backend.to_numpy(read(ids[i:i + 64])) for i in range(0, len(ids), 64)])
    owner = np.repeat(np.arange(len(sequences)), [len(w) for w in pieces])
    total = np.zeros((len(sequences), out.shape[1]))
    np.add.at(total, owner, out)
    return total / np.bincount(owner)[:, None]


def class_logits(model: EncoderOnly, sequences, settings: DemoSettings, vocab=None) -> np.ndarray:
    """(N, n_classes): each sequence's class logits, averaged over its windows (:func:`window_average`)."""
    model.eval()
    return window_average(lambda ids: model.forward(ids, head="classify"), sequences, settings, vocab)


def pooled_features(model: EncoderOnly, sequences, settings: DemoSettings, vocab=None) -> np.ndarray:
    """(N, d_model): the mean of each sequence's last-layer vectors over its real tokens and
    its windows: what the classifier reads, before it is trained."""
    model.eval()
    pool = MeanPooling()
    return window_average(lambda ids: pool.forward(*model.encode(ids)), sequences, settings, vocab)


def dipeptide_profile(sequences) -> np.ndarray:
    """(N, 400): how often each ordered pair of neighbouring residues occurs in each sequence,
    as a fraction of its pairs: a profile made by counting, with nothing learned."""
    index = {a: i for i, a in enumerate(D.AMINO_ACIDS)}
    profile = np.zeros((len(sequences), len(index) ** 2))
    for row, sequence in enumerate(sequences):
        codes = np.array([index[a] for a in sequence])
        np.add.at(profile[row], codes[:-1] * len(index) + codes[1:], 1.0)
    return profile / np.maximum(1.0, profile.sum(axis=1, keepdims=True))


def centroid_accuracy(features, labels, few, test_features, test_labels) -> float:
    """Accuracy of the nearest class centroid (cosine) on frozen features: no training, so it
    shows what the features themselves hold. ``few`` are the rows of ``features`` whose labels
    may be used; every row (the labels unread) sets the standardisation."""
    labels, few = np.asarray(labels), np.asarray(few)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-8

    def unit(x):
        x = (x - mean) / scale
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)

    classes = np.unique(labels[few])
    centroids = unit(np.stack([features[few[labels[few] == c]].mean(axis=0) for c in classes]))
    predicted = classes[(unit(test_features) @ centroids.T).argmax(axis=1)]
    return float((predicted == np.asarray(test_labels)).mean())


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (better than p +- 1.96 se near 0 or 1)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_difference(correct_a, correct_b, z: float = 1.96) -> tuple[float, tuple[float, float]]:
    """``(d, (low, high))``: accuracy of a minus accuracy of b, with a 95% interval, for two
    models scored on the same test sequences. ``correct_a``, ``correct_b``: (runs, n)
    booleans, run r of a paired with run r of b (the same seed, the same labelled sequences).

    Why paired: both arms read the same test sequences, and much of what makes an arm right
    or wrong is the sequence itself (an easy one, a hard one). Two separate intervals count
    that noise twice; the difference per sequence, ``mean over runs of (a - b)``, cancels it.
    The interval is the normal approximation over the n sequences, ``d +- z s / sqrt(n)``
    with s the standard deviation of the per-sequence differences. It treats the test
    sequences as independent, which relatives within a family are not quite: read it as a
    lower bound on the uncertainty."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"paired_difference needs two (runs, n) arrays of the same shape, n >= 2; got "
                         f"{a.shape} and {b.shape}")
    per_sequence = (a - b).mean(axis=0)
    d, half = float(per_sequence.mean()), z * float(per_sequence.std(ddof=1)) / math.sqrt(per_sequence.size)
    return d, (d - half, d + half)
