"""The whole model against ``torch.nn``, in float64: ``interop.to_torch`` and ``from_torch``.

For post-LN and pre-LN, tied and untied output embeddings, and one model with the GELU
and learned positions, we build a small model, give every parameter random values (zero
biases and unit norms would hide a swapped or untransposed weight), carry it into PyTorch
with :func:`~minitransformer.interop.to_torch`, and feed both the same padded batch. Then:

* the logits agree;
* the label-smoothed cross-entropy, ours against ``torch.nn.CrossEntropyLoss``, agrees;
* every parameter's gradient, ours by hand against PyTorch's autograd, agrees;
* three steps of our Adam and AdamW leave the same weights as ``torch.optim.Adam/AdamW``.

The PyTorch side builds its own sinusoidal table (:func:`sinusoid_table`) instead of the copy
of ours that ``to_torch`` carries across. All to 1e-10 (rounding alone gives about 1e-14). ``pytest -s`` prints the worst absolute
difference seen per configuration.
"""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch==2.13.0 "
                                            "(CPU build) to run the parity tests")

from minitransformer import interop  # noqa: E402
from minitransformer.interop import from_torch, torch_parameter_map, torch_parameter_names  # noqa: E402
from minitransformer.losses import CrossEntropyLoss  # noqa: E402
from minitransformer.optim import Adam, AdamW  # noqa: E402
from minitransformer.transformer import Transformer, TransformerConfig  # noqa: E402

RTOL = ATOL = 1e-10
PAD, BOS = 0, 1
SRC_VOCAB, TGT_VOCAB = 11, 9
LABEL_SMOOTHING = 0.1

#: name -> the model's settings besides the shared small size
CONFIGS = {
    "post-LN untied": dict(norm_first=False, tie_embeddings=False, seed=0),
    "post-LN tied": dict(norm_first=False, tie_embeddings=True, seed=1),
    "pre-LN untied": dict(norm_first=True, tie_embeddings=False, seed=2),
    "pre-LN tied": dict(norm_first=True, tie_embeddings=True, seed=3),
    "gelu, learned positions, unscaled": dict(norm_first=False, tie_embeddings=False, activation="gelu",
                                              learned_positions=True, scale_embeddings=False, seed=4),
}

#: The largest absolute difference seen, per configuration and quantity: a record, not a
#: check (the check is the assertion in :func:`assert_close`).
WORST: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_worst_differences():
    yield
    if WORST:
        print("\nworst absolute difference from PyTorch, per configuration:")
        width = max(map(len, WORST))
        for config, diffs in WORST.items():
            print(f"  {config:<{width}}  " + "  ".join(f"{k} {v:.1e}" for k, v in diffs.items()))


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def make_model(name, **overrides):
    """A small float64 model of configuration ``name`` with every parameter random."""
    settings = dict(d_model=16, n_heads=4, d_ff=32, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0,
                    attention_dropout=0.0, max_len=16, pad_id=PAD, dtype="float64")
    settings.update(CONFIGS[name])
    settings.update(overrides)
    model = Transformer(TransformerConfig(SRC_VOCAB, TGT_VOCAB, **settings))
    rng = np.random.default_rng(100 + settings["seed"])
    for _, p in model.named_parameters():
        p.data += rng.normal(0.0, 0.2, p.shape)
    return model


def make_batch(rng, batch=4, src_len=7, tgt_len=6):
    """Padded source, target input (starting with BOS) and target output ids."""
    src = rng.integers(2, SRC_VOCAB, size=(batch, src_len))
    tgt = rng.integers(2, TGT_VOCAB, size=(batch, tgt_len + 1))
    tgt[:, 0] = BOS
    src_lengths = [src_len, 3, 5, 1][:batch]
    tgt_lengths = [tgt_len + 1, 4, 2, 6][:batch]     # counting BOS; the last row pads only its output
    for b in range(batch):
        src[b, src_lengths[b]:] = PAD
        tgt[b, tgt_lengths[b]:] = PAD
    return src, tgt[:, :-1], tgt[:, 1:]


