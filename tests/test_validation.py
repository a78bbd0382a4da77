"""Tests for minitransformer.validation: the one token-id check every reader of ids uses."""
import numpy as np
import pytest

from minitransformer import nn
from minitransformer.losses import CrossEntropyLoss
from minitransformer.validation import check_token_ids
from minitransformer.vocab import Vocabulary


def test_good_ids_pass_silently():
    check_token_ids("ids", np.array([[0, 4], [2, 3]]), 5)
    check_token_ids("ids", np.zeros((0, 3), dtype=np.int32), 5)          # empty: nothing to check
    check_token_ids("ids", np.array([-100, 4, -100]), 5, ignore_index=-100)
    check_token_ids("ids", np.full(3, -100), 5, ignore_index=-100)       # all ignored


@pytest.mark.parametrize("ids, lo, hi, first, where", [
    (np.array([[1, 2], [7, -1]]), -1, 7, 7, r"\(1, 0\)"),
    (np.array([4, 5, 5]), 4, 5, 5, "1"),
    (np.array([[[0], [9]]]), 0, 9, 9, r"\(0, 1, 0\)"),
])
def test_message_names_the_range_and_the_first_bad_id(ids, lo, hi, first, where):
    with pytest.raises(ValueError, match=rf"^ids: token ids from {lo} to {hi}, but valid ids are 0 to 4 "
                                         rf"\(vocabulary size 5\); token id {first} at position {where} "
                                         r"\(counted from 0\) is out of range$"):
        check_token_ids("ids", ids, 5)


def test_ignored_ids_are_skipped_but_others_are_not():
    ids = np.array([[-100, 2], [-100, 6]])
    with pytest.raises(ValueError, match=r"from 2 to 6, .*ignore_index=-100 are skipped.* token id 6 at "
                                         r"position \(1, 1\)"):
        check_token_ids("targets", ids, 5, ignore_index=-100)


@pytest.mark.parametrize("ids", [np.array([0.0, 1.0]), np.array([True, False]), [0, 1]])
def test_non_integer_ids_are_refused(ids):
    with pytest.raises(ValueError, match="ids: token ids must be integers.*astype"):
        check_token_ids("ids", ids, 5)


def test_every_reader_of_ids_uses_the_one_check():
    """The embedding, the loss and the vocabulary all give the same message for the same mistake."""
    tail = r"token ids from 0 to 9, but valid ids are 0 to 7 \(vocabulary size 8"
    with pytest.raises(ValueError, match="Embedding: " + tail):
        nn.Embedding(8, 4, rng=0).forward(np.array([[0, 9]]))
    with pytest.raises(ValueError, match="targets: " + tail):
        CrossEntropyLoss().forward(np.zeros((1, 2, 8), np.float32), np.array([[0, 9]]))
    with pytest.raises(ValueError, match="Vocabulary.decode: " + tail):
        Vocabulary("ACGU").decode([0, 9])


def test_every_model_reads_ids_through_one_batch_check():
    """The encoder-decoder, the encoder-only and the decoder-only model refuse a batch that is
    too long with the same sentence (validation.check_id_batch), naming their own argument."""
    from minitransformer.decoder_only import DecoderOnly, DecoderOnlyConfig
    from minitransformer.encoder_only import EncoderOnly, EncoderOnlyConfig
    from minitransformer.transformer import Transformer, TransformerConfig

    too_long = np.ones((1, 5), np.int64)
    small = dict(d_model=4, n_heads=1, d_ff=4, max_len=4)
    with pytest.raises(ValueError, match="^src_ids has length 5, longer than the model's max_len=4$"):
        Transformer(TransformerConfig(8, 8, n_encoder_layers=1, n_decoder_layers=1, **small)).encode(too_long)
    for model in (EncoderOnly(EncoderOnlyConfig(8, n_layers=1, **small)),
                  DecoderOnly(DecoderOnlyConfig(8, n_layers=1, **small))):
        with pytest.raises(ValueError, match="^ids has length 5, longer than the model's max_len=4$"):
            model.forward(too_long)
