"""The fast path equals the reference path: output and every gradient, function by function.

Every function of :mod:`minitransformer.fast` is run next to the textbook function of
:mod:`minitransformer.functional` it replaces, in float64, on random shapes with padding
masks, causal masks, fully masked rows and dropout (the same seed on both sides, so the
same masks), and the worst relative error (:func:`~minitransformer.gradcheck.relative_error`)
must be at most 1e-12. The fast functions are gradient-checked on their own as well; a
small Transformer trains the same on both paths; and the number of threads changes no bit.
``pytest -s`` prints the worst error seen per function.
"""
from __future__ import annotations

import numpy as np
import pytest

from minitransformer import cpu, fast
from minitransformer import functional as F
from minitransformer import nn
from minitransformer.backend import default_rng
from minitransformer.fast import attention as fast_attention
from minitransformer.gradcheck import check_function, check_module, relative_error
from minitransformer.losses import CrossEntropyLoss
from minitransformer.module import MATH_ENV_VAR
from minitransformer.optim import Adam
from minitransformer.transformer import Transformer, TransformerConfig
from records import print_worst

SAME = 1e-12     # fast vs reference, float64: only the order of additions differs
TOL = 1e-7       # finite differences, as in tests/test_gradcheck_layers.py

#: The worst relative error of fast against reference, per function: a record, printed by
#: ``pytest -s``; the check is the assertion in :func:`assert_same`.
WORST: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_worst_errors():
    yield
    print_worst("worst relative error, fast path against reference path", dict(sorted(WORST.items())))


def assert_same(function, fast_values, reference_values):
    """Each fast array equals its reference to SAME (relative to the array's largest entry)."""
    fast_values, reference_values = tuple(fast_values), tuple(reference_values)
    assert len(fast_values) == len(reference_values)
    for i, (got, want) in enumerate(zip(fast_values, reference_values)):
        if want is None:
            assert got is None, f"{function}[{i}]: fast gives an array where the reference gives None"
            continue
        assert got.shape == want.shape and got.dtype == want.dtype, f"{function}[{i}]"
        err = relative_error(got, want)
        WORST[function] = max(WORST.get(function, 0.0), err)
        assert err <= SAME, f"{function}[{i}]: relative error {err:.2e} > {SAME:g}"


@pytest.fixture
def small_slices(monkeypatch):
    """Batched attention cut into slices of a few sequences at the test shapes."""
    monkeypatch.setattr(fast_attention, "SCORES_PER_SLICE", 100)


def _masks(b, t):
    """Named masks for (b, heads, t, t) scores: True where a query may look."""
    padding = np.ones((b, 1, 1, t), dtype=bool)
    padding[1, ..., t - 2:] = False
    causal = np.tril(np.ones((t, t), dtype=bool))
    blocked = np.broadcast_to(padding & causal, (b, 1, t, t)).copy()
    blocked[0, :, 2, :] = False            # a query that may look at nothing
    blocked[b - 1, :, t - 1, :] = False
    return {"no mask": None, "padding": padding, "causal": causal, "fully masked rows": blocked}


MASKS = list(_masks(4, 6))


def _qkv(rng, b=4, h=2, tq=6, tk=6, d=3, size=1.0):
    return tuple(rng.standard_normal(shape) * size for shape in
                 [(b, h, tq, d), (b, h, tk, d), (b, h, tk, d)])


# --------------------------------------------------------------------------------------
# Function by function
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, bias", [((4, 5), True), ((2, 3, 5), True), ((2, 3, 5), False)])
def test_linear(rng, shape, bias):
    x, w = rng.standard_normal(shape), rng.standard_normal((5, 7))
    b = rng.standard_normal(7) if bias else None
    dy = rng.standard_normal(shape[:-1] + (7,))
    (y, c), (y_ref, c_ref) = fast.linear_forward(x, w, b), F.linear_forward(x, w, b)
    assert_same("linear", (y,) + fast.linear_backward(dy, c), (y_ref,) + F.linear_backward(dy, c_ref))
    inputs = {"x": x, "w": w, "b": rng.standard_normal(7)}
    check_function(fast.linear_forward, fast.linear_backward, inputs).assert_ok(TOL)


