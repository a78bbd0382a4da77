"""The decoder-only (GPT-style) model: gradients, causality, PyTorch parity, KV cache, sampling."""
import numpy as np
import pytest

from minitransformer.checkpoint import load_checkpoint, restore_model, save_checkpoint
from minitransformer.decoder_only import (DecoderOnly, DecoderOnlyConfig, generate,
                                          next_token_targets)
from minitransformer.gradcheck import numerical_gradient, relative_error
from minitransformer.losses import CrossEntropyLoss
from minitransformer.nn import MultiHeadAttention
from minitransformer.sampling import next_token_probabilities, sample_next_token, top_k_keep, top_p_keep
from minitransformer.transformer import EncoderLayer
from stack_helpers import GRADCHECK_VARIANTS, padded_ids, randomised

PAD, EOS = 0, 2
VOCAB = 11


def small_config(**kw):
    settings = dict(vocab_size=VOCAB, d_model=8, n_heads=2, d_ff=12, n_layers=2, dropout=0.0, max_len=24,
                    pad_id=PAD, seed=5, dtype="float64")
    settings.update(kw)
    return DecoderOnlyConfig(**settings)


def padded_batch(rng, lengths=(7, 5, 3), length=7):
    return padded_ids(rng, 3, VOCAB, lengths, length, PAD)


# --------------------------------------------------------------------------------------
# Config and structure
# --------------------------------------------------------------------------------------
def test_config_defaults_round_trip_and_validation():
    config = small_config()
    assert config.norm_first and config.tie_embeddings and config.activation == "gelu"   # GPT-2's
    assert DecoderOnlyConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="invalid DecoderOnlyConfig: pad_id=11 must be a token id"):
        small_config(pad_id=11)
    with pytest.raises(ValueError, match="n_layers must be >= 0, got -1"):
        small_config(n_layers=-1)
    with pytest.raises(ValueError, match="invalid DecoderOnlyConfig: dropout must be a number, got 'x'"):
        small_config(dropout="x")


def test_the_blocks_are_encoder_layers():
    model = DecoderOnly(small_config())
    assert all(type(layer) is EncoderLayer for layer in model.stack.layers)
    assert model.output.weight is model.embeddings.token.weight


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", GRADCHECK_VARIANTS)
def test_whole_model_gradient_check(variant):
    model = randomised(DecoderOnly(small_config(**GRADCHECK_VARIANTS[variant])), seed=1)
    inputs, targets = next_token_targets(padded_batch(np.random.default_rng(2)))
    criterion = CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)

    def loss():
        return float(criterion.forward(model.forward(inputs), targets))

    model.zero_grad()
    loss()
    model.backward(criterion.backward())
    worst = {name: relative_error(p.grad.copy(), numerical_gradient(loss, p.data))
             for name, p in model.named_parameters()}
    print(f"\nworst relative error {max(worst.values()):.1e}")
    assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def test_next_token_targets():
    ids = np.array([[5, 6, 7, PAD]])
    inputs, targets = next_token_targets(ids)
    np.testing.assert_array_equal(inputs, [[5, 6, 7]])
    np.testing.assert_array_equal(targets, [[6, 7, PAD]])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        next_token_targets(np.array([[5]]))


def test_position_t_never_sees_the_future():
    model = randomised(DecoderOnly(small_config()))
    a = model.forward(np.array([[3, 4, 5, 6, 7]]))
    b = model.forward(np.array([[3, 4, 5, 9, 9]]))
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-12)
    assert not np.allclose(a[:, 3:], b[:, 3:])


# --------------------------------------------------------------------------------------
# PyTorch: nn.TransformerEncoder with a causal mask, our weights copied in
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [dict(norm_first=True, tie_embeddings=True, activation="gelu"),
                                      dict(norm_first=False, tie_embeddings=False, activation="relu",
                                           learned_positions=True)],
                         ids=["pre-LN tied gelu", "post-LN untied relu learned positions"])
