"""Data parallelism: a batch cut into shards gives the logits and gradients of one pass."""
import numpy as np
import pytest

from minitransformer import backend, cpu, parallel
from minitransformer.losses import CrossEntropyLoss
from minitransformer.optim import Adam
from minitransformer.parallel import DataParallel
from minitransformer.training import Batch, Trainer
from minitransformer.transformer import Transformer, TransformerConfig


@pytest.fixture(autouse=True)
def two_threads_and_small_shards(monkeypatch):
    """Shards on two pool threads whatever the machine, and even tiny batches cut."""
    monkeypatch.setenv(cpu.THREADS_ENV_VAR, "2")
    monkeypatch.setattr(parallel, "MIN_TOKENS_PER_SHARD", 1)


def make_model(dropout=0.0, dtype="float64", seed=0, attention_dropout=0.0):
    config = TransformerConfig(src_vocab_size=9, tgt_vocab_size=11, d_model=16, n_heads=4, d_ff=32,
                               n_encoder_layers=2, n_decoder_layers=2, dropout=dropout,
                               attention_dropout=attention_dropout, dtype=dtype, seed=seed)
    return Transformer(config).train()


def make_batch(n=7, seed=1):
    """Sequences of different lengths, so that the shards hold padding too."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, 9, size=(n, 12))
    tgt = rng.integers(3, 11, size=(n, 6))
    for i in range(n):
        src[i, 12 - i:] = 0
        tgt[i, 6 - i // 2:] = 0
    tgt_in = np.concatenate([np.full((n, 1), 1), tgt[:, :-1]], axis=1)
    return src, tgt_in, tgt


def loss_and_grads(run, model, src, tgt_in, tgt_out):
    criterion = CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    logits = run.forward(src, tgt_in)
    loss = criterion.forward(logits, tgt_out)
    model.zero_grad()
    run.backward(criterion.backward())
    return logits, loss, {name: p.grad.copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("n_shards", [2, 3])
def test_shards_give_the_logits_and_gradients_of_one_pass(n_shards):
    model = make_model()
    batch = make_batch()
    logits, loss, grads = loss_and_grads(model, model, *batch)
    sharded = DataParallel(model, n_shards)
    logits_s, loss_s, grads_s = loss_and_grads(sharded, model, *batch)
    assert sharded.last_shards == n_shards
    np.testing.assert_allclose(logits_s, logits, rtol=0, atol=1e-12)
    assert loss_s == pytest.approx(loss, rel=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads_s[name], grads[name], rtol=1e-10, atol=1e-13, err_msg=name)
        assert np.abs(grads[name]).max() > 0, f"{name} has no gradient: the comparison would prove nothing"


def test_training_with_shards_follows_training_without():
    """Three Adam steps: the replicas see each update of the shared weights."""
    batch = make_batch()
    weights = {}
    for n_shards in (1, 2):
        model = make_model()
        run = DataParallel(model, n_shards)
        optimizer = Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            loss_and_grads(run, model, *batch)
            optimizer.step()
        weights[n_shards] = model.state_dict()
    # atol: the key projection's bias has a gradient of exactly 0 in exact arithmetic (a
    # constant added to every score of a row cancels in the softmax); in floating point it
    # is rounding noise of about 1e-12, which Adam turns into steps of about that size
    for name, w in weights[1].items():
        np.testing.assert_allclose(weights[2][name], w, rtol=1e-9, atol=1e-10, err_msg=name)


def test_replicas_follow_weights_loaded_after_they_were_made():
    model, other = make_model(seed=0), make_model(seed=5)
    batch = make_batch()
    run = DataParallel(model, 2)
    run.forward(*batch[:2])
    model.load_state_dict(other.state_dict())
    np.testing.assert_allclose(run.forward(*batch[:2]), other.forward(*batch[:2]), atol=1e-12)


def test_replicas_share_weights_but_not_gradients_or_dropout_masks():
    model = make_model(dropout=0.5, dtype="float32")
    run = DataParallel(model, 2)
    src, tgt_in, _ = make_batch(n=4)
    src[2:], tgt_in[2:] = src[:2], tgt_in[:2]   # the two shards get the same sequences
    logits = run.forward(src, tgt_in)
    replica = run.replicas[1]
    for p, q in zip(model.parameters(), replica.parameters()):
        assert q.data is p.data and q.grad is not p.grad
    assert replica.dropout_rng is not model.dropout_rng
    assert not np.allclose(logits[:2], logits[2:]), "both shards drew the same dropout masks"


@pytest.mark.parametrize("n_threads", [1, 2, 16])
def test_the_default_cut_follows_the_batch_not_the_machine(monkeypatch, n_threads):
    """A power of two, at least MIN_TOKENS_PER_SHARD positions a shard, at most MAX_SHARDS."""
    monkeypatch.setattr(parallel, "MIN_TOKENS_PER_SHARD", 2048)
    cpu.use_threads(n_threads)
    try:
        run = DataParallel(make_model())
        assert run.shards_for(n_sequences=64, n_tokens=64 * 123) == 2     # the benchmark's batch
        assert run.shards_for(n_sequences=8, n_tokens=8 * 201) == 1       # the codon demo's
        assert run.shards_for(n_sequences=64, n_tokens=2048 * 7) == 4
        assert run.shards_for(n_sequences=64, n_tokens=2048 * 8) == 8
        assert run.shards_for(n_sequences=256, n_tokens=10 ** 6) == parallel.MAX_SHARDS == 16
        assert run.shards_for(n_sequences=3, n_tokens=10 ** 6) == 2
        assert run.shards_for(n_sequences=1, n_tokens=10 ** 6) == 1
        run.forward(*make_batch()[:2])
        assert run.last_shards == 1 and run.replicas == []
    finally:
        cpu.use_threads(None)


def test_an_explicit_shard_count_cuts_every_batch(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_TOKENS_PER_SHARD", 2048)
    run = DataParallel(make_model(), 3)
    assert run.shards_for(n_sequences=8, n_tokens=8 * 201) == 3
    assert run.shards_for(n_sequences=2, n_tokens=10) == 2
    run.forward(*make_batch(n=7)[:2])
    assert run._slices == [slice(0, 2), slice(2, 5), slice(5, 7)]
    assert DataParallel(make_model(), 1).shards_for(n_sequences=64, n_tokens=10 ** 6) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_shard_counts_are_refused(bad):
    with pytest.raises(ValueError, match="n_shards must be a positive integer"):
        DataParallel(make_model(), bad)
    with pytest.raises(ValueError, match="n_shards must be a positive integer"):
        Trainer(make_model(), None, shards=bad)


def test_malformed_input_gets_the_models_own_message():
    run = DataParallel(make_model(), 2)
    with pytest.raises(ValueError, match="src_ids must be a 2-D integer array"):
        run.forward(np.arange(5), np.ones((5, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="src_ids: token ids from"):
        run.forward(np.full((4, 5), 99), np.ones((4, 3), dtype=np.int64))


def test_trainer_steps_in_shards_and_records_the_same_loss():
    batch = Batch(*make_batch(), n_tokens=1)
    losses = {}
    for shards in (1, 2):
        model = make_model()
        trainer = Trainer(model, Adam(model.parameters(), lr=1e-3), shards=shards)
        results = [trainer.train_step(batch) for _ in range(3)]
        assert [r.shards for r in results] == [shards] * 3
        losses[shards] = [r.loss for r in results]
    np.testing.assert_allclose(losses[2], losses[1], rtol=1e-10)


@pytest.mark.skipif(not cpu.can_set_blas_threads(), reason="OpenBLAS thread control not found in this process")
def test_blas_threads_are_restored_after_the_block():
    setter, getter = cpu._openblas_thread_control()
    before = getter()
    with cpu.blas_threads(1) as applied:
        assert applied and getter() == 1
    assert getter() == before


def test_work_inside_a_pool_thread_runs_serially():
    """A shard's batched attention asks for threads from inside a pool thread: it gets one."""
    inner = cpu.run_in_parallel(lambda i: cpu.parallel_threads(), 2)
    assert inner == [1, 1] and cpu.parallel_threads() == 2


