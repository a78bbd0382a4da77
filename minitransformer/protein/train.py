"""Pre-train a protein language model, fine-tune it to classify families, and compare.

The talk's point (PRoBERTa): a Transformer pre-trained on raw protein sequences by masked
language modelling, then fine-tuned on a few labelled sequences, classifies better than the
same model trained on those few sequences alone. :func:`run_demo` measures exactly that:

1. :func:`pretrain` — masked language modelling on the unlabelled sequences;
2. :func:`finetune` twice per seed, on the same few labelled sequences per family and with
   the same settings: once from the pre-trained weights, once from scratch;
3. both scored on a test set split off by similarity (:func:`~.data.similarity_split`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import save_checkpoint
from ..encoder_only import IGNORE_INDEX, EncoderOnly, EncoderOnlyConfig, mask_tokens
from ..losses import CrossEntropyLoss
from ..optim import AdamW, WarmupCosineSchedule, clip_grad_norm
from . import data as D


@dataclass
class DemoSettings:
    """Model size and training lengths of the demo (the defaults take about 8 minutes on 2
    busy cores: about a second per step of 32 windows of 128 residues)."""

    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    n_layers: int = 2
    window: int = 128               #: residues per sequence window
    batch_size: int = 32
    pretrain_steps: int = 250
    pretrain_lr: float = 2e-3
    finetune_steps: int = 50
    finetune_lr: float = 1e-3
    per_family: int = 8             #: labelled training sequences per family
    mlm_eval_sequences: int = 500   #: pre-training sequences held out to score masked-LM accuracy
    seeds: tuple = (0, 1)           #: fine-tuning runs, each pre-trained and from scratch
    seed: int = 0

    def model_config(self, n_classes: int, seed: int) -> EncoderOnlyConfig:
        return EncoderOnlyConfig(vocab_size=len(D.protein_vocabulary()), d_model=self.d_model,
                                 n_heads=self.n_heads, d_ff=self.d_ff, n_layers=self.n_layers,
                                 max_len=self.window, n_classes=n_classes, dropout=0.1, seed=seed)


def _step(model, optimizer, ids, targets, head, criterion):
    loss = criterion.forward(model.forward(ids, head=head), targets)
    model.zero_grad()
    model.backward(criterion.backward())
    clip_grad_norm(model.parameters(), 1.0)
    optimizer.step()
    return float(loss)


def _optimizer(model, peak_lr, steps):
    """AdamW with a linear warm-up over the first tenth of the steps, then a cosine decay."""
    return AdamW(model.parameters(), lr=WarmupCosineSchedule(peak_lr, max(1, steps // 10), steps),
                 weight_decay=0.01)


def pretrain(model: EncoderOnly, sequences, settings: DemoSettings, log=print):
    """Masked language modelling on random windows of ``sequences``; returns the losses."""
    vocab, rng = D.protein_vocabulary(), np.random.default_rng(settings.seed)
    optimizer = _optimizer(model, settings.pretrain_lr, settings.pretrain_steps)
    criterion, losses, start = CrossEntropyLoss(ignore_index=IGNORE_INDEX), [], time.perf_counter()
    model.train()
    for step in range(settings.pretrain_steps):
        rows = rng.choice(len(sequences), settings.batch_size, replace=False)
        ids = D.encode(vocab, [sequences[i] for i in rows], settings.window, rng)
        inputs, targets = mask_tokens(ids, rng, mask_id=vocab.token_to_id(D.MASK),
                                      special_ids=D.special_ids(vocab), vocab_size=len(vocab))
        losses.append(_step(model, optimizer, inputs, targets, "mlm", criterion))
        if (step + 1) % 100 == 0 or step + 1 == settings.pretrain_steps:
            log(f"pre-training step {step + 1}/{settings.pretrain_steps}: masked-LM loss "
                f"{np.mean(losses[-100:]):.3f}, {time.perf_counter() - start:.0f} s")
    return losses


def mlm_accuracy(model: EncoderOnly, sequences, settings: DemoSettings, unigram_from=None):
    """``(accuracy, unigram_accuracy, n)`` at the masked positions of centred windows.

    The baseline always guesses the most frequent residue of ``unigram_from`` (default: the
    evaluated sequences themselves, which flatters the baseline)."""
    vocab, rng = D.protein_vocabulary(), np.random.default_rng(settings.seed + 100)
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


def finetune(model: EncoderOnly, sequences, labels, settings: DemoSettings, seed: int):
    """Classification training on random windows of the labelled sequences."""
    vocab, rng = D.protein_vocabulary(), np.random.default_rng(seed)
    optimizer = _optimizer(model, settings.finetune_lr, settings.finetune_steps)
    criterion = CrossEntropyLoss()
    labels = np.asarray(labels)
    model.train()
    for step in range(settings.finetune_steps):
        rows = rng.choice(len(sequences), min(settings.batch_size, len(sequences)), replace=False)
        ids = D.encode(vocab, [sequences[i] for i in rows], settings.window, rng)
        _step(model, optimizer, ids, labels[rows], "classify", criterion)
    return model


def classification_accuracy(model: EncoderOnly, sequences, labels, settings: DemoSettings) -> float:
    vocab = D.protein_vocabulary()
    ids = D.encode(vocab, sequences, settings.window)
    model.eval()
    predicted = np.concatenate([model.forward(ids[i:i + 64], head="classify").argmax(-1)
                                for i in range(0, len(ids), 64)])
    return float((predicted == np.asarray(labels)).mean())


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (better than p +- 1.96 se near 0 or 1)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@dataclass
class DemoData:
    """The demo's sequences, split: see :func:`load_demo_data`."""

    unlabelled: list          #: pre-training sequences
    held_out: list            #: pre-training sequences kept out, to score masked-LM accuracy
    train: object             #: labelled training table (family, sequence, ...)
    test: object              #: labelled test table, split off by similarity
    families: list            #: the class names; class i is families[i]

    def labels(self, table) -> list[int]:
        return [self.families.index(f) for f in table.family]


