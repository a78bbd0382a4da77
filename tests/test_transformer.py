"""The whole model: gradient check, masks, decoding with and without the KV cache."""
import numpy as np
import pytest

from minitransformer import Transformer, TransformerConfig
from minitransformer.decoding import beam_search, greedy_decode
from minitransformer.gradcheck import numerical_gradient, relative_error
from minitransformer.losses import CrossEntropyLoss

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
    model = Transformer(small_config(norm_first=norm_first, tie_embeddings=tie, dtype="float64"),
                        backend=backend_name)
    from minitransformer.backend import asarray
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


def test_beam_search_finds_at_least_the_greedy_score():
    model = Transformer(small_config(src_vocab_size=12, tgt_vocab_size=12, d_model=16, n_heads=4,
                                     d_ff=24, dtype="float64"))
    rng = np.random.default_rng(4)
    src = rng.integers(3, 12, (6, 7))
    greedy = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=8)
    beams, scores = beam_search(model, src, bos_id=BOS, eos_id=EOS, max_len=8, beam_width=4,
                                length_penalty=0.0, return_scores=True)

    def log_prob(i, seq):
        tgt = np.array([[BOS] + seq])
        logits = model.forward(src[i:i + 1], tgt)[0]
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        nxt = seq + [EOS] if len(seq) < 8 else seq
        return sum(logp[t, tok] for t, tok in enumerate(nxt[: len(logp)]))

    for i in range(len(src)):
        assert log_prob(i, beams[i]) >= log_prob(i, greedy[i]) - 1e-9


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
