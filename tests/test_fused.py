"""The fused GPU kernels (minitransformer/fast/fused.py) equal the functions they replace.

What the CPU can prove, it proves here, on every machine:

* every kernel's NumPy twin equals the reference function (float64, random inputs and edge
  cases: zeros, saturating GELU, overflowing and masked softmax rows, constant layer-norm rows,
  rows longer than a thread block), and the fused functions pass a gradient check of their own;
* on the strict backend (CuPy's rules on the CPU), a model and the optimisers with the fused
  kernels switched on give the numbers of the kernels switched off, so the wiring, the
  host/device discipline and the in-place updates are right;
* a training step launches fewer device operations with them than without;
* the switches (``MINITRANSFORMER_FUSED``, ``CUPY_TF32``) say clearly what is wrong with them.

What it cannot prove: that the CUDA source compiles and equals its twin. The tests marked
``gpu`` do that where CuPy and a GPU are present (every test taking ``backend_name`` runs the
compiled kernels on its ``cupy`` case, and ``test_compiled_kernel_equals_its_twin`` compares
them one by one).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from minitransformer import backend, gpu, layers
from minitransformer import functional as F
from minitransformer.decoding import greedy_decode
from minitransformer.fast import fused
from minitransformer.fast import layers as fast_layers
from minitransformer.fast.kernels import ROW_THREADS, FusedKernel
from minitransformer.gradcheck import check_function, relative_error
from minitransformer.losses import CrossEntropyLoss
from minitransformer.module import Parameter
from minitransformer.optim import Adam, AdamW
from minitransformer.testing.launches import count_launches
from minitransformer.training import Trainer, make_batch
from minitransformer.transformer import Transformer, TransformerConfig

SAME = 1e-12   # twin vs reference, float64: only the order of additions differs
TOL = 1e-7     # finite differences, as in tests/test_gradcheck_layers.py
_CUPY_REASON = backend.cupy_unavailable_reason()


@pytest.fixture(autouse=True)
def fused_switch_as_by_default():
    yield
    gpu.use_fused_kernels(None)


def assert_same(got, want, tol=SAME):
    got, want = tuple(got), tuple(want)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"[{i}] {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        err = relative_error(backend.to_numpy(a), backend.to_numpy(b))
        assert err <= tol, f"[{i}]: relative error {err:.2e} > {tol:g}"


def rows_with_edge_cases(rng, d, size=3.0):
    """Random rows (2, 4, d), with a row of zeros, a constant row, a row of large values."""
    x = rng.standard_normal((2, 4, d)) * size
    x[0, 0] = 0.0
    x[0, 1] = 7.0
    x[1, 0] *= 40.0
    return x


# --------------------------------------------------------------------------------------
# Each twin equals its reference (and, on the cupy case, each compiled kernel does)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout(backend_name, xp, rng, p):
    if backend_name == "numpy":
        pytest.skip("fused kernels run on device backends only; on NumPy the reference draws its masks "
                    "from 16-bit integers (backend.random_keep_mask)")
    x, dy = xp.asarray(rng.standard_normal((3, 5, 40))), xp.asarray(rng.standard_normal((3, 5, 40)))
    y, cache = fused.dropout_forward(x, p, backend.default_rng(7, backend_name))
    y_ref, cache_ref = F.dropout_forward(x, p, backend.default_rng(7, backend_name))
    assert_same((y, fused.dropout_backward(dy, cache), cache.keep),
                (y_ref, F.dropout_backward(dy, cache_ref), cache_ref.keep), tol=0.0)
    assert cache.scale == cache_ref.scale and 0 < float(cache.keep.mean()) < 1
    y_eval, cache_eval = fused.dropout_forward(x, p, None, training=False)
    assert y_eval is x and cache_eval is None
    assert fused.dropout_backward(dy, None) is dy


@pytest.mark.parametrize("p, training", [(0.0, True), (0.4, True), (0.4, False)])
def test_relu_dropout_linear(backend_name, xp, rng, p, training):
    """Against the fast path's pair (itself tested against the reference's three layers)."""
    if backend_name == "numpy" and p and training:
        pytest.skip("on NumPy the fast path draws its masks from 16-bit integers")
    h = rng.standard_normal((2, 5, 8))
    h[0, 0, :3] = 0.0
    h, w, b, dy = (xp.asarray(a) for a in (h, rng.standard_normal((8, 3)), rng.standard_normal(3),
                                              rng.standard_normal((2, 5, 3))))
    y, cache = fused.relu_dropout_linear_forward(h, w, b, p, backend.default_rng(5, backend_name), training)
    y_ref, cache_ref = fast_layers.relu_dropout_linear_forward(h, w, b, p, backend.default_rng(5, backend_name),
                                                               training)
    assert_same((y,) + fused.relu_dropout_linear_backward(dy, cache),
                (y_ref,) + fast_layers.relu_dropout_linear_backward(dy, cache_ref))


def test_twins_at_the_edges():
    """A unit is kept when u == p, as backend.random_keep_mask keeps it (u >= p); ReLU keeps a NaN
    as np.maximum does."""
    p = np.float32(0.25)
    u = np.array([np.nextafter(p, np.float32(0)), p, np.nextafter(p, np.float32(1))], dtype=np.float32)
    x, y, keep = np.full(3, 2.0), np.empty(3), np.empty(3, dtype=bool)
    fused.DROPOUT(x, u, p, 1 / 0.75, y, keep)
    np.testing.assert_array_equal(keep, u >= 0.25)
    np.testing.assert_array_equal(y, [0.0, 2 / 0.75, 2 / 0.75])
    h, d = np.array([np.nan, -1.0, 0.0, 2.0]), np.empty(4)
    fused.RELU_DROPOUT(h, np.full(4, 0.9, dtype=np.float32), np.float32(0.5), d)
    np.testing.assert_array_equal(d, np.maximum(h, 0))


def test_gelu(backend_name, xp, rng):
    x = rows_with_edge_cases(rng, 9)
    x[1, 1] = [-30.0, -8.0, -1e-8, -0.0, 1e-8, 0.5, 8.0, 30.0, 1e3]   # tanh saturates at both ends
    x, dy = xp.asarray(x), xp.asarray(rng.standard_normal(x.shape))
    y, cache = fused.gelu_forward(x)
    y_ref, cache_ref = F.gelu_forward(x)
    assert_same((y, cache.t, fused.gelu_backward(dy, cache)), (y_ref, cache_ref.t, F.gelu_backward(dy, cache_ref)))


@pytest.mark.parametrize("d", [1, 7, ROW_THREADS + 37])
def test_softmax(backend_name, xp, rng, d):
    x = rows_with_edge_cases(rng, d, size=10.0)
    x[1, 0] += 1000.0                   # exp() overflows without the max subtracted
    x[1, 1, : d // 2] = F.MASK_VALUE    # masked scores, as attention sets them
    x, dp = xp.asarray(x), xp.asarray(rng.standard_normal(x.shape))
    p, cache = fused.softmax_forward(x)
    p_ref, cache_ref = F.softmax_forward(x)
    assert_same((p, fused.softmax_backward(dp, cache)), (p_ref, F.softmax_backward(dp, cache_ref)))
    assert bool(xp.isfinite(p).all())


@pytest.mark.parametrize("d", [1, 8, ROW_THREADS + 37])
def test_layer_norm(backend_name, xp, rng, d):
    x = xp.asarray(rows_with_edge_cases(rng, d))
    gamma, beta = xp.asarray(rng.standard_normal(d)), xp.asarray(rng.standard_normal(d))
    dy = xp.asarray(rng.standard_normal(x.shape))
    y, cache = fused.layer_norm_forward(x, gamma, beta)
    y_ref, cache_ref = F.layer_norm_forward(x, gamma, beta)
    assert_same((y, cache.xhat, cache.rstd) + fused.layer_norm_backward(dy, cache),
                (y_ref, cache_ref.xhat, cache_ref.rstd) + F.layer_norm_backward(dy, cache_ref))
    transposed = x.transpose(1, 0, 2)   # not contiguous: copied into rows first
    assert_same(fused.layer_norm_forward(transposed, gamma, beta)[:1], F.layer_norm_forward(transposed, gamma, beta)[:1])


def test_float32_stays_float32_and_matches_to_float32_rounding(xp, rng):
    x = xp.asarray(rng.standard_normal((4, 6, 16)).astype(np.float32))
    gamma, beta = xp.ones(16, dtype=np.float32), xp.zeros(16, dtype=np.float32)
    for got, want in [(fused.gelu_forward(x)[0], F.gelu_forward(x)[0]),
                      (fused.softmax_forward(x)[0], F.softmax_forward(x)[0]),
                      (fused.layer_norm_forward(x, gamma, beta)[0], F.layer_norm_forward(x, gamma, beta)[0])]:
        assert got.dtype == np.float32
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), rtol=1e-5, atol=1e-6)


def test_fused_functions_pass_a_gradient_check(rng):
    x = rng.standard_normal((2, 3, 6))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    check_function(fused.layer_norm_forward, fused.layer_norm_backward,
                   {"x": x, "gamma": gamma, "beta": beta}).assert_ok(TOL)
    check_function(fused.gelu_forward, lambda dy, c: (fused.gelu_backward(dy, c),), {"x": x}).assert_ok(TOL)
    check_function(fused.softmax_forward, lambda dp, c: (fused.softmax_backward(dp, c),), {"x": x}).assert_ok(TOL)

    def dropout(x):
        return fused.dropout_forward(x, 0.3, np.random.default_rng(2))

    check_function(dropout, lambda dy, c: (fused.dropout_backward(dy, c),), {"x": x}).assert_ok(TOL)


# --------------------------------------------------------------------------------------
# A kernel on the strict device: one operation, device arrays only
# --------------------------------------------------------------------------------------
def test_a_kernel_is_one_device_operation_and_refuses_host_arrays():
    xp = backend.get_backend("strict")
    x = xp.asarray(np.linspace(-2, 2, 12))
    y, t = xp.empty_like(x), xp.empty_like(x)
    with count_launches() as launches:
        fused.GELU(x, y, t)
    assert launches == {"mt_gelu": 1}
    with pytest.raises(TypeError, match="Unsupported type"):
        fused.GELU(x, np.empty(12), t)   # a host output, as CuPy refuses it


# --------------------------------------------------------------------------------------
# The model and the optimisers, fused kernels on and off, on the strict backend
# --------------------------------------------------------------------------------------
def _model_step(fused_on, activation, norm_first, backend_name="strict", math="fast"):
    gpu.use_fused_kernels(fused_on)
    config = TransformerConfig(src_vocab_size=9, tgt_vocab_size=7, d_model=8, n_heads=2, d_ff=12,
                               n_encoder_layers=2, n_decoder_layers=2, dropout=0.1, max_len=32, seed=3, pad_id=0,
                               dtype="float64", activation=activation, norm_first=norm_first)
    model = Transformer(config, backend=backend_name).use_math(math)
    batch = make_batch([[3, 4, 5, 6], [7, 8], [5, 5, 3]], [[3, 4, 5], [6], [4, 3, 5, 6]],
                       pad_id=0, bos_id=1, eos_id=2).to(backend_name)
    criterion = CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    with count_launches() as launches:
        logits = model.forward(batch.src, batch.tgt_in)
        criterion.forward(logits, batch.tgt_out)
        model.backward(criterion.backward())
    grads = [p.grad for p in model.parameters()]
    return (logits, *grads), launches


DEVICES = ["strict", pytest.param("cupy", marks=[pytest.mark.gpu,
                                                 pytest.mark.skipif(_CUPY_REASON is not None, reason=str(_CUPY_REASON))])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_model_gives_the_same_numbers_with_fused_kernels(activation, norm_first, device):
    """Logits and every gradient, with dropout (the same masks: the same draws)."""
    off, launches_off = _model_step(False, activation, norm_first, device)
    on, launches_on = _model_step(True, activation, norm_first, device)
    assert_same(on, off, tol=1e-10)
    if device == "cupy":  # pragma: no cover - GPU only: the strict backend counts, CuPy does not
        return
    assert not any(name.startswith("mt_") for name in launches_off)
    assert launches_on["mt_dropout"] > 0 and launches_on["mt_layer_norm"] > 0
    assert launches_on["mt_relu_dropout" if activation == "relu" else "mt_gelu"] > 0


def test_the_reference_path_and_numpy_never_use_fused_kernels():
    _, launches = _model_step(True, "gelu", False, math="reference")
    assert launches.total() > 0 and not any(name.startswith("mt_") for name in launches)
    module = layers.LayerNorm(4)
    gpu.use_fused_kernels(True)
    assert layers._math(module, np.zeros(4)) is not fused
    assert layers._math(module, backend.get_backend("strict").zeros(4)) is fused


def test_training_and_decoding_give_the_same_results_with_fused_kernels():
    """A few steps of the Trainer (dropout, Adam) and greedy decoding, on the strict backend."""
    results = []
    for on in (False, True):
        gpu.use_fused_kernels(on)
        config = TransformerConfig(src_vocab_size=9, tgt_vocab_size=7, d_model=8, n_heads=2, d_ff=12,
                                   n_encoder_layers=1, n_decoder_layers=1, dropout=0.1, max_len=32, seed=3,
                                   pad_id=0, dtype="float64")
        model = Transformer(config, backend="strict")
        batch = make_batch([[3, 4, 5, 6], [7, 8]], [[3, 4, 5], [6]], pad_id=0, bos_id=1, eos_id=2).to("strict")
        history = Trainer(model, Adam(model.parameters(), lr=0.01), shards=1).fit(
            [batch] * 3, max_steps=3, progress=False, log_every=1)
        results.append((list(history["loss"]), greedy_decode(model, batch.src, bos_id=1, eos_id=2, max_len=6)))
    # Adam divides by sqrt(v), which magnifies round-off in near-zero gradients (sums in another order)
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-9)
    assert results[1][1] == results[0][1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda p: Adam(p, lr=0.01), lambda p: Adam(p, lr=0.01, weight_decay=0.1),
                                  lambda p: AdamW(p, lr=0.01, weight_decay=0.1)], ids=["adam", "adam-l2", "adamw"])
def test_optimizer_gives_the_same_numbers_bit_for_bit(make, dtype, rng):
    """The Adam kernel updates p, m, v in place with the reference's operations, in order."""
    data, grads = rng.standard_normal((5, 3)), [rng.standard_normal((5, 3)) for _ in range(4)]
    results = []
    for on in (False, True):
        gpu.use_fused_kernels(on)
        p = Parameter(backend.asarray(data, "strict", dtype))
        view = p.data[1]   # stays a view of the parameter: updated in place
        optimizer = make([p])
        with count_launches() as launches:
            for g in grads:
                p.grad[...] = backend.asarray(g, "strict", dtype)
                optimizer.step()
        assert (launches["mt_adam"] == len(grads)) == on
        results.append((p.data, view, *optimizer.state[0].values()))
    for got, want in zip(*results[::-1]):
        np.testing.assert_array_equal(got.get(), want.get())
    assert results[1][0].dtype == dtype


