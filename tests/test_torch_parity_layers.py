"""Every layer against ``torch.nn``, in float64, with the same weights, on both paths
through the math (fast and reference).

For each layer we build ours, copy its weights into the PyTorch twin, run both forward on
the same random input, push the same random upstream gradient back through both (ours by
hand with ``backward(dout)``, PyTorch by autograd), and ask that the outputs and *all* the
gradients -- inputs and every parameter -- agree to 1e-10.

Two conventions differ between the libraries and are translated in the copying:

* our weights are stored (in_features, out_features), so PyTorch's ``weight`` is our ``W.T``;
* our attention masks are True where attending is *allowed*; PyTorch's boolean
  ``attn_mask`` is True where it is *not*, and its ``key_padding_mask`` is True at padding.

The tests that need PyTorch ask for the ``torch`` fixture and are skipped without it; the
dropout statistics at the end need only NumPy.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minitransformer import backend
from minitransformer.losses import CrossEntropyLoss
from minitransformer.nn import (GELU, Dropout, Embedding, FeedForward, LayerNorm, Linear,
                                MultiHeadAttention, ReLU, Softmax)
from records import print_worst

TORCH_MISSING = "PyTorch is not installed: pip install torch==2.13.0 (CPU build) to run the parity tests"
RTOL = ATOL = 1e-10

#: The largest absolute difference seen so far, per layer: a record, not a check (the
#: check is the assertion in :func:`assert_close`). Printed by ``pytest -s`` at the end.
WORST_ABS_DIFF: dict[str, float] = {}


@pytest.fixture(autouse=True, params=["fast", "reference"])
def math_path(request, monkeypatch):
    """Every layer is built on each path through the math (MINITRANSFORMER_MATH)."""
    monkeypatch.setenv("MINITRANSFORMER_MATH", request.param)
    return request.param


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason=TORCH_MISSING)


@pytest.fixture(scope="module", autouse=True)
def _report_worst_differences():
    yield
    print_worst("worst absolute difference from PyTorch, per layer", WORST_ABS_DIFF, ".3e")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def to_torch(array, requires_grad=False):
    """A float64 (or integer) torch tensor holding a copy of a NumPy array."""
    import torch
    t = torch.from_numpy(np.array(array))
    return t.requires_grad_(True) if requires_grad else t


def to_numpy(tensor):
    return tensor.detach().cpu().numpy()


def assert_close(layer, ours, theirs):
    """ours == theirs to 1e-10 (theirs a tensor or an array); records the worst difference."""
    theirs = to_numpy(theirs) if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = backend.to_numpy(ours)
    assert ours.shape == theirs.shape, f"{layer}: shape {ours.shape} vs PyTorch {theirs.shape}"
    assert ours.dtype == np.float64, f"{layer}: dtype {ours.dtype}, expected float64"
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    WORST_ABS_DIFF[layer] = max(WORST_ABS_DIFF.get(layer, 0.0), diff)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=layer)


def copy_(torch_param, array):
    """Copy a NumPy array into a torch parameter, outside autograd."""
    import torch
    with torch.no_grad():
        torch_param.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def randomise(param, rng, scale=0.5):
    """Give a parameter random values (biases start at zero, which would hide bugs)."""
    param.data[...] = rng.normal(0.0, scale, param.shape)


# --------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear(torch, bias):
    rng = np.random.default_rng(0)
    ours = Linear(8, 6, bias=bias, rng=rng, dtype=np.float64)
    theirs = torch.nn.Linear(8, 6, bias=bias, dtype=torch.float64)
    copy_(theirs.weight, ours.weight.data.T)
    if bias:
        randomise(ours.bias, rng)
        copy_(theirs.bias, ours.bias.data)

    x = rng.normal(size=(3, 5, 8))
    dout = rng.normal(size=(3, 5, 6))
    y = ours.forward(x)
    dx = ours.backward(dout)

    x_t = to_torch(x, requires_grad=True)
    y_t = theirs(x_t)
    y_t.backward(to_torch(dout))

    assert_close("Linear", y, y_t)
    assert_close("Linear", dx, x_t.grad)
    assert_close("Linear", ours.weight.grad, theirs.weight.grad.T)
    if bias:
        assert_close("Linear", ours.bias.grad, theirs.bias.grad)


# --------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [False, True])
def test_embedding_with_padding(torch, scale):
    rng = np.random.default_rng(1)
    vocab, d, pad = 11, 8, 0
    ours = Embedding(vocab, d, padding_idx=pad, scale=scale, rng=rng, dtype=np.float64)
    theirs = torch.nn.Embedding(vocab, d, padding_idx=pad, dtype=torch.float64)
    copy_(theirs.weight, ours.weight.data)

    ids = rng.integers(0, vocab, size=(3, 7))
    ids[0, -3:] = pad          # padded tails, as in a batch of unequal lengths
    ids[2, -1] = pad
    ids[1, :3] = 5             # a repeated id: its gradients must add up
    dout = rng.normal(size=(3, 7, d))
    y = ours.forward(ids)
    assert ours.backward(dout) is None

    y_t = theirs(to_torch(ids))
    if scale:
        y_t = y_t * math.sqrt(d)
    y_t.backward(to_torch(dout))

    assert_close("Embedding", y, y_t)
    assert_close("Embedding", ours.weight.grad, theirs.weight.grad)
    assert not ours.weight.grad[pad].any(), "the padding row must get no gradient"


# --------------------------------------------------------------------------------------
# Layer norm
# --------------------------------------------------------------------------------------
def test_layer_norm(torch):
    rng = np.random.default_rng(2)
    d = 8
    ours = LayerNorm(d, eps=1e-5, dtype=np.float64)
    theirs = torch.nn.LayerNorm(d, eps=1e-5, dtype=torch.float64)
    randomise(ours.gamma, rng)
    ours.gamma.data += 1.0
    randomise(ours.beta, rng)
    copy_(theirs.weight, ours.gamma.data)
    copy_(theirs.bias, ours.beta.data)

    x = 3.0 * rng.normal(size=(3, 6, d)) + 1.5   # a mean and a scale for the norm to remove
    dout = rng.normal(size=x.shape)
    y = ours.forward(x)
    dx = ours.backward(dout)

    x_t = to_torch(x, requires_grad=True)
    y_t = theirs(x_t)
    y_t.backward(to_torch(dout))

    assert_close("LayerNorm", y, y_t)
    assert_close("LayerNorm", dx, x_t.grad)
    assert_close("LayerNorm", ours.gamma.grad, theirs.weight.grad)
    assert_close("LayerNorm", ours.beta.grad, theirs.bias.grad)


# --------------------------------------------------------------------------------------
# Activations and softmax
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ReLU", "GELU", "Softmax"])
def test_elementwise(torch, name):
    ours, theirs = {
        "ReLU": (ReLU(), torch.nn.ReLU()),
        "GELU": (GELU(), torch.nn.GELU(approximate="tanh")),
        "Softmax": (Softmax(), torch.nn.Softmax(dim=-1)),
    }[name]
    rng = np.random.default_rng(3)
    x = 3.0 * rng.normal(size=(3, 5, 8))
    dout = rng.normal(size=x.shape)
    y = ours.forward(x)
    dx = ours.backward(dout)

    x_t = to_torch(x, requires_grad=True)
    y_t = theirs(x_t)
    y_t.backward(to_torch(dout))

    assert_close(name, y, y_t)
    assert_close(name, dx, x_t.grad)


# --------------------------------------------------------------------------------------
# Multi-head attention
# --------------------------------------------------------------------------------------
D_MODEL, N_HEADS, BATCH = 8, 2, 3


def make_attention_pair(torch, rng):
    """Our MultiHeadAttention and torch's, in train mode, with the same (random) weights."""
    ours = MultiHeadAttention(D_MODEL, N_HEADS, rng=rng, dtype=np.float64)
    randomise(ours.b_in, rng)
    randomise(ours.b_out, rng)
    theirs = torch.nn.MultiheadAttention(D_MODEL, N_HEADS, dropout=0.0, batch_first=True,
                                         dtype=torch.float64)
    copy_(theirs.in_proj_weight, ours.w_in.data.T)
    copy_(theirs.in_proj_bias, ours.b_in.data)
    copy_(theirs.out_proj.weight, ours.w_out.data.T)
    copy_(theirs.out_proj.bias, ours.b_out.data)
    ours.train()
    theirs.train()
    return ours, theirs


