"""The talk's point (PRoBERTa), measured: does pre-training help a classifier of protein families?

A Transformer pre-trained on raw protein sequences by masked language modelling, then
fine-tuned on a few labelled sequences, should classify better than the same model trained
on those few sequences alone, and the fewer the labels, the larger the gap. :func:`run_demo`
measures exactly that:

1. :func:`pretrain_model` — masked language modelling on the unlabelled sequences, scored
   on held-out ones against the unigram baseline;
2. :func:`finetune_model` twice per seed and per count of labelled sequences per family
   (1, 2, 4, 8: ``settings.label_counts``), on the same sequences, for the same steps: once
   from the pre-trained weights, once from scratch;
3. :func:`frozen_probe` — what the encoder's features hold before any fine-tuning: the
   nearest-centroid accuracy on the pre-trained encoder's features, on a random encoder's,
   and on dipeptide counts (nothing learned);
4. all scored on a test split made by similarity (:func:`~.data.similarity_split`), with
   n and a Wilson 95% interval.

The settings were chosen on a validation split carved from the training side
(``run_demo(..., validation=True)``, ``minitransformer protein demo --validation``); the
test split is read only by the final run.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..encoder_only import EncoderOnly
from ..files import atomic_write, check_output_path
from . import data as D
from .checkpoints import save_protein_model
from .train import (DemoSettings, centroid_accuracy, class_logits, dipeptide_profile, finetune, mlm_accuracy,
                    paired_difference, pooled_features, pretrain, wilson_interval)

__all__ = ["DemoData", "load_demo_data", "pretrain_model", "finetune_model", "at_label_count", "compare_arms",
           "frozen_probe", "run_demo", "plot_demo", "DEMO_FILES"]

#: What :func:`run_demo` writes into its folder.
DEMO_FILES = ("model.npz", "pretrained.npz", "evaluation.json", "demo.png")


@dataclass
class DemoData:
    """The demo's sequences, split: see :func:`load_demo_data`."""

    unlabelled: list          #: pre-training sequences (the pool, then the training side's, unlabelled)
    held_out: list            #: pre-training sequences kept out, to score masked-LM accuracy
    train: object             #: labelled training table (family, sequence, ...)
    test: object              #: labelled test table, split off by similarity
    families: list            #: the class names; class i is families[i]
    vocab: D.ProteinVocabulary = dataclasses.field(default_factory=D.protein_vocabulary)  #: the models' tokens

    def labels(self, table) -> list[int]:
        return [self.families.index(f) for f in table.family]


