"""Parameters, modules, state dicts, dtypes and backends."""
import numpy as np
import pytest

from minitransformer import nn


def _ffn(**kw):
    return nn.FeedForward(4, 8, rng=0, **kw)


def test_named_parameters_in_assignment_order():
    names = [n for n, _ in _ffn().named_parameters()]
    assert names == ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]


def test_shared_parameter_listed_once_and_gradients_add():
    emb = nn.Embedding(5, 3, rng=0, dtype=np.float64)
    holder = nn.Module()
    holder.a, holder.b = emb, nn.Module()
    holder.b.weight = emb.weight
    assert len(holder.parameters()) == 1
    ids = np.array([[1, 1, 2]])
    for _ in range(2):  # two backward passes add up until zero_grad()
        emb.forward(ids)
        emb.backward(np.ones((1, 3, 3)))
    np.testing.assert_array_equal(emb.weight.grad[1], 4.0)
    holder.zero_grad()
    assert not emb.weight.grad.any()


def test_train_and_eval_reach_every_module():
    ffn = _ffn()
    ffn.eval()
    assert not ffn.dropout.training and not ffn.linear1.training
    ffn.train()
    assert ffn.dropout.training


def test_state_dict_round_trip_and_errors():
    a, b = _ffn(), nn.FeedForward(4, 8, rng=1)
    b.load_state_dict(a.state_dict())
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    state = a.state_dict()
    state["linear1.weight"] = np.zeros((4, 9))
    with pytest.raises(ValueError, match=r"linear1.weight: model \(4, 8\) vs saved \(4, 9\)"):
        b.load_state_dict(state)
    del state["linear1.weight"]
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict(state)


def test_changing_dtype_and_moving_backends(backend_name):
    ffn = _ffn()
    assert ffn.dtype == np.float32
    ffn.to(dtype=np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in ffn.parameters())
    ffn.to(backend_name)
    assert ffn.backend_name == backend_name
    pe = nn.PositionalEncoding(4, 8).to(backend_name, np.float64)
    assert pe.buffer.dtype == np.float64


def test_dropout_generator_shared_after_a_move(backend_name):
    from minitransformer.backend import default_rng, rng_backend_name
    shared = default_rng(0)
    model = nn.Module()
    model.d1, model.d2 = nn.Dropout(0.1, shared), nn.Dropout(0.1, shared)
    model.to(backend_name)
    assert model.d1.rng is model.d2.rng
    assert rng_backend_name(model.d1.rng) == backend_name


def test_parameter_count():
    assert _ffn().num_parameters() == 4 * 8 + 8 + 8 * 4 + 4


@pytest.mark.parametrize("dtype", [np.float16, np.int32])
def test_a_model_moves_only_to_float32_or_float64(dtype):
    layer = nn.Linear(3, 2, rng=0)
    with pytest.raises(ValueError, match=f"float32 .* or float64 .*, got {np.dtype(dtype).name}"):
        layer.to(dtype=dtype)
    assert layer.weight.dtype == np.float32


def test_the_config_follows_the_model_dtype():
    from minitransformer.transformer import Transformer, TransformerConfig
    model = Transformer(TransformerConfig(src_vocab_size=5, tgt_vocab_size=5, d_model=4, n_heads=1, d_ff=8,
                                          n_encoder_layers=1, n_decoder_layers=1))
    model.to(dtype=np.float64)
    assert model.config.dtype == "float64"
