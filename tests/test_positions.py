"""Positions inside attention: RoPE and ALiBi (minitransformer/positions.py).

Float64 gradient checks of the new functions and of attention with them on both paths
through the math, PyTorch written out independently as the reference for forward and
gradients, fast == reference, the whole model gradient-checked with each option, cached
decoding equal to uncached decoding, and the configuration (old files still mean what they
meant; the default model is unchanged).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from minitransformer import fast, nn
from minitransformer.backend import asarray, to_numpy
from minitransformer import functional as F
from minitransformer.config import TransformerConfig
from minitransformer.decoder_only import DecoderOnly, DecoderOnlyConfig, generate
from minitransformer.decoding import decode_step, greedy_decode, start_decoding
from minitransformer.encoder_only import EncoderOnlyConfig, EncoderOnly
from minitransformer.gradcheck import check_function, check_module, relative_error
from minitransformer.positions import alibi_bias, alibi_slopes, rope_backward, rope_forward
from minitransformer.transformer import Transformer, causal_mask
from test_transformer import assert_whole_model_gradient

TOL = 1e-7       # finite differences, as in tests/test_gradcheck_layers.py
SAME = 1e-12     # two computations of the same float64 numbers
PAD, BOS, EOS = 0, 1, 2
PATHS = ["fast", "reference"]


def _mask(b=3, t=6):
    """Causal and padding: sequence 0 has 4 real tokens, sequence 2 has 2."""
    keep = np.ones((b, t), dtype=bool)
    keep[0, 4:] = False
    keep[2, 2:] = False
    return causal_mask(t) & keep[:, None, None, :]


# --------------------------------------------------------------------------------------
# The functions
# --------------------------------------------------------------------------------------
def test_rope_gradient(rng):
    positions = np.array([0, 1, 2, 7, 40])
    report = check_function(lambda x: rope_forward(x, positions), rope_backward,
                            {"x": rng.standard_normal((2, 3, 5, 6))})
    report.assert_ok(TOL)


def test_rope_is_the_rotation_written_out(rng):
    """Pair i of the token at position p turned by p * 10000^(-2i/d), one plane at a time."""
    x, positions = rng.standard_normal((4, 8)), np.array([0, 3, 11, 100])
    y, _ = rope_forward(x, positions)
    for t, p in enumerate(positions):
        for i in range(4):
            a = p * 10000.0 ** (-2 * i / 8)
            turn = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            np.testing.assert_allclose(y[t, 2 * i:2 * i + 2], turn @ x[t, 2 * i:2 * i + 2], rtol=1e-13)


def test_rope_scores_depend_on_the_offset_only(rng):
    q, k = rng.standard_normal((1, 8)), rng.standard_normal((1, 8))
    scores = [(rope_forward(q, np.array([i]))[0] @ rope_forward(k, np.array([i + 3]))[0].T).item()
              for i in (0, 5, 50)]
    np.testing.assert_allclose(scores, scores[0], rtol=1e-12)


def test_alibi_slopes_are_the_papers():
    assert alibi_slopes(8) == tuple(2.0 ** -h for h in range(1, 9))
    np.testing.assert_allclose(alibi_slopes(4), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8])
    # not a power of two: the 4 of 4 heads, then every other of 8 heads' (1/2, 1/8)
    np.testing.assert_allclose(alibi_slopes(6), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])


def test_alibi_bias_is_minus_slope_times_distance():
    bias = alibi_bias((0.5, 0.25), np.array([3, 4]), np.arange(5))
    expected = -np.array([0.5, 0.25])[:, None, None] * abs(np.array([3, 4])[:, None] - np.arange(5))
    np.testing.assert_array_equal(bias, expected)


@pytest.mark.parametrize("path", PATHS)
def test_attention_with_a_bias_and_a_mask(path, rng):
    """The gradient of attention with ALiBi's bias under a causal and padding mask with a query
    that sees no key: the bias passes dS through unchanged, the mask still wins."""
    mask = _mask()
    mask[1, :, 3, :] = False
    bias = alibi_bias(alibi_slopes(2), np.arange(6), np.arange(6))
    math_fns = fast if path == "fast" else F
    inputs = {n: rng.standard_normal((3, 2, 6, 4)) for n in "qkv"}
    report = check_function(lambda q, k, v: math_fns.attention_forward(q, k, v, mask, bias=bias),
                            math_fns.attention_backward, inputs)
    report.assert_ok(TOL)
    out, _ = math_fns.attention_forward(*inputs.values(), mask, bias=bias)
    assert float(abs(out[1, :, 3]).max()) == 0.0


# --------------------------------------------------------------------------------------
# Multi-head attention with positions, both paths
# --------------------------------------------------------------------------------------
def _attention(positions, path, rng, d=8, heads=2, backend=None):
    layer = nn.MultiHeadAttention(d, heads, rng=rng, dtype=np.float64, positions=positions, backend=backend)
    layer.use_math(path)
    layer.b_in.data[:] = asarray(rng.standard_normal(3 * d), backend)   # zero biases would hide a wrong gradient
    return layer


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_self_attention_gradient(positions, path, rng, backend_name):
    layer = _attention(positions, path, rng, backend=backend_name)
    x = asarray(rng.standard_normal((3, 6, 8)), backend_name)
    check_module(layer, x, mask=asarray(_mask(), backend_name)).assert_ok(TOL)


@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_fast_equals_reference(positions, rng):
    x, dout = rng.standard_normal((3, 6, 8)), rng.standard_normal((3, 6, 8))
    results = []
    for path in PATHS:
        layer = _attention(positions, path, np.random.default_rng(5))
        out = layer.forward(x, mask=_mask())
        dx, _ = layer.backward(dout)
        results.append([out, dx] + [p.grad for p in layer.parameters()])
    for a, b in zip(*results):
        assert relative_error(a, b) <= SAME


# --------------------------------------------------------------------------------------
# PyTorch, written out independently, as the reference
# --------------------------------------------------------------------------------------
def _torch_attention(torch, x, w_in, b_in, w_out, b_out, n_heads, positions, mask):
    """Multi-head self-attention with RoPE or ALiBi in PyTorch: the papers' formulas, with
    RoPE as complex multiplication (RoFormer's form) and ALiBi's bias built by broadcasting."""
    b, t, d = x.shape
    d_k = d // n_heads
    qkv = x @ w_in + b_in
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(b, t, n_heads, d_k).transpose(1, 2) for i in range(3))
    pos = torch.arange(t, dtype=torch.float64)
    if positions == "rope":
        freqs = 10000.0 ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
        turn = torch.polar(torch.ones(t, d_k // 2, dtype=torch.float64), pos[:, None] * freqs)
        q, k = (torch.view_as_real(torch.view_as_complex(a.reshape(b, n_heads, t, d_k // 2, 2).contiguous())
                                   * turn).reshape(b, n_heads, t, d_k) for a in (q, k))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d_k)
    if positions == "alibi":
        ratio = 2.0 ** (-8.0 / n_heads)
        slopes = torch.tensor([ratio ** (h + 1) for h in range(n_heads)], dtype=torch.float64)
        scores = scores - slopes[:, None, None] * (pos[:, None] - pos[None, :]).abs()
    scores = scores.masked_fill(~mask, float("-inf"))
    heads = torch.softmax(scores, dim=-1) @ v
    return heads.transpose(1, 2).reshape(b, t, d) @ w_out + b_out


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_matches_pytorch(positions, path, rng):
    torch = pytest.importorskip("torch")
    layer = _attention(positions, path, rng, d=16, heads=4)
    x, dout = rng.standard_normal((3, 6, 16)), rng.standard_normal((3, 6, 16))
    mask = _mask()
    out = layer.forward(x, mask=mask)
    dx, _ = layer.backward(dout)
    tensors = [torch.tensor(a, requires_grad=True) for a in
               (x, layer.w_in.data, layer.b_in.data, layer.w_out.data, layer.b_out.data)]
    torch_out = _torch_attention(torch, *tensors, 4, positions, torch.tensor(mask))
    torch_out.backward(torch.tensor(dout))
    assert relative_error(out, torch_out.detach().numpy()) <= SAME
    for ours, theirs in zip([dx] + [p.grad for p in (layer.w_in, layer.b_in, layer.w_out, layer.b_out)],
                            tensors):
        assert relative_error(ours, theirs.grad.numpy()) <= SAME


# --------------------------------------------------------------------------------------
# The models
# --------------------------------------------------------------------------------------
def small_config(**kw):
    settings = dict(src_vocab_size=9, tgt_vocab_size=7, d_model=8, n_heads=2, d_ff=12, n_encoder_layers=2,
                    n_decoder_layers=2, dropout=0.0, max_len=32, seed=3, dtype="float64")
    return TransformerConfig(**{**settings, **kw})


def _batch(rng):
    src = rng.integers(3, 9, (3, 6))
    src[0, 4:] = PAD
    tgt_in = rng.integers(3, 7, (3, 5))
    tgt_in[:, 0] = BOS
    tgt_in[1, 3:] = PAD
    return src, tgt_in


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_whole_model_gradient(positions, path):
    model = Transformer(small_config(positions=positions))
    model.use_math(path)
    assert_whole_model_gradient(model)


@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_cached_decoding_equals_uncached(positions, rng, backend_name):
    """Step by step, the cached logits are those of the whole prefix run again: RoPE turns a
    new key by its absolute position, ALiBi biases from the new query's absolute position."""
    model = Transformer(small_config(positions=positions, d_model=16, n_heads=4), backend=backend_name)
    assert_cached_decoding_equals_uncached(model, rng, backend_name)


def assert_cached_decoding_equals_uncached(model, rng, backend_name):
    """Ten cached decoding steps of ``model`` (on ``backend_name``), each against the whole
    prefix run again, on random tokens; then cached and uncached greedy decoding agree."""
    model.eval()
    src = asarray(_batch(rng)[0], backend_name)
    memory, src_mask = model.encode(src)
    caches = start_decoding(model, memory, src_mask, 12)
    tokens = np.full((3, 1), BOS)
    for _ in range(10):
        cached = decode_step(model, asarray(tokens[:, -1], backend_name), caches, src_mask)
        whole = model.decode(asarray(tokens, backend_name), memory, src_mask)[:, -1]
        assert relative_error(cached, whole) <= SAME
        tokens = np.concatenate([tokens, rng.integers(3, 7, (3, 1))], axis=1)
    a = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=20, use_cache=True, return_array=True)
    b = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=20, use_cache=False, return_array=True)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_decoder_only_generation_cached_equals_uncached(positions):
    config = DecoderOnlyConfig(vocab_size=11, d_model=16, n_heads=4, d_ff=24, n_layers=2, dropout=0.0,
                               max_len=40, positions=positions, dtype="float64")
    model = DecoderOnly(config)
    prompt = np.random.default_rng(0).integers(3, 11, (2, 5))
    a = generate(model, prompt, 15, rng=1, temperature=0.0, use_cache=True)
    b = generate(model, prompt, 15, rng=1, temperature=0.0, use_cache=False)
    np.testing.assert_array_equal(a, b)
    # the positions act inside attention: the embeddings add none
    assert isinstance(model.embeddings.position, nn.NoPositionalEncoding)
    assert model.stack.layers[0].self_attn.positions == positions


