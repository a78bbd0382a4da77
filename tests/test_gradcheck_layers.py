"""Every layer and the loss, gradient-checked by finite differences in float64, with the
layers on the fast path and on the reference path.

Each check covers the layer's inputs and every parameter, on random shapes, and the
worst relative error must stay below 1e-7 (a correct backward pass gives about 1e-9 to
1e-11; a wrong one 1e-3 or worse, see ``test_checker_catches_a_wrong_derivative``).
"""
import numpy as np
import pytest

from minitransformer import fast
from minitransformer import functional as F
from minitransformer import nn
from minitransformer.fast.attention import _needs_max_shift
from minitransformer.gradcheck import check_function, check_module, relative_error
from minitransformer.losses import (CrossEntropyLoss, softmax_cross_entropy_backward,
                                    softmax_cross_entropy_forward)

TOL = 1e-7
F64 = np.float64


@pytest.fixture(autouse=True, params=["fast", "reference"])
def math_path(request, monkeypatch):
    """Every layer is built on each path through the math (MINITRANSFORMER_MATH)."""
    monkeypatch.setenv("MINITRANSFORMER_MATH", request.param)
    return request.param


def _normal(xp, rng, *shape):
    return xp.asarray(rng.standard_normal(shape))


def test_linear(backend_name, xp, rng):
    for shape in [(4, 5), (2, 3, 5)]:
        layer = nn.Linear(5, 3, rng=rng, dtype=F64, backend=backend_name)
        check_module(layer, _normal(xp, rng, *shape)).assert_ok(TOL)


def test_linear_without_bias(backend_name, xp, rng):
    layer = nn.Linear(4, 6, bias=False, rng=rng, dtype=F64, backend=backend_name)
    report = check_module(layer, _normal(xp, rng, 2, 3, 4)).assert_ok(TOL)
    assert set(report.errors) == {"input[0]", "weight"}


@pytest.mark.parametrize("scale", [False, True])
def test_embedding(backend_name, xp, rng, scale):
    layer = nn.Embedding(9, 4, scale=scale, rng=rng, dtype=F64, backend=backend_name)
    ids = xp.asarray(rng.integers(0, 9, (3, 6)))
    check_module(layer, ids).assert_ok(TOL)


def test_embedding_padding_row_gets_no_gradient(backend_name, xp, rng):
    pad = 0
    layer = nn.Embedding(7, 4, padding_idx=pad, rng=rng, dtype=F64, backend=backend_name)
    ids = rng.integers(1, 7, (3, 6))
    ids[:, -2:] = pad
    dy = rng.standard_normal((3, 6, 4))
    layer.forward(xp.asarray(ids))
    layer.backward(xp.asarray(dy))
    expected = np.zeros((7, 4))
    np.add.at(expected, ids, dy)  # each row: the sum of dy over its occurrences
    expected[pad] = 0.0
    grad = np.asarray(layer.weight.grad.tolist())
    assert np.all(grad[pad] == 0.0)
    assert relative_error(grad, expected) < TOL


@pytest.mark.parametrize("learned", [False, True])
def test_positional_encoding(backend_name, xp, rng, learned):
    layer = nn.PositionalEncoding(6, max_len=10, learned=learned, rng=rng, dtype=F64, backend=backend_name)
    check_module(layer, _normal(xp, rng, 2, 7, 6)).assert_ok(TOL)
    check_module(layer, _normal(xp, rng, 2, 3, 6), start=4).assert_ok(TOL)


def test_layer_norm(backend_name, xp, rng):
    layer = nn.LayerNorm(7, dtype=F64, backend=backend_name)
    layer.gamma.data[...] = _normal(xp, rng, 7)
    layer.beta.data[...] = _normal(xp, rng, 7)
    check_module(layer, _normal(xp, rng, 3, 4, 7)).assert_ok(TOL)


@pytest.mark.parametrize("layer_cls", [nn.ReLU, nn.GELU, nn.Softmax])
def test_elementwise(backend_name, xp, rng, layer_cls):
    x = _normal(xp, rng, 3, 4, 6)
    if layer_cls is nn.ReLU:
        x[abs(x) < 1e-3] = 0.5  # stay away from the kink at 0, where no derivative exists
    check_module(layer_cls(), x).assert_ok(TOL)


def test_dropout_with_a_fixed_mask(backend_name, xp, rng):
    from minitransformer.backend import default_rng

    def forward(x):
        return F.dropout_forward(x, 0.3, default_rng(7, backend_name))

    report = check_function(forward, F.dropout_backward, {"x": _normal(xp, rng, 4, 5)})
    report.assert_ok(TOL)


