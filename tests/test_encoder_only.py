"""The encoder-only (BERT-style) model: masking, heads, gradients, PyTorch parity, checkpoints."""
import numpy as np
import pytest

from minitransformer.checkpoint import load_checkpoint, restore_model, save_checkpoint
from minitransformer.encoder_only import IGNORE_INDEX, EncoderOnly, EncoderOnlyConfig, mask_tokens
from minitransformer.gradcheck import check_module, numerical_gradient, relative_error
from minitransformer.heads import MaskedLMHead, MeanPooling, OutputProjection
from minitransformer.losses import CrossEntropyLoss
from minitransformer.nn import Parameter
from minitransformer.transformer import EncoderLayer
from stack_helpers import GRADCHECK_VARIANTS, padded_ids, randomised

PAD, MASK = 0, 4
SPECIAL = (0, 1, 2, 3, 4)        # padding, start, end, unknown, [MASK]
VOCAB, CLASSES = 12, 3


def small_config(**kw):
    settings = dict(vocab_size=VOCAB, d_model=8, n_heads=2, d_ff=12, n_layers=2, n_classes=CLASSES,
                    dropout=0.0, max_len=16, pad_id=PAD, seed=3, dtype="float64")
    settings.update(kw)
    return EncoderOnlyConfig(**settings)


def padded_batch(rng, lengths=(4, 6, 2), length=6):
    return padded_ids(rng, 5, VOCAB, lengths, length, PAD)


# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------
def test_config_round_trip_and_validation():
    config = small_config(norm_first=True, tie_embeddings=False)
    assert EncoderOnlyConfig.from_json(config.to_json()) == config
    assert EncoderOnlyConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"invalid EncoderOnlyConfig: n_classes must be >= 0, got -1 \(0: no "):
        small_config(n_classes=-1)
    with pytest.raises(ValueError, match="d_model=10 must be divisible by n_heads=4"):
        small_config(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="unknown EncoderOnlyConfig fields \\['n_encoder_layers'\\]"):
        EncoderOnlyConfig.from_dict({**config.to_dict(), "n_encoder_layers": 2})


STACK_CONFIG_MISTAKES = {
    "dropout": ("x", "dropout must be a number, got 'x'"),
    "attention_dropout": (1.0, r"attention_dropout must be in \[0, 1\), got 1.0"),
    "pad_id": (1.5, "pad_id must be an integer, got 1.5"),
    "seed": ("0", "seed must be an integer, got '0'"),
    "d_model": (True, "d_model must be an integer, got True"),
    "n_layers": (-1, "n_layers must be >= 0, got -1"),
    "n_classes": (2.0, "n_classes must be an integer, got 2.0"),
    "norm_first": ("no", "norm_first must be True or False, got 'no'"),
    "tie_embeddings": (1, "tie_embeddings must be True or False, got 1"),
    "learned_positions": ("yes", "learned_positions must be True or False, got 'yes'"),
    "scale_embeddings": ("yes", "scale_embeddings must be True or False, got 'yes'"),
}


@pytest.mark.parametrize("field", STACK_CONFIG_MISTAKES)
def test_every_config_field_is_type_checked(field):
    """StackConfig checks types as TransformerConfig does: one ValueError naming the field."""
    value, message = STACK_CONFIG_MISTAKES[field]
    with pytest.raises(ValueError, match="^invalid EncoderOnlyConfig: " + message):
        small_config(**{field: value})


def test_config_lists_every_mistake_in_one_message():
    with pytest.raises(ValueError) as error:
        small_config(dropout="x", seed=-1, norm_first="no")
    assert str(error.value) == ("invalid EncoderOnlyConfig: seed must be >= 0, got -1; dropout must be a number, "
                                "got 'x'; norm_first must be True or False, got 'no'")


def test_the_layers_are_the_encoder_decoders_own():
    model = EncoderOnly(small_config())
    assert all(type(layer) is EncoderLayer for layer in model.stack.layers)
    names = [n for n, _ in model.named_parameters()]
    assert names.count("embeddings.token.weight") == 1 and "mlm_head.projection.weight" not in names
    assert model.mlm_head.projection.weight is model.embeddings.token.weight     # tied: one parameter