def load_demo_data(settings: DemoSettings) -> DemoData:
    """The shipped sequences: unlabelled ones split into pre-training and held-out, labelled
    ones split by similarity (:func:`~.data.similarity_split`)."""
    families = D.load_families()
    train, test = D.similarity_split(families, seed=settings.seed)
    unlabelled = D.load_pretraining().sequence.tolist()
    cut = settings.mlm_eval_sequences
    return DemoData(unlabelled[cut:], unlabelled[:cut], train, test, sorted(families.family.unique()))


def pretrain_model(data: DemoData, settings: DemoSettings, log=print):
    """A new model pre-trained by masked language modelling; returns ``(model, scores)`` with
    the masked-LM accuracy on the held-out sequences and its unigram baseline."""
    model = EncoderOnly(settings.model_config(len(data.families), settings.seed))
    pretrain(model, data.unlabelled, settings, log)
    accuracy, unigram, n_masked = mlm_accuracy(model, data.held_out, settings, unigram_from=data.unlabelled)
    log(f"masked-LM accuracy {accuracy:.3f} (unigram baseline {unigram:.3f}) on {n_masked} masked residues")
    return model, {"mlm_accuracy": accuracy, "mlm_unigram_baseline": unigram, "mlm_n_masked": n_masked}


def finetune_model(data: DemoData, settings: DemoSettings, seed: int, pretrained: EncoderOnly | None = None):
    """Fine-tune on ``settings.per_family`` labelled sequences per family (drawn with ``seed``),
    from ``pretrained``'s weights (all but its classifier) or, without it, from scratch.
    Returns ``(model, test accuracy)``."""
    model = EncoderOnly(settings.model_config(len(data.families), seed))
    if pretrained is not None:
        weights = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("classifier.")}
        model.load_state_dict({**model.state_dict(), **weights})
    few = D.few_per_family(data.train, settings.per_family, seed)
    finetune(model, few.sequence.tolist(), data.labels(few), settings, seed)
    return model, classification_accuracy(model, data.test.sequence.tolist(), data.labels(data.test), settings)


def run_demo(out_dir, settings: DemoSettings | None = None, log=print) -> dict:
    """Pre-train, fine-tune pre-trained and from scratch, evaluate; writes ``model.npz`` (the
    pre-trained model fine-tuned with the first seed) and ``evaluation.json``; returns the
    evaluation."""
    settings = settings or DemoSettings()
    out_dir = Path(out_dir)
    start = time.perf_counter()
    data = load_demo_data(settings)
    log(f"{len(data.unlabelled)} pre-training sequences; {len(data.families)} families, {len(data.train)} "
        f"train / {len(data.test)} test sequences (split by similarity), {settings.per_family} labelled "
        f"per family")
    pretrained, mlm_scores = pretrain_model(data, settings, log)
    runs, first = [], None
    for seed in settings.seeds:
        model, with_pretraining = finetune_model(data, settings, seed, pretrained)
        first = first or model
        _, from_scratch = finetune_model(data, settings, seed)
        log(f"seed {seed}: test accuracy pre-trained {with_pretraining:.3f}, from scratch "
            f"{from_scratch:.3f} ({time.perf_counter() - start:.0f} s)")
        runs.append({"seed": seed, "pretrained": with_pretraining, "scratch": from_scratch})

    n = len(data.test)
    evaluation = {
        **mlm_scores,
        "classification_accuracy_pretrained": float(np.mean([r["pretrained"] for r in runs])),
        "classification_accuracy_scratch": float(np.mean([r["scratch"] for r in runs])),
        "n_test": n, "n_train_labelled": len(data.families) * settings.per_family,
        "n_families": len(data.families), "runs": runs, "seconds": round(time.perf_counter() - start, 1),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
    }
    # Wilson interval of the mean accuracy over the seeds, with n = the test sequences (the
    # same ones for every seed): it counts the test set's sampling error, not the seeds' spread
    for kind in ("pretrained", "scratch"):
        successes = evaluation[f"classification_accuracy_{kind}"] * n
        evaluation[f"classification_ci95_{kind}"] = list(wilson_interval(successes, n))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_dir / "model.npz", first, metadata={"model": "encoder_only", "families": data.families})
    tmp = out_dir / "evaluation.json.tmp"
    tmp.write_text(json.dumps(evaluation, indent=2))
    tmp.replace(out_dir / "evaluation.json")
    return evaluation