def test_layer_norm(rng):
    x, gamma, beta, dy = (rng.standard_normal(s) for s in [(3, 4, 9), (9,), (9,), (3, 4, 9)])
    x[0, 0] *= 100.0
    (y, c), (y_ref, c_ref) = fast.layer_norm_forward(x, gamma, beta), F.layer_norm_forward(x, gamma, beta)
    assert_same("layer_norm", (y,) + fast.layer_norm_backward(dy, c), (y_ref,) + F.layer_norm_backward(dy, c_ref))
    check_function(fast.layer_norm_forward, fast.layer_norm_backward,
                   {"x": x, "gamma": gamma, "beta": beta}).assert_ok(TOL)


@pytest.mark.parametrize("p, training", [(0.0, True), (0.4, True), (0.4, False)])
def test_relu_dropout_linear(rng, p, training):
    """The feed-forward's fused pair against the reference's relu, dropout and linear."""
    h, w, b = rng.standard_normal((2, 5, 8)), rng.standard_normal((8, 3)), rng.standard_normal(3)
    dy = rng.standard_normal((2, 5, 3))
    y, cache = fast.relu_dropout_linear_forward(h, w, b, p, np.random.default_rng(5), training)
    a, ca = F.relu_forward(h)
    d, cd = F.dropout_forward(a, p, np.random.default_rng(5), training)
    y_ref, cl = F.linear_forward(d, w, b)
    dd, dw_ref, db_ref = F.linear_backward(dy, cl)
    dh_ref = F.relu_backward(F.dropout_backward(dd, cd), ca)
    assert_same("relu_dropout_linear", (y,) + fast.relu_dropout_linear_backward(dy, cache),
                (y_ref, dh_ref, dw_ref, db_ref))
    if p and training:
        assert not np.allclose(y, F.linear_forward(a, w, b)[0])   # the mask did drop units
    h[np.abs(h) < 1e-3] = 0.5   # away from ReLU's kink, where no derivative exists

    def forward(h, w, b):
        return fast.relu_dropout_linear_forward(h, w, b, p, np.random.default_rng(5), training)

    check_function(forward, fast.relu_dropout_linear_backward, {"h": h, "w": w, "b": b}).assert_ok(TOL)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("mask_name", MASKS)
@pytest.mark.parametrize("size", [1.0, 30.0])
def test_attention(rng, mask_name, dropout, size):
    """Size 30 makes scores too large to skip the softmax's max shift: both branches run."""
    mask = _masks(4, 6)[mask_name]
    q, k, v = _qkv(rng, size=size)
    dout = rng.standard_normal(q.shape)

    def run(module, forward):
        out, cache = forward(q, k, v, mask, dropout, default_rng(3))
        return out, cache, module.attention_backward(dout, cache)

    out, cache, grads = run(fast, fast.attention_forward)
    out_ref, cache_ref, grads_ref = run(F, F.attention_forward)
    assert np.isfinite(out).all()
    assert_same("attention", (out, fast.attention_weights(cache)) + grads,
                (out_ref, cache_ref.weights) + grads_ref)
    if mask_name == "fully masked rows":
        assert not fast.attention_weights(cache)[0, :, 2].any() and not out[0, :, 2].any()
    if size == 1.0:
        check_function(lambda q, k, v: fast.attention_forward(q, k, v, mask, dropout, default_rng(3)),
                       fast.attention_backward, {"q": q, "k": k, "v": v}).assert_ok(TOL)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("mask_name", MASKS)
