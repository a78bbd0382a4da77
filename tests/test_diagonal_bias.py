"""The learned diagonal bias of cross-attention, -a_h |j - r_h i - b_h| (positions="rope+diagonal").

Float64 gradient checks of the bias function (all three parameters), of attention returning
its bias's gradient, of cross-attention with the bias on both paths and of the whole model;
PyTorch written out independently, with autograd, as the reference for the bias and for
cross-attention; fast == reference; cached decoding == uncached; a checkpoint round trip
with the optimizer; the configuration.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minitransformer import fast, nn
from minitransformer import functional as F
from minitransformer.backend import asarray
from minitransformer.checkpoint import load_checkpoint, load_model, restore_optimizer, save_checkpoint
from minitransformer.decoder_only import DecoderOnlyConfig
from minitransformer.fast import attention as fast_attention
from minitransformer.gradcheck import check_function, check_module, relative_error
from minitransformer.optim import Adam
from minitransformer.positions import diagonal_bias_backward, diagonal_bias_forward
from minitransformer.transformer import Transformer
from test_positions import (PATHS, SAME, TOL, _batch, _mask, assert_cached_decoding_equals_uncached,
                            small_config)
from test_transformer import assert_whole_model_gradient


def _parameters(rng, heads=3):
    """a_raw, r, b of ``heads`` heads, away from the kinks |u| has at u = 0 (non-integer r, b)."""
    return {"a_raw": rng.standard_normal(heads), "r": 1.0 + 2.5 * rng.random(heads),
            "b": rng.standard_normal(heads)}


def _off_the_line(layer, rng):
    """Non-integer slopes and offsets, sharper heads: finite differences must not cross a kink,
    and a bias of about the size of the scores shows a wrong gradient."""
    h = layer.n_heads
    layer.diag_a_raw.data[:] = asarray(rng.standard_normal(h), layer.w_in.data)
    layer.diag_r.data[:] = asarray(1.0 + 2.5 * rng.random(h), layer.w_in.data)
    layer.diag_b.data[:] = asarray(rng.standard_normal(h), layer.w_in.data)


# --------------------------------------------------------------------------------------
# The function
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("start", [0, 7])
def test_diagonal_bias_gradient(start, rng):
    """All three parameter gradients, for queries at 0 .. and at a decoding step's 7 .."""
    q_positions, k_positions = start + np.arange(5), np.arange(11)
    report = check_function(lambda a_raw, r, b: diagonal_bias_forward(a_raw, r, b, q_positions, k_positions),
                            diagonal_bias_backward, _parameters(rng))
    report.assert_ok(TOL)


def test_diagonal_bias_is_the_formula_written_out():
    a_raw, r, b = np.array([0.0, 2.0]), np.array([1.0, 3.0]), np.array([0.0, -0.5])
    bias, _ = diagonal_bias_forward(a_raw, r, b, np.array([0, 4]), np.arange(6))
    for h in range(2):
        a = math.log(1.0 + math.exp(a_raw[h]))
        for i_index, i in enumerate((0, 4)):
            for j in range(6):
                assert bias[h, i_index, j] == pytest.approx(-a * abs(j - r[h] * i - b[h]), rel=1e-15)


def _torch_diagonal_bias(torch, a_raw, r, b, i, j):
    """The bias as the docs write it, for autograd: -softplus(a_raw) |j - r i - b|."""
    a = torch.nn.functional.softplus(a_raw)
    return -a[:, None, None] * (j[None, None, :] - r[:, None, None] * i[None, :, None] - b[:, None, None]).abs()


@pytest.mark.parametrize("where", ["off the line", "at the kinks"])
def test_diagonal_bias_matches_pytorch(where, rng):
    """Forward and gradients against PyTorch's autograd; at the initial values (r = 1, b = 0)
    key j = i sits on the line, u = 0, where both take 0 as the derivative of |u|."""
    torch = pytest.importorskip("torch")
    params = _parameters(rng) if where == "off the line" else {
        "a_raw": rng.standard_normal(3), "r": np.ones(3), "b": np.zeros(3)}
    i, j = 2 + np.arange(6), np.arange(9)
    bias, cache = diagonal_bias_forward(*params.values(), i, j)
    d_bias = rng.standard_normal(bias.shape)
    grads = diagonal_bias_backward(d_bias, cache)
    tensors = [torch.tensor(p, requires_grad=True) for p in params.values()]
    torch_bias = _torch_diagonal_bias(torch, *tensors, torch.tensor(i, dtype=torch.float64),
                                      torch.tensor(j, dtype=torch.float64))
    torch_bias.backward(torch.tensor(d_bias))
    assert relative_error(bias, torch_bias.detach().numpy()) <= SAME
    if where == "at the kinks":
        assert (cache.u == 0).sum() == 3 * 6   # every head, every query: one key on the line
    for ours, theirs in zip(grads, tensors):
        assert relative_error(ours, theirs.grad.numpy()) <= SAME