def sinusoid_table(max_len, d_model, dtype):
    """The paper's table built here, in PyTorch: PE(pos, 2i) = sin(pos / 10000^(2i/d)),
    PE(pos, 2i+1) = cos(pos / 10000^(2i/d)). ``interop`` copies *our* table across, so a
    reference that used it could never disagree with it."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), two_i / d_model)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table.to(dtype)


def with_own_positions(torch_model):
    """``torch_model`` with the sinusoid table of :func:`sinusoid_table` instead of ours."""
    c = torch_model.config
    if c.positions != "learned":
        with torch.no_grad():
            torch_model.src_pos.table.copy_(sinusoid_table(c.max_len, c.d_model, torch_model.src_pos.table.dtype))
        assert torch_model.tgt_pos is torch_model.src_pos
    return torch_model


def to_torch(model, dtype=None):
    """:func:`interop.to_torch`, with the positional table built independently."""
    return with_own_positions(interop.to_torch(model, dtype))


def record(config, what, ours, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = np.asarray(ours)
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    slot = WORST.setdefault(config, {})
    slot[what] = max(slot.get(what, 0.0), diff)
    return ours, theirs


def assert_close(config, what, ours, theirs):
    ours, theirs = record(config, what, ours, theirs)
    assert ours.shape == theirs.shape, f"{config}, {what}: shape {ours.shape} vs PyTorch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=f"{config}: {what}")


def ours_step(model, criterion, src, tgt_in, tgt_out):
    """Forward, loss and backward by hand; returns (logits, loss)."""
    logits = model.forward(src, tgt_in)
    loss = criterion.forward(logits, tgt_out)
    model.zero_grad()
    model.backward(criterion.backward())
    return logits, loss


def torch_step(torch_model, criterion, src, tgt_in, tgt_out):
    """The same in PyTorch, by autograd; returns (logits, loss)."""
    for p in torch_model.parameters():
        p.grad = None
    logits = torch_model(torch.as_tensor(src), torch.as_tensor(tgt_in))
    loss = criterion(logits.reshape(-1, TGT_VOCAB), torch.as_tensor(tgt_out).reshape(-1))
    loss.backward()
    return logits, loss


def torch_criterion():
    return torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=LABEL_SMOOTHING)


# --------------------------------------------------------------------------------------
# The module imports without torch; the mapping covers every parameter once
# --------------------------------------------------------------------------------------
def test_import_does_not_import_torch():
    code = ("import sys, minitransformer, minitransformer.interop, minitransformer.transformer; "
            "assert 'torch' not in sys.modules, 'minitransformer.interop imported torch'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_map_is_one_to_one(name):
    model = make_model(name)
    torch_model = to_torch(model)
    mapping = torch_parameter_map(model, torch_model)
    assert list(mapping) == [n for n, _ in model.named_parameters()]
    mapped = [id(param) for param, _ in mapping.values()]
    assert len(set(mapped)) == len(mapped), "two of our parameters map to one PyTorch parameter"
    assert set(mapped) == {id(p) for p in torch_model.parameters()}, "a PyTorch parameter has no counterpart"
    for our_name, ours in model.named_parameters():
        param, transform = mapping[our_name]
        assert tuple(transform(ours.data).shape) == tuple(param.shape), our_name
        assert param.dtype == torch.float64
    names = torch_parameter_names(model)
    assert names["decoder.layers.1.cross_attn.w_in"] == ("decoder.layers.1.multihead_attn.in_proj_weight", True)
    assert names["encoder.layers.0.feed_forward.linear2.bias"] == ("encoder.layers.0.linear2.bias", False)


# --------------------------------------------------------------------------------------
# Logits, loss and every gradient
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONFIGS)
def test_logits_loss_and_gradients(name):
    model = make_model(name)
    torch_model = to_torch(model)
    assert torch_model.training
    src, tgt_in, tgt_out = make_batch(np.random.default_rng(CONFIGS[name]["seed"]))

    logits, loss = ours_step(model, CrossEntropyLoss(ignore_index=PAD, label_smoothing=LABEL_SMOOTHING),
                             src, tgt_in, tgt_out)
    logits_t, loss_t = torch_step(torch_model, torch_criterion(), src, tgt_in, tgt_out)

    assert logits.shape == (4, 6, TGT_VOCAB)
    assert_close(name, "logits", logits, logits_t)
    assert_close(name, "loss", loss, loss_t)
    for our_name, (param, transform) in torch_parameter_map(model, torch_model).items():
        ours = dict(model.named_parameters())[our_name]
        assert param.grad is not None, f"{our_name}: PyTorch gave no gradient"
        assert_close(name, "grads", ours.grad, transform(param.grad))
        assert np.abs(ours.grad).max() > 0 or our_name.endswith("pos.table"), f"{our_name}: zero gradient"


@pytest.mark.parametrize("name", CONFIGS)
def test_inference_mode_logits(name):
    """In eval mode without autograd, PyTorch's layers take their fused fast path."""
    model = make_model(name).eval()
    torch_model = to_torch(model)
    assert not torch_model.training
    src, tgt_in, _ = make_batch(np.random.default_rng(7))
    with torch.no_grad():
        logits_t = torch_model(torch.as_tensor(src), torch.as_tensor(tgt_in))
    assert_close(name, "eval logits", model.forward(src, tgt_in), logits_t)