# --------------------------------------------------------------------------------------
# Launches per training step: fewer with the fused kernels
# --------------------------------------------------------------------------------------
def test_a_training_step_launches_fewer_operations_with_fused_kernels():
    from benchmarks.kernel_count import count_step_launches
    from benchmarks.common import benchmark_config
    cfg = benchmark_config()
    counts = {on: count_step_launches(cfg, fused=on, batch_size=2) for on in (False, True)}
    assert counts[True].total() < 0.6 * counts[False].total()
    assert counts[True]["mt_adam"] == len(Transformer(cfg.model).parameters())


def test_decoding_launches_are_counted_per_step_with_and_without_the_cache():
    """Both decode every step (an untrained model); the uncached one launches more: it runs
    the decoder's input projections and its checks over the whole prefix again."""
    from benchmarks.kernel_count import count_decoding_launches
    plain = {n: count_decoding_launches(n, use_cache=False, n_sequences=2).total() for n in (4, 8)}
    cached = {n: count_decoding_launches(n, use_cache=True, n_sequences=2).total() for n in (4, 8)}
    assert all(cached[n] < plain[n] for n in (4, 8))
    assert cached[8] > cached[4] > 0


# --------------------------------------------------------------------------------------
# The switches
# --------------------------------------------------------------------------------------
def test_fused_switch(monkeypatch):
    monkeypatch.delenv(gpu.FUSED_ENV_VAR, raising=False)
    assert gpu.fused_kernels_enabled() is False
    monkeypatch.setenv(gpu.FUSED_ENV_VAR, "1")
    assert gpu.fused_kernels_enabled() is True
    gpu.use_fused_kernels(False)
    assert gpu.fused_kernels_enabled() is False
    gpu.use_fused_kernels(None)
    monkeypatch.setenv(gpu.FUSED_ENV_VAR, "maybe")
    with pytest.raises(ValueError, match="MINITRANSFORMER_FUSED='maybe' is not a switch: set it to 1"):
        gpu.fused_kernels_enabled()
    with pytest.raises(ValueError, match="True, False or None"):
        gpu.use_fused_kernels("yes")


