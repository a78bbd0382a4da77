# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. The same code on a GPU
#
# Nothing in the library's math names NumPy. Every function asks its input which array
# library it belongs to and uses that one:
#
# ```python
# xp = get_array_module(x)        # numpy, or cupy for an array on the GPU
# p = xp.exp(x - x.max(axis=-1, keepdims=True))
# ```
#
# [CuPy](https://cupy.dev) implements NumPy's interface on NVIDIA GPUs, so the same
# forward and backward passes run there unchanged. This notebook:
#
# 1. asks whether a GPU backend is available here, and if not, why;
# 2. times one training step with NumPy on the CPU;
# 3. on a machine with CuPy and a GPU, builds the same model on the GPU
#    (`Transformer(config, backend="cupy")`), moves a CPU model over (`model.to("cupy")`),
#    checks that both backends compute the same numbers, and times the same step.
#
# On a machine without a GPU the GPU cells print that they were skipped, and the
# notebook still runs to the end.

# %%
import time
import warnings
from dataclasses import replace

import numpy as np

from minitransformer import Transformer, TransformerConfig, backend
from minitransformer.optim import Adam
from minitransformer.toy import random_pairs, toy_vocabulary
from minitransformer.training import Trainer, make_batch

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm, harmless

# %% [markdown]
# ## 1. Which backends can this machine use?
#
# `backend.cupy_unavailable_reason()` returns `None` when CuPy is installed and sees a
# CUDA GPU, and otherwise one sentence saying what is missing and how to get it.

# %%
reason = backend.cupy_unavailable_reason()
GPU = reason is None
print("available backends:", backend.available_backends())
if GPU:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    print("GPU:", props["name"].decode(), f"| {props['totalGlobalMem'] / 2**30:.0f} GiB")
else:
    print("no GPU backend here:", reason)

# %% [markdown]
# Asking for CuPy where it cannot work gives that same sentence as an error, not a
# CUDA traceback:

# %%
tiny = TransformerConfig(src_vocab_size=8, tgt_vocab_size=8, d_model=16, n_heads=2, d_ff=32,
                         n_encoder_layers=1, n_decoder_layers=1)
try:
    Transformer(tiny, backend="cupy")
    print("a model on the GPU: fine")
except backend.BackendUnavailableError as err:
    print("BackendUnavailableError:", err)

# %% [markdown]
# There are three ways to choose the backend:
#
# * `Transformer(config, backend="cupy")` builds the model on the GPU;
# * `model.to("cupy")` moves an existing model's parameters (and `optimizer.to("cupy")`
#   its state), `model.to("numpy")` brings them back;
# * the environment variable `MINITRANSFORMER_BACKEND=cupy` makes CuPy the default for
#   everything that is not told otherwise.
#
# The initial weights are always drawn on the CPU with NumPy and then moved, so the
# same seed gives the same model on both backends.
#
# ## 2. One training step on the CPU
#
# A model of moderate size (d = 128, 8 heads, 2 + 2 layers) and a batch of 32 copy-task
# sequences of 20 to 30 symbols. One step is: forward, loss, backward, gradient
# clipping, Adam update (`Trainer.train_step`). We time a few steps after one warm-up.

# %%
vocab = toy_vocabulary()
config = TransformerConfig(src_vocab_size=len(vocab), tgt_vocab_size=len(vocab), d_model=128, n_heads=8,
                           d_ff=512, n_encoder_layers=2, n_decoder_layers=2, max_len=64, dropout=0.1)
sources, targets = random_pairs(32, 20, 30, "copy", np.random.default_rng(0), vocab)
batch = make_batch(sources, targets, pad_id=vocab.pad_id, bos_id=vocab.bos_id, eos_id=vocab.eos_id)


def time_training_steps(model, batch, n_steps=3, synchronize=lambda: None):
    """Seconds per training step (mean of n_steps, after one warm-up step) and the losses."""
    trainer = Trainer(model, Adam(model.parameters(), lr=1e-4))
    losses = [trainer.train_step(batch).loss]          # warm-up: first-call costs are not timed
    synchronize()
    started = time.perf_counter()
    for _ in range(n_steps):
        losses.append(trainer.train_step(batch).loss)
    synchronize()
    return (time.perf_counter() - started) / n_steps, losses


cpu_model = Transformer(config)
cpu_seconds, cpu_losses = time_training_steps(cpu_model, batch)
print(f"{cpu_model.num_parameters():,} parameters, {batch.n_tokens} target tokens per batch")
print(f"NumPy (CPU): {cpu_seconds * 1000:.0f} ms per step, {batch.n_tokens / cpu_seconds:,.0f} tokens/s")

# %% [markdown]
# ## 3. The same step on the GPU
#
# First a check that the two backends compute the same thing: the same model (same seed)
# and the same batch, without dropout (the two backends draw different random masks),
# should give the same loss and the same gradients up to float32 rounding.
#
# The batch is moved with `batch.to("cupy")`: token ids must live where the model lives.