def load_demo_data(settings: DemoSettings, validation: bool = False, families_csv=None,
                   pretraining_csv=None, vocab=None) -> DemoData:
    """The sequences (the shipped ones unless CSV files are given): unlabelled ones split into
    pre-training and held-out, labelled ones split by similarity (:func:`~.data.similarity_split`).

    Pre-training reads the unlabelled pool and, with ``settings.pretrain_on_train_side``,
    every sequence of the labelled training side too, *without its label*: the situation
    of the talk (many sequences, few of them labelled), in which the few labelled ones
    are a part of a larger set of sequences. The test side is never read before the test.

    With ``validation``, the test split is left out altogether and a validation split is
    carved from the training side the same way, to take its place: the settings are
    tuned on it, and the test split is read only once they are fixed.

    The tokens: ``vocab`` if given (a pre-trained model's); else, with ``settings.words``,
    that many words learned from the pre-training sequences (:func:`~.data.learn_words`:
    never from a test sequence), or one token per residue."""
    families = D.load_families(families_csv)
    D.check_sequences(families, families_csv or "the shipped families")
    train, test = D.similarity_split(families, seed=settings.seed)
    if validation:
        train, test = D.similarity_split(train, seed=settings.seed + 1)
    pool = D.load_pretraining(pretraining_csv)
    D.check_sequences(pool, pretraining_csv or "the shipped pre-training data")
    unlabelled = pool.sequence.tolist()
    cut = min(settings.mlm_eval_sequences, len(unlabelled) // 5)
    extra = train.sequence.tolist() if settings.pretrain_on_train_side else []
    unlabelled, held_out = unlabelled[cut:] + extra, unlabelled[:cut]
    if vocab is None:
        vocab = D.protein_vocabulary(D.learn_words(unlabelled, settings.words) if settings.words else ())
    return DemoData(unlabelled, held_out, train, test, sorted(families.family.unique()), vocab)


def pretrain_model(data: DemoData, settings: DemoSettings, log=print):
    """A new model (without a classifier) pre-trained by masked language modelling; returns
    ``(model, scores, losses)``, the scores being the masked-LM accuracy on the held-out
    sequences and its unigram baseline."""
    model = EncoderOnly(settings.model_config(0, settings.seed, data.vocab))
    losses = pretrain(model, data.unlabelled, settings, log, data.vocab)
    accuracy, unigram, n_masked = mlm_accuracy(model, data.held_out, settings, unigram_from=data.unlabelled,
                                               vocab=data.vocab)
    what = "tokens" if data.vocab.words else "residues"
    log(f"masked-LM accuracy {accuracy:.3f} (unigram baseline {unigram:.3f}) on {n_masked} masked {what}")
    return model, {"mlm_accuracy": accuracy, "mlm_unigram_baseline": unigram, "mlm_n_masked": n_masked}, losses


def finetune_model(data: DemoData, settings: DemoSettings, seed: int, pretrained: EncoderOnly | None = None):
    """Fine-tune on ``settings.per_family`` labelled sequences per family (drawn with ``seed``),
    from ``pretrained``'s weights (all but a classifier; its shape, the encoder at
    ``settings.encoder_lr_scale`` times the learning rate) or, without it, from scratch (the
    shape of ``settings``). Returns ``(model, test accuracy, curve, correct)``: ``curve`` maps
    the steps of :func:`curve_steps` to the test accuracy after them (the last is the final
    one); ``correct`` says, per test sequence, whether the final model got it right."""
    n = len(data.families)
    if pretrained is not None:
        if pretrained.config.vocab_size != len(data.vocab):
            raise ValueError(f"the pre-trained model reads {pretrained.config.vocab_size} tokens, the data's "
                             f"vocabulary has {len(data.vocab)}: load the data with the model's vocabulary "
                             "(load_demo_data(..., vocab=...); checkpoints.checkpoint_vocabulary)")
        model = EncoderOnly(dataclasses.replace(pretrained.config, n_classes=n, seed=seed))
        weights = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("classifier.")}
        model.load_state_dict({**model.state_dict(), **weights})
    else:
        model = EncoderOnly(settings.model_config(n, seed, data.vocab))
    few = D.few_per_family(data.train, settings.per_family, seed)
    scale = settings.encoder_lr_scale if pretrained is not None else 1.0
    test, labels, curve = data.test.sequence.tolist(), np.array(data.labels(data.test)), {}
    scored, correct = set(curve_steps(settings)), None

    def score(step):
        nonlocal correct
        if step in scored:
            correct = class_logits(model, test, settings, data.vocab).argmax(-1) == labels
            curve[step] = float(correct.mean())
            model.train()

    finetune(model, few.sequence.tolist(), data.labels(few), settings, seed, scale, after_step=score,
             vocab=data.vocab)
    return model, curve[settings.finetune_steps], curve, correct


def at_label_count(settings: DemoSettings, per_family: int) -> DemoSettings:
    """The settings of the comparison with ``per_family`` labelled sequences per family:
    fine-tuning steps in proportion to the labelled sequences (at least 2), so that every
    count reads its sequences about as often as ``settings.per_family`` does; the accuracy
    along fine-tuning is recorded for ``settings.per_family`` only."""
    steps = max(2, round(settings.finetune_steps * per_family / settings.per_family))
    curve_points = settings.curve_points if per_family == settings.per_family else 1
    return dataclasses.replace(settings, per_family=per_family, finetune_steps=steps, curve_points=curve_points)


def frozen_probe(data: DemoData, settings: DemoSettings, pretrained: EncoderOnly, seed: int) -> dict:
    """What the encoder's features hold before any fine-tuning: the nearest-centroid accuracy
    (:func:`~.train.centroid_accuracy`) on the pooled features of the pre-trained encoder and
    of the same model at its random initial weights, and on the sequences' dipeptide profiles
    (:func:`~.train.dipeptide_profile`: counting, nothing learned), for each label count and
    seed (the labelled sequences those of fine-tuning). Returns ``{"pretrained": [...],
    "random_init": [...], "dipeptides": [...]}``, one mean over the seeds per count of
    ``settings.label_counts``."""
    train, test = data.train.sequence.tolist(), data.test.sequence.tolist()
    labels, test_labels = data.labels(data.train), data.labels(data.test)
    random_init = EncoderOnly(settings.model_config(0, seed, data.vocab))
    readers = {"pretrained": lambda s: pooled_features(pretrained, s, settings, data.vocab),
               "random_init": lambda s: pooled_features(random_init, s, settings, data.vocab),
               "dipeptides": dipeptide_profile}
    result = {}
    for name, read in readers.items():
        features, test_features = read(train), read(test)
        result[name] = [float(np.mean([centroid_accuracy(features, labels, D.few_rows(data.train, n, s),
                                                         test_features, test_labels) for s in settings.seeds]))
                        for n in settings.label_counts]
    return result