def test_encoder_only_passes_the_option_to_its_layers(rng):
    model = EncoderOnly(EncoderOnlyConfig(vocab_size=11, d_model=8, n_heads=2, d_ff=12, n_layers=1,
                                               dropout=0.0, positions="alibi", dtype="float64"))
    assert model.stack.layers[0].self_attn.positions == "alibi"
    # without positions, attention is blind to order: shuffling the tokens would shuffle the
    # outputs alike. Nothing is added to the embeddings, so only ALiBi can break that.
    ids, order = rng.integers(3, 11, (2, 5)), np.array([1, 3, 0, 4, 2])
    assert not np.allclose(model.forward(ids[:, order]), model.forward(ids)[:, order])


def test_cross_attention_gets_no_positions():
    model = Transformer(small_config(positions="rope"))
    layer = model.decoder.layers[0]
    assert (layer.self_attn.positions, layer.cross_attn.positions) == ("rope", None)
    assert model.encoder.layers[0].self_attn.positions == "rope"


# --------------------------------------------------------------------------------------
# The configuration
# --------------------------------------------------------------------------------------
def test_old_configs_mean_what_they_meant():
    """A config written before ``positions`` existed has only ``learned_positions``."""
    old = small_config().to_dict()
    del old["positions"]
    assert TransformerConfig.from_dict(old).positions == "sinusoidal"
    assert TransformerConfig.from_dict({**old, "learned_positions": False}).positions == "sinusoidal"
    learned = TransformerConfig.from_dict({**old, "learned_positions": True})
    assert (learned.positions, learned.learned_positions) == ("learned", None)
    # one setting says it: changing positions later is not undone by a stale older spelling
    assert dataclasses.replace(learned, positions="rope").positions == "rope"
    assert dataclasses.replace(learned, positions="sinusoidal").positions == "sinusoidal"


