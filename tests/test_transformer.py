"""The whole model: gradient check, masks, decoding with and without the KV cache."""
import numpy as np
import pytest

from minitransformer import Transformer, TransformerConfig, nn
from minitransformer.decoding import beam_search, decode_step, greedy_decode, start_decoding
from minitransformer.gradcheck import check_module, numerical_gradient, relative_error
from minitransformer.losses import CrossEntropyLoss
from minitransformer.transformer import CrossAttention, Residual, SelfAttention, padding_mask

PAD, BOS, EOS = 0, 1, 2


def small_config(**kw):
    settings = dict(src_vocab_size=9, tgt_vocab_size=7, d_model=8, n_heads=2, d_ff=12,
                    n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_len=32, seed=3)
    settings.update(kw)
    return TransformerConfig(**settings)


def padded_batch(rng, batch=3, src_len=6, tgt_len=5):
    src = rng.integers(3, 9, (batch, src_len))
    src[0, 4:] = PAD
    tgt_in = rng.integers(3, 7, (batch, tgt_len))
    tgt_in[:, 0] = BOS
    tgt_in[1, 3:] = PAD
    tgt_out = rng.integers(3, 7, (batch, tgt_len))
    tgt_out[1, 3:] = PAD
    return src, tgt_in, tgt_out


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_whole_model_gradient_check(backend_name, norm_first, tie):
    assert_whole_model_gradient(Transformer(small_config(norm_first=norm_first, tie_embeddings=tie,
                                                         dtype="float64"), backend=backend_name))


def assert_whole_model_gradient(model):
    """Every parameter's gradient, after a label-smoothed loss over a padded batch, within
    1e-6 of finite differences (tests/test_positions.py uses it too)."""
    from minitransformer.backend import asarray
    backend_name = model.backend_name
    src, tgt_in, tgt_out = (asarray(a, backend_name) for a in padded_batch(np.random.default_rng(0)))
    criterion = CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)

    def loss():
        return float(criterion.forward(model.forward(src, tgt_in), tgt_out))

    model.zero_grad()
    loss()
    model.backward(criterion.backward())
    worst = {}
    for name, p in model.named_parameters():
        analytic = p.grad.copy()
        worst[name] = relative_error(analytic, numerical_gradient(loss, p.data))
    assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def _block(kind, norm_first, rng, d=8):
    """A residual block of each kind on its own, float64, dropout off; its forward inputs."""
    x = rng.standard_normal((2, 5, d))
    if kind == "feed-forward":
        sublayer, inputs = nn.FeedForward(d, 12, rng=rng, dtype="float64"), (x,)
    else:
        attention = nn.MultiHeadAttention(d, 2, rng=rng, dtype="float64")
        ids = rng.integers(3, 9, (2, 4 if kind == "cross-attention" else 5))
        ids[1, 2:] = PAD
        mask = padding_mask(ids, PAD)
        if kind == "self-attention":
            sublayer, inputs = SelfAttention(attention), (x, mask)
        else:
            sublayer, inputs = CrossAttention(attention), (x, rng.standard_normal((2, 4, d)), mask)
    norm = nn.LayerNorm(d, dtype="float64")
    norm.gamma.data[:] = rng.uniform(0.5, 1.5, d)         # not the identity at initialisation
    norm.beta.data[:] = rng.uniform(-0.5, 0.5, d)
    return Residual(sublayer, norm, nn.Dropout(0.0), norm_first), inputs


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("kind", ["self-attention", "cross-attention", "feed-forward"])
def test_residual_block_gradient_check(kind, norm_first):
    """dx = dy + J^T dy for every sub-layer in both arrangements; cross-attention also
    returns the memory's gradient (input[1])."""
    block, inputs = _block(kind, norm_first, np.random.default_rng(5))
    report = check_module(block, *inputs)
    inputs_checked = ["input[0]", "input[1]"] if kind == "cross-attention" else ["input[0]"]
    assert list(report.errors) == inputs_checked + [n for n, _ in block.named_parameters()]
    assert max(report.errors.values()) < 1e-8, report


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_residual_block_is_the_arrangement_written_out(norm_first):
    block, (x,) = _block("feed-forward", norm_first, np.random.default_rng(6))
    f, norm = block.sublayer, block.norm
    expected = x + f.forward(norm.forward(x)) if norm_first else norm.forward(x + f.forward(x))
    np.testing.assert_array_equal(block.forward(x), expected)


def test_parameter_names_and_order_are_those_of_saved_checkpoints():
    """The residual blocks own nothing: a checkpoint finds every parameter under the name it
    was saved with, and an optimiser state (kept by parameter index) in the same order."""
    layers = ["self_attn.w_in", "self_attn.b_in", "self_attn.w_out", "self_attn.b_out", "norm1.gamma",
              "norm1.beta"]
    ffn = ["feed_forward.linear1.weight", "feed_forward.linear1.bias", "feed_forward.linear2.weight",
           "feed_forward.linear2.bias"]
    cross = [n.replace("self_attn", "cross_attn").replace("norm1", "norm2") for n in layers]
    for norm_first in (False, True):
        final = ["final_norm.gamma", "final_norm.beta"] if norm_first else []
        expected = (["src_embed.weight", "tgt_embed.weight"]
                    + ["encoder.layers.0." + n for n in layers + ffn + ["norm2.gamma", "norm2.beta"]]
                    + ["encoder." + n for n in final]
                    + ["decoder.layers.0." + n for n in layers + cross + ffn + ["norm3.gamma", "norm3.beta"]]
                    + ["decoder." + n for n in final] + ["output.weight", "output.bias"])
        model = Transformer(small_config(n_encoder_layers=1, n_decoder_layers=1, norm_first=norm_first))
        assert [n for n, _ in model.named_parameters()] == expected