def test_tf32_switch(monkeypatch):
    monkeypatch.setenv(gpu.TF32_ENV_VAR, "")   # restored (unset) after the test, whatever use_tf32 sets
    assert gpu.tf32_enabled() is False
    monkeypatch.setattr(gpu, "_cupy_float32_compute_type", lambda: None)   # CuPy not imported yet
    gpu.use_tf32(True)
    assert gpu.tf32_enabled() is True and os.environ[gpu.TF32_ENV_VAR] == "1"
    monkeypatch.setenv(gpu.TF32_ENV_VAR, "fast")
    with pytest.raises(ValueError, match="CUPY_TF32='fast' is not an integer"):
        gpu.tf32_enabled()
    with pytest.raises(ValueError, match="True or False"):
        gpu.use_tf32(1)
    monkeypatch.setattr(gpu, "_cupy_float32_compute_type", lambda: "float32")   # a product already ran
    gpu.use_tf32(False)   # what is in force: fine
    with pytest.raises(RuntimeError, match="already use float32, and CuPy reads CUPY_TF32 only once"):
        gpu.use_tf32(True)


# --------------------------------------------------------------------------------------
# On a GPU: each compiled kernel against its twin
# --------------------------------------------------------------------------------------
def _kernel_cases(rng, dtype):
    """(kernel, inputs, outputs) for every fused kernel, as host arrays."""
    a, b = (rng.standard_normal((300, 37)).astype(dtype) for _ in range(2))
    u = rng.random((300, 37), dtype=np.float32)
    keep, f, s = u >= 0.3, np.dtype(dtype).type, np.float32(0.3)
    rows, row_vec = rng.standard_normal((50, ROW_THREADS + 37)).astype(dtype), rng.standard_normal(ROW_THREADS + 37)
    gamma, beta, rstd = row_vec.astype(dtype), (row_vec[::-1] * 0.5).astype(dtype), np.ones((50, 1), dtype)
    empty = np.empty_like
    return [(fused.DROPOUT, (a, u, s, f(1 / 0.7)), (empty(a), empty(keep))),
            (fused.APPLY_MASK, (a, keep, f(1 / 0.7)), (empty(a),)),
            (fused.RELU_DROPOUT, (a, u, s), (empty(a),)),
            (fused.RELU_DROPOUT_BACKWARD, (a,), (b.copy(),)),
            (fused.GELU, (a,), (empty(a), empty(a))),
            (fused.GELU_BACKWARD, (b, a, np.tanh(a)), (empty(a),)),
            (fused.SOFTMAX, (rows,), (empty(rows),)),
            (fused.SOFTMAX_BACKWARD, (rows, np.abs(rows) / 100), (empty(rows),)),
            (fused.LAYER_NORM, (rows, gamma, beta, f(1e-5)), (empty(rows), empty(rows), empty(rstd))),
            (fused.LAYER_NORM_BACKWARD, (rows, rows / 3, rstd, gamma), (empty(rows), empty(rows))),
            (fused.ADAM, (a, *map(f, (0.9, 0.1, 0.98, 0.02, 0.3, 1e-8, 1e-3, 0.999, 0.01))),
             (b.copy(), a * 0.1, a * a))]


