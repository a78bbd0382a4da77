"""The training loop, end to end: learning a toy task, NaN guard, exact resume, Ctrl-C."""
import numpy as np
import pandas as pd
import pytest

from minitransformer import Transformer, TransformerConfig, cpu
from minitransformer.checkpoint import load_checkpoint, load_model, restore_optimizer, restore_rng, save_checkpoint
from minitransformer.optim import Adam, NoamSchedule
from minitransformer.toy import random_pairs, toy_vocabulary, train_toy
from minitransformer.training import (Batch, Trainer, TrainingDivergedError, length_bucketed_batches,
                                      make_batch, sequence_accuracy)


@pytest.mark.slow
def test_copy_task_reaches_99_percent_exact_match():
    model, trainer, metrics = train_toy("copy", steps=1500, progress=False)
    assert metrics["exact_match"] >= 0.99, metrics
    history = trainer.history
    assert {"step", "loss", "lr", "tokens_per_s", "eval_exact_match"} <= set(history.columns)
    first, last = history["loss"].dropna().iloc[0], history["loss"].dropna().iloc[-1]
    assert last < first / 5


def test_make_batch_shifts_targets():
    batch = make_batch([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], pad_id=0, bos_id=1, eos_id=2)
    np.testing.assert_array_equal(batch.src, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(batch.tgt_in, [[1, 9, 10, 0], [1, 11, 12, 13]])
    np.testing.assert_array_equal(batch.tgt_out, [[9, 10, 2, 0], [11, 12, 13, 2]])
    assert batch.n_tokens == 7
    with pytest.raises(ValueError, match="source 0 of the batch is empty"):
        make_batch([[]], [[3]], pad_id=0, bos_id=1, eos_id=2)


def test_length_buckets_cover_everything_once_and_respect_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, 1000)
    batches = length_bucketed_batches(lengths, 800, rng)
    together = np.sort(np.concatenate(batches))
    np.testing.assert_array_equal(together, np.arange(1000))
    for b in batches:
        assert len(b) == 1 or len(b) * lengths[b].max() <= 800
    padding = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
    assert padding / lengths.sum() < 0.05  # grouped by length: almost no padding computed


def test_sequence_accuracy():
    result = sequence_accuracy([[1, 2, 3], [4, 5]], [[1, 2, 3], [4, 6, 7]])
    assert result["exact_match"] == 0.5
    assert result["token_accuracy"] == pytest.approx(4 / 6)


def _setup(seed=0, dropout=0.1):
    vocab = toy_vocabulary()
    config = TransformerConfig(src_vocab_size=len(vocab), tgt_vocab_size=len(vocab), d_model=16, n_heads=2,
                               d_ff=32, n_encoder_layers=1, n_decoder_layers=1, dropout=dropout,
                               max_len=32, seed=seed)
    model = Transformer(config)
    optimizer = Adam(model.parameters(), lr=NoamSchedule(16, 10), betas=(0.9, 0.98), eps=1e-9)
    return vocab, model, optimizer


def _batches(vocab, rng):
    while True:
        s, t = random_pairs(8, 1, 6, "copy", rng, vocab)
        yield make_batch(s, t, pad_id=vocab.pad_id, bos_id=vocab.bos_id, eos_id=vocab.eos_id)


def test_nan_loss_stops_with_the_step_named():
    vocab, model, optimizer = _setup()
    trainer = Trainer(model, optimizer)
    batches = _batches(vocab, np.random.default_rng(0))
    trainer.fit(batches, max_steps=3, progress=False)
    model.output.weight.data[...] = np.nan
    with pytest.raises(TrainingDivergedError, match="the loss became nan at step 4"):
        trainer.fit(batches, max_steps=10, progress=False)


@pytest.mark.parametrize("shards", [1, 3], ids=["whole", "3-shards"])
def test_resume_is_bit_identical(tmp_path, shards):
    """20 steps in one go == 10 steps, save, load into fresh objects, 10 more steps; with
    the batches cut into shards, the second half on two threads instead of one."""
    vocab, model, optimizer = _setup()
    data_rng = np.random.default_rng(5)
    Trainer(model, optimizer, shards=shards).fit(_batches(vocab, data_rng), max_steps=20, progress=False)
    straight = model.state_dict()

    vocab, model, optimizer = _setup()
    data_rng = np.random.default_rng(5)
    trainer = Trainer(model, optimizer, shards=shards)
    batch = next(_batches(vocab, np.random.default_rng(0)))
    assert trainer.parallel.shards_of(batch.src, batch.tgt_in) == shards
    trainer.fit(_batches(vocab, data_rng), max_steps=10, progress=False)
    path = tmp_path / "half.npz"
    save_checkpoint(path, model, optimizer=optimizer, step=trainer.step, rng=data_rng,
                    vocabularies={"src": vocab, "tgt": vocab})
    del model, optimizer, trainer, data_rng

    model, checkpoint = load_model(path)
    optimizer = restore_optimizer(checkpoint, Adam(model.parameters()))
    data_rng = restore_rng(checkpoint)
    trainer = Trainer(model, optimizer, step=checkpoint.step, shards=shards)
    cpu.use_threads(2)
    try:
        trainer.fit(_batches(vocab, data_rng), max_steps=20, progress=False)
    finally:
        cpu.use_threads(None)
    resumed = model.state_dict()
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)


def test_ctrl_c_stops_cleanly_and_keeps_a_checkpoint(tmp_path):
    vocab, model, optimizer = _setup()
    trainer = Trainer(model, optimizer)
    base = _batches(vocab, np.random.default_rng(0))

    def interrupted():
        for i, batch in enumerate(base):
            if i == 5:
                raise KeyboardInterrupt
            yield batch

    path = tmp_path / "stopped.npz"
    history = trainer.fit(interrupted(), max_steps=100, progress=False, log_every=1,
                          checkpoint_fn=lambda t: save_checkpoint(path, t.model, optimizer=t.optimizer,
                                                                  step=t.step))
    assert trainer.stop_reason == "interrupted" and trainer.step == 5
    assert isinstance(history, pd.DataFrame) and len(history) == 5
    assert load_checkpoint(path).step == 5


def test_fit_needs_a_stop_condition():
    vocab, model, optimizer = _setup()
    with pytest.raises(ValueError, match="training never ends"):
        Trainer(model, optimizer).fit(_batches(vocab, np.random.default_rng(0)), progress=False)