def test_stacks_without_layers():
    """Zero encoder layers (memory = embeddings, then the final norm of pre-LN)."""
    model = make_model("pre-LN untied", n_encoder_layers=0, n_decoder_layers=1)
    torch_model = to_torch(model)
    src, tgt_in, tgt_out = make_batch(np.random.default_rng(8))
    logits, _ = ours_step(model, CrossEntropyLoss(ignore_index=PAD), src, tgt_in, tgt_out)
    logits_t, _ = torch_step(torch_model, torch.nn.CrossEntropyLoss(ignore_index=PAD), src, tgt_in, tgt_out)
    assert_close("pre-LN, 0+1 layers", "logits", logits, logits_t)
    for our_name, (param, transform) in torch_parameter_map(model, torch_model).items():
        assert_close("pre-LN, 0+1 layers", "grads", dict(model.named_parameters())[our_name].grad,
                     transform(param.grad))


# --------------------------------------------------------------------------------------
# Optimisers: three steps of ours and of torch.optim on the two models
# --------------------------------------------------------------------------------------
def test_key_bias_gets_no_gradient():
    """The key bias b_K adds q . b_K to every score of a query's row, which the softmax
    ignores: its gradient is exactly zero, and what both libraries compute is rounding noise."""
    name = "post-LN untied"
    model = make_model(name)
    torch_model = to_torch(model)
    batch = make_batch(np.random.default_rng(12))
    ours_step(model, CrossEntropyLoss(ignore_index=PAD), *batch)
    torch_step(torch_model, torch.nn.CrossEntropyLoss(ignore_index=PAD), *batch)
    d = model.config.d_model
    for our_name, (param, _) in torch_parameter_map(model, torch_model).items():
        if our_name.endswith(".b_in"):
            ours = dict(model.named_parameters())[our_name].grad
            assert np.abs(ours[d:2 * d]).max() < 1e-14 and np.abs(param.grad[d:2 * d].numpy()).max() < 1e-14
            assert np.abs(ours[:d]).max() > 1e-6 and np.abs(ours[2 * d:]).max() > 1e-6


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("optimizer", ["Adam", "AdamW"])
def test_optimizer_steps(name, optimizer):
    """Three steps from the same gradients.

    ``eps=1e-6`` rather than the default 1e-8: the key bias's gradient is rounding noise
    (about 1e-17, see above), different in each library, and Adam divides it by
    ``sqrt(v_hat) + eps`` -- about ``eps`` for so small a gradient -- so that the noise becomes
    an update of ``lr * noise / eps``: 1e-11 with eps = 1e-8, 1e-13 with eps = 1e-6.
    (With Adam's L2 term the gradient is ``g + wd * p`` and the noise does not matter.)
    """
    model = make_model(name)
    torch_model = to_torch(model)
    mapping = torch_parameter_map(model, torch_model)
    ours_params = [p for _, p in model.named_parameters()]
    torch_params = [param for param, _ in mapping.values()]
    settings = dict(lr=0.01, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05)
    if optimizer == "Adam":
        ours_opt, torch_opt = Adam(ours_params, **settings), torch.optim.Adam(torch_params, **settings)
    else:
        ours_opt, torch_opt = AdamW(ours_params, **settings), torch.optim.AdamW(torch_params, **settings)
    criterion, criterion_t = CrossEntropyLoss(ignore_index=PAD, label_smoothing=LABEL_SMOOTHING), torch_criterion()

    rng = np.random.default_rng(CONFIGS[name]["seed"] + 50)
    for step in range(3):
        batch = make_batch(rng)
        _, loss = ours_step(model, criterion, *batch)
        _, loss_t = torch_step(torch_model, criterion_t, *batch)
        assert_close(name, f"{optimizer} loss", loss, loss_t)
        ours_opt.step()
        torch_opt.step()
    for our_name, p in model.named_parameters():
        param, transform = mapping[our_name]
        assert_close(name, f"{optimizer} weights", p.data, transform(param))