def test_padding_does_not_change_real_outputs():
    model = Transformer(small_config(dtype="float64"))
    rng = np.random.default_rng(1)
    src = rng.integers(3, 9, (1, 5))
    tgt = np.array([[BOS, 4, 5]])
    short = model.forward(src, tgt)
    padded = model.forward(np.concatenate([src, [[PAD, PAD]]], axis=1), np.concatenate([tgt, [[PAD]]], axis=1))
    np.testing.assert_allclose(padded[:, :3], short, atol=1e-12)


def test_decoder_is_causal():
    model = Transformer(small_config(dtype="float64"))
    src = np.array([[3, 4, 5, 6]])
    a = model.forward(src, np.array([[BOS, 3, 4, 5]]))
    b = model.forward(src, np.array([[BOS, 3, 6, 6]]))
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-12)  # positions 0, 1 never see 2, 3
    assert not np.allclose(a[:, 2:], b[:, 2:])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kv_cache_gives_the_same_tokens(backend_name, norm_first, dtype):
    from minitransformer.backend import asarray
    model = Transformer(small_config(src_vocab_size=12, tgt_vocab_size=12, d_model=16, n_heads=4,
                                     d_ff=24, norm_first=norm_first, dtype=dtype, dropout=0.1),
                        backend=backend_name)
    rng = np.random.default_rng(2)
    src = rng.integers(3, 12, (12, 9))
    src[0, 5:] = PAD
    src[3, 2:] = PAD
    src = asarray(src, backend_name)
    cached = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=15, use_cache=True)
    plain = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=15, use_cache=False)
    assert cached == plain
    assert beam_search(model, src, bos_id=BOS, eos_id=EOS, max_len=15, beam_width=1) == cached


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_decode_step_gives_the_logits_of_the_whole_prefix(norm_first):
    model = Transformer(small_config(norm_first=norm_first, dtype="float64")).eval()
    rng = np.random.default_rng(3)
    src = rng.integers(3, 9, (3, 6))
    src[1, 4:] = PAD
    tokens = np.concatenate([np.full((3, 1), BOS), rng.integers(3, 7, (3, 5))], axis=1)
    memory, src_mask = model.encode(src)
    caches = start_decoding(model, memory, src_mask, max_len=6)
    for t in range(6):
        step = decode_step(model, tokens[:, t], caches, src_mask)
        whole = model.decode(tokens[:, :t + 1], memory, src_mask)[:, -1]
        np.testing.assert_allclose(step, whole, rtol=0, atol=1e-12)


def test_bad_ids_are_clear_errors():
    model = Transformer(small_config())
    with pytest.raises(ValueError, match=r"src_ids: token ids from 3 to 9, but valid ids are 0 to 8 "
                                         r"\(vocabulary size 9\); token id 9 at position \(0, 1\)"):
        model.forward(np.array([[3, 9]]), np.array([[BOS]]))
    with pytest.raises(ValueError, match="2-D integer array"):
        model.forward(np.array([3, 4]), np.array([[BOS]]))
    with pytest.raises(ValueError, match="token ids must be integers"):
        model.forward(np.array([[3.0, 4.0]]), np.array([[BOS]]))
    with pytest.raises(ValueError, match="longer than the model's max_len=32"):
        model.forward(np.full((1, 40), 3), np.array([[BOS]]))


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="d_model=10 must be divisible by n_heads=4"):
        small_config(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="dropout must be in"):
        small_config(dropout=1.2)
    config = small_config(norm_first=True)
    assert TransformerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TransformerConfig fields"):
        TransformerConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_same_seed_same_model_and_same_dropout():
    a, b = Transformer(small_config(dropout=0.3)), Transformer(small_config(dropout=0.3))
    src, tgt_in, _ = padded_batch(np.random.default_rng(0))
    np.testing.assert_array_equal(a.forward(src, tgt_in), b.forward(src, tgt_in))
    c = Transformer(small_config(dropout=0.3, seed=4))
    assert not np.array_equal(a.forward(src, tgt_in), c.forward(src, tgt_in))


@pytest.mark.parametrize("field, value, message", [
    ("norm_first", "no", "norm_first must be True or False, got 'no'"),
    ("d_model", True, "d_model must be an integer, got True"),
    ("seed", -1, "seed must be >= 0, got -1"),
    ("seed", "abc", "seed must be an integer, got 'abc'"),
    ("dropout", "0.1", "dropout must be a number"),
    ("tie_embeddings", 1, "tie_embeddings must be True or False"),
])
def test_config_checks_types_not_only_values(field, value, message):
    with pytest.raises(ValueError, match=f"invalid TransformerConfig: .*{message}"):
        small_config(**{field: value})


def test_a_batch_of_zero_sequences_is_a_clear_error():
    model = Transformer(small_config())
    with pytest.raises(ValueError, match="src_ids is a batch of zero sequences"):
        model.forward(np.zeros((0, 5), dtype=np.int64), np.zeros((0, 4), dtype=np.int64))