@pytest.mark.parametrize("kw, words", [
    (dict(positions="relative"), "positions must be one of"),
    (dict(positions="rope", learned_positions=True), "contradicts positions='rope'"),
    (dict(positions="learned", learned_positions=False), "contradicts positions='learned'"),
    (dict(learned_positions="yes"), "learned_positions must be True or False"),
    (dict(positions="rope", d_model=6, n_heads=2), "d_model / n_heads must be even"),
])
def test_bad_positions_are_one_clear_error(kw, words):
    with pytest.raises(ValueError, match=words):
        small_config(**kw)
    stack_kw = {k: v for k, v in kw.items() if k in ("positions", "learned_positions", "d_model", "n_heads")}
    with pytest.raises(ValueError, match=words):
        DecoderOnlyConfig(vocab_size=11, **stack_kw)


def test_to_torch_refuses_positions_it_cannot_copy():
    pytest.importorskip("torch")
    from minitransformer.interop import to_torch
    with pytest.raises(ValueError, match="positions='alibi'"):
        to_torch(Transformer(small_config(positions="alibi")))


#: Logits of the default model on :func:`_batch` (seed 3, float64), as the code before
#: ``positions`` existed computed them (commit 5c72fac): the option, off, changes nothing.
DEFAULT_LOGITS = [-1.407758495469183, 0.0666369437567369, -1.0885447484625068]


def test_the_default_model_is_unchanged(rng):
    model = Transformer(small_config())
    src, tgt_in = _batch(rng)
    logits = model.forward(src, tgt_in)
    np.testing.assert_allclose(logits[0, 0, :3], DEFAULT_LOGITS, rtol=1e-12)
    assert isinstance(model.src_pos, nn.PositionalEncoding) and model.src_pos is model.tgt_pos
    explicit = Transformer(dataclasses.replace(small_config(), positions="sinusoidal"))
    np.testing.assert_array_equal(explicit.forward(src, tgt_in), logits)


@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_a_checkpoint_rebuilds_the_model(positions, tmp_path, rng):
    from minitransformer.checkpoint import load_model, save_checkpoint
    model = Transformer(small_config(positions=positions))
    save_checkpoint(tmp_path / "m.npz", model)
    loaded, _ = load_model(tmp_path / "m.npz")
    assert loaded.config.positions == positions
    src, tgt_in = _batch(rng)
    np.testing.assert_array_equal(loaded.forward(src, tgt_in), model.forward(src, tgt_in))
