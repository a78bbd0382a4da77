"""The whole model's gradient in training mode, with dropout and attention dropout on.

With dropout 0 a layer's ``dropout.backward`` does nothing, so a backward pass that skips
it is right by accident: the whole-model check in ``test_transformer.py`` cannot see such
a bug. Here every dropout is on (embeddings, sub-layer outputs, inside the feed-forward
network, on the attention weights), and the masks are held fixed between the
finite-difference evaluations: the model's dropout generator (``model.dropout_rng``, the
one generator every Dropout layer of the model draws from) is put back into the same state
before every forward pass, so each pass draws the same masks in the same order. The loss
is then a smooth function of the weights (away from ReLU's kink) and its gradient is what
``backward`` must return.

A second test carries the model into PyTorch with the very same masks (PyTorch's own
dropout layers replaced by ones that apply ours); see its docstring for why attention
dropout stays off there.
"""
import copy

import numpy as np
import pytest

from minitransformer import Transformer, TransformerConfig
from minitransformer.gradcheck import numerical_gradient, relative_error
from minitransformer.losses import CrossEntropyLoss

PAD, BOS = 0, 1
SRC_VOCAB, TGT_VOCAB = 9, 7


def tiny_model(norm_first, tie, dropout=0.3, attention_dropout=0.25, seed=5):
    config = TransformerConfig(SRC_VOCAB, TGT_VOCAB, d_model=8, n_heads=2, d_ff=12, n_encoder_layers=1,
                               n_decoder_layers=1, dropout=dropout, attention_dropout=attention_dropout,
                               max_len=8, norm_first=norm_first, tie_embeddings=tie, dtype="float64",
                               seed=seed)
    model = Transformer(config)
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():       # zero biases and unit norms would hide mistakes
        p.data += rng.normal(0.0, 0.2, p.shape)
    return model.train()


def padded_batch(rng, batch=3, src_len=6, tgt_len=5):
    src = rng.integers(3, SRC_VOCAB, (batch, src_len))
    src[0, 4:] = PAD
    tgt_in = rng.integers(3, TGT_VOCAB, (batch, tgt_len))
    tgt_in[:, 0] = BOS
    tgt_in[1, 3:] = PAD
    tgt_out = rng.integers(3, TGT_VOCAB, (batch, tgt_len))
    tgt_out[1, 3:] = PAD
    return src, tgt_in, tgt_out


def with_fixed_masks(model, forward):
    """``forward`` wrapped so that every call draws the same dropout masks: the model's
    dropout generator is put back into the state it has now before each call."""
    state = copy.deepcopy(model.dropout_rng.bit_generator.state)

    def fixed():
        model.dropout_rng.bit_generator.state = copy.deepcopy(state)
        return forward()
    return fixed


@pytest.mark.parametrize("norm_first, tie", [(False, False), (True, True)], ids=["post-LN", "pre-LN tied"])
def test_whole_model_gradient_check_with_dropout_on(norm_first, tie):
    model = tiny_model(norm_first, tie)
    src, tgt_in, tgt_out = padded_batch(np.random.default_rng(0))
    criterion = CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
    logits = with_fixed_masks(model, lambda: model.forward(src, tgt_in))

    # the masks are really fixed, and dropout really acts
    np.testing.assert_array_equal(logits(), logits())
    assert not np.allclose(logits(), model.eval().forward(src, tgt_in))
    model.train()
    assert not np.allclose(logits(), model.forward(src, tgt_in)), "the generator moved on, the masks should differ"

    def loss():
        return float(criterion.forward(logits(), tgt_out))

    model.zero_grad()
    loss()
    model.backward(criterion.backward())
    worst = {name: relative_error(p.grad.copy(), numerical_gradient(loss, p.data))
             for name, p in model.named_parameters()}
    assert max(worst.values()) <= 1e-7, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


def test_parity_with_pytorch_under_the_same_dropout_masks(monkeypatch):
    """Logits, loss and every gradient against PyTorch autograd, dropout on, the same masks.

    Every mask our model draws goes through ``backend.random_keep_mask`` (called from the
    reference and the fast math alike); we record them
    in the order they are drawn and give them, in the same order, to PyTorch's ``nn.Dropout``
    modules, whose forward is replaced by ``x * keep * scale``. The two models call their
    dropouts in the same order (source embeddings, then per encoder layer: after
    self-attention, inside the feed-forward network, after it; target embeddings, then per
    decoder layer: after self-attention, after cross-attention, inside and after the
    feed-forward network), and every shape is checked as a mask is handed over.

    Attention dropout stays off here: PyTorch draws it inside
    ``F.multi_head_attention_forward`` (``dropout_p``), which takes no mask from outside.
    The gradient check above covers it.
    """
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch (CPU build)")
    from minitransformer import backend, functional
    from minitransformer.fast import attention as fast_attention
    from minitransformer.fast import layers as fast_layers
    from minitransformer.interop import to_torch, torch_parameter_map

    drawn = []
    draw = backend.random_keep_mask

    def recording(rng, shape, p):
        keep, scale = draw(rng, shape, p)
        drawn.append((keep.copy(), float(scale)))
        return keep, scale
    for module in (functional, fast_layers, fast_attention):   # every module that draws masks
        assert module.random_keep_mask is draw
        monkeypatch.setattr(module, "random_keep_mask", recording)

    for norm_first in (False, True):
        model = tiny_model(norm_first, tie=False, attention_dropout=0.0)
        torch_model = to_torch(model)
        assert torch_model.training
        src, tgt_in, tgt_out = padded_batch(np.random.default_rng(1))
        drawn.clear()
        criterion = CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
        logits = model.forward(src, tgt_in)
        loss = criterion.forward(logits, tgt_out)
        model.zero_grad()
        model.backward(criterion.backward())
        assert len(drawn) == 2 + 3 + 4, f"expected 9 dropout masks, the model drew {len(drawn)}"

        masks = iter(drawn)

        def fixed_dropout(x):
            keep, scale = next(masks)
            assert tuple(x.shape) == keep.shape, f"mask order differs: {tuple(x.shape)} vs {keep.shape}"
            return x * torch.as_tensor(keep, dtype=x.dtype) * scale
        for module in torch_model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.forward = fixed_dropout
        logits_t = torch_model(torch.as_tensor(src), torch.as_tensor(tgt_in))
        loss_t = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)(
            logits_t.reshape(-1, TGT_VOCAB), torch.as_tensor(tgt_out).reshape(-1))
        loss_t.backward()
        assert next(masks, None) is None, "PyTorch used fewer dropout masks than our model drew"

        np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-10, atol=1e-10)
        ours = dict(model.named_parameters())
        for name, (param, transform) in torch_parameter_map(model, torch_model).items():
            np.testing.assert_allclose(ours[name].grad, transform(param.grad.numpy()), rtol=1e-10, atol=1e-10,
                                       err_msg=f"{'pre' if norm_first else 'post'}-LN: {name}")