EXACT = {"mt_dropout", "mt_apply_mask", "mt_relu_dropout", "mt_relu_dropout_backward", "mt_adam"}


@pytest.mark.gpu
@pytest.mark.skipif(_CUPY_REASON is not None, reason=str(_CUPY_REASON))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_kernel_equals_its_twin(dtype):  # pragma: no cover - GPU only
    import cupy
    for kernel, inputs, outputs in _kernel_cases(np.random.default_rng(0), dtype):
        device = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in inputs + outputs]
        kernel(*device)
        kernel.twin(*inputs, *outputs)
        for got, want in zip(device[len(inputs):], outputs):
            if kernel.name in EXACT:   # compiled with --fmad=false: NumPy's roundings, bit for bit
                np.testing.assert_array_equal(cupy.asnumpy(got), want, err_msg=kernel.name)
            else:                      # tanh, exp and sums in another order: to rounding
                tol = 1e-5 if dtype == np.float32 else 1e-12
                np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=tol, atol=tol, err_msg=kernel.name)


def test_every_kernel_has_a_gpu_case():
    cases = {kernel.name for kernel, _, _ in _kernel_cases(np.random.default_rng(0), np.float64)}
    kernels = {k.name for k in vars(fused).values() if isinstance(k, FusedKernel)}
    assert cases == kernels
    for kernel, inputs, outputs in _kernel_cases(np.random.default_rng(0), np.float64):
        kernel(*inputs, *outputs)   # the twins run on the host arrays of the GPU cases