def _mha(backend_name, rng, d=8, heads=2):
    return nn.MultiHeadAttention(d, heads, rng=rng, dtype=F64, backend=backend_name)


def test_attention_self_no_mask(backend_name, xp, rng):
    check_module(_mha(backend_name, rng), _normal(xp, rng, 3, 5, 8)).assert_ok(TOL)


def test_attention_self_causal_and_padding(backend_name, xp, rng):
    b, t = 3, 6
    causal = xp.tril(xp.ones((t, t), dtype=bool))
    keep = xp.ones((b, t), dtype=bool)
    keep[0, 4:] = False
    keep[2, 2:] = False
    mask = causal[None, None] & keep[:, None, None, :]
    check_module(_mha(backend_name, rng), _normal(xp, rng, b, t, 8), mask=mask).assert_ok(TOL)


def test_attention_fully_masked_row_gives_zeros_not_nan(backend_name, xp, rng):
    b, t = 2, 5
    mask = xp.ones((b, 1, t, t), dtype=bool)
    mask[1, :, 3, :] = False  # query 3 of sequence 1 may look at nothing
    layer = _mha(backend_name, rng)
    x = _normal(xp, rng, b, t, 8)
    out = layer.forward(x, mask=mask)
    assert not bool(xp.isnan(out).any())
    weights = layer.attention_weights
    assert float(abs(weights[1, :, 3, :]).max()) == 0.0
    # a blocked query still gets the output bias (its attention output is zero)
    np.testing.assert_allclose(np.asarray(out[1, 3].tolist()), np.asarray(layer.b_out.data.tolist()))
    check_module(layer, x, mask=mask).assert_ok(TOL)


def test_attention_cross(backend_name, xp, rng):
    b, tq, tk = 3, 4, 7
    keep = xp.asarray(rng.random((b, 1, 1, tk)) > 0.3)
    keep[..., 0] = True
    report = check_module(_mha(backend_name, rng), _normal(xp, rng, b, tq, 8), _normal(xp, rng, b, tk, 8),
                          mask=keep)
    report.assert_ok(TOL)
    assert "input[1]" in report.errors


def test_attention_function_with_dropout_on_weights(backend_name, xp, rng):
    from minitransformer.backend import default_rng
    mask = xp.tril(xp.ones((5, 5), dtype=bool))

    def forward(q, k, v):
        return F.attention_forward(q, k, v, mask, 0.2, default_rng(3, backend_name))

    inputs = {n: _normal(xp, rng, 2, 2, 5, 4) for n in "qkv"}
    check_function(forward, F.attention_backward, inputs).assert_ok(TOL)


def test_reference_attention_is_the_formula(rng):
    """functional.attention_forward is softmax(q k^T / sqrt(d) + mask) v, written out here
    once more with NumPy alone."""
    q, k, v = (rng.standard_normal((3, 2, 5, 4)) for _ in range(3))
    mask = np.ones((3, 1, 5, 5), dtype=bool)
    mask[2, ..., 3:] = False
    scores = np.where(mask, q @ np.swapaxes(k, -1, -2) / 2.0, F.MASK_VALUE)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    out, cache = F.attention_forward(q, k, v, mask)
    np.testing.assert_allclose(out, weights @ v, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cache.weights, weights, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("size", [1.0, 30.0])
def test_fast_attention_skips_the_max_only_where_scores_are_small(rng, size):
    """Fast attention: scores bounded by SAFE_SCORE skip the softmax's max-subtraction; large
    ones keep it (without it, exp() of scores in the hundreds overflows to inf and the output
    is NaN). Matrix 0 of the batch gets large queries at size 30, so one call takes both paths."""
    q, k, v = (rng.standard_normal((3, 2, 5, 4)) for _ in range(3))
    q[0] *= size
    mask = np.ones((3, 1, 5, 5), dtype=bool)
    mask[2, ..., 3:] = False
    shift = _needs_max_shift(q / 2.0, k, mask.any(axis=-1, keepdims=True))
    assert shift.shape == (3, 2, 1, 1)
    assert bool(shift[0].all()) == (size > 1.0) and not bool(shift[1:].any())
    # with no more queries than features (decoding: one query), the bound would cost more
    # than the max it saves, and the max is always taken
    assert _needs_max_shift(q[..., :4, :] / 2.0, k, None) is True
    out, _ = fast.attention_forward(q, k, v, mask)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, F.attention_forward(q, k, v, mask)[0], rtol=1e-12, atol=1e-12)
    check_function(lambda q, k, v: fast.attention_forward(q, k, v, mask), fast.attention_backward,
                   {"q": q, "k": k, "v": v}).assert_ok(TOL)


