"""Training a model to translate RNA into protein, and measuring how well it does.

The hard part of the task is the 3:1 alignment: residue i comes from nucleotides
3i..3i+2, and nobody tells the model. It learns the alignment a range of lengths at a
time, like a front moving outward from short proteins, so the recipe here is a
**curriculum**: train on proteins of length 1..10 first, and double the longest length
whenever greedy decoding gets ``advance_at`` of a check set of the current range exactly
right, up to ``train_past`` times the promised ``final_max_len`` (a model is weakest at the
longest length it trained on, so the promised one is kept inside), then a final phase with
the learning rate falling to 0. Training straight on long proteins never gets started.

The rest of the recipe (see :class:`CodonRecipe`): a small, shallow model, one layer a
side (progress is limited by optimizer steps more than by tokens, and a shallow model
makes more steps per second), batches of about ``max_tokens`` source nucleotides in which
every protein has the same length (no padding at all), extra proteins from the upper half
of the current length range (``long_share``: under uniform lengths, the last positions
of the range are the rarest in training) and from the first range (``short_share``), dropout on
embeddings, residuals and the feed-forward layers but not on attention weights, Adam with
a warm-up then inverse-square-root schedule. docs/codon.md gives the runs behind each choice.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import pandas as pd

from ..backend import asarray
from ..decoding import beam_search, greedy_decode
from ..losses import CrossEntropyLoss
from ..optim import Adam, NoamSchedule
from ..schedules import LinearTailSchedule, Schedule
from ..training import Trainer
from ..transformer import Transformer, TransformerConfig
from .alignment import ALIGNMENT_COLUMNS, alignment_scores
from .batches import SyntheticBatches, TableBatches, encode_pairs
from .data import generate_pairs, protein_vocabulary, rna_vocabulary
from .genetic_code import get_genetic_code


@dataclass
class CodonRecipe:
    """How the default codon model is built and trained (every number here is measured
    to work on a 2-core laptop CPU; see docs/codon.md for the runs)."""

    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_encoder_layers: int = 1    #: one layer a side learns as fast per step as two, at half the cost
    n_decoder_layers: int = 1
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm_first: bool = False
    max_tokens: int = 1200        #: source nucleotides per batch
    min_len: int = 1              #: protein lengths, in residues
    start_max_len: int = 10
    final_max_len: int = 100      #: the longest protein the model is promised (and checked) for
    train_past: float = 1.2       #: train up to this x final_max_len: exactly 100 residues 100% exact, seeds 0-2
    advance_at: float = 0.8       #: exact match on the check set that moves the curriculum on
    label_smoothing: float = 0.1
    max_grad_norm: float = 0.0    #: global-norm gradient clipping; 0 turns it off
    stop_rate: float = 0.05       #: probability that a residue is a stop codon
    long_share: float = 0.5       #: extra pairs from the upper half of the length range, per pair
    short_share: float = 0.5      #: extra pairs of 1..start_max_len residues, per pair: without, 1-residue proteins 91% exact
    warmup_steps: int = 400
    lr_factor: float = 0.5        #: scales the paper's schedule d^-0.5 min(s^-0.5, s w^-1.5)
    check_every: int = 100        #: steps between curriculum checks
    check_size: int = 100         #: pairs in each curriculum check
    confirm_size: int = 1000      #: pairs that must confirm the target (seeds 0-2: read 97-99.7% 4-11 times first)
    target_exact: float = 0.998   #: the final phase starts once the promised range reaches this on the confirm set
    final_steps: int = 1500       #: then these steps, the rate falling to 0: 99.9-100% on 2,000 fresh, seeds 0-2
    max_len: int = 1024           #: longest sequence the positional encoding covers

    def model_config(self, seed: int = 0, dtype: str = "float32") -> TransformerConfig:
        rna, protein = rna_vocabulary(), protein_vocabulary()
        return TransformerConfig(
            src_vocab_size=len(rna), tgt_vocab_size=len(protein), d_model=self.d_model,
            n_heads=self.n_heads, d_ff=self.d_ff, n_encoder_layers=self.n_encoder_layers,
            n_decoder_layers=self.n_decoder_layers, dropout=self.dropout,
            attention_dropout=self.attention_dropout, max_len=self.max_len, norm_first=self.norm_first,
            pad_id=rna.pad_id, dtype=dtype, seed=seed)

    @property
    def train_max_len(self) -> int:
        """The longest protein the curriculum trains on: ``train_past * final_max_len``, rounded,
        as far as ``max_len`` allows (its RNA, 3 nucleotides a residue, must fit), and never
        short of ``final_max_len``. The default: 120 residues, 360 of the 1,024 nucleotides."""
        longest_read = self.max_len // 3
        return max(self.final_max_len, min(int(round(self.train_past * self.final_max_len)), longest_read))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodonRecipe":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------------------
# Translating and scoring
# --------------------------------------------------------------------------------------
def split_into_pieces(rna: str, max_codons: int) -> list[str]:
    """``rna`` cut into near-equal pieces of at most ``max_codons`` codons each (whole codons:
    every piece but the last is a multiple of 3 long), in order."""
    n_codons = -(-len(rna) // 3)
    n_pieces = max(1, -(-n_codons // max_codons))
    bounds = [3 * round(i * n_codons / n_pieces) for i in range(n_pieces + 1)]
    return [rna[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


#: ``auto`` pieces: at most this share, (numerator, denominator), of the longest trained protein
SAFE_PIECE_SHARE = (5, 6)


def safe_piece_codons(trained_up_to: int) -> int:
    """The piece length ``--piece-codons auto`` chooses: 5/6 of the longest protein the model
    was trained on (rounded down, at least 1 codon): 100 codons, the promised length, for the
    default recipe's model, trained up to 120 residues.

    A model is weakest at the very longest length it trained on: its end decision is tied to
    the absolute position, and it sometimes writes the last residue twice instead of ending.
    Measured on a model trained only up to 100 (the recipe before ``train_past``): pieces of
    exactly 100 codons 61% exact, of 98-99 codons 99.7%, of 90 codons 100%. On default demo
    models (trained up to 120; seeds 0, 1, 2; 1,000 pieces each): exactly 100 codons 100%
    each, 108 codons 98.0%, 100%, 100%, 120 codons 0-1.4%. Pieces of 5/6 stay clear of it.
    """
    numerator, denominator = SAFE_PIECE_SHARE
    return max(1, numerator * trained_up_to // denominator)


def translate_pieces(model, rnas, max_codons: int, **decoding) -> list[list[str]]:
    """For each RNA, the proteins of its pieces (:func:`split_into_pieces`), in order, all
    pieces decoded together (``decoding``: the options of :func:`translate_rna`). Kept apart,
    each piece's protein can be checked against the translation of that piece alone."""
    pieces = [split_into_pieces(r, max_codons) for r in rnas]
    flat = translate_rna(model, [p for ps in pieces for p in ps], **decoding)
    out, start = [], 0
    for ps in pieces:
        out.append(flat[start:start + len(ps)])
        start += len(ps)
    return out


