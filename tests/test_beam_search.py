"""Beam search against references computed here, independently of ``decoding.py``.

The distribution decoding searches: at each position, the softmax of the model's logits
over every token except padding and the start token (neither is ever a valid output). A
hypothesis Y is its tokens followed by the end token, unless it ran to ``max_len`` tokens
without one; |Y| counts the end token. Its score is GNMT's (Wu et al., 2016)

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha.

Here log P(Y | X) comes from one teacher-forced ``model.forward`` over the whole
hypothesis, not from the KV-cached steps beam search takes.

"Beam search finds at least the greedy score" is *not* a property beam search has (a
hypothesis greedy keeps can fall out of the beam), so the tests check what does hold:
with a beam at least as wide as the set of all hypotheses, beam search is exhaustive and
must return the exact best; and the score it reports is the score of what it returns.
"""
import itertools

import numpy as np
import pytest

from minitransformer import Transformer, TransformerConfig
from minitransformer.decoding import beam_search, greedy_decode

PAD, BOS, EOS = 0, 1, 2


def random_model(tgt_vocab, seed, spread=0.5):
    model = Transformer(TransformerConfig(8, tgt_vocab, d_model=8, n_heads=2, d_ff=12, n_encoder_layers=1,
                                          n_decoder_layers=1, dropout=0.0, max_len=10, dtype="float64",
                                          seed=seed))
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data += rng.normal(0.0, spread, p.shape)
    return model.eval()


def log_probs(model, src_row, hypotheses):
    """log P(Y | X) of each hypothesis (a list of token lists, each ending with EOS unless
    cut at max_len), from one teacher-forced forward pass over all of them."""
    longest = max(len(y) for y in hypotheses)
    tgt_in = np.full((len(hypotheses), longest), PAD)
    for n, y in enumerate(hypotheses):
        tgt_in[n, :len(y)] = [BOS] + y[:-1]
    logits = model.forward(np.repeat(src_row[None], len(hypotheses), axis=0), tgt_in)
    logits[..., [PAD, BOS]] = -np.inf
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return np.array([sum(log_p[n, t, tok] for t, tok in enumerate(y)) for n, y in enumerate(hypotheses)])


def gnmt_score(log_p, length, alpha):
    return log_p / ((5.0 + length) / 6.0) ** alpha


def complete(seq, max_len):
    """The generated tokens of a returned hypothesis: with the end token, unless cut."""
    return seq + [EOS] if len(seq) < max_len else seq


def all_hypotheses(tokens, max_len):
    """Every sequence beam search can return: 0 .. max_len - 1 tokens then EOS, or max_len tokens."""
    hyps = [list(p) + [EOS] for n in range(max_len) for p in itertools.product(tokens, repeat=n)]
    return hyps + [list(p) for p in itertools.product(tokens, repeat=max_len)]


@pytest.mark.parametrize("alpha", [0.6, 1.5])
def test_scores_are_the_length_normalised_log_probabilities(alpha):
    model = random_model(tgt_vocab=6, seed=5)
    src = np.random.default_rng(100).integers(3, 8, (8, 5))
    max_len = 6
    beams, scores = beam_search(model, src, bos_id=BOS, eos_id=EOS, max_len=max_len, beam_width=3,
                                length_penalty=alpha, return_scores=True)
    lengths = {len(b) for b in beams}
    assert len(lengths) >= 3 and max(lengths) > 0, f"the hypotheses should differ in length, got {lengths}"
    for i, (seq, score) in enumerate(zip(beams, scores)):
        y = complete(seq, max_len)
        expected = gnmt_score(log_probs(model, src[i], [y])[0], len(y), alpha)
        assert score == pytest.approx(expected, rel=1e-10, abs=1e-12), f"source {i}: {seq}"


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
@pytest.mark.parametrize("max_len, width", [(2, 3), (3, 15)], ids=["width=vocabulary", "width=all"])
def test_a_beam_as_wide_as_the_search_space_finds_the_exact_best(alpha, max_len, width):
    """Three valid output tokens (EOS, 3, 4; padding and the start token are never output).
    With max_len = 3 there are 15 hypotheses, and a beam of 15 never drops one: beam search
    must return the best of all. With max_len = 2 a beam as wide as the valid vocabulary is
    enough: nothing is dropped at the first step, and a hypothesis dropped at the second has
    length 2, as have at least two of the three kept ones, which score at least as much
    log-probability under the same length penalty."""
    model = random_model(tgt_vocab=5, seed=4, spread=0.8)
    src = np.random.default_rng(3).integers(3, 8, (6, 4))
    hypotheses = all_hypotheses([3, 4], max_len)
    assert len(hypotheses) == {2: 7, 3: 15}[max_len]
    beams, scores = beam_search(model, src, bos_id=BOS, eos_id=EOS, max_len=max_len, beam_width=width,
                                length_penalty=alpha, return_scores=True)
    best_lengths = set()
    for i in range(len(src)):
        exact = gnmt_score(log_probs(model, src[i], hypotheses), np.array([len(y) for y in hypotheses]), alpha)
        best = int(np.argmax(exact))
        best_lengths.add(len(hypotheses[best]))
        assert complete(beams[i], max_len) == hypotheses[best], f"source {i}"
        assert scores[i] == pytest.approx(exact[best], rel=1e-10, abs=1e-12), f"source {i}"
        if alpha == 0.0:    # greedy is one of the hypotheses, so it can score no better
            greedy = complete(greedy_decode(model, src[i:i + 1], bos_id=BOS, eos_id=EOS, max_len=max_len)[0],
                              max_len)
            assert exact[hypotheses.index(greedy)] <= exact[best]
    assert len(best_lengths) >= 2, f"the best hypotheses should differ in length, got {best_lengths}"