def caches(model):
    """Every forward cache the model's modules hold (their attributes named *_cache)."""
    return [value for _, m in model.named_modules() for name, value in vars(m).items()
            if name.endswith("_cache") and value is not None]


def test_clear_caches_drops_every_forward_cache():
    config = TransformerConfig(src_vocab_size=9, tgt_vocab_size=11, d_model=16, n_heads=4, d_ff=32,
                               n_encoder_layers=1, n_decoder_layers=1, tie_embeddings=True)
    model = Transformer(config)
    model.forward(*make_batch()[:2])              # the model's layers now hold caches
    assert model._out_cache is not None and model.encoder.layers[0].self_attn._cache is not None
    assert model.clear_caches() is model and caches(model) == []
    with pytest.raises(TypeError):                # nothing left for a backward pass
        model.backward(np.ones((7, 6, 11)))


def test_a_replica_made_after_a_forward_pass_does_not_copy_its_caches():
    model = make_model()
    batch = make_batch()
    model.forward(*batch[:2])
    assert caches(model)
    replica = DataParallel(model, 2)._replica()
    assert caches(replica) == []
    np.testing.assert_array_equal(replica.forward(*batch[:2]), model.forward(*batch[:2]))


def test_sharded_dropout_depends_only_on_the_models_generator():
    """What a resumed run needs: the masks of a cut batch follow from the weights and the state
    of the model's dropout generator (which a checkpoint saves), not from the history of the
    DataParallel object that ran it."""
    model = make_model(dropout=0.3, dtype="float32")
    src, tgt_in, _ = make_batch()
    first = DataParallel(model, 2)
    first.forward(src, tgt_in)                    # a step before the "checkpoint"
    state = model.dropout_rng.bit_generator.state
    expected = first.forward(src, tgt_in)
    model.dropout_rng.bit_generator.state = state  # "resume": same generator state, new wrapper
    np.testing.assert_array_equal(DataParallel(model, 2).forward(src, tgt_in), expected)


