"""Which positions let a codon model trained on 1-100 residues translate longer proteins whole?

Trains the codon model once per ``positions`` setting of the model config (sinusoidal,
learned, RoPE, ALiBi, and RoPE with a learned diagonal bias in cross-attention), each with the same recipe (a copy of ``CodonRecipe()``),
the same seed and the same wall-clock budget, then translates fresh pairs of 1-100, 101-200
and 201-400 residues **whole** (no pieces) and prints a markdown table of exact match and
residue accuracy per length range.

What differs from the demo recipe, for every arm alike:

* ``max_len`` is 1,300 so that a 400-residue protein (1,200 nucleotides, 402 target tokens)
  fits the model whole. Learned positions get a 1,300-row table, of which training only ever
  reads the first 301 rows: the rows past them keep their random initial values.
* The stop rule never fires (``target_exact`` above 1): every arm trains for the whole
  budget, so the arms are compared at equal time, not at their first lucky check.
* The curriculum ends at 100 residues (``train_past=1.0``; the demo trains up to 120): the
  question is what a model trained only up to 100 does with longer proteins.

Nothing tells the model the codon stride: the source is one token per nucleotide, and
no scheme has a 3 in it. RoPE and ALiBi act in self-attention only; cross-attention has no
positions (docs/backward/positions.md), except in "rope+diagonal", where each head learns a
line j = r i + b (slope r starting at 1) near which target position i reads the source; its
learned sharpness, slope and offset per head are printed after training.

    python -m benchmarks.positions_ablation --time-budget 540        # about 50 min in all
    python -m benchmarks.positions_ablation --quick                  # a smoke test, about a minute
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from minitransformer.codon.alignment import alignment_scores
from minitransformer.codon.data import generate_pairs
from minitransformer.codon.train import CodonRecipe, score_translations, train_codon_model, translate_rna
from minitransformer.backend import to_numpy
from minitransformer.cpu import blas_threads
from minitransformer.transformer import Transformer

SCHEMES = ("sinusoidal", "learned", "rope", "alibi", "rope+diagonal")
RANGES = ((1, 100), (101, 200), (201, 400))
EVAL_SEED = 20_261_204        # the training data and check sets come from seeds 0 and 10,000
MAX_LEN = 1300                # 400 residues: 1,200 nucleotides and 402 target tokens


def ablation_recipe() -> CodonRecipe:
    """The demo recipe with room for 400 residues, no early stop, and a curriculum that ends
    at 100 residues (see the module docstring)."""
    return dataclasses.replace(CodonRecipe(), max_len=MAX_LEN, target_exact=1.01, train_past=1.0)


def run_arm(scheme: str, time_budget: float, eval_sets: dict, seed: int = 0) -> dict:
    recipe = ablation_recipe()
    config = dataclasses.replace(recipe.model_config(seed), positions=scheme)
    model = Transformer(config)
    started = time.perf_counter()
    run = train_codon_model(recipe, seed=seed, model=model, time_budget=time_budget, progress=False)
    row = {"positions": scheme, "steps": run.trainer.step, "seconds": time.perf_counter() - started,
           "curriculum": run.curriculum[-1][2]}
    print_diagonal_lines(run.model)
    for (lo, hi), pairs in eval_sets.items():
        t0 = time.perf_counter()
        predicted, expected = translate_rna(run.model, pairs["rna"]), list(pairs["protein"])
        scores = {**score_translations(predicted, expected), **error_kinds(predicted, expected)}
        row[f"{lo}-{hi}"] = scores
        print(f"  {scheme} {lo}-{hi}: exact {scores['exact_match']:.3f}, residues "
              f"{scores['residue_accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return row


def print_diagonal_lines(model) -> None:
    """The learned line of every cross-attention head with a diagonal bias: its sharpness a,
    slope r and offset b (nothing for the other schemes)."""
    for n, layer in enumerate(model.decoder.layers):
        attention = layer.cross_attn
        if attention.positions != "diagonal":
            continue
        a = np.logaddexp(0.0, to_numpy(attention.diag_a_raw.data))
        r, b = to_numpy(attention.diag_r.data), to_numpy(attention.diag_b.data)
        for h in range(attention.n_heads):
            print(f"  decoder layer {n} head {h}: a = {a[h]:.4f}, r = {r[h]:.4f}, b = {b[h]:+.4f}",
                  file=sys.stderr, flush=True)


def error_kinds(predicted, expected) -> dict:
    """What goes wrong: the median of (predicted length - expected length), the share of
    proteins written too short, and the edits by alignment per expected residue."""
    gap = np.array([len(p) - len(e) for p, e in zip(predicted, expected)])
    edits = alignment_scores(predicted, expected)
    residues = max(sum(len(e) for e in expected), 1)
    return {"median_length_error": float(np.median(gap)), "too_short": float(np.mean(gap < 0)),
            **{kind: edits[kind] / residues for kind in ("substitutions", "insertions", "deletions")}}


def errors_table(rows: list[dict]) -> str:
    """Per scheme and length range: median length error, share too short, and substitutions /
    insertions / deletions per residue (by alignment)."""
    lines = ["| positions | lengths | median length error | too short | substitutions | insertions | deletions |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        for lo, hi in RANGES:
            r = row[f"{lo}-{hi}"]
            lines.append(f"| {row['positions']} | {lo}-{hi} | {r['median_length_error']:+.0f} | {r['too_short']:.2f} | "
                         f"{r['substitutions']:.3f} | {r['insertions']:.3f} | {r['deletions']:.3f} |")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    ranges = [f"{lo}-{hi}" for lo, hi in RANGES]
    lines = ["| positions | steps | trained up to | " + " | ".join(f"{r} exact / residues" for r in ranges) + " |",
             "|---|---|---|" + "---|" * len(ranges)]
    for row in rows:
        cells = [f"{row[r]['exact_match']:.3f} / {row[r]['residue_accuracy']:.3f}" for r in ranges]
        lines.append(f"| {row['positions']} | {row['steps']:,} | {row['curriculum']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-budget", type=float, default=540.0,
                        help="seconds of training per positional scheme (default 540)")
    parser.add_argument("--eval-pairs", type=int, default=300, help="fresh pairs per length range (default 300)")
    parser.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated, default all five")
    parser.add_argument("--quick", action="store_true", help="20 s per scheme and 20 pairs per range")
    parser.add_argument("--seed", type=int, default=0,
                        help="the model's and the training data's seed (default 0; the evaluation sets stay the same)")
    args = parser.parse_args(argv)
    budget, n_eval = (20.0, 20) if args.quick else (args.time_budget, args.eval_pairs)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown:
        parser.error(f"--schemes: unknown {unknown}; choose from {', '.join(SCHEMES)}")
    eval_sets = {(lo, hi): generate_pairs(n_eval, lo, hi, table=1, stop_rate=CodonRecipe().stop_rate,
                                          seed=EVAL_SEED + lo) for lo, hi in RANGES}
    rows = []
    with blas_threads(1):
        for scheme in schemes:
            print(f"training {scheme} for {budget:.0f} s", file=sys.stderr, flush=True)
            rows.append(run_arm(scheme, budget, eval_sets, seed=args.seed))
            print(markdown_table(rows), file=sys.stderr, flush=True)
    print(f"\n{n_eval} fresh pairs per range, translated whole (greedy, KV cache); "
          f"{budget:.0f} s of training per scheme, seed {args.seed}.\n")
    print(markdown_table(rows))
    print("\nWhat goes wrong (edits per expected residue, counted by alignment):\n")
    print(errors_table(rows))


if __name__ == "__main__":
    main()