# --------------------------------------------------------------------------------------
# Back from PyTorch, dtypes, saving
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["post-LN tied", "gelu, learned positions, unscaled"])
def test_from_torch_brings_trained_weights_back(name):
    model = make_model(name)
    torch_model = to_torch(model)
    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=0.5)
    rng = np.random.default_rng(9)
    for _ in range(2):                                  # "train" in PyTorch
        torch_step(torch_model, torch_criterion(), *make_batch(rng))
        torch_opt.step()

    other = make_model(name, seed=CONFIGS[name]["seed"] + 10)   # other initial weights
    assert from_torch(torch_model, other) is other
    for our_name, p in other.named_parameters():
        param, transform = torch_parameter_map(other, torch_model)[our_name]
        np.testing.assert_array_equal(p.data, transform(param.detach().numpy()))
        assert not p.grad.any()
    src, tgt_in, _ = make_batch(rng)
    torch_model.eval()
    with torch.no_grad():
        logits_t = torch_model(torch.as_tensor(src), torch.as_tensor(tgt_in))
    assert_close(name, "logits after from_torch", other.eval().forward(src, tgt_in), logits_t)

    # the state_dict of a PyTorch model, loaded into a fresh one built from the config
    fresh = with_own_positions(interop.TorchTransformer(other.config, dtype=torch.float64))
    fresh.load_state_dict(torch_model.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(torch.as_tensor(src), torch.as_tensor(tgt_in)), logits_t,
                                   rtol=0, atol=0)
    restored = pickle.loads(pickle.dumps(torch_model))
    with torch.no_grad():
        torch.testing.assert_close(restored(torch.as_tensor(src), torch.as_tensor(tgt_in)), logits_t,
                                   rtol=0, atol=0)


def test_from_torch_refuses_another_architecture():
    torch_model = to_torch(make_model("post-LN untied"))
    with pytest.raises(ValueError, match="norm_first"):
        from_torch(torch_model, make_model("pre-LN untied"))


def test_dtypes():
    model = make_model("pre-LN tied").astype(np.float32)
    src, tgt_in, _ = make_batch(np.random.default_rng(11))
    logits = model.forward(src, tgt_in)
    torch32 = to_torch(model)
    assert torch32.output_bias.dtype == torch.float32
    torch64 = to_torch(model, dtype="float64")
    assert torch64.output_bias.dtype == torch.float64
    with torch.no_grad():
        for torch_model in (torch32, torch64):
            theirs = torch_model(torch.as_tensor(src), torch.as_tensor(tgt_in)).double().numpy()
            np.testing.assert_allclose(logits, theirs, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="float32 or float64"):
        to_torch(model, dtype="int32")