def test_batched_attention_in_slices(rng, small_slices, n_threads, mask_name):
    mask = _masks(4, 6)[mask_name]
    cpu.use_threads(n_threads)
    q, k, v = _qkv(rng)
    dout = rng.standard_normal(q.shape)
    out, cache = fast.batched_attention_forward(q, k, v, mask, 0.3, default_rng(3))
    assert len(cache.slices) == 3          # 2 heads x 6 x 6 = 72 scores a sequence, 100 a slice
    out_ref, cache_ref = F.attention_forward(q, k, v, mask, 0.3, default_rng(3))
    assert_same("batched_attention", (out, fast.batched_attention_weights(cache))
                + fast.batched_attention_backward(dout, cache),
                (out_ref, cache_ref.weights) + F.attention_backward(dout, cache_ref))
    check_function(lambda q, k, v: fast.batched_attention_forward(q, k, v, mask, 0.3, default_rng(3)),
                   fast.batched_attention_backward, {"q": q, "k": k, "v": v}).assert_ok(TOL)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("mask_name", MASKS)
def test_multi_head_attention(rng, small_slices, cross, mask_name):
    mask = _masks(4, 6)[mask_name]
    d, heads = 8, 2
    x_q = rng.standard_normal((4, 6, d))
    x_kv = rng.standard_normal((4, 6, d)) if cross else None
    params = [rng.standard_normal(s) for s in [(d, 3 * d), (3 * d,), (d, d), (d,)]]
    dout = rng.standard_normal((4, 6, d))

    def run(module):
        out, cache = module.multi_head_attention_forward(x_q, x_kv, *params, heads, mask, 0.2, default_rng(4))
        return out, cache, module.multi_head_attention_backward(dout, cache)

    out, cache, grads = run(fast)
    out_ref, cache_ref, grads_ref = run(F)
    assert_same("multi_head_attention", (out, fast.multi_head_attention_weights(cache)) + grads,
                (out_ref, F.multi_head_attention_weights(cache_ref)) + grads_ref)


