"""Kernel launches per training step, counted on the CPU, with the fused kernels off and on.

    python -m benchmarks.kernel_count [--config benchmark|codon] [--top 12] [--decode 30,100]

A small model on a GPU is bound by kernel launches, not by arithmetic: each array operation
costs a few microseconds of launch whatever its size. The strict backend
(``minitransformer/testing/strict.py``) sees every device operation, so this script runs one
training step (forward, loss, backward, Adam; the second step, when Adam's state exists) on it
and counts them (:func:`minitransformer.testing.launches.count_launches`), once with the fused
kernels of ``minitransformer/fast/fused.py`` off and once on. The count is of operations, about
one launch each on CuPy; it measures no time. What a GPU makes of the difference is unmeasured
until a GPU runs ``python -m benchmarks.run --backend cupy`` with ``MINITRANSFORMER_FUSED=1``.

``--decode`` counts greedy decoding the same way, with and without the KV cache, per
generated token (the codon demo's model, untrained, on random RNA: every step runs). On a GPU
a decoding step of a small model is launch-bound too, so the cache can only be as much faster
as it launches fewer operations per token, whatever arithmetic it saves.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections import Counter

from minitransformer import gpu
from minitransformer.testing.launches import count_launches

from .common import STEP_CONFIGS, Device, StepConfig, print_table
from .decode import random_rna_ids
from .train_step import OurStep


def count_step_launches(cfg: StepConfig, fused: bool, batch_size: int | None = None) -> Counter:
    """The device operations of one training step of ``cfg`` on the strict backend, by name
    (``batch_size`` changes the batch, not the count, which depends on the layers)."""
    if batch_size is not None:
        cfg = dataclasses.replace(cfg, batch_size=batch_size)
    gpu.use_fused_kernels(fused)
    try:
        step = OurStep(cfg, Device("strict"))
        step.step()                       # Adam's state is made on the first step
        with count_launches() as launches:
            step.step()
    finally:
        gpu.use_fused_kernels(None)
    return launches


def count_decoding_launches(protein_length: int, use_cache: bool, n_sequences: int = 8) -> Counter:
    """The device operations of greedy decoding ``n_sequences`` random sources of
    ``3 * protein_length`` nucleotides to ``protein_length + 1`` tokens, on the strict backend
    (the codon demo's model, untrained, so that every step runs)."""
    from minitransformer.codon.data import protein_vocabulary
    from minitransformer.codon.train import CodonRecipe
    from minitransformer.decoding import greedy_decode
    from minitransformer.transformer import Transformer

    device = Device("strict")
    model = Transformer(CodonRecipe().model_config(seed=0), backend=device.name).eval()
    src = device.asarray(random_rna_ids(n_sequences, 3 * protein_length, seed=protein_length))
    protein = protein_vocabulary()
    with count_launches() as launches:
        greedy_decode(model, src, bos_id=protein.bos_id, eos_id=protein.eos_id, max_len=protein_length + 1,
                      use_cache=use_cache)
    return launches


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(STEP_CONFIGS), default="benchmark")
    parser.add_argument("--top", type=int, default=12, help="how many of the most frequent operations to list")
    parser.add_argument("--decode", metavar="L,L", default=None,
                        help="count greedy decoding instead, with and without the KV cache, at these protein lengths")
    args = parser.parse_args(argv)
    if args.decode:
        rows = []
        for length in (int(text) for text in args.decode.split(",")):
            plain, cached = (count_decoding_launches(length, cache).total() for cache in (False, True))
            rows.append([length, plain, cached, f"{plain / (length + 1):.0f}", f"{cached / (length + 1):.0f}",
                         f"{plain / cached:.2f}x"])
        print_table("Device operations of greedy decoding (codon demo model, random RNA, every step runs)",
                    ["protein length", "uncached", "cached", "per token, uncached", "per token, cached",
                     "uncached / cached"], rows,
                    note="counted on the strict backend (CPU); on a launch-bound GPU the cache's speed-up is "
                         "at most about the last column")
        return
    cfg = STEP_CONFIGS[args.config]()
    counts = {on: count_step_launches(cfg, on) for on in (False, True)}
    off, on = counts[False].total(), counts[True].total()
    print_table(f"Device operations (about one kernel launch each) in one training step, {cfg.name} config "
                f"({cfg.description})", ["fused kernels", "operations", "of unfused"],
                [["off", off, "100%"], ["on", on, f"{on / off:.0%}"]],
                note="counted on the strict backend (CPU); no GPU time is measured here")
    for label, counter in (("off", counts[False]), ("on", counts[True])):
        print_table(f"Most frequent operations, fused kernels {label}", ["operation", "count"],
                    [[name, n] for name, n in counter.most_common(args.top)])


if __name__ == "__main__":
    main()
