"""Training a model to translate RNA into protein, and measuring how well it does.

The hard part of the task is the 3:1 alignment: residue i comes from nucleotides
3i..3i+2, and nobody tells the model. It learns the alignment a range of lengths at a
time, like a front moving outward from short proteins, so the recipe here is a
**curriculum**: train on proteins of length 1..10 first, and double the longest length
whenever greedy decoding gets ``advance_at`` of a check set of the current range exactly
right, up to ``final_max_len``. Training straight on long proteins never gets started.

The rest of the recipe (see :class:`CodonRecipe`): a small, shallow model, one layer a
side (progress is limited by optimizer steps more than by tokens, and a shallow model
makes more steps per second), batches of about ``max_tokens`` source nucleotides in which
every protein has the same length (no padding at all), extra proteins from the upper half
of the current length range (``long_share``: under uniform lengths, the last positions
of the range are the rarest in training and the last to be learned), dropout on
embeddings, residuals and the feed-forward layers but not on attention weights, Adam with
a warm-up then inverse-square-root schedule. docs/codon.md gives the runs behind each choice.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from ..backend import asarray
from ..decoding import beam_search, greedy_decode
from ..losses import CrossEntropyLoss
from ..optim import Adam, NoamSchedule
from ..training import Batch, Trainer, length_bucketed_batches
from ..transformer import Transformer, TransformerConfig
from ..vocab import Vocabulary
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
    final_max_len: int = 100
    advance_at: float = 0.8       #: exact match on the check set that moves the curriculum on
    label_smoothing: float = 0.1
    max_grad_norm: float = 0.0    #: global-norm gradient clipping; 0 turns it off
    stop_rate: float = 0.05       #: probability that a residue is a stop codon
    long_share: float = 0.5       #: extra pairs from the upper half of the length range, per pair
    warmup_steps: int = 400
    lr_factor: float = 0.5        #: scales the paper's schedule d^-0.5 min(s^-0.5, s w^-1.5)
    check_every: int = 100        #: steps between curriculum checks
    check_size: int = 100         #: pairs in each curriculum check
    confirm_size: int = 500       #: pairs that must confirm the target before stopping
    target_exact: float = 0.998   #: stop once the full range reaches this on the confirm set
    max_len: int = 1024           #: longest sequence the positional encoding covers

    def model_config(self, seed: int = 0, dtype: str = "float32") -> TransformerConfig:
        rna, protein = rna_vocabulary(), protein_vocabulary()
        return TransformerConfig(
            src_vocab_size=len(rna), tgt_vocab_size=len(protein), d_model=self.d_model,
            n_heads=self.n_heads, d_ff=self.d_ff, n_encoder_layers=self.n_encoder_layers,
            n_decoder_layers=self.n_decoder_layers, dropout=self.dropout,
            attention_dropout=self.attention_dropout, max_len=self.max_len, norm_first=self.norm_first,
            pad_id=rna.pad_id, dtype=dtype, seed=seed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodonRecipe":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------------------
# From strings to id arrays
# --------------------------------------------------------------------------------------
def _lookup_table(vocab: Vocabulary) -> np.ndarray:
    """byte value -> token id, for turning whole ASCII strings into ids at once."""
    table = np.full(256, -1, dtype=np.int64)
    for symbol in vocab.symbols:
        table[ord(symbol)] = vocab.token_to_id(symbol)
    return table


def encode_pairs(rnas, proteins, rna_vocab: Vocabulary, protein_vocab: Vocabulary) -> Batch:
    """A padded :class:`Batch` from RNA strings and protein strings (already normalised)."""
    rnas, proteins = list(rnas), list(proteins)
    src = _encode_padded(rnas, rna_vocab)
    if proteins:
        body = _encode_padded(proteins, protein_vocab, extra=1)
        lengths = np.array([len(p) for p in proteins])
        rows = np.arange(len(proteins))
        tgt_out = body.copy()
        tgt_out[rows, lengths] = protein_vocab.eos_id
        tgt_in = np.concatenate([np.full((len(proteins), 1), protein_vocab.bos_id), body[:, :-1]], axis=1)
        n_tokens = int(lengths.sum() + len(proteins))
    else:
        tgt_in = tgt_out = np.zeros((0, 1), dtype=np.int64)
        n_tokens = 0
    return Batch(src, tgt_in, tgt_out, n_tokens)


def _encode_padded(texts, vocab, extra=0):
    lookup = _lookup_table(vocab)
    length = max(len(t) for t in texts) + extra
    out = np.full((len(texts), length), vocab.pad_id, dtype=np.int64)
    for i, text in enumerate(texts):
        out[i, : len(text)] = lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    if (out < 0).any():
        raise ValueError("a sequence holds a character outside the vocabulary; normalise it first")
    return out


# --------------------------------------------------------------------------------------
# Batches: synthetic (fresh every step) or from a table of pairs
# --------------------------------------------------------------------------------------
class SyntheticBatches:
    """Endless batches of fresh random pairs; the curriculum sets ``max_len``.

    Pairs are drawn a pool at a time (about ``pool_batches`` batches' worth), with protein
    lengths uniform in ``min_len..max_len``, then grouped by length into batches of at most
    ``max_tokens`` padded source nucleotides (see :func:`length_bucketed_batches`), so
    almost no padding is computed. A change of ``max_len`` takes effect with the next pool.
    """

    def __init__(self, recipe: CodonRecipe, table, rng: np.random.Generator, pool_batches: int = 32):
        self.recipe, self.table, self.rng = recipe, table, rng
        self.min_len, self.max_len = recipe.min_len, recipe.start_max_len
        self.pool_batches = pool_batches
        self.rna_vocab, self.protein_vocab = rna_vocabulary(), protein_vocabulary()
        self._queue, self._pool_max_len = [], None

    def __iter__(self):
        return self

    def _refill(self):
        mean_len = (self.min_len + self.max_len) / 2
        n = max(1, int(self.pool_batches * self.recipe.max_tokens / (3 * mean_len)))
        pairs = generate_pairs(n, self.min_len, self.max_len, self.table, self.recipe.stop_rate, self.rng)
        n_long = int(round(self.recipe.long_share * n))
        if n_long:
            # late positions are rare under uniform lengths (position p appears only in the
            # proteins at least p long): add proteins from the upper half of the range
            low = max(self.min_len, self.max_len // 2)
            longer = generate_pairs(n_long, low, self.max_len, self.table, self.recipe.stop_rate, self.rng)
            pairs = pd.concat([pairs, longer], ignore_index=True)
        lengths = 3 * pairs["protein"].str.len().to_numpy()
        groups = length_bucketed_batches(lengths, self.recipe.max_tokens, self.rng)
        rnas, proteins = pairs["rna"].to_numpy(), pairs["protein"].to_numpy()
        self._queue = [(rnas[g], proteins[g]) for g in groups]
        self._pool_max_len = self.max_len

    def __next__(self) -> Batch:
        if not self._queue or self._pool_max_len != self.max_len:
            self._refill()
        rnas, proteins = self._queue.pop()
        return encode_pairs(rnas, proteins, self.rna_vocab, self.protein_vocab)


class TableBatches:
    """Endless length-bucketed batches from a pairs DataFrame, reshuffled every epoch; the
    curriculum limits which rows (by protein length) are used."""

    def __init__(self, pairs: pd.DataFrame, recipe: CodonRecipe, rng: np.random.Generator):
        self.pairs = pairs.reset_index(drop=True)
        self.recipe, self.rng = recipe, rng
        self.lengths = self.pairs["protein"].str.len().to_numpy()
        self.min_len, self.max_len = recipe.min_len, recipe.start_max_len
        self.rna_vocab, self.protein_vocab = rna_vocabulary(), protein_vocabulary()
        self._queue = []

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if not self._queue:
            allowed = np.nonzero(self.lengths <= self.max_len)[0]
            if allowed.size == 0:
                allowed = np.argsort(self.lengths)[: max(1, len(self.lengths) // 10)]
            groups = length_bucketed_batches(3 * self.lengths[allowed], self.recipe.max_tokens, self.rng)
            self._queue = [allowed[g] for g in groups]
        rows = self.pairs.iloc[self._queue.pop()]
        return encode_pairs(rows["rna"], rows["protein"], self.rna_vocab, self.protein_vocab)


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
        pieces = [split_into_pieces(r, max_codons) for r in rnas]
        flat = translate_rna(model, [p for ps in pieces for p in ps], batch_tokens=batch_tokens,
                             beam_width=beam_width)
        out, start = [], 0
        for ps in pieces:
            out.append("".join(flat[start:start + len(ps)]))
            start += len(ps)
        return out
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
    """The same scores for protein-length buckets (lo, hi]."""
    lengths = np.array([len(e) for e in expected])
    rows = []
    edges = list(edges)
    if lengths.size and lengths.max() > edges[-1]:
        edges.append(int(lengths.max()))
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = np.nonzero((lengths > lo) & (lengths <= hi))[0]
        if sel.size:
            s = score_translations([predicted[i] for i in sel], [expected[i] for i in sel])
            rows.append({"lengths": f"{lo + 1}-{hi}", **s})
    return pd.DataFrame(rows, columns=["lengths", "exact_match", "residue_accuracy", "n"])


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

    @property
    def history(self) -> pd.DataFrame:
        return self.trainer.history


def train_codon_model(recipe: CodonRecipe | None = None, *, table=1, data: pd.DataFrame | None = None,
                      seed: int = 0, backend: str | None = None, max_steps: int | None = None,
                      time_budget: float | None = None, progress: bool = True, model=None,
                      optimizer=None, checkpoint_fn=None, stop_when=None) -> CodonRun:
    """Train (or continue training) a codon model with the curriculum described above.

    ``data``: a pairs DataFrame to train on; by default fresh synthetic pairs every step.
    Stops when a check set of the full length range reaches ``recipe.target_exact``, or at
    ``max_steps`` / after ``time_budget`` seconds (wall clock, curriculum checks included),
    or when ``stop_when(trainer, metrics)``, called after every check with the check's
    metrics (``exact_match``, ``residue_accuracy``, ``max_len``, ``n``), returns True.
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
        recipe = CodonRecipe(**{**recipe.to_dict(),
                                "final_max_len": min(recipe.final_max_len, int(batches.lengths.max()))})
        batches.recipe = recipe
    backend_name = model.backend_name
    curriculum = [(0, 0.0, batches.max_len)]
    started = time.perf_counter()

    def moved(batch_iter):
        for batch in batch_iter:
            yield batch if backend_name == "numpy" else batch.to(backend_name)

    def check_set(n, top):
        pairs = generate_pairs(n, recipe.min_len, top, code.table_id, recipe.stop_rate, check_rng)
        return score_translations(translate_rna(model, pairs["rna"]), list(pairs["protein"]))

    def check(t: Trainer) -> dict:
        # a small check set decides when to move on (decoding it is part of the cost of
        # every check); a larger one confirms that the final target is really reached
        top = batches.max_len
        scores = check_set(recipe.check_size, top)
        if top >= recipe.final_max_len and scores["exact_match"] >= recipe.target_exact:
            scores = check_set(recipe.confirm_size, top)
        metrics = {"exact_match": scores["exact_match"], "residue_accuracy": scores["residue_accuracy"],
                   "max_len": top, "n": scores["n"]}
        if scores["exact_match"] >= recipe.advance_at and top < recipe.final_max_len:
            batches.max_len = min(2 * top, recipe.final_max_len)
            curriculum.append((t.step, time.perf_counter() - started, batches.max_len))
        return metrics

    def done(metrics: dict) -> bool:
        if stop_when is not None and stop_when(trainer, metrics):
            return True
        return (metrics["max_len"] >= recipe.final_max_len and metrics["n"] >= recipe.confirm_size
                and metrics["exact_match"] >= recipe.target_exact)

    trainer.fit(moved(batches), max_steps=max_steps, time_budget=time_budget, evaluate=check,
                eval_every=recipe.check_every, stop_when=done, progress=progress,
                checkpoint_fn=checkpoint_fn, description="codon")
    return CodonRun(model, trainer, recipe, code.table_id, curriculum, data_rng)


def evaluate_on_pairs(model, pairs: pd.DataFrame) -> tuple[dict, pd.DataFrame, list[str]]:
    """Translate ``pairs['rna']`` and score against ``pairs['protein']``:
    (overall scores, scores by length, predictions)."""
    predicted = translate_rna(model, pairs["rna"])
    expected = list(pairs["protein"])
    return score_translations(predicted, expected), accuracy_by_length(predicted, expected), predicted


__all__ = ["CodonRecipe", "CodonRun", "SyntheticBatches", "TableBatches", "accuracy_by_length",
           "encode_pairs", "evaluate_on_pairs", "score_translations", "train_codon_model",
           "translate_rna"]