@pytest.mark.parametrize("path", ["fast", "reference"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layers_gradient_check_on_both_paths(rng, path, activation):
    """The modules' own wiring (the fused feed-forward pair, the attention cache) on each path."""
    ffn = nn.FeedForward(6, 10, activation=activation, rng=rng, dtype=np.float64).use_math(path)
    check_module(ffn, rng.standard_normal((2, 3, 6))).assert_ok(TOL)
    mha = nn.MultiHeadAttention(8, 2, rng=rng, dtype=np.float64).use_math(path)
    mask = _masks(3, 5)["fully masked rows"]
    check_module(mha, rng.standard_normal((3, 5, 8)), mask=mask).assert_ok(TOL)
    assert mha.forward(rng.standard_normal((3, 5, 8)), mask=mask).shape == (3, 5, 8)
    assert not mha.attention_weights[0, :, 2].any()


# --------------------------------------------------------------------------------------
# The switch, and the whole model on each path
# --------------------------------------------------------------------------------------
def _model(path=None, dtype="float64", attention_dropout=0.1):
    config = TransformerConfig(src_vocab_size=11, tgt_vocab_size=9, d_model=16, n_heads=2, d_ff=32,
                               n_encoder_layers=2, n_decoder_layers=2, dropout=0.2,
                               attention_dropout=attention_dropout, max_len=16, dtype=dtype, seed=3)
    model = Transformer(config)
    return model if path is None else model.use_math(path)


def _batch():
    rng = np.random.default_rng(8)
    src, tgt = rng.integers(1, 11, (6, 9)), rng.integers(1, 9, (6, 8))
    src[1, 6:] = 0   # padding
    tgt[2, 5:] = 0
    return src, tgt[:, :-1], tgt[:, 1:]


def _train(model, steps=4):
    """A few Adam steps; the parameters and the losses after them."""
    src, tgt_in, tgt_out = _batch()
    optimizer, criterion, losses = Adam(model.parameters(), lr=1e-2), CrossEntropyLoss(ignore_index=0), []
    for _ in range(steps):
        model.zero_grad()
        losses.append(float(criterion.forward(model.forward(src, tgt_in), tgt_out)))
        model.backward(criterion.backward())
        optimizer.step()
    return model.state_dict(), losses


def test_use_math_switches_every_layer_and_the_reference_path_never_calls_fast(monkeypatch):
    model = _model("reference")
    assert {m.math_path for _, m in model.named_modules()} == {"reference"}

    def refuse(*args, **kwargs):
        raise AssertionError("the reference path called a fast function")

    for name in fast.__all__:
        if callable(getattr(fast, name)):
            monkeypatch.setattr(fast, name, refuse)
    _train(model, steps=1)
    with pytest.raises(AssertionError, match="fast function"):
        _train(model.use_math("fast"), steps=1)
    with pytest.raises(ValueError, match="'fast' or 'reference'"):
        model.use_math("quick")


def test_the_environment_variable_picks_the_path_of_modules_being_built(monkeypatch):
    assert nn.Linear(2, 3).math_path == "fast"
    monkeypatch.setenv(MATH_ENV_VAR, "reference")
    assert {m.math_path for _, m in _model().named_modules()} == {"reference"}
    monkeypatch.setenv(MATH_ENV_VAR, "quick")
    with pytest.raises(ValueError, match="MINITRANSFORMER_MATH='quick'.*'fast' or 'reference'"):
        nn.LayerNorm(4)


def test_a_backward_pass_runs_the_path_its_forward_ran(rng):
    layer = nn.LayerNorm(5, dtype=np.float64)
    x, dy = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    layer.forward(x)
    layer.use_math("reference")
    dx = layer.backward(dy)
    _, cache = fast.layer_norm_forward(x, layer.gamma.data, layer.beta.data)
    np.testing.assert_array_equal(dx, fast.layer_norm_backward(dy, cache)[0])


def _key_bias_apart(params, d_model=16):
    """The parameters with each attention's key bias b_in[d:2d] taken out, and those biases.

    The key bias adds the same number to every score of a row, which the softmax ignores:
    its gradient is 0, computed as rounding noise (1e-17) that differs between the paths,
    and Adam's first steps move it by lr * g / (|g| + eps), which turns that noise into
    differences of 1e-9 (lr / eps = 1e6 times it). Elsewhere nothing reads it."""
    rest, key_biases = {}, {}
    for name, value in params.items():
        if name.endswith("attn.b_in"):
            key_biases[name] = value[d_model:2 * d_model]
            value = np.concatenate([value[:d_model], value[2 * d_model:]])
        rest[name] = value
    return rest, key_biases


def test_a_transformer_trains_the_same_on_both_paths():
    """Same seed, dropout on (embeddings, sub-layers, feed-forward, attention weights):
    the same masks on both paths, so the same gradients and parameters after Adam steps."""
    fast_model, ref_model = _model("fast"), _model("reference")
    _train(fast_model, steps=1)
    _train(ref_model, steps=1)
    for (name, p), (_, p_ref) in zip(fast_model.named_parameters(), ref_model.named_parameters()):
        assert_same("Transformer, gradients of one step", (p.grad,), (p_ref.grad,))
    fast_params, fast_losses = _train(fast_model)
    ref_params, ref_losses = _train(ref_model)
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-12)
    assert fast_losses[-1] < fast_losses[0]
    (fast_params, fast_keys), (ref_params, ref_keys) = _key_bias_apart(fast_params), _key_bias_apart(ref_params)
    for name in ref_params:
        assert_same("Transformer, parameters after 5 Adam steps", (fast_params[name],), (ref_params[name],))
        if name in ref_keys:
            np.testing.assert_allclose(fast_keys[name], ref_keys[name], rtol=0, atol=1e-7)


def test_same_seed_same_bits_whatever_the_number_of_threads(small_slices):
    """Attention in slices, dropout on: 1 thread and 2 threads give bit-identical parameters."""
    results = []
    for n_threads in (1, 2):
        cpu.use_threads(n_threads)
        results.append(_train(_model("fast", dtype="float32", attention_dropout=0.3), steps=3)[0])
    cpu.use_threads(None)
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