def key_padding(lengths, t_k):
    """(B, Tk) bool, True at real keys and False at padding."""
    return np.arange(t_k)[None, :] < np.asarray(lengths)[:, None]


# (t_q, t_k or None for self-attention, causal?, key lengths or None)
ATTENTION_CASES = {
    "self_causal": (6, None, True, None),
    "self_key_padding": (7, None, False, [7, 4, 2]),
    "self_causal_and_key_padding": (6, None, True, [6, 3, 5]),
    "cross_key_padding": (5, 7, False, [7, 3, 5]),
}


@pytest.mark.parametrize("case", list(ATTENTION_CASES))
def test_multi_head_attention(torch, case):
    t_q, t_k, causal, lengths = ATTENTION_CASES[case]
    cross = t_k is not None
    t_k = t_k if cross else t_q
    rng = np.random.default_rng(4)
    ours, theirs = make_attention_pair(torch, rng)

    x_q = rng.normal(size=(BATCH, t_q, D_MODEL))
    x_kv = rng.normal(size=(BATCH, t_k, D_MODEL)) if cross else None
    dout = rng.normal(size=(BATCH, t_q, D_MODEL))

    # Our mask, True = may attend, broadcast to (B, H, Tq, Tk); torch's two masks, True = blocked.
    mask = np.ones((1, 1, t_q, t_k), dtype=bool)
    attn_mask = key_padding_mask = None
    if causal:
        allowed = np.tril(np.ones((t_q, t_k), dtype=bool))
        mask = mask & allowed
        attn_mask = to_torch(~allowed)
    if lengths is not None:
        valid = key_padding(lengths, t_k)
        mask = mask & valid[:, None, None, :]
        key_padding_mask = to_torch(~valid)
    assert mask.any(axis=-1).all(), "every query must see at least one key (torch gives NaN otherwise)"

    # Ours.
    y = ours.forward(x_q, x_kv, mask=mask)
    weights = ours.attention_weights.copy()
    dx_q, dx_kv = ours.backward(dout)

    # Theirs: train mode and need_weights=False with inputs that need gradients, so the
    # inference fast path is never taken and autograd sees the plain computation.
    xq_t = to_torch(x_q, requires_grad=True)
    xkv_t = to_torch(x_kv, requires_grad=True) if cross else xq_t
    y_t, none = theirs(xq_t, xkv_t, xkv_t, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                       need_weights=False)
    assert none is None
    y_t.backward(to_torch(dout))

    assert_close("MultiHeadAttention", y, y_t)
    assert_close("MultiHeadAttention", dx_q, xq_t.grad)
    if cross:
        assert_close("MultiHeadAttention", dx_kv, xkv_t.grad)
    else:
        assert dx_kv is None
    assert_close("MultiHeadAttention", ours.w_in.grad, theirs.in_proj_weight.grad.T)
    assert_close("MultiHeadAttention", ours.b_in.grad, theirs.in_proj_bias.grad)
    assert_close("MultiHeadAttention", ours.w_out.grad, theirs.out_proj.weight.grad.T)
    assert_close("MultiHeadAttention", ours.b_out.grad, theirs.out_proj.bias.grad)

    # The attention weights, per head, from a second forward pass that asks for them.
    with torch.no_grad():
        _, weights_t = theirs(xq_t, xkv_t, xkv_t, key_padding_mask=key_padding_mask,
                              attn_mask=attn_mask, need_weights=True, average_attn_weights=False)
    assert_close("MultiHeadAttention weights", weights, weights_t)
    assert not weights[~np.broadcast_to(mask, weights.shape)].any(), "masked keys must get weight 0"


