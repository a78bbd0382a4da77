"""One training step — forward, loss, backward, Adam — timed here and in PyTorch.

The step is the same on both sides:

* the same model: ``to_torch(model)`` copies our weights into the ``torch.nn`` layers;
* the same batch (the same token ids), float32;
* cross-entropy with label smoothing 0.1, padding ignored;
* Adam, betas (0.9, 0.98), eps 1e-9, a constant learning rate, no gradient clipping;
* on the CPU, the same number of threads (``torch.set_num_threads`` is set by the caller).

Ours runs the step as :class:`~minitransformer.training.Trainer` does: through
:class:`~minitransformer.parallel.DataParallel`, which on the CPU cuts a large batch into
shards of at least 2,048 tokens (a power of two of them, whatever the core count), runs them on
the library's threads (each with a one-thread BLAS) and leaves a small batch whole. The result
records how many shards the batch was cut into.

The two are timed **interleaved**: a block of our steps, a block of PyTorch steps, ours
again, and so on. A machine whose speed drifts (other jobs, CPU frequency) then slows both
alike instead of favouring whichever ran in the quiet minute.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from minitransformer.losses import CrossEntropyLoss
from minitransformer.optim import Adam
from minitransformer.parallel import DataParallel
from minitransformer.transformer import Transformer

from .common import Device, StepConfig, make_batch, summarize, torch_sync
from .flops import training_step_flops

LABEL_SMOOTHING = 0.1
LEARNING_RATE = 1e-4
BETAS = (0.9, 0.98)
EPS = 1e-9


class OurStep:
    """Our training step on one fixed batch: ``step()`` runs it and returns the loss."""

    def __init__(self, cfg: StepConfig, device: Device, seed: int = 0):
        self.device = device
        self.model = Transformer(cfg.model, backend=device.name)
        self.parallel = DataParallel(self.model)
        self.criterion = CrossEntropyLoss(ignore_index=cfg.model.pad_id, label_smoothing=LABEL_SMOOTHING)
        self.optimizer = Adam(self.model.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPS)
        batch = make_batch(cfg, seed)
        self.n_target_tokens = batch.n_tokens
        self.batch = batch if device.name == "numpy" else batch.to(device.name)
        self.model.train()

    def step(self) -> float:
        model, batch = self.model, self.batch
        model.zero_grad()
        logits = self.parallel.forward(batch.src, batch.tgt_in)
        loss = self.criterion.forward(logits, batch.tgt_out)
        self.parallel.backward(self.criterion.backward())
        self.optimizer.step()
        return float(loss)

    def timed_step(self) -> float:
        """Seconds for one step (the device waited for at both ends)."""
        start = self.device.clock()
        self.step()
        return self.device.clock() - start


class TorchStep:
    """The same step in PyTorch, on a copy of our model (made before either trains)."""

    def __init__(self, ours: OurStep, torch_device):
        import torch
        from torch import nn

        from minitransformer.backend import to_numpy
        from minitransformer.interop import to_torch

        self.torch, self.device = torch, torch_device
        self.model = to_torch(ours.model, dtype=torch.float32).to(torch_device).train()
        self.criterion = nn.CrossEntropyLoss(ignore_index=ours.model.config.pad_id, label_smoothing=LABEL_SMOOTHING)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPS)
        self.src, self.tgt_in, self.tgt_out = (torch.as_tensor(to_numpy(a), dtype=torch.long, device=torch_device)
                                               for a in (ours.batch.src, ours.batch.tgt_in, ours.batch.tgt_out))

    def step(self) -> float:
        self.optimizer.zero_grad()
        logits = self.model(self.src, self.tgt_in)
        loss = self.criterion(logits.reshape(-1, logits.shape[-1]), self.tgt_out.reshape(-1))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def timed_step(self) -> float:
        torch_sync(self.device)
        start = time.perf_counter()
        self.step()
        torch_sync(self.device)
        return time.perf_counter() - start


def measure_training(cfg: StepConfig, device: Device, *, steps: int = 20, warmup: int = 3, block: int = 5,
                     torch_device=None, matmul_probe=None, seed: int = 0) -> dict:
    """Time ``steps`` training steps (after ``warmup``) of ours and, if ``torch_device`` is
    given, of PyTorch, in alternating blocks of ``block`` steps. Returns a dict of results.

    ``matmul_probe()``, if given, measures the large-matmul rate (GFLOP/s) before every
    block and after every step, so that each timed step has a rate measured just before
    it and one just after. On a shared virtual machine the speed of the whole machine
    drifts, by 10-20% within a minute and by up to half over a few minutes (other
    machines' work on the same host); a step divided by a rate measured at another moment
    measures that drift as much as the step. Two fractions of the matmul rate come out:

    * ``fraction_of_matmul_paired``: for every step, its GFLOP/s over the mean of the two
      rates around it, then the median over the steps (the headline figure);
    * ``fraction_of_matmul``: the median step's GFLOP/s over the median of all the rates.
    """
    ours = OurStep(cfg, device, seed)
    theirs = TorchStep(ours, torch_device) if torch_device is not None else None
    first_loss = {"ours": ours.step(), "torch": theirs.step() if theirs else None}
    for _ in range(warmup - 1):
        ours.step()
        if theirs:
            theirs.step()

    times = {"ours": [], "torch": []}
    rates_around = {"ours": [], "torch": []}   # (rate just before, rate just after) each step
    probes = []                                # every rate measured, once each

    def probe():
        if matmul_probe is None:
            return None
        probes.append(matmul_probe())
        return probes[-1]

    def timed_block(who, stepper, n):
        before = probe()
        for _ in range(n):
            times[who].append(stepper.timed_step())
            after = probe()
            rates_around[who].append((before, after))
            before = after

    while len(times["ours"]) < steps:
        n = min(block, steps - len(times["ours"]))
        timed_block("ours", ours, n)
        if theirs:
            timed_block("torch", theirs, n)
    matmul_gflops = statistics.median(probes) if probes else None

    flops = training_step_flops(cfg.model, cfg.batch_size, cfg.src_len, cfg.tgt_len)
    result = {"config": cfg.name, "description": cfg.description, "shape": cfg.shape,
              "batch_size": cfg.batch_size, "src_len": cfg.src_len, "tgt_len": cfg.tgt_len,
              "target_tokens": ours.n_target_tokens, "parameters": ours.model.num_parameters(),
              "warmup_steps": warmup, "block": block, "flops": flops, "first_loss": first_loss,
              "shards": ours.parallel.last_shards, "matmul_gflops": matmul_gflops}
    for who in ("ours", "torch"):
        if not times[who]:
            result[who] = None
            continue
        s = summarize(times[who])
        median_s = s["median_ms"] / 1000.0
        s["target_tokens_per_s"] = ours.n_target_tokens / median_s
        s["gflops_per_s"] = flops["step"] / median_s / 1e9
        s["fraction_of_matmul"] = s["gflops_per_s"] / matmul_gflops if matmul_gflops else None
        s["fraction_of_matmul_paired"] = (paired_fraction(flops["step"], times[who], rates_around[who])
                                          if matmul_gflops else None)
        s["times_ms"] = [1000.0 * t for t in times[who]]
        s["matmul_gflops_around"] = [list(pair) for pair in rates_around[who]] if matmul_gflops else None
        result[who] = s
    result["ours_over_torch"] = (result["ours"]["median_ms"] / result["torch"]["median_ms"]
                                 if result["torch"] else None)
    return result


def paired_fraction(step_flops: float, seconds: list[float], rates_around: list[tuple[float, float]]) -> float:
    """Median over the steps of (the step's GFLOP/s) / (the mean of the large-matmul rates
    measured just before and just after it): how close each step came to what the machine
    could do at that moment."""
    return statistics.median(step_flops / t / 1e9 / ((before + after) / 2.0)
                             for t, (before, after) in zip(seconds, rates_around))


def check_same_logits(cfg: StepConfig) -> float:
    """Largest |difference| between our logits and PyTorch's on the batch, in eval mode
    (no dropout), on the CPU: the two sides of the comparison compute the same function."""
    import torch

    from minitransformer.interop import to_torch
    model = Transformer(cfg.model).eval()
    batch = make_batch(cfg)
    ours = model.forward(batch.src, batch.tgt_in)
    with torch.no_grad():
        theirs = to_torch(model, dtype=torch.float32).eval()(torch.as_tensor(batch.src), torch.as_tensor(batch.tgt_in))
    return float(np.abs(ours - theirs.numpy()).max())
