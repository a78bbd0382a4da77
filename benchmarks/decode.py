"""Generating proteins: greedy decoding with and without the KV cache, and beam search.

The model is a freshly initialised codon-demo model (``CodonRecipe()``) and the sources
are random RNA. An untrained model almost never produces the end token, so every method
decodes the full ``max_len = protein length + 1`` steps and the methods do the same
number of steps: the comparison is of the same work done two ways.

Without the cache, step t runs the decoder over the whole prefix of t tokens, so a
length-L decode costs about L^2 / 2 decoder positions; with the cache, L. The speed-up
therefore grows with L. Both must choose the same tokens: the cache changes how the
numbers are computed, not which numbers.
"""
from __future__ import annotations

import numpy as np

from minitransformer.backend import to_numpy
from minitransformer.codon.data import protein_vocabulary, rna_vocabulary
from minitransformer.codon.train import CodonRecipe
from minitransformer.decoding import beam_search, greedy_decode
from minitransformer.transformer import Transformer

from .common import Device


def random_rna_ids(n: int, n_nucleotides: int, seed: int) -> np.ndarray:
    """(n, n_nucleotides) ids of random A, C, G, U."""
    vocab = rna_vocabulary()
    nucleotide_ids = np.array([vocab.token_to_id(c) for c in "ACGU"])
    return nucleotide_ids[np.random.default_rng(seed).integers(0, 4, (n, n_nucleotides))]


def _decode_all(model, src, device: Device, batch_size: int, method: str, max_len: int, beam_width: int):
    """Decode every row of ``src`` in batches; returns (seconds, list of per-batch outputs)."""
    protein = protein_vocabulary()
    kwargs = dict(bos_id=protein.bos_id, eos_id=protein.eos_id, max_len=max_len)
    outputs = []
    start = device.clock()
    for i in range(0, src.shape[0], batch_size):
        chunk = device.asarray(src[i:i + batch_size])
        if method == "beam":
            outputs.append(beam_search(model, chunk, beam_width=beam_width, **kwargs))
        else:
            tokens = to_numpy(greedy_decode(model, chunk, use_cache=(method == "cached"), return_array=True,
                                            **kwargs))
            # a batch whose sequences all ended early stops early: pad it to max_len columns
            padded = np.full((tokens.shape[0], max_len), protein.pad_id, dtype=tokens.dtype)
            padded[:, :tokens.shape[1]] = tokens
            outputs.append(padded)
    return device.clock() - start, outputs


def near_tie_gaps(model, src, cached, plain, device: Device, limit: int = 10) -> list[float]:
    """For up to ``limit`` sequences where the cached and uncached runs chose differently:
    |logit of one choice - logit of the other| at the first differing step, computed without
    the cache. Gaps of float32 rounding size (~1e-6 of the logits) mean a near-tie decided
    by rounding, not a wrong cache."""
    protein = protein_vocabulary()
    gaps = []
    for row in np.nonzero((cached != plain).any(axis=1))[0][:limit]:
        t = int(np.argmax(cached[row] != plain[row]))
        prefix = np.concatenate([[protein.bos_id], cached[row, :t]])[None].astype(src.dtype)
        memory, src_mask = model.encode(device.asarray(src[row:row + 1]))
        logits = to_numpy(model.decode(device.asarray(prefix), memory, src_mask))[0, -1]
        gaps.append(float(abs(logits[cached[row, t]] - logits[plain[row, t]])))
    return gaps


def _encode_all(model, src, device: Device, batch_size: int) -> float:
    """Seconds to run the encoder alone over every batch (part of every method's time)."""
    start = device.clock()
    for i in range(0, src.shape[0], batch_size):
        model.encode(device.asarray(src[i:i + batch_size]))
    return device.clock() - start


def measure_decoding(device: Device, *, protein_lengths=(30, 100), n_sequences: int = 1000,
                     batch_size: int = 250, beam_width: int = 4, seed: int = 0) -> list[dict]:
    """Seconds to decode ``n_sequences`` random sources per protein length, three ways."""
    model = Transformer(CodonRecipe().model_config(seed=seed), backend=device.name).eval()
    results = []
    for length in protein_lengths:
        src = random_rna_ids(n_sequences, 3 * length, seed + length)
        max_len = length + 1
        # one full-size warm-up batch per method, so that no method pays for first-call
        # costs: set-up, the first touch of the memory that batches this large need (on a
        # virtual machine, fresh memory from the host costs up to seconds the first time),
        # and on a GPU the compilation of each kernel a method launches for the first time
        for method in ("cached", "uncached", "beam"):
            _decode_all(model, src[:batch_size], device, batch_size, method, max_len, beam_width)
        t_encode = _encode_all(model, src, device, batch_size)
        t_cached, cached = _decode_all(model, src, device, batch_size, "cached", max_len, beam_width)
        t_plain, plain = _decode_all(model, src, device, batch_size, "uncached", max_len, beam_width)
        t_beam, _ = _decode_all(model, src, device, batch_size, "beam", max_len, beam_width)
        cached, plain = np.concatenate(cached), np.concatenate(plain)
        same_rows = int((cached == plain).all(axis=1).sum())
        ended = int((cached == protein_vocabulary().eos_id).any(axis=1).sum())
        gaps = near_tie_gaps(model, src, cached, plain, device)
        results.append({
            "protein_len": length, "src_len": 3 * length, "max_len": max_len, "n_sequences": n_sequences,
            "batch_size": batch_size, "beam_width": beam_width, "sequences_ended_early": ended,
            "encode_s": t_encode, "cached_s": t_cached, "uncached_s": t_plain, "beam_s": t_beam,
            "cache_speedup": t_plain / t_cached, "beam_over_cached": t_beam / t_cached,
            "cached_sequences_per_s": n_sequences / t_cached,
            "identical_tokens": same_rows == n_sequences,
            "identical_sequences": same_rows,
            "mismatch_logit_gaps": gaps,
        })
    return results