def translate_rna(model, rnas, *, batch_tokens: int = 20000, beam_width: int = 1,
                  max_codons: int | None = None) -> list[str]:
    """Proteins for normalised RNA strings, decoded greedily (KV cache) in length-sorted
    batches of about ``batch_tokens`` nucleotides (beam search with ``beam_width > 1``).

    ``max_codons``: translate an RNA longer than this many codons in near-equal pieces of at
    most ``max_codons`` codons and join the proteins. A model trained on proteins up to L
    residues does not extrapolate past L (see docs/codon.md); a coding sequence starts
    at its first codon, so cutting it every few codons needs nothing the input does not
    already say, and each piece looks like the model's training data. ``None``: whole.
    """
    rnas = list(rnas)
    if max_codons is not None:
        return ["".join(ps) for ps in translate_pieces(model, rnas, max_codons, batch_tokens=batch_tokens,
                                                       beam_width=beam_width)]
    rna_vocab, protein_vocab = rna_vocabulary(), protein_vocabulary()
    order = np.argsort([len(r) for r in rnas], kind="stable")
    out = [None] * len(rnas)
    start = 0
    backend_name = model.backend_name
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(rnas[order[end]]) <= batch_tokens:
            end += 1
        idx = order[start:end]
        longest = max(len(rnas[i]) for i in idx)
        src = encode_pairs([rnas[i] for i in idx], [], rna_vocab, protein_vocab).src
        src = asarray(src, backend_name)
        max_len = min(longest // 3 + 2, model.config.max_len - 1)
        kwargs = dict(bos_id=protein_vocab.bos_id, eos_id=protein_vocab.eos_id, max_len=max_len)
        if beam_width > 1:
            decoded = beam_search(model, src, beam_width=beam_width, **kwargs)
        else:
            decoded = greedy_decode(model, src, **kwargs)
        for i, ids in zip(idx, decoded):
            # the same cap for a sequence whatever batch it is in: a model that never
            # writes the end token stops two residues past the codons it was given
            out[i] = protein_vocab.decode(ids[: len(rnas[i]) // 3 + 2])
        start = end
    return out


def score_translations(predicted, expected) -> dict:
    """Exact sequence match and per-residue accuracy (position by position, a missing or
    extra residue counting as wrong, out of max(len(predicted), len(expected)))."""
    exact = correct = total = 0
    for p, e in zip(predicted, expected):
        exact += p == e
        correct += sum(a == b for a, b in zip(p, e))
        total += max(len(p), len(e))
    n = len(expected)
    return {"exact_match": exact / max(n, 1), "residue_accuracy": correct / max(total, 1), "n": n}


def accuracy_by_length(predicted, expected, edges=(0, 10, 25, 50, 75, 100, 150, 200)) -> pd.DataFrame:
    """The same scores for protein-length buckets (lo, hi], with the errors counted by
    alignment (:func:`~minitransformer.codon.alignment.alignment_scores`) beside them."""
    lengths = np.array([len(e) for e in expected])
    rows = []
    edges = list(edges)
    if lengths.size and lengths.max() > edges[-1]:
        edges.append(int(lengths.max()))
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = np.nonzero((lengths > lo) & (lengths <= hi))[0]
        if sel.size:
            p, e = [predicted[i] for i in sel], [expected[i] for i in sel]
            rows.append({"lengths": f"{lo + 1}-{hi}", **score_translations(p, e), **alignment_scores(p, e)})
    return pd.DataFrame(rows, columns=["lengths", "exact_match", "residue_accuracy", "n", *ALIGNMENT_COLUMNS])


# --------------------------------------------------------------------------------------
# The training run
# --------------------------------------------------------------------------------------
@dataclass
class CodonRun:
    """What :func:`train_codon_model` returns."""

    model: Transformer
    trainer: Trainer
    recipe: CodonRecipe
    table: int
    curriculum: list      #: (step, seconds, max_len) each time the curriculum moved on
    data_rng: np.random.Generator
    resume_state: Callable[[], dict] | None = None   #: where the run stands, for a resumed run

    @property
    def history(self) -> pd.DataFrame:
        return self.trainer.history


def train_codon_model(recipe: CodonRecipe | None = None, *, table=1, data: pd.DataFrame | None = None,
                      seed: int = 0, backend: str | None = None, max_steps: int | None = None,
                      time_budget: float | None = None, progress: bool = True, model=None,
                      optimizer=None, checkpoint_fn=None, stop_when=None, resume=None) -> CodonRun:
    """Train (or continue training) a codon model with the curriculum described above.

    ``data``: a pairs DataFrame to train on; by default fresh synthetic pairs every step.
    The curriculum trains up to ``recipe.train_max_len`` (past the promised
    ``final_max_len``, so that the promised longest length is not the weak edge of the
    trained range). Once a check and then a confirm set of the promised range reach
    ``recipe.target_exact``, a final phase of ``recipe.final_steps`` steps lets the learning
    rate fall linearly to 0 (:class:`~minitransformer.schedules.LinearTailSchedule`, saved
    with the optimizer) and the run stops at the first check after it; with
    ``final_steps=0`` it stops at the target. It also stops at
    ``max_steps`` / after ``time_budget`` seconds (wall clock, curriculum checks included),
    or when ``stop_when(trainer, metrics)``, called after every check with the check's
    metrics (``exact_match``, ``residue_accuracy``, ``max_len``, ``n``), returns True.

    ``resume``: a :class:`~minitransformer.checkpoint.Checkpoint` saved from a run of this
    function (``save_run``), whose parameters ``model`` already holds: the run continues
    where that one stopped -- its step, optimizer, curriculum, data stream and check
    generator -- and gives, bit for bit, the model the uninterrupted run would have given
    (``max_steps`` counts from the first run's start).
    """
    recipe = recipe or CodonRecipe()
    code = get_genetic_code(table)
    if model is None:
        model = Transformer(recipe.model_config(seed), backend=backend)
    if optimizer is None:
        optimizer = Adam(model.parameters(),
                         lr=NoamSchedule(recipe.d_model, recipe.warmup_steps, recipe.lr_factor),
                         betas=(0.9, 0.98), eps=1e-9)
    criterion = CrossEntropyLoss(ignore_index=model.config.pad_id, label_smoothing=recipe.label_smoothing)
    trainer = Trainer(model, optimizer, criterion, max_grad_norm=recipe.max_grad_norm or None)
    data_rng = np.random.default_rng(seed)
    check_rng = np.random.default_rng(seed + 10_000)
    if data is None:
        batches = SyntheticBatches(recipe, code.table_id, data_rng)
    else:
        batches = TableBatches(data, recipe, data_rng)
        # the caller's recipe is left as it was: this run's copy stops at the data's longest
        # (and trains no further than the data goes)
        recipe = CodonRecipe(**{**recipe.to_dict(), "train_past": 1.0,
                                "final_max_len": min(recipe.final_max_len, int(batches.lengths.max()))})
        batches.recipe = recipe
    backend_name = model.backend_name
    curriculum = [(0, 0.0, batches.max_len)]
    pending = {"check_rng_state": None}   # set while a check runs: an interrupted one is redone
    if resume is not None:
        curriculum, pending["check_rng_state"] = resume_run(resume, trainer, batches, check_rng)
    started = time.perf_counter() - trainer.train_seconds
    start_step, drawn = trainer.step, [0]

    def moved(batch_iter):
        for batch in batch_iter:
            drawn[0] += 1
            yield batch if backend_name == "numpy" else batch.to(backend_name)

    def check_set(n, top, rng):
        pairs = generate_pairs(n, recipe.min_len, top, code.table_id, recipe.stop_rate, rng)
        return score_translations(translate_rna(model, pairs["rna"]), list(pairs["protein"]))

    def check(t: Trainer) -> dict:
        # a small check set decides when to move on (decoding it is part of the cost of
        # every check); a larger one confirms that the final target is really reached.
        # Only the checks every check_every steps move the curriculum and draw from the
        # run's check generator; the one at the end of a run that stops between them
        # draws from a copy, so stopping and resuming changes nothing. At the top of the
        # curriculum the checks read the promised lengths, 1..final_max_len.
        scheduled = t.step % recipe.check_every == 0
        rng = check_rng if scheduled else copy.deepcopy(check_rng)
        pending["check_rng_state"] = copy.deepcopy(check_rng.bit_generator.state) if scheduled else None
        top = batches.max_len
        span = recipe.final_max_len if top >= recipe.train_max_len else top
        scores = check_set(recipe.check_size, span, rng)
        reached = top >= recipe.train_max_len and scores["exact_match"] >= recipe.target_exact
        if reached and final_phase_start() is None:
            scores = check_set(recipe.confirm_size, span, rng)
        metrics = {"exact_match": scores["exact_match"], "residue_accuracy": scores["residue_accuracy"],
                   "max_len": span, "n": scores["n"]}
        if scheduled and scores["exact_match"] >= recipe.advance_at and top < recipe.train_max_len:
            batches.max_len = min(2 * top, recipe.train_max_len)
            curriculum.append((t.step, time.perf_counter() - started, batches.max_len))
        if (scheduled and recipe.final_steps and isinstance(t.optimizer.schedule, Schedule)
                and final_phase_start() is None and metrics["n"] >= recipe.confirm_size
                and metrics["exact_match"] >= recipe.target_exact):
            t.optimizer.schedule = LinearTailSchedule(t.optimizer.schedule, t.optimizer.step_count,
                                                      recipe.final_steps)
        pending["check_rng_state"] = None
        return metrics

    def final_phase_start() -> int | None:
        # the step the final phase started at, held by the optimizer's schedule (and checkpoints)
        schedule = trainer.optimizer.schedule
        return schedule.start if isinstance(schedule, LinearTailSchedule) else None

    def done(metrics: dict) -> bool:
        if stop_when is not None and stop_when(trainer, metrics):
            return True
        if recipe.final_steps and isinstance(trainer.optimizer.schedule, Schedule):
            start = final_phase_start()
            return start is not None and trainer.optimizer.step_count >= start + recipe.final_steps
        return (metrics["max_len"] >= recipe.final_max_len and metrics["n"] >= recipe.confirm_size
                and metrics["exact_match"] >= recipe.target_exact)

    def resume_state() -> dict:
        redo = pending["check_rng_state"]
        return {"batches": batches.position(untaken=drawn[0] - (trainer.step - start_step)),
                "check_rng_state": redo if redo is not None else check_rng.bit_generator.state,
                "check_pending": redo is not None}

    if pending["check_rng_state"] is not None:   # the check the first run was in when stopped
        check_rng.bit_generator.state = pending["check_rng_state"]
        if done(trainer._evaluate(check, None)):
            max_steps = trainer.step
    trainer.fit(moved(batches), max_steps=max_steps, time_budget=time_budget, evaluate=check,
                eval_every=recipe.check_every, stop_when=done, progress=progress,
                checkpoint_fn=checkpoint_fn, description="codon")
    return CodonRun(model, trainer, recipe, code.table_id, curriculum, data_rng, resume_state)


def resume_run(checkpoint, trainer: Trainer, batches, check_rng) -> tuple[list, dict | None]:
    """Put a run saved in ``checkpoint`` back where it stopped: the trainer's step, seconds and
    optimizer, the data stream ``batches`` and ``check_rng``. Returns the curriculum so far
    and, when the run stopped inside a check, the check generator's state before it (the
    check is done again). A field that does not fit is a CheckpointError naming the file."""
    from ..checkpoint import CheckpointError, restore_optimizer

    meta = checkpoint.metadata or {}
    where = f"{checkpoint.path}: metadata field"
    state = meta.get("resume")
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint.path} cannot be resumed: it records no training state (metadata "
                              f"field 'resume'); it was saved by another program or an older version")
    restore_optimizer(checkpoint, trainer.optimizer)
    trainer.step = int(checkpoint.step)
    try:
        trainer.train_seconds = float(meta.get("train_seconds") or 0.0)
        curriculum = [(int(s), float(t), int(m)) for s, t, m in meta["curriculum"]]
        batches.max_len = curriculum[-1][2]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{where} 'curriculum' or 'train_seconds' is not what a codon run "
                              f"writes ({exc})") from exc
    for field, apply in (("batches", batches.restore),
                         ("check_rng_state", lambda s: setattr(check_rng.bit_generator, "state", s))):
        try:
            apply(state.get(field))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"{where} 'resume.{field}' is not a valid training state ({exc})") from exc
    return curriculum, (state["check_rng_state"] if state.get("check_pending") else None)


def evaluate_on_pairs(model, pairs: pd.DataFrame) -> tuple[dict, pd.DataFrame, list[str]]:
    """Translate ``pairs['rna']`` and score against ``pairs['protein']``: (overall scores with
    the errors counted by alignment, scores by length, predictions)."""
    predicted = translate_rna(model, pairs["rna"])
    expected = list(pairs["protein"])
    overall = {**score_translations(predicted, expected), **alignment_scores(predicted, expected)}
    return overall, accuracy_by_length(predicted, expected), predicted


__all__ = ["CodonRecipe", "CodonRun", "SyntheticBatches", "TableBatches", "accuracy_by_length",
           "encode_pairs", "evaluate_on_pairs", "resume_run", "safe_piece_codons", "score_translations", "train_codon_model",
           "translate_pieces", "translate_rna"]