def test_torch_parity(settings):
    torch = pytest.importorskip("torch")
    from torch_stacks import TorchStack, parameter_map

    model = randomised(DecoderOnly(small_config(d_model=16, n_heads=4, d_ff=32, **settings)), seed=3)
    twin = TorchStack(model)
    inputs, targets = next_token_targets(padded_batch(np.random.default_rng(4), lengths=(8, 6, 3, 2), length=8))
    criterion = CrossEntropyLoss(ignore_index=PAD)
    logits = model.forward(inputs)
    loss = criterion.forward(logits, targets)
    model.zero_grad()
    model.backward(criterion.backward())
    logits_t = twin(torch.as_tensor(inputs))
    loss_t = torch.nn.functional.cross_entropy(logits_t.reshape(-1, VOCAB), torch.as_tensor(targets).reshape(-1),
                                               ignore_index=PAD)
    loss_t.backward()
    pairs = [(logits, logits_t.detach().numpy()), (loss, loss_t.item())]
    ours = dict(model.named_parameters())
    pairs += [(ours[name].grad, transform(param.grad.numpy()))
              for name, (param, transform) in parameter_map(model, twin).items()]
    for a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    print(f"\nworst absolute difference from PyTorch {max(float(np.max(np.abs(a - b))) for a, b in pairs):.1e}")


# --------------------------------------------------------------------------------------
# Generation: the KV cache changes nothing but the cost
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_cached_steps_give_the_full_forward_logits(norm_first):
    model = randomised(DecoderOnly(small_config(norm_first=norm_first)), seed=6).eval()
    ids = np.random.default_rng(7).integers(3, VOCAB, (2, 9))
    caches = model.start_generation(2, 9)
    pieces = [model.step(ids[:, :4], caches)] + [model.step(ids[:, t:t + 1], caches) for t in range(4, 9)]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), model.forward(ids), rtol=0, atol=1e-12)
    assert sum(isinstance(m, MultiHeadAttention) for _, m in model.named_modules()) == 2   # put back


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.3, top_k=4),
                                      dict(temperature=0.8, top_p=0.7), dict(top_k=6, top_p=0.9)],
                         ids=["greedy", "top-k", "top-p", "top-k and top-p"])
def test_generation_with_and_without_cache_is_the_same(sampling):
    model = randomised(DecoderOnly(small_config(dropout=0.2)), seed=8)
    prompt = np.random.default_rng(9).integers(3, VOCAB, (5, 3))
    cached = generate(model, prompt, 12, rng=11, eos_id=EOS, **sampling)
    plain = generate(model, prompt, 12, rng=11, eos_id=EOS, use_cache=False, **sampling)
    np.testing.assert_array_equal(cached, plain)
    np.testing.assert_array_equal(cached[:, :3], prompt)
    assert model.training                                   # the mode it was in
    for row in cached[:, 3:]:                               # after the end token, only padding
        ends = np.flatnonzero(row == EOS)
        assert ends.size == 0 or not row[ends[0] + 1:].any()
        assert row[:ends[0] if ends.size else None].all()      # and never padding before it


def test_generation_is_seeded():
    model = randomised(DecoderOnly(small_config()), seed=8)
    prompt = np.array([[3, 4], [5, 6]])
    a = generate(model, prompt, 10, rng=1)
    np.testing.assert_array_equal(a, generate(model, prompt, 10, rng=np.random.default_rng(1)))
    assert not np.array_equal(a, generate(model, prompt, 10, rng=2))