def curve_steps(settings: DemoSettings) -> list[int]:
    """The fine-tuning steps after which :func:`finetune_model` scores the model: evenly spaced,
    the last one the final step. Every point is reported; none is chosen."""
    n = settings.finetune_steps
    return sorted({max(1, round(n * (i + 1) / settings.curve_points)) for i in range(settings.curve_points)})


def compare_arms(data: DemoData, settings: DemoSettings, pretrained: EncoderOnly):
    """Fine-tune pre-trained and from scratch with each of ``settings.seeds``, on the same
    sequences (:func:`finetune_model`); returns ``(runs, model, difference)``: each seed's
    accuracies and curves, the pre-trained arm's model of the first seed, and the accuracy
    of pre-trained minus from scratch with its paired 95% interval
    (:func:`~.train.paired_difference`, ``{"difference": d, "ci95_difference": [low, high]}``)."""
    runs, first, correct = [], None, {"pretrained": [], "scratch": []}
    for seed in settings.seeds:
        model, with_pretraining, curve_pretrained, right = finetune_model(data, settings, seed, pretrained)
        first = first or model
        _, from_scratch, curve_scratch, right_from_scratch = finetune_model(data, settings, seed)
        correct["pretrained"].append(right)
        correct["scratch"].append(right_from_scratch)
        runs.append({"seed": seed, "pretrained": with_pretraining, "scratch": from_scratch,
                     "curve_pretrained": list(curve_pretrained.values()),
                     "curve_scratch": list(curve_scratch.values())})
    difference, interval = paired_difference(correct["pretrained"], correct["scratch"])
    return runs, first, {"difference": difference, "ci95_difference": list(interval)}


def run_demo(out_dir, settings: DemoSettings | None = None, log=print, *, force=False, validation=False) -> dict:
    """Pre-train, then for each count of ``settings.label_counts`` labelled sequences per family
    fine-tune pre-trained and from scratch (each seed), evaluate. Writes into ``out_dir``
    (:data:`DEMO_FILES`): ``model.npz`` (the pre-trained model fine-tuned with the first
    seed on ``settings.per_family`` sequences per family), ``pretrained.npz`` (the masked-LM
    model), ``evaluation.json`` and ``demo.png``; returns the evaluation, whose headline
    ``classification_accuracy_*`` are those at ``settings.per_family`` and whose
    ``by_labels`` holds every count. Refuses, before any work, to replace an earlier demo's
    model unless ``force``."""
    settings = settings or DemoSettings()
    out_dir = Path(out_dir)
    paths = {name: check_output_path(out_dir / name, f"--out-dir {out_dir}: {name}",
                                     overwrite=force or not name.endswith(".npz")) for name in DEMO_FILES}
    start = time.perf_counter()
    data = load_demo_data(settings, validation)
    split, n = ("validation" if validation else "test"), len(data.test)
    counts = sorted(set(settings.label_counts) | {settings.per_family})
    settings = dataclasses.replace(settings, label_counts=tuple(counts))
    log(f"{len(data.unlabelled)} pre-training sequences; {len(data.families)} families, {len(data.train)} "
        f"train / {n} {split} sequences (split by similarity); {counts} labelled per family")
    pretrained, mlm_scores, pretrain_losses = pretrain_model(data, settings, log)
    probe = frozen_probe(data, settings, pretrained, settings.seed)
    by_labels, first = [], None
    for count in counts:
        at = at_label_count(settings, count)
        runs, model, difference = compare_arms(data, at, pretrained)
        first = model if count == settings.per_family else first
        row = {"per_family": count, "finetune_steps": at.finetune_steps,
               "n_train_labelled": int(sum(min(count, c) for c in data.train.family.value_counts())),
               **{f"probe_{name}": values[counts.index(count)] for name, values in probe.items()}}
        for kind in ("pretrained", "scratch"):
            row[kind] = float(np.mean([r[kind] for r in runs]))
            # Wilson interval of the mean over the seeds, with n = the test sequences (the same
            # for every seed): it counts the test set's sampling error, not the seeds' spread
            row[f"ci95_{kind}"] = list(wilson_interval(row[kind] * n, n))
        row.update(difference)
        by_labels.append({**row, "runs": runs})
        log(f"{count} per family: {split} accuracy pre-trained {row['pretrained']:.3f}, from scratch "
            f"{row['scratch']:.3f}, difference {row['difference']:+.3f} "
            f"[{row['ci95_difference'][0]:+.3f}, {row['ci95_difference'][1]:+.3f}]; nearest centroid on the frozen "
            f"features of the pre-trained encoder {row['probe_pretrained']:.3f}, of a random one "
            f"{row['probe_random_init']:.3f}, on dipeptide profiles {row['probe_dipeptides']:.3f} "
            f"({time.perf_counter() - start:.0f} s)")

    headline = by_labels[counts.index(settings.per_family)]
    evaluation = {
        **mlm_scores,
        "classification_accuracy_pretrained": headline["pretrained"],
        "classification_accuracy_scratch": headline["scratch"],
        "classification_ci95_pretrained": headline["ci95_pretrained"],
        "classification_ci95_scratch": headline["ci95_scratch"],
        "classification_difference": headline["difference"],
        "classification_ci95_difference": headline["ci95_difference"],
        "n_test": n, "split": split, "chance": 1 / len(data.families), "per_family": settings.per_family,
        "n_train_labelled": headline["n_train_labelled"], "n_families": len(data.families),
        "runs": headline["runs"], "curve_steps": curve_steps(at_label_count(settings, settings.per_family)),
        **{f"curve_{kind}": np.mean([r[f"curve_{kind}"] for r in headline["runs"]], axis=0).tolist()
           for kind in ("pretrained", "scratch")},
        "by_labels": by_labels,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
    }
    evaluation["seconds"] = round(time.perf_counter() - start, 1)
    save_protein_model(paths["model.npz"], first, "protein-families", data.families, words=data.vocab.words)
    save_protein_model(paths["pretrained.npz"], pretrained, "protein-mlm", words=data.vocab.words)
    atomic_write(paths["evaluation.json"], lambda f: f.write(json.dumps(evaluation, indent=2).encode()))
    plot_demo(evaluation, pretrain_losses, paths["demo.png"])
    log(f"wrote {', '.join(str(p) for p in paths.values())}")
    return evaluation