# --------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------
def test_mask_tokens_chooses_15_percent_of_the_ordinary_tokens():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, VOCAB, (2000, 40))
    ids[:, 0] = 1                                             # a start token, never chosen
    ids[::2, 30:] = PAD                                      # half the rows padded
    inputs, targets = mask_tokens(ids, 7, mask_id=MASK, special_ids=SPECIAL, vocab_size=VOCAB)
    chosen = targets != IGNORE_INDEX
    n_ordinary = (ids >= 5).sum(axis=1)
    np.testing.assert_array_equal(chosen.sum(axis=1), np.rint(0.15 * n_ordinary))   # 6 of 39, 4 of 29
    assert not chosen[ids < 5].any()                          # special tokens are never chosen
    np.testing.assert_array_equal(targets[chosen], ids[chosen])
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])
    # of the chosen: 80% [MASK], 10% random, 10% unchanged (each +- 4 standard deviations)
    n = chosen.sum()
    masked = (inputs[chosen] == MASK).mean()
    unchanged = (inputs[chosen] == ids[chosen]).mean()
    assert abs(masked - 0.8) < 4 * np.sqrt(0.8 * 0.2 / n), masked
    # a random token equals the original one time in 7 (7 ordinary ids): 10% + 10% / 7
    assert abs(unchanged - (0.1 + 0.1 / 7)) < 4 * np.sqrt(0.11 * 0.89 / n), unchanged
    replaced = chosen & (inputs != MASK) & (inputs != ids)
    assert (inputs[replaced] >= 5).all()                      # random tokens are ordinary tokens
    assert np.unique(inputs[replaced]).size == VOCAB - len(SPECIAL)


def test_mask_tokens_is_seeded_and_needs_at_least_one_target():
    ids = np.array([[5, 6, 0, 0], [7, 8, 9, 10]])
    a = mask_tokens(ids, 3, mask_id=MASK, special_ids=SPECIAL, vocab_size=VOCAB)
    b = mask_tokens(ids, np.random.default_rng(3), mask_id=MASK, special_ids=SPECIAL, vocab_size=VOCAB)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert ((a[1] != IGNORE_INDEX).sum(axis=1) == 1).all()   # round(0.15 * 2) = 0 -> at least 1
    with pytest.raises(ValueError, match="mask_id=9 must be one of special_ids"):
        mask_tokens(ids, 0, mask_id=9, special_ids=SPECIAL, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        mask_tokens(ids + 10, 0, mask_id=MASK, special_ids=SPECIAL, vocab_size=VOCAB)


# --------------------------------------------------------------------------------------
# The new heads alone, then the whole model, against finite differences
# --------------------------------------------------------------------------------------
def test_mean_pooling_gradient_skips_padding():
    rng = np.random.default_rng(1)
    h = rng.standard_normal((3, 5, 4))
    keep = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=bool)
    pool = MeanPooling()
    np.testing.assert_allclose(pool.forward(h, keep)[0], h[0, :3].mean(axis=0), atol=1e-15)
    check_module(pool, h, keep).assert_ok(1e-9)
    dh = pool.backward(np.ones((3, 4)))
    assert not dh[~keep].any() and np.allclose(dh[0, :3], 1 / 3)


def test_tied_projection_and_masked_lm_head_gradients():
    rng = np.random.default_rng(2)
    table = Parameter(rng.standard_normal((VOCAB, 8)))
    projection = OutputProjection(8, VOCAB, table)
    projection.bias.data[...] = rng.standard_normal(VOCAB)
    report = check_module(projection, rng.standard_normal((2, 3, 8)))
    assert set(report.errors) == {"input[0]", "weight", "bias"}
    report.assert_ok(1e-9)
    head = MaskedLMHead(small_config(), Parameter(rng.standard_normal((VOCAB, 8))), rng)
    check_module(head, rng.standard_normal((2, 3, 8))).assert_ok(1e-9)


@pytest.mark.parametrize("variant", GRADCHECK_VARIANTS)
def test_whole_model_gradient_check(variant):
    """Both heads' losses together, every parameter, float64."""
    model = randomised(EncoderOnly(small_config(**GRADCHECK_VARIANTS[variant])), seed=4)
    ids = padded_batch(np.random.default_rng(4))
    inputs, targets = mask_tokens(ids, 5, mask_id=MASK, special_ids=SPECIAL, vocab_size=VOCAB, mask_prob=0.4)
    labels = np.array([0, 2, 1])
    mlm_loss, cls_loss = CrossEntropyLoss(ignore_index=IGNORE_INDEX), CrossEntropyLoss(label_smoothing=0.1)

    def loss():
        return (float(mlm_loss.forward(model.forward(inputs, head="mlm"), targets))
                + float(cls_loss.forward(model.forward(ids, head="classify"), labels)))

    model.zero_grad()
    mlm_loss.forward(model.forward(inputs, head="mlm"), targets)
    model.backward(mlm_loss.backward())
    cls_loss.forward(model.forward(ids, head="classify"), labels)
    model.backward(cls_loss.backward())
    worst = {name: relative_error(p.grad.copy(), numerical_gradient(loss, p.data))
             for name, p in model.named_parameters()}
    print(f"\nworst relative error {max(worst.values()):.1e}")
    assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    assert all(np.abs(p.grad).max() > 0 for _, p in model.named_parameters())