class _FeedForwardWithFixedMasks(nn.FeedForward):
    """The same dropout masks at every forward pass, so finite differences see one function."""

    def forward(self, x):
        self.dropout.rng = np.random.default_rng(5)
        return super().forward(x)


@pytest.mark.parametrize("path", ["fast", "reference"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feed_forward_with_dropout_equals_its_sublayers_one_by_one(rng, activation, path):
    """On either path (on the fast one with ReLU, ReLU, dropout and W2 run as one pair), the
    output and every gradient are those of Linear, activation, Dropout, Linear written out."""
    layer = _FeedForwardWithFixedMasks(6, 10, activation=activation, dropout=0.4, rng=rng,
                                       dtype=F64).use_math(path)
    x = rng.standard_normal((2, 3, 6))
    dy = rng.standard_normal((2, 3, 6))
    out = layer.forward(x)
    layer.zero_grad()
    dx = layer.backward(dy)

    # the same layer, step by step
    h, c1 = F.linear_forward(x, layer.linear1.weight.data, layer.linear1.bias.data)
    a, ca = {"relu": F.relu_forward, "gelu": F.gelu_forward}[activation](h)
    d, cd = F.dropout_forward(a, 0.4, np.random.default_rng(5))
    expected, c2 = F.linear_forward(d, layer.linear2.weight.data, layer.linear2.bias.data)
    dd, dw2, db2 = F.linear_backward(dy, c2)
    da = F.dropout_backward(dd, cd)
    dh = {"relu": F.relu_backward, "gelu": F.gelu_backward}[activation](da, ca)
    expected_dx, dw1, db1 = F.linear_backward(dh, c1)

    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    for got, want in [(dx, expected_dx), (layer.linear2.weight.grad, dw2), (layer.linear2.bias.grad, db2),
                      (layer.linear1.weight.grad, dw1), (layer.linear1.bias.grad, db1)]:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert not np.allclose(out, layer.eval().forward(x))   # the masks did drop units
    check_module(layer.train(), x).assert_ok(TOL)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_feed_forward(backend_name, xp, rng, activation):
    layer = nn.FeedForward(6, 10, activation=activation, rng=rng, dtype=F64, backend=backend_name)
    check_module(layer, _normal(xp, rng, 2, 3, 6)).assert_ok(TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [None, 0])
def test_cross_entropy(backend_name, xp, rng, smoothing, ignore_index):
    targets = xp.asarray(rng.integers(0, 6, (4, 5)))
    targets[0, :2] = 0
    targets[1, 0] = 3

    def forward(logits):
        return softmax_cross_entropy_forward(logits, targets, ignore_index, smoothing)

    check_function(forward, softmax_cross_entropy_backward, {"logits": _normal(xp, rng, 4, 5, 6)}).assert_ok(TOL)


def test_cross_entropy_ignores_padding(rng):
    logits = rng.standard_normal((2, 3, 5))
    targets = np.array([[1, 2, 0], [3, 0, 0]])
    criterion = CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    loss = criterion.forward(logits, targets)
    dlogits = criterion.backward()
    assert np.all(dlogits[targets == 0] == 0)
    # only the three real targets count, and the mean divides by three
    # (one logit per padded row moved, not all of them: adding the same number to a whole row
    # leaves its softmax unchanged, and would not see a loss that counted padding)
    changed = logits.copy()
    changed[targets == 0, 3] += 5.0
    assert float(criterion.forward(changed, targets)) == pytest.approx(float(loss), abs=1e-12)
    assert float(CrossEntropyLoss(label_smoothing=0.1).forward(changed, targets)) != pytest.approx(
        float(CrossEntropyLoss(label_smoothing=0.1).forward(logits, targets)))   # a loss that counts them moves


def test_checker_catches_a_wrong_derivative(rng):
    """A gradient check that cannot fail proves nothing: feed it a classic mistake."""
    def wrong_softmax_backward(dp, cache):
        p = cache
        return dp * p * (1 - p)  # the diagonal of the Jacobian only

    report = check_function(F.softmax_forward, wrong_softmax_backward, {"x": rng.standard_normal((3, 5))})
    assert report.max_error > 1e-2
    with pytest.raises(AssertionError, match="gradient check failed"):
        report.assert_ok(TOL)


def test_checker_requires_float64(rng):
    layer = nn.Linear(3, 2, rng=rng)  # float32
    with pytest.raises(ValueError, match="float64"):
        check_module(layer, rng.standard_normal((2, 3)).astype(np.float32))