def plot_demo(evaluation: dict, pretrain_losses, path=None):
    """Three panels: the masked-LM loss during pre-training; the accuracy of both arms against
    the labelled sequences per family, with 95% intervals, and that of the frozen features;
    the accuracy of both arms along fine-tuning at the headline count."""
    from ..figures import _new_figure, _save

    fig = _new_figure(13, 3.4)
    left, middle, right = fig.subplots(1, 3)
    losses = np.asarray(pretrain_losses, dtype=float)
    smooth = np.convolve(losses, np.ones(10) / 10, mode="valid") if len(losses) >= 10 else losses
    left.plot(losses, color="0.8", lw=0.8)
    left.plot(np.arange(len(smooth)) + len(losses) - len(smooth), smooth, color="C0")
    left.set(xlabel="pre-training step", ylabel="masked-LM loss",
             title=f"masked-LM accuracy {evaluation['mlm_accuracy']:.2f} "
                   f"(unigram {evaluation['mlm_unigram_baseline']:.2f})")
    split = evaluation.get("split", "test")
    rows = evaluation["by_labels"]
    counts = [r["per_family"] for r in rows]
    for kind, label, color, shift in (("pretrained", "pre-trained", "C0", -0.04), ("scratch", "from scratch", "C7", 0.04)):
        values = np.array([r[kind] for r in rows])
        low, high = np.array([r[f"ci95_{kind}"] for r in rows]).T
        middle.errorbar(np.array(counts) * (1 + shift), values, yerr=[values - low, high - values], fmt="o-",
                        color=color, capsize=4, label=f"{label}, fine-tuned")
    middle.plot(counts, [r["probe_pretrained"] for r in rows], "s:", color="C0", label="pre-trained, frozen")
    middle.plot(counts, [r["probe_random_init"] for r in rows], "s:", color="C7", label="random, frozen")
    middle.plot(counts, [r["probe_dipeptides"] for r in rows], "^:", color="C2", label="dipeptide profile")
    middle.axhline(evaluation["chance"], color="k", ls="--", lw=0.8, label="chance")
    middle.set(xscale="log", xlabel="labelled sequences per family", ylabel=f"{split} accuracy", ylim=(0, 1.2),
               title=f"families, n = {evaluation['n_test']} (95% CI)")
    middle.set_xticks(counts, [str(c) for c in counts])
    middle.minorticks_off()
    middle.legend(loc="upper center", ncol=2, fontsize=7)
    for kind, label, color in (("pretrained", "pre-trained", "C0"), ("scratch", "from scratch", "C7")):
        right.plot(evaluation["curve_steps"], evaluation[f"curve_{kind}"], "o-", color=color, label=label)
    right.axhline(evaluation["chance"], color="k", ls="--", lw=0.8, label="chance")
    right.set(xlabel="fine-tuning step", ylabel=f"{split} accuracy", ylim=(0, 1),
              title=f"{evaluation['per_family']} per family, during fine-tuning")
    right.legend(loc="upper left")
    _save(fig, path)
    return fig
