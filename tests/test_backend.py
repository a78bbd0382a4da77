"""The array backends: choosing one, host copies, scatter-add, generators; the strict test
backend's rules; and the whole model (training, optimisers, decoding, checkpoints) on every
backend, with NumPy's numbers."""
import numpy as np
import pytest

from minitransformer import Transformer, TransformerConfig, backend
from minitransformer.checkpoint import load_model, restore_optimizer, save_checkpoint
from minitransformer.decoding import beam_search, greedy_decode
from minitransformer.losses import CrossEntropyLoss
from minitransformer.optim import SGD, Adam, AdamW, clip_grad_norm
from minitransformer.toy import train_toy
from minitransformer.training import Trainer, make_batch


def test_numpy_is_the_default(monkeypatch):
    monkeypatch.delenv(backend.BACKEND_ENV_VAR, raising=False)
    assert backend.get_backend() is np
    assert backend.resolve_backend_name() == "numpy"


def test_environment_variable_picks_the_backend(monkeypatch):
    monkeypatch.setenv(backend.BACKEND_ENV_VAR, "NumPy")
    assert backend.resolve_backend_name() == "numpy"
    monkeypatch.setenv(backend.BACKEND_ENV_VAR, "tensorflow")
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        backend.get_backend()


def test_missing_cupy_gives_one_clear_sentence():
    reason = backend.cupy_unavailable_reason()
    if reason is None:
        pytest.skip("CuPy and a GPU are available on this machine")
    with pytest.raises(backend.BackendUnavailableError) as info:
        backend.get_backend("cupy")
    message = str(info.value)
    assert "\n" not in message and ("pip install" in message or "GPU" in message)


def test_array_module_and_host_copies(xp):
    x = xp.arange(6, dtype=xp.float32).reshape(2, 3)
    assert backend.get_array_module(x) is xp
    host = backend.to_numpy(x)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    assert backend.get_array_module(1.0, None) is np


@pytest.mark.parametrize("n_rows", [5, 1000])  # the one-hot product path and the np.add.at path
def test_scatter_add_rows_adds_repeated_indices(xp, n_rows):
    table = xp.zeros((n_rows, 3), dtype=xp.float64)
    idx = xp.asarray(np.array([[0, 2], [2, 4]]))
    values = xp.asarray(np.arange(12, dtype=np.float64).reshape(2, 2, 3))
    backend.scatter_add_rows(table, idx, values)
    expected = np.zeros((n_rows, 3))
    np.add.at(expected, np.array([0, 2, 2, 4]), np.arange(12, dtype=np.float64).reshape(4, 3))
    np.testing.assert_array_equal(backend.to_numpy(table), expected)


def test_seeded_generators_repeat(backend_name):
    a = backend.default_rng(3, backend_name).random(5)
    b = backend.default_rng(3, backend_name).random(5)
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    assert backend.rng_backend_name(backend.default_rng(3, backend_name)) == backend_name


def test_random_bits_are_those_of_integers_and_uniform():
    # four 16-bit numbers from each 64-bit output, in the order integers() takes them
    shape = (3, 4, 5)
    expected = np.random.default_rng(11).integers(0, 65536, size=shape, dtype=np.uint16)
    bits = backend.random_uint16(np.random.default_rng(11), shape)
    assert bits.shape == shape and bits.dtype == np.uint16
    np.testing.assert_array_equal(bits, expected)
    # a size that is not a multiple of 4, and a keep mask's probability
    keep, scale = backend.random_keep_mask(np.random.default_rng(12), (1001, 199), 0.1)
    assert keep.shape == (1001, 199)
    assert abs(keep.mean() - 0.9) < 0.003
    assert scale == 65536.0 / (65536 - 6554)