# --------------------------------------------------------------------------------------
# Attention returns the gradient of its bias where asked
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_attention_returns_the_bias_gradient(path, rng):
    """The bias as a fourth input: its gradient is dS summed over the batch, masked scores
    (and the query that sees no key) sending nothing."""
    mask = _mask()[:, :, :, :5]
    mask[1, :, 3, :] = False
    math_fns = fast if path == "fast" else F
    inputs = {"q": rng.standard_normal((3, 2, 6, 4)), "k": rng.standard_normal((3, 2, 5, 4)),
              "v": rng.standard_normal((3, 2, 5, 4)), "bias": rng.standard_normal((2, 6, 5))}
    report = check_function(lambda q, k, v, bias: math_fns.attention_forward(q, k, v, mask, bias=bias),
                            lambda dout, cache: math_fns.attention_backward(dout, cache, bias_grad=True), inputs)
    report.assert_ok(TOL)
    _, cache = math_fns.attention_forward(inputs["q"], inputs["k"], inputs["v"], mask, bias=inputs["bias"])
    assert len(math_fns.attention_backward(rng.standard_normal((3, 2, 6, 4)), cache)) == 3   # not asked


def test_bias_gradient_in_slices_equals_one_call(rng, monkeypatch):
    """The fast path cuts a batch into slices (here 4): the bias's gradient is the sum of theirs."""
    monkeypatch.setattr(fast_attention, "SCORES_PER_SLICE", 60)
    q, k, v = (rng.standard_normal((4, 2, 6, 4)) for _ in range(3))
    bias, dout = rng.standard_normal((2, 6, 6)), rng.standard_normal((4, 2, 6, 4))
    out, cache = fast.batched_attention_forward(q, k, v, bias=bias)
    assert len(cache.slices) == 4
    ref_out, ref_cache = F.attention_forward(q, k, v, bias=bias)
    assert relative_error(out, ref_out) <= SAME
    for ours, theirs in zip(fast.batched_attention_backward(dout, cache, bias_grad=True),
                            F.attention_backward(dout, ref_cache, bias_grad=True)):
        assert relative_error(ours, theirs) <= SAME


# --------------------------------------------------------------------------------------
# Cross-attention with the bias: a layer with three more parameters
# --------------------------------------------------------------------------------------
def _cross_attention(path, rng, d=8, heads=2, backend=None):
    layer = nn.MultiHeadAttention(d, heads, rng=rng, dtype=np.float64, positions="diagonal", backend=backend)
    layer.use_math(path)
    layer.b_in.data[:] = asarray(rng.standard_normal(3 * d), backend)
    _off_the_line(layer, rng)
    return layer


def _cross_inputs(rng, d=8):
    """Queries (3, 5, d), keys and values (3, 12, d), a padding mask over the keys."""
    keep = np.ones((3, 12), dtype=bool)
    keep[0, 9:] = False
    keep[2, 4:] = False
    return rng.standard_normal((3, 5, d)), rng.standard_normal((3, 12, d)), keep[:, None, None, :]


@pytest.mark.parametrize("path", PATHS)
def test_cross_attention_gradient(path, rng, backend_name):
    layer = _cross_attention(path, rng, backend=backend_name)
    x_q, x_kv, mask = (asarray(a, backend_name) for a in _cross_inputs(rng))
    report = check_module(layer, x_q, x_kv, mask=mask)
    report.assert_ok(TOL)
    assert {"diag_a_raw", "diag_r", "diag_b"} <= set(report.errors)


def test_cross_attention_fast_equals_reference(rng):
    x_q, x_kv, mask = _cross_inputs(rng)
    dout = rng.standard_normal(x_q.shape)
    results = []
    for path in PATHS:
        layer = _cross_attention(path, np.random.default_rng(5))
        out = layer.forward(x_q, x_kv, mask)
        results.append([out, *layer.backward(dout)] + [p.grad for p in layer.parameters()])
    for a, b in zip(*results):
        assert relative_error(a, b) <= SAME


def _torch_cross_attention(torch, x_q, x_kv, w_in, b_in, w_out, b_out, a_raw, r, b, n_heads, mask):
    """Cross-attention with the diagonal bias in PyTorch, as the docs write it."""
    batch, tq, d = x_q.shape
    tk, d_k = x_kv.shape[1], d // n_heads
    q = (x_q @ w_in[:, :d] + b_in[:d]).reshape(batch, tq, n_heads, d_k).transpose(1, 2)
    k, v = ((x_kv @ w_in[:, s:s + d] + b_in[s:s + d]).reshape(batch, tk, n_heads, d_k).transpose(1, 2)
            for s in (d, 2 * d))
    bias = _torch_diagonal_bias(torch, a_raw, r, b, torch.arange(tq, dtype=torch.float64),
                                torch.arange(tk, dtype=torch.float64))
    scores = (q @ k.transpose(-1, -2) / math.sqrt(d_k) + bias).masked_fill(~mask, float("-inf"))
    heads = torch.softmax(scores, dim=-1) @ v
    return heads.transpose(1, 2).reshape(batch, tq, d) @ w_out + b_out