# %%
if not GPU:
    print("skipped: no GPU backend here.", reason)
else:
    exact = replace(config, dropout=0.0)
    losses, grads = {}, {}
    for name in ("numpy", "cupy"):
        model = Transformer(exact, backend=name)
        step_batch = batch.to(name)
        trainer = Trainer(model, Adam(model.parameters(), lr=1e-4))
        losses[name] = trainer.train_step(step_batch).loss
        grads[name] = {n: backend.to_numpy(p.grad) for n, p in model.named_parameters()}
    worst = max(np.abs(grads["numpy"][n] - grads["cupy"][n]).max() / (np.abs(grads["numpy"][n]).max() + 1e-30)
                for n in grads["numpy"])
    print(f"loss: NumPy {losses['numpy']:.6f}, CuPy {losses['cupy']:.6f}")
    print(f"largest gradient difference, relative to the parameter's largest gradient: {worst:.1e}")

# %% [markdown]
# `model.to("cupy")` moves a model that already exists (for instance one loaded from a
# checkpoint on a laptop). Its outputs on the GPU match its outputs on the CPU:

# %%
if not GPU:
    print("skipped: no GPU backend here.")
else:
    model = Transformer(replace(config, dropout=0.0)).eval()
    logits_cpu = model.forward(batch.src, batch.tgt_in)
    model.to("cupy")
    print("parameters now live on:", model.backend_name)
    gpu_batch = batch.to("cupy")
    logits_gpu = model.forward(gpu_batch.src, gpu_batch.tgt_in)
    print("largest logit difference, CPU vs GPU:", float(np.abs(backend.to_numpy(logits_gpu) - logits_cpu).max()))
    model.to("numpy")
    print("and back to:", model.backend_name)

# %% [markdown]
# Now the timing. GPU work is queued and runs asynchronously, so the clock is read only
# after `synchronize()` has waited for the queue to empty.

# %%
if not GPU:
    print("skipped: no GPU backend here; the NumPy step above took "
          f"{cpu_seconds * 1000:.0f} ms.")
else:
    sync = cupy.cuda.Device().synchronize
    gpu_model = Transformer(config, backend="cupy")
    gpu_seconds, gpu_losses = time_training_steps(gpu_model, batch.to("cupy"), n_steps=10, synchronize=sync)
    print(f"NumPy (CPU): {cpu_seconds * 1000:7.1f} ms per step, {batch.n_tokens / cpu_seconds:>10,.0f} tokens/s")
    print(f"CuPy (GPU):  {gpu_seconds * 1000:7.1f} ms per step, {batch.n_tokens / gpu_seconds:>10,.0f} tokens/s"
          f"  ({cpu_seconds / gpu_seconds:.0f}x)")

# %% [markdown]
# A model this small keeps a GPU mostly idle: each step launches hundreds of small
# kernels, and the time goes into launching them. The gap widens with the size of the
# model and the batch. On a GPU we can afford the size of the paper's base model
# (d = 512, 8 heads, d_ff = 2048, 6 + 6 layers) and a bigger batch:

# %%
if not GPU:
    print("skipped: no GPU backend here.")
else:
    big = replace(config, d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6, n_decoder_layers=6,
                  max_len=128)
    big_sources, big_targets = random_pairs(128, 40, 60, "copy", np.random.default_rng(1), vocab)
    big_batch = make_batch(big_sources, big_targets, pad_id=vocab.pad_id, bos_id=vocab.bos_id,
                           eos_id=vocab.eos_id)
    big_model = Transformer(big, backend="cupy")
    big_seconds, _ = time_training_steps(big_model, big_batch.to("cupy"), n_steps=5, synchronize=sync)
    print(f"base-size model, {big_model.num_parameters():,} parameters, {big_batch.n_tokens} tokens per batch:")
    print(f"CuPy (GPU): {big_seconds * 1000:.0f} ms per step, {big_batch.n_tokens / big_seconds:,.0f} tokens/s")
    pool = cupy.get_default_memory_pool()
    print(f"GPU memory held by CuPy: {pool.total_bytes() / 2**30:.2f} GiB")
    del big_model
    pool.free_all_blocks()

# %% [markdown]
# ## Summary
#
# * The math is written once; `get_array_module` picks NumPy or CuPy from the arrays.
# * `Transformer(config, backend="cupy")`, `model.to("cupy")` or
#   `MINITRANSFORMER_BACKEND=cupy` put a model on the GPU; batches follow with
#   `batch.to("cupy")`.
# * Without CuPy or a GPU you get one sentence explaining why, and everything runs on NumPy.
# * To time GPU code, synchronise before reading the clock.
#
# ## Questions
#
# Answers in `notebooks/solutions/answers.md`.
#
# 1. Why does the GPU speed up the large model's step much more than the small one's?
# 2. Why must the optimiser's state move to the GPU together with the parameters?
# 3. The CPU and the GPU give losses and gradients that agree closely in float32, but not
#    bit for bit. Why not exactly?