# --------------------------------------------------------------------------------------
# Behaviour
# --------------------------------------------------------------------------------------
def test_padding_changes_nothing_real():
    model = EncoderOnly(small_config())
    ids = np.array([[5, 6, 7, 8]])
    padded = np.array([[5, 6, 7, 8, PAD, PAD]])
    np.testing.assert_allclose(model.forward(padded)[:, :4], model.forward(ids), atol=1e-12)
    np.testing.assert_allclose(model.forward(padded, head="classify"), model.forward(ids, head="classify"),
                               atol=1e-12)


def test_bad_calls_are_clear_errors():
    model = EncoderOnly(small_config(n_classes=0))
    with pytest.raises(ValueError, match="no classification head: build it with n_classes > 0"):
        model.forward(np.array([[5, 6]]), head="classify")
    with pytest.raises(ValueError, match="head must be one of"):
        model.forward(np.array([[5, 6]]), head="cls")
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] are all padding"):
        model.forward(np.array([[5, 6], [PAD, PAD]]))
    with pytest.raises(ValueError, match="ids has length 17, longer than the model's max_len=16"):
        model.forward(np.full((1, 17), 5))
    with pytest.raises(ValueError, match=r"ids: token ids from 5 to 99, but valid ids are 0 to \d+"):
        model.forward(np.array([[5, 99]]))
    with pytest.raises(ValueError, match="ids: token ids must be integers, got float64"):
        model.forward(np.array([[5.0, 6.0]]))
    with pytest.raises(ValueError, match="ids must be a 2-D integer array"):
        model.forward(np.array([5, 6]))
    with pytest.raises(ValueError, match="ids is a batch of zero sequences"):
        model.forward(np.zeros((0, 3), np.int64))
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.zeros((1, 2, VOCAB)))


def test_checkpoint_round_trip(tmp_path):
    model = EncoderOnly(small_config(dropout=0.1))
    path = save_checkpoint(tmp_path / "bert.npz", model, metadata={"model": "encoder_only"})
    checkpoint = load_checkpoint(path)
    assert checkpoint.dropout_rng_state is not None
    restored = restore_model(checkpoint, EncoderOnly(EncoderOnlyConfig.from_dict(checkpoint.config) ))
    ids = padded_batch(np.random.default_rng(6))
    model.eval(), restored.eval()
    np.testing.assert_array_equal(restored.forward(ids, head="classify"), model.forward(ids, head="classify"))


# --------------------------------------------------------------------------------------
# PyTorch: nn.TransformerEncoder plus the same heads, our weights copied in
# --------------------------------------------------------------------------------------
PARITY = {
    "post-LN tied gelu": dict(norm_first=False, tie_embeddings=True, activation="gelu"),
    "pre-LN untied relu learned positions": dict(norm_first=True, tie_embeddings=False, activation="relu",
                                                 learned_positions=True, scale_embeddings=False),
}


@pytest.mark.parametrize("name", PARITY)
def test_torch_parity(name):
    torch = pytest.importorskip("torch")
    from torch_stacks import TorchStack, parameter_map

    model = randomised(EncoderOnly(small_config(d_model=16, n_heads=4, d_ff=32, **PARITY[name])), seed=8)
    twin = TorchStack(model)
    ids = padded_batch(np.random.default_rng(8), lengths=(7, 3, 5, 1), length=7)
    inputs, targets = mask_tokens(ids, 1, mask_id=MASK, special_ids=SPECIAL, vocab_size=VOCAB, mask_prob=0.3)
    labels = np.array([0, 2, 1, 1])
    worst = 0.0
    for head, x, y, ignore in (("mlm", inputs, targets, IGNORE_INDEX), ("classify", ids, labels, -1)):
        logits = model.forward(x, head=head)
        criterion = CrossEntropyLoss(ignore_index=ignore)
        loss = criterion.forward(logits, y)
        model.zero_grad()
        model.backward(criterion.backward())
        twin.zero_grad()
        logits_t = twin(torch.as_tensor(x), head=head)
        loss_t = torch.nn.functional.cross_entropy(logits_t.reshape(-1, logits.shape[-1]),
                                                   torch.as_tensor(y).reshape(-1), ignore_index=ignore)
        loss_t.backward()
        pairs = [(logits, logits_t.detach().numpy()), (loss, loss_t.item())]
        for our_name, (param, transform) in parameter_map(model, twin).items():
            grad = dict(model.named_parameters())[our_name].grad
            theirs = np.zeros(grad.shape) if param.grad is None else transform(param.grad.numpy())
            pairs.append((grad, theirs))
        for ours, theirs in pairs:
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10, err_msg=f"{name}, {head}")
            worst = max(worst, float(np.max(np.abs(np.asarray(ours) - theirs))))
    print(f"\n{name}: worst absolute difference from PyTorch {worst:.1e}")