# --------------------------------------------------------------------------------------
# Feed-forward
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feed_forward(torch, activation):
    rng = np.random.default_rng(5)
    d, d_ff = 8, 16
    ours = FeedForward(d, d_ff, activation=activation, dropout=0.0, rng=rng, dtype=np.float64)
    randomise(ours.linear1.bias, rng)
    randomise(ours.linear2.bias, rng)
    act = torch.nn.ReLU() if activation == "relu" else torch.nn.GELU(approximate="tanh")
    theirs = torch.nn.Sequential(torch.nn.Linear(d, d_ff, dtype=torch.float64), act,
                                 torch.nn.Linear(d_ff, d, dtype=torch.float64))
    for mine, twin in ((ours.linear1, theirs[0]), (ours.linear2, theirs[2])):
        copy_(twin.weight, mine.weight.data.T)
        copy_(twin.bias, mine.bias.data)

    x = rng.normal(size=(3, 5, d))
    dout = rng.normal(size=x.shape)
    y = ours.forward(x)
    dx = ours.backward(dout)

    x_t = to_torch(x, requires_grad=True)
    y_t = theirs(x_t)
    y_t.backward(to_torch(dout))

    name = f"FeedForward ({activation})"
    assert_close(name, y, y_t)
    assert_close(name, dx, x_t.grad)
    for mine, twin in ((ours.linear1, theirs[0]), (ours.linear2, theirs[2])):
        assert_close(name, mine.weight.grad, twin.weight.grad.T)
        assert_close(name, mine.bias.grad, twin.bias.grad)


