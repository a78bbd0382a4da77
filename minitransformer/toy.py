"""A first task to prove the model learns: copy or reverse a random sequence of symbols.

The Annotated Transformer starts the same way. The task needs attention and nothing else:
to write output token t, the decoder must find source token t (copy) or source token
L - 1 - t (reverse). A small model learns it in well under a minute on a laptop CPU,
which makes it the quickest end-to-end check that forward, backward, optimizer and
decoding fit together.
"""
from __future__ import annotations

import numpy as np

from .decoding import greedy_decode
from .optim import Adam, NoamSchedule
from .training import Trainer, make_batch, sequence_accuracy
from .transformer import Transformer, TransformerConfig
from .vocab import Vocabulary

SYMBOLS = "abcdefghij"


def toy_vocabulary() -> Vocabulary:
    return Vocabulary(list(SYMBOLS))


def random_pairs(n, min_len, max_len, task, rng, vocab):
    """``n`` (source, target) id lists: random symbols and their copy or reversal."""
    if task not in ("copy", "reverse"):
        raise ValueError(f"task must be 'copy' or 'reverse', got {task!r}")
    first = vocab.encode(SYMBOLS[0])[0]
    lengths = rng.integers(min_len, max_len + 1, n)
    sources = [(first + rng.integers(0, len(SYMBOLS), length)).tolist() for length in lengths]
    targets = [s[::-1] if task == "reverse" else list(s) for s in sources]
    return sources, targets


def toy_config(vocab: Vocabulary, **overrides) -> TransformerConfig:
    """A small model that learns the toy tasks in seconds."""
    settings = dict(src_vocab_size=len(vocab), tgt_vocab_size=len(vocab), d_model=64, n_heads=4,
                    d_ff=128, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0, max_len=64,
                    pad_id=vocab.pad_id)
    settings.update(overrides)
    return TransformerConfig(**settings)


def evaluate_toy(model, vocab, task, rng, n=500, min_len=1, max_len=10) -> dict:
    """Exact match and token accuracy of greedy decoding on fresh random pairs."""
    sources, targets = random_pairs(n, min_len, max_len, task, rng, vocab)
    batch = make_batch(sources, targets, pad_id=vocab.pad_id, bos_id=vocab.bos_id, eos_id=vocab.eos_id)
    src = batch.to(model.backend_name).src   # on the model's device, as its weights are
    predicted = greedy_decode(model, src, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                              max_len=max_len + 1)
    return sequence_accuracy(predicted, targets)


def train_toy(task="reverse", *, steps=600, batch_size=64, min_len=1, max_len=10, seed=0,
              target_exact=0.995, progress=True, backend=None, **config_overrides):
    """Train a small model on the copy or reverse task; returns ``(model, trainer, metrics)``.

    Stops early once greedy decoding of 500 fresh pairs reaches ``target_exact``.
    """
    vocab = toy_vocabulary()
    config = toy_config(vocab, seed=seed, **config_overrides)
    model = Transformer(config, backend=backend)
    optimizer = Adam(model.parameters(), lr=NoamSchedule(config.d_model, warmup_steps=100, factor=0.2),
                     betas=(0.9, 0.98), eps=1e-9)
    trainer = Trainer(model, optimizer)
    data_rng = np.random.default_rng(seed)
    backend_name = model.backend_name

    def batches():
        while True:
            sources, targets = random_pairs(batch_size, min_len, max_len, task, data_rng, vocab)
            yield make_batch(sources, targets, pad_id=vocab.pad_id, bos_id=vocab.bos_id,
                             eos_id=vocab.eos_id).to(backend_name)

    eval_rng = np.random.default_rng(seed + 1)
    trainer.fit(batches(), max_steps=steps, progress=progress, eval_every=100,
                evaluate=lambda t: evaluate_toy(t.model, vocab, task, eval_rng, min_len=min_len,
                                                max_len=max_len),
                stop_when=lambda m: m["exact_match"] >= target_exact, description=f"{task} task")
    metrics = evaluate_toy(model, vocab, task, np.random.default_rng(seed + 2), n=1000,
                           min_len=min_len, max_len=max_len)
    return model, trainer, metrics