# --------------------------------------------------------------------------------------
# The strict backend: CuPy's rules about host and device arrays, on the CPU
# --------------------------------------------------------------------------------------
def test_strict_arrays_refuse_numpy_arrays_as_cupy_does():
    xp = backend.get_backend("strict")
    host = np.arange(6.0).reshape(2, 3)
    x = xp.asarray(host)
    mixes = [lambda: x * host, lambda: host * x, lambda: x + host[0], lambda: xp.exp(host),
             lambda: xp.where(x > 2, host, 0.0), lambda: xp.matmul(x, host.T),
             lambda: xp.multiply(x, 2.0, out=np.empty((2, 3)))]
    for mix in mixes:
        with pytest.raises(TypeError, match=r"Unsupported type <class 'numpy.ndarray'>"):
            mix()
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x[...] = host
    # what CuPy allows: numbers, NumPy scalars, device arrays, host index arrays, explicit copies
    y = 2.0 * x + np.float32(1.0) - x.sum() / x.size + x[np.array([1, 0])] * (x > 1)
    assert type(y) is xp.ndarray and type(x.sum()) is xp.ndarray and x.sum().shape == ()
    x[np.array([0])] = np.zeros((1, 3))
    host_copy = x.get()
    assert type(host_copy) is np.ndarray and backend.to_numpy(x) is not host_copy
    host[...] = -1.0                        # xp.asarray copied: the device array is its own
    assert float(x[1, 2]) == 5.0 and f"{x.max():.1f}" == "5.0"