# --------------------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ignore_index, label_smoothing",
                         [(0, 0.1), (None, 0.0), (0, 0.0), (None, 0.1)])
def test_cross_entropy(torch, ignore_index, label_smoothing):
    rng = np.random.default_rng(6)
    batch, t, vocab = 3, 6, 10
    logits = 2.0 * rng.normal(size=(batch, t, vocab))
    targets = rng.integers(1, vocab, size=(batch, t))
    targets[0, -2:] = 0        # padding (ignored when ignore_index=0, a class otherwise)
    targets[2, -4:] = 0
    dloss = 0.7                # a non-unit upstream gradient

    ours = CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=label_smoothing)
    loss = ours.forward(logits, targets)
    dlogits = ours.backward(dloss)

    theirs = torch.nn.CrossEntropyLoss(
        ignore_index=-100 if ignore_index is None else ignore_index, label_smoothing=label_smoothing)
    logits_t = to_torch(logits, requires_grad=True)
    loss_t = theirs(logits_t.reshape(-1, vocab), to_torch(targets).reshape(-1))
    loss_t.backward(torch.tensor(dloss, dtype=torch.float64))

    assert_close("CrossEntropyLoss", np.asarray(loss, dtype=np.float64), loss_t)
    assert_close("CrossEntropyLoss", dlogits, logits_t.grad)
    if ignore_index is not None:
        assert not dlogits[targets == ignore_index].any(), "ignored positions must get no gradient"


# --------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------
def test_dropout_eval_is_identity(torch):
    rng = np.random.default_rng(7)
    ours = Dropout(0.3, rng=backend.default_rng(0)).eval()
    theirs = torch.nn.Dropout(0.3).eval()
    x = rng.normal(size=(3, 5, 8))
    dout = rng.normal(size=x.shape)
    y = ours.forward(x)
    dx = ours.backward(dout)

    x_t = to_torch(x, requires_grad=True)
    y_t = theirs(x_t)
    y_t.backward(to_torch(dout))

    assert_close("Dropout (eval)", y, y_t)
    assert_close("Dropout (eval)", dx, x_t.grad)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dout)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropout_train_statistics(p):
    """Train mode (no PyTorch needed): about 1 - p of the units survive, scaled by 1/P(keep).

    On the CPU the mask compares 16 random bits with round(p * 2**16), so P(keep) is
    1 - round(p * 2**16) / 2**16, within 1e-5 of 1 - p, and the scale is exactly its inverse
    (which keeps E[y] = x exactly)."""
    n = 200 * 500
    ours = Dropout(p, rng=backend.default_rng(123))
    x = np.random.default_rng(8).uniform(0.5, 1.5, size=(200, 500))   # never 0: a zero means dropped
    dout = np.random.default_rng(9).normal(size=x.shape)
    y = ours.forward(x)
    dx = ours.backward(dout)

    p_keep = 1 - round(p * 65536) / 65536
    assert abs(p_keep - (1 - p)) < 1e-5
    kept = y != 0
    kept_fraction = kept.mean()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept_fraction - (1 - p)) < 5 * sigma, (kept_fraction, 1 - p)
    np.testing.assert_allclose(y[kept], x[kept] / p_keep, rtol=1e-14, atol=0)
    # The same units are dropped and scaled on the way back.
    np.testing.assert_array_equal(dx != 0, kept)
    np.testing.assert_allclose(dx[kept], dout[kept] / p_keep, rtol=1e-14, atol=0)
    # Inverted dropout keeps the expectation: mean(y) ~ mean(x), Var(y_i) = x_i^2 p / (1 - p).
    assert abs(y.mean() - x.mean()) < 5 * math.sqrt((x * x).mean() * p / (1 - p) / n)