# --------------------------------------------------------------------------------------
# Same seed, same numbers, whatever the number of threads
# --------------------------------------------------------------------------------------
def train_on_threads(n_threads, shards=None, attention_dropout=0.0, steps=4):
    """Parameters after ``steps`` Adam steps of a Trainer with dropout on, with ``n_threads``
    threads for the library's parallel work; and how many shards the batch was cut into."""
    batch = Batch(*make_batch(), n_tokens=1)
    model = make_model(dropout=0.2, attention_dropout=attention_dropout, dtype="float32")
    cpu.use_threads(n_threads)
    try:
        trainer = Trainer(model, Adam(model.parameters(), lr=1e-2), shards=shards)
        for _ in range(steps):
            trainer.train_step(batch)
    finally:
        cpu.use_threads(None)
    return model.state_dict(), trainer.parallel.last_shards


def assert_one_and_two_threads_agree(shards, attention_dropout):
    one, cut_one = train_on_threads(1, shards, attention_dropout)
    two, cut_two = train_on_threads(2, shards, attention_dropout)
    for name, w in one.items():
        assert np.array_equal(two[name], w), f"{name} differs between 1 and 2 threads"
    assert cut_one == cut_two > 1, "the batch was not cut: the comparison would prove nothing"
    start = make_model(dtype="float32").state_dict()
    assert not np.array_equal(one["src_embed.weight"], start["src_embed.weight"]), "no step was taken"


@pytest.mark.parametrize("shards", [None, 3], ids=["default-shards", "3-shards"])
def test_one_and_two_threads_train_to_bit_identical_parameters(shards):
    """The cut of a batch, its dropout masks and the order of the gradient sums depend on the
    batch and the shard setting only; threads decide how many shards run at once."""
    assert_one_and_two_threads_agree(shards, attention_dropout=0.0)


@pytest.mark.parametrize("shards", [None, 3], ids=["default-shards", "3-shards"])
def test_one_and_two_threads_agree_with_attention_dropout(shards):
    assert_one_and_two_threads_agree(shards, attention_dropout=0.1)
