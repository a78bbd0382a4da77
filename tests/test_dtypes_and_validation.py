"""float32 stays float32, bad input gets a clear ValueError, and no autograd library is used."""
import subprocess
import sys

import numpy as np
import pytest

from minitransformer import backend, nn
from minitransformer.losses import CrossEntropyLoss


def _layers(backend_name):
    kw = dict(rng=0, backend=backend_name)
    return [
        (nn.Linear(8, 8, **kw), 1),
        (nn.LayerNorm(8, backend=backend_name), 1),
        (nn.FeedForward(8, 16, activation="gelu", dropout=0.2, **kw), 1),
        (nn.MultiHeadAttention(8, 2, dropout=0.1, **kw), 1),
        (nn.MultiHeadAttention(8, 2, **kw), 2),
        (nn.PositionalEncoding(8, 16, learned=True, **kw), 1),
        (nn.ReLU(), 1), (nn.GELU(), 1), (nn.Softmax(), 1),
        (nn.Dropout(0.5, backend.default_rng(0, backend_name)), 1),
    ]


def test_float32_in_float32_out_forward_and_backward(xp, backend_name):
    # FeedForward and MultiHeadAttention built without dropout_rng once drew their masks from a
    # NumPy generator whatever their backend, so a NumPy mask met a device array in
    # dropout_forward (y = x * keep), as CuPy reported on a GPU: Dropout now makes its default
    # generator on the layer's backend.
    rng = np.random.default_rng(0)
    for layer, n_inputs in _layers(backend_name):
        inputs = [xp.asarray(rng.standard_normal((2, 5, 8)).astype(np.float32)) for _ in range(n_inputs)]
        out = layer.forward(*inputs)
        assert out.dtype == np.float32, type(layer).__name__
        grads = layer.backward(xp.ones_like(out))
        grads = grads if isinstance(grads, tuple) else (grads,)
        for g in grads:
            assert g is None or g.dtype == np.float32, type(layer).__name__
        for name, p in layer.named_parameters():
            assert p.grad.dtype == np.float32, f"{type(layer).__name__}.{name}"
    emb = nn.Embedding(10, 8, padding_idx=0, scale=True, rng=0, backend=backend_name)
    out = emb.forward(xp.asarray(np.array([[1, 2, 0]])))
    assert out.dtype == np.float32
    emb.backward(xp.ones_like(out))
    assert emb.weight.grad.dtype == np.float32
    criterion = CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    logits = xp.asarray(rng.standard_normal((2, 3, 5)).astype(np.float32))
    loss = criterion.forward(logits, xp.asarray(np.array([[1, 2, 0], [3, 4, 4]])))
    assert loss.dtype == np.float32 and criterion.backward().dtype == np.float32


def test_wrong_feature_size_names_expected_and_actual():
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 8\), got \(2, 3, 7\)"):
        nn.Linear(8, 4, rng=0).forward(np.zeros((2, 3, 7), np.float32))


def test_wrong_dtype_is_an_error_not_a_silent_upcast():
    with pytest.raises(ValueError, match="expects float32 input.*got float64"):
        nn.LayerNorm(4).forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expects float32 input.*got int64"):
        nn.Linear(4, 2, rng=0).forward(np.zeros((2, 4), dtype=np.int64))


def test_token_ids_out_of_range_do_not_wrap_around():
    emb = nn.Embedding(5, 3, rng=0)
    with pytest.raises(ValueError, match=r"token ids from -1 to 2, but valid ids are 0 to 4"):
        emb.forward(np.array([[0, 2, -1]]))
    with pytest.raises(ValueError, match=r"from 0 to 5, but valid ids are 0 to 4"):
        emb.forward(np.array([[0, 5]]))
    with pytest.raises(ValueError, match="integer array of token ids"):
        emb.forward(np.array([[0.0, 1.0]]))


def test_bad_attention_masks():
    mha = nn.MultiHeadAttention(8, 2, rng=0)
    x = np.zeros((2, 5, 8), np.float32)
    with pytest.raises(ValueError, match="boolean"):
        mha.forward(x, mask=np.ones((5, 5)))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 4\) does not broadcast.*\(2, 2, 5, 5\)"):
        mha.forward(x, mask=np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="keys/values must have shape"):
        mha.forward(x, np.zeros((3, 4, 8), np.float32))
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiHeadAttention(10, 3)


def test_positional_encoding_too_long():
    with pytest.raises(ValueError, match="longer than max_len=4"):
        nn.PositionalEncoding(8, 4).forward(np.zeros((1, 5, 8), np.float32))


def test_loss_input_errors():
    criterion = CrossEntropyLoss(ignore_index=0)
    logits = np.zeros((2, 3, 5), np.float32)
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 3\)"):
        criterion.forward(logits, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=r"targets: token ids from 7 to 7, but valid ids are 0 to 4"):
        criterion.forward(logits, np.full((2, 3), 7))
    with pytest.raises(ValueError, match="every target equals ignore_index"):
        criterion.forward(logits, np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.5)


def test_dropout_probability_checked():
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        nn.Dropout(1.0)


def test_package_imports_no_autograd_library():
    code = ("import sys, minitransformer, minitransformer.nn, minitransformer.functional, "
            "minitransformer.losses, minitransformer.gradcheck\n"
            "import pkgutil, importlib\n"
            "for m in pkgutil.walk_packages(minitransformer.__path__, 'minitransformer.'):\n"
            "    if m.name.endswith('__main__'): continue\n"
            "    importlib.import_module(m.name)\n"
            "bad = [m for m in ('torch', 'jax', 'tensorflow', 'autograd', 'mxnet') if m in sys.modules]\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"autograd libraries imported: {result.stdout}"
