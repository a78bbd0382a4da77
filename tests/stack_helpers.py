"""Helpers shared by the encoder-only and decoder-only model tests."""
import numpy as np


def randomised(model, seed=0, scale=0.3):
    """``model`` with every parameter moved off its initial value: zero biases and unit norms
    would hide a gradient sent to the wrong place or a weight copied untransposed."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data += rng.normal(0.0, scale, p.shape)
    return model


def padded_ids(rng, first_id, vocab_size, lengths, length, pad_id=0):
    """Random token ids in [first_id, vocab_size), row b padded with ``pad_id`` after lengths[b]."""
    ids = rng.integers(first_id, vocab_size, (len(lengths), length))
    for row, n in zip(ids, lengths):
        row[n:] = pad_id
    return ids


#: The settings a whole-model gradient check covers: post-LN and pre-LN, tied and untied
#: (tied ones with GELU and sinusoids, untied ones with ReLU and learned positions).
GRADCHECK_VARIANTS = {
    f"{norm}-LN, {'tied' if tie else 'untied'}": dict(norm_first=norm == "pre", tie_embeddings=tie,
                                                      activation="gelu" if tie else "relu",
                                                      learned_positions=not tie)
    for norm in ("post", "pre") for tie in (True, False)
}