def test_strict_backend_gives_numpys_numbers_bit_for_bit():
    xp = backend.get_backend("strict")
    a = np.random.default_rng(0).standard_normal((4, 5))
    x = xp.asarray(a)
    y = xp.exp(x - x.max(axis=-1, keepdims=True))
    y /= y.sum(axis=-1, keepdims=True)
    expected = np.exp(a - a.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_array_equal(y.get(), expected)
    np.testing.assert_array_equal((x @ x.T).get(), a @ a.T)


def test_strict_generators_have_cupys_methods_and_return_device_arrays():
    rng = backend.default_rng(5, "strict")
    assert backend.rng_backend_name(rng) == "strict"
    draws = [rng.random((2, 3), dtype=np.float32), rng.integers(0, 9, size=4), rng.standard_normal(3),
             rng.random()]
    assert all(backend.get_array_module_name(d) == "strict" for d in draws)
    for numpy_only in ("permutation", "choice", "uniform", "bit_generator"):
        with pytest.raises(AttributeError, match="cupy.random.Generator has"):
            getattr(rng, numpy_only)
    keep, scale = backend.random_keep_mask(rng, (300, 200), 0.25)   # the GPU's way: uniform floats
    assert backend.get_array_module_name(keep) == "strict" and keep.dtype == bool
    assert scale == 1.0 / 0.75 and abs(float(keep.mean()) - 0.75) < 0.01


# --------------------------------------------------------------------------------------
# The whole model on every backend
# --------------------------------------------------------------------------------------
PAD, BOS, EOS = 0, 1, 2


def _config(**kw):
    settings = dict(src_vocab_size=9, tgt_vocab_size=7, d_model=8, n_heads=2, d_ff=12, n_encoder_layers=2,
                    n_decoder_layers=2, dropout=0.0, max_len=32, seed=3, pad_id=PAD)
    settings.update(kw)
    return TransformerConfig(**settings)


def _batch():
    return make_batch([[3, 4, 5, 6], [7, 8], [5, 5, 3]], [[3, 4, 5], [6], [4, 3, 5, 6]],
                      pad_id=PAD, bos_id=BOS, eos_id=EOS)


def _assert_numpys_numbers(device_array, host_array, backend_name):
    """Bit for bit on the strict backend (NumPy underneath); to round-off on a GPU."""
    assert backend.get_array_module_name(device_array) == backend_name
    if backend_name == "cupy":  # pragma: no cover - GPU only
        np.testing.assert_allclose(backend.to_numpy(device_array), host_array, rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_array_equal(backend.to_numpy(device_array), host_array)


OPTIMIZERS = {"sgd": lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
              "adam": lambda p: Adam(p, lr=0.01, weight_decay=0.1),
              "adamw": lambda p: AdamW(p, lr=0.01)}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("norm_first, tie", [(False, False), (True, True)], ids=["post-LN", "pre-LN-tied"])
def test_model_and_optimizers_on_every_backend_give_numpys_numbers(backend_name, norm_first, tie, optimizer):
    """Forward, loss, backward, clipping and optimiser steps, against the same model on NumPy."""
    config = _config(norm_first=norm_first, tie_embeddings=tie, dtype="float64")
    models = {name: Transformer(config, backend=name) for name in ("numpy", backend_name)}
    optimizers = {name: OPTIMIZERS[optimizer](m.parameters()) for name, m in models.items()}
    batch = _batch()
    for name, model in models.items():
        b = batch.to(name)
        criterion = CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
        for _ in range(2):
            model.zero_grad()
            logits = model.forward(b.src, b.tgt_in)
            criterion.forward(logits, b.tgt_out)
            model.backward(criterion.backward())
            clip_grad_norm(model.parameters(), 0.5)
            optimizers[name].step()
    host, device = (dict(models[name].named_parameters()) for name in ("numpy", backend_name))
    for key, p in device.items():
        _assert_numpys_numbers(p.data, host[key].data, backend_name)
        _assert_numpys_numbers(p.grad, host[key].grad, backend_name)
    for state, host_state in zip(optimizers[backend_name].state, optimizers["numpy"].state):
        for key, buf in state.items():
            _assert_numpys_numbers(buf, host_state[key], backend_name)
    saved = optimizers[backend_name].state_dict()["state"]
    assert all(type(a) is np.ndarray for a in saved.values())
    optimizers[backend_name].to("numpy")
    assert all(type(buf) is np.ndarray for s in optimizers[backend_name].state for buf in s.values())


def test_training_decoding_and_checkpoints_run_on_every_backend(backend_name, tmp_path):
    """A model with dropout trains, decodes and goes through a checkpoint on the backend."""
    model = Transformer(_config(dropout=0.1), backend=backend_name)
    trainer = Trainer(model, Adam(model.parameters(), lr=0.01), shards=1)
    batch = _batch().to(backend_name)
    history = trainer.fit([batch] * 3, max_steps=3, progress=False, log_every=1)
    assert len(history) == 3 and np.isfinite(history["loss"]).all()
    assert all(backend.get_array_module_name(buf) == backend_name
               for s in trainer.optimizer.state for buf in s.values())

    decode = dict(bos_id=BOS, eos_id=EOS, max_len=6)
    cached = greedy_decode(model, batch.src, **decode)
    assert greedy_decode(model, batch.src, use_cache=False, **decode) == cached
    assert beam_search(model, batch.src, beam_width=1, **decode) == cached
    assert len(beam_search(model, batch.src, beam_width=3, **decode)) == 3

    path = save_checkpoint(tmp_path / "model.npz", model, optimizer=trainer.optimizer, step=3)
    for name in (backend_name, "numpy"):
        loaded, checkpoint = load_model(path, backend=name)
        assert loaded.backend_name == name
        assert greedy_decode(loaded, _batch().to(name).src, **decode) == cached
        optimizer = restore_optimizer(checkpoint, Adam(loaded.parameters()))
        assert optimizer.step_count == 3


def test_toy_task_trains_and_evaluates_on_every_backend(backend_name):
    model, trainer, metrics = train_toy("copy", steps=2, batch_size=4, max_len=4, progress=False,
                                        backend=backend_name, d_model=8, n_heads=2, d_ff=16, dropout=0.1)
    assert trainer.step == 2 and 0.0 <= metrics["exact_match"] <= 1.0


def test_moving_a_model_moves_the_dropout_generator_it_saves(backend_name):
    model = Transformer(_config(dropout=0.1), backend="numpy").to(backend_name)
    layer_rngs = {id(m.rng) for _, m in model.named_modules() if hasattr(m, "rng")}
    assert layer_rngs == {id(model.dropout_rng)}       # the one checkpoints save
    assert backend.rng_backend_name(model.dropout_rng) == backend_name