def test_generation_errors_and_the_attention_goes_back():
    model = DecoderOnly(small_config())
    with pytest.raises(ValueError, match="prompt_ids hold padding"):
        generate(model, np.array([[3, PAD]]), 2)
    with pytest.raises(ValueError, match="exceeds the model's max_len=24"):
        generate(model, np.array([[3, 4]]), 23)
    with pytest.raises(ValueError, match="top_p must be in"):
        generate(model, np.array([[3, 4]]), 2, top_p=1.5)
    with pytest.raises(ValueError, match="^max_new_tokens must be >= 1, got 0$"):
        generate(model, np.array([[3, 4]]), 0)
    with pytest.raises(ValueError, match="^max_new_tokens must be an integer, got 2.0$"):
        generate(model, np.array([[3, 4]]), 2.0)
    with pytest.raises(ValueError, match="^prompt_ids has length 25, longer than the model's max_len=24$"):
        generate(model, np.full((1, 25), 3), 1)
    caches = model.start_generation(1, 2)
    with pytest.raises(ValueError, match="past the cache's max_len=2"):
        model.step(np.array([[3, 4, 5]]), caches)
    with pytest.raises(ValueError, match="2 layers but 1 caches"):
        model.step(np.array([[3]]), caches[:1])


# --------------------------------------------------------------------------------------
# Sampling: exactly the right tokens
# --------------------------------------------------------------------------------------
PROBS = np.array([[0.0625, 0.5, 0.125, 0.25, 0.0625],     # binary fractions: sums are exact
                  [0.2, 0.2, 0.2, 0.2, 0.2]])


def test_top_k_keeps_the_k_most_likely():
    np.testing.assert_array_equal(top_k_keep(PROBS, 2), [[0, 1, 0, 1, 0], [1, 1, 0, 0, 0]])   # ties: lower id
    np.testing.assert_array_equal(top_k_keep(PROBS, 5), np.ones((2, 5), bool))


@pytest.mark.parametrize("p, kept", [(0.3, [0, 1, 0, 0, 0]),      # 0.5 >= 0.3 at once
                                     (0.5, [0, 1, 0, 0, 0]),      # 0.5 reaches 0.5 exactly
                                     (0.51, [0, 1, 0, 1, 0]),     # 0.5 + 0.25
                                     (0.875, [0, 1, 1, 1, 0]),    # 0.5 + 0.25 + 0.125
                                     (0.9, [1, 1, 1, 1, 0]),      # the tie 0.0625/0.0625: lower id first
                                     (1.0, [1, 1, 1, 1, 1])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, kept):
    np.testing.assert_array_equal(top_p_keep(PROBS[:1], p)[0], kept)


def test_sampling_draws_from_the_kept_tokens_in_proportion():
    logits = np.log(np.tile(PROBS[:1], (40000, 1)))
    # top-3 keeps 0.5, 0.25, 0.125 (renormalised: 4/7, 2/7, 1/7); top-p 0.8 then stops at 4/7 + 2/7
    probs = next_token_probabilities(logits[:1], top_k=3, top_p=0.8)
    np.testing.assert_allclose(probs[0], [0, 2 / 3, 0, 1 / 3, 0], atol=1e-15)
    tokens = sample_next_token(logits, 0, top_k=3, top_p=0.8)
    freq = np.bincount(tokens, minlength=5) / tokens.size
    assert set(np.unique(tokens)) == {1, 3}
    assert abs(freq[1] - 2 / 3) < 4 * np.sqrt(2 / 3 * 1 / 3 / tokens.size), freq
    hot = next_token_probabilities(logits[:1], temperature=0.5)[0]      # p^2, renormalised
    np.testing.assert_allclose(hot, PROBS[0] ** 2 / (PROBS[0] ** 2).sum(), rtol=1e-12)
    np.testing.assert_array_equal(sample_next_token(logits[:3], 0, temperature=0.0), [1, 1, 1])


def test_checkpoint_round_trip(tmp_path):
    model = randomised(DecoderOnly(small_config(tie_embeddings=False)))
    path = save_checkpoint(tmp_path / "gpt.npz", model)
    restored = restore_model(path, DecoderOnly(DecoderOnlyConfig.from_dict(load_checkpoint(path).config)))
    prompt = np.array([[3, 4, 5]])
    np.testing.assert_array_equal(generate(restored, prompt, 6, rng=0), generate(model, prompt, 6, rng=0))