@pytest.mark.parametrize("path", PATHS)
def test_cross_attention_matches_pytorch(path, rng):
    torch = pytest.importorskip("torch")
    layer = _cross_attention(path, rng, d=16, heads=4)
    x_q, x_kv, mask = _cross_inputs(rng, d=16)
    dout = rng.standard_normal(x_q.shape)
    out = layer.forward(x_q, x_kv, mask)
    dx_q, dx_kv = layer.backward(dout)
    params = (layer.w_in, layer.b_in, layer.w_out, layer.b_out, layer.diag_a_raw, layer.diag_r, layer.diag_b)
    tensors = [torch.tensor(a, requires_grad=True) for a in (x_q, x_kv, *(p.data for p in params))]
    torch_out = _torch_cross_attention(torch, *tensors, 4, torch.tensor(mask))
    torch_out.backward(torch.tensor(dout))
    assert relative_error(out, torch_out.detach().numpy()) <= SAME
    for ours, theirs in zip([dx_q, dx_kv] + [p.grad for p in params], tensors):
        assert relative_error(ours, theirs.grad.numpy()) <= SAME


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------
def _model(rng=None, **kw):
    model = Transformer(small_config(positions="rope+diagonal", **kw))
    for layer in model.decoder.layers:
        _off_the_line(layer.cross_attn, rng or np.random.default_rng(11))
    return model


def test_the_model_has_rope_and_a_diagonal_bias():
    model = _model()
    layer = model.decoder.layers[0]
    assert (layer.self_attn.positions, layer.cross_attn.positions) == ("rope", "diagonal")
    assert model.encoder.layers[0].self_attn.positions == "rope"
    assert isinstance(model.src_pos, nn.NoPositionalEncoding)   # nothing added to the embeddings
    names = {name for name, _ in model.named_parameters()}
    assert {f"decoder.layers.{n}.cross_attn.diag_{p}" for n in (0, 1) for p in ("a_raw", "r", "b")} <= names
    fresh = Transformer(small_config(positions="rope+diagonal")).decoder.layers[1].cross_attn
    np.testing.assert_array_equal(fresh.diag_r.data, 1.0)   # the slope starts at 1, not at 3
    np.testing.assert_array_equal(fresh.diag_b.data, 0.0)
    np.testing.assert_allclose(np.logaddexp(0, fresh.diag_a_raw.data), F.alibi_slopes(2), rtol=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_whole_model_gradient(path):
    model = _model()
    model.use_math(path)
    assert_whole_model_gradient(model)


def test_cached_decoding_equals_uncached(rng, backend_name):
    """Step by step, the cached logits are those of the whole prefix run again: the cached
    cross-attention builds its bias row at the step's own query position."""
    model = _model(d_model=16, n_heads=4)
    model.to(backend_name)
    assert_cached_decoding_equals_uncached(model, rng, backend_name)


def test_the_optimizer_trains_them_and_a_checkpoint_resumes(tmp_path, rng):
    """One Adam step moves every bias parameter; save, load, and the next step of the loaded
    model and optimizer is the next step of the original."""
    model = _model()
    optimizer = Adam(model.parameters(), lr=1e-2)
    src, tgt_in = _batch(rng)
    dlogits = rng.standard_normal(model.forward(src, tgt_in).shape)

    def step(m, opt):
        opt.zero_grad()
        m.forward(src, tgt_in)
        m.backward(dlogits)
        opt.step()

    before = model.decoder.layers[0].cross_attn.diag_r.data.copy()
    step(model, optimizer)
    layer = model.decoder.layers[0].cross_attn
    assert np.all(layer.diag_r.data != before)
    save_checkpoint(tmp_path / "m.npz", model, optimizer=optimizer, step=1)
    loaded, _ = load_model(tmp_path / "m.npz")
    assert loaded.config.positions == "rope+diagonal"
    for p in ("diag_a_raw", "diag_r", "diag_b"):
        np.testing.assert_array_equal(getattr(loaded.decoder.layers[0].cross_attn, p).data, getattr(layer, p).data)
    loaded_optimizer = restore_optimizer(load_checkpoint(tmp_path / "m.npz"), Adam(loaded.parameters(), lr=1e-2))
    step(model, optimizer)
    step(loaded, loaded_optimizer)
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_a_stack_of_one_kind_refuses_the_diagonal():
    with pytest.raises(ValueError, match="bias in cross-attention.*give 'rope'"):
        DecoderOnlyConfig(vocab_size=11, positions="rope+diagonal")
    with pytest.raises(ValueError, match="positions='rope\\+diagonal' turns pairs of features"):
        small_config(positions="rope+diagonal", d_model=6, n_heads=2)
    with pytest.raises(ValueError, match="'rope', 'alibi' or 'diagonal'"):
        nn.MultiHeadAttention(8, 2, positions="line")
