"""The sinusoidal table against the paper's formula, written out independently.

Vaswani et al. (2017), section 3.5:

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

The reference below is two plain loops over ``pos`` and ``i`` with ``math.sin`` and
``math.cos``, nothing shared with the package's vectorised code.
"""
import math

import numpy as np
import pytest

from minitransformer import Transformer, TransformerConfig
from minitransformer.functional import sinusoidal_positional_encoding
from minitransformer.nn import PositionalEncoding


def paper_table(max_len, d_model):
    table = [[0.0] * d_model for _ in range(max_len)]
    for pos in range(max_len):
        for i in range((d_model + 1) // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            table[pos][2 * i] = math.sin(angle)
            if 2 * i + 1 < d_model:
                table[pos][2 * i + 1] = math.cos(angle)
    return np.array(table)


def test_one_row_worked_by_hand():
    """pos = 1, d = 4: the frequencies are 1/10000^0 = 1 and 1/10000^(2/4) = 1/100."""
    expected = [math.sin(1.0), math.cos(1.0), math.sin(0.01), math.cos(0.01)]
    np.testing.assert_allclose(sinusoidal_positional_encoding(2, 4)[1], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(paper_table(2, 4)[1], expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(sinusoidal_positional_encoding(2, 4)[0], [0.0, 1.0, 0.0, 1.0])


@pytest.mark.parametrize("max_len, d_model", [(50, 8), (20, 16), (7, 5), (3, 2)])
def test_table_matches_the_formula(max_len, d_model):
    np.testing.assert_allclose(sinusoidal_positional_encoding(max_len, d_model), paper_table(max_len, d_model),
                               rtol=0, atol=1e-12)


def test_layer_and_model_use_the_formula():
    layer = PositionalEncoding(8, max_len=12, dtype=np.float64)
    np.testing.assert_allclose(layer.positions, paper_table(12, 8), rtol=0, atol=1e-12)
    x = np.zeros((2, 5, 8))
    np.testing.assert_allclose(layer.forward(x, start=3), np.broadcast_to(paper_table(12, 8)[3:8], x.shape),
                               rtol=0, atol=1e-12)
    model = Transformer(TransformerConfig(5, 5, d_model=8, n_heads=2, d_ff=8, n_encoder_layers=1,
                                          n_decoder_layers=1, max_len=12, dtype="float64"))
    np.testing.assert_allclose(model.src_pos.positions, paper_table(12, 8), rtol=0, atol=1e-12)
    assert model.tgt_pos is model.src_pos
