"""Fast attention of a batch run slice by slice, on several threads: the same numbers as one call.

``SCORES_PER_SLICE`` is made tiny here, so that the small test batches are cut into
several slices (the real limit only cuts large batches). tests/test_fast_path.py checks
these functions against the reference path.
"""
import numpy as np
import pytest

from minitransformer import fast as F
from minitransformer.fast import attention as fast_attention
from minitransformer import nn
from minitransformer.backend import default_rng
from minitransformer.gradcheck import check_function, check_module

TOL = 1e-7


@pytest.fixture
def small_slices(monkeypatch):
    """Slices of at most 2 sequences at the shapes below (2 heads x 4 x 6 = 48 scores each)."""
    monkeypatch.setattr(fast_attention, "SCORES_PER_SLICE", 100)


@pytest.fixture(params=["2", "3"])
def threads(request, monkeypatch):
    """The slices run on more than one thread."""
    monkeypatch.setenv("MINITRANSFORMER_THREADS", request.param)
    return int(request.param)


def _inputs(dtype=np.float64, b=5, h=2, tq=4, tk=6, d=3, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, h, tq, d)).astype(dtype)
    k = rng.standard_normal((b, h, tk, d)).astype(dtype)
    v = rng.standard_normal((b, h, tk, d)).astype(dtype)
    keep = np.ones((b, 1, 1, tk), dtype=bool)
    keep[1, ..., 4:] = False
    keep[4, ..., 1:] = False
    return q, k, v, keep


def test_batch_slices_cover_the_batch_in_near_equal_pieces():
    slices = F.batch_slices(10, 30, limit=100)          # 300 scores -> 3 slices of <= 100
    assert [(s.start, s.stop) for s in slices] == [(0, 3), (3, 7), (7, 10)]
    assert F.batch_slices(10, 30, limit=10_000) == [slice(0, 10)]
    assert len(F.batch_slices(4, 1000, limit=10)) == 4   # never less than one item per slice


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sliced_attention_equals_one_call_bit_for_bit(small_slices, threads, dtype):
    q, k, v, keep = _inputs(dtype)
    mask = keep & np.tril(np.ones((4, 6), dtype=bool))[None, None]
    mask[2, :, 1, :] = False                              # a query that may look at nothing
    whole, whole_cache = F.attention_forward(q, k, v, mask)
    sliced, cache = F.batched_attention_forward(q, k, v, mask)
    assert len(cache.slices) == 3
    np.testing.assert_array_equal(sliced, whole)
    np.testing.assert_array_equal(F.batched_attention_weights(cache), F.attention_weights(whole_cache))
    dout = np.random.default_rng(1).standard_normal(whole.shape).astype(dtype)
    for got, expected in zip(F.batched_attention_backward(dout, cache), F.attention_backward(dout, whole_cache)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, expected)


def test_a_mask_shared_by_all_sequences_is_not_sliced(small_slices, threads):
    q, k, v, _ = _inputs(tk=4)
    causal = np.tril(np.ones((4, 4), dtype=bool))
    whole, _ = F.attention_forward(q, k, v, causal)
    sliced, _ = F.batched_attention_forward(q, k, v, causal)
    np.testing.assert_array_equal(sliced, whole)


def test_gradient_check_of_sliced_attention_with_dropout(small_slices, threads):
    q, k, v, keep = _inputs()

    def forward(q, k, v):   # the same seed each call: the same dropout masks
        return F.batched_attention_forward(q, k, v, keep, 0.2, default_rng(3))

    check_function(forward, F.batched_attention_backward, {"q": q, "k": k, "v": v}).assert_ok(TOL)


def test_dropout_masks_are_the_same_for_the_same_seed_and_threads(small_slices, threads):
    q, k, v, keep = _inputs(np.float32)
    first, second = (F.batched_attention_forward(q, k, v, keep, 0.3, default_rng(5))[0] for _ in range(2))
    np.testing.assert_array_equal(first, second)
    # and the masks do drop something: without dropout the output differs
    assert not np.array_equal(first, F.batched_attention_forward(q, k, v, keep)[0])


def test_the_cut_depends_on_the_shapes_not_on_the_threads(small_slices, monkeypatch):
    """Threads decide how many slices run at once, not how many there are: with one thread
    the batch is cut the same way, and dropout gives the same bits."""
    q, k, v, keep = _inputs()
    outs = []
    for n in ("1", "2"):
        monkeypatch.setenv("MINITRANSFORMER_THREADS", n)
        out, cache = F.batched_attention_forward(q, k, v, keep, 0.3, default_rng(5))
        assert len(cache.slices) == 3
        outs.append(out)
    np.testing.assert_array_equal(*outs)


def test_gradient_check_of_the_layer_with_sliced_attention(small_slices, threads):
    rng = np.random.default_rng(2)
    layer = nn.MultiHeadAttention(4, 2, rng=rng, dtype=np.float64)
    x_q = rng.standard_normal((5, 4, 4))
    x_kv = rng.standard_normal((5, 6, 4))
    _, _, _, keep = _inputs()
    check_module(layer, x_q, x_kv, mask=keep).assert_ok(TOL)
    layer.forward(x_q, x_kv, mask=keep)
    assert len(layer._cache[1].attention_cache.slices) == 3          # it really ran in slices
    assert layer.attention_weights.shape == (5, 2, 4, 6)
