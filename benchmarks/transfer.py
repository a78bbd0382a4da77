"""Transfer learning experiment: standard code -> vertebrate mitochondrial code (NCBI table 2).

    python -m benchmarks.transfer [--standard MODEL.npz] [--n-pairs 500] [--out-dir DIR]

1. A model trained on the standard code (loaded with --standard, or trained here with the
   default recipe) is scored, unchanged, on fresh table-2 pairs.
2. It is fine-tuned on a small fixed set of table-2 pairs (--n-pairs) until a check set of
   fresh table-2 pairs reaches 99% exact match (or --finetune-steps).
3. The same architecture is trained from scratch on the same pairs, for ten times the
   fine-tuning steps (or --scratch-steps), with the default curriculum.
All three are scored on the same 2,000 fresh table-2 pairs of protein length 1-100, overall and
on the pairs whose translation differs between the two codes; the learning curves are drawn
side by side. Results go to DIR/transfer.json and DIR/transfer-learning.png.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from minitransformer.checkpoint import load_model
from minitransformer.codon.data import generate_pairs, load_example_genes
from minitransformer.codon.finetune import finetune_codon_model
from minitransformer.codon.genetic_code import translate
from minitransformer.codon.train import (CodonRecipe, evaluate_on_pairs, score_translations, train_codon_model,
                                         translate_rna)

#: Protein lengths (residues) of every pair here: the standard model's training range, 1..MAX_LEN.
MAX_LEN = 100


def score(model, pairs, differs):
    overall, _, predicted = evaluate_on_pairs(model, pairs)
    expected = list(pairs["protein"])
    changed = score_translations([p for p, d in zip(predicted, differs) if d],
                                 [e for e, d in zip(expected, differs) if d])
    return {"exact_match": overall["exact_match"], "residue_accuracy": overall["residue_accuracy"],
            "n": overall["n"], "differing_exact_match": changed["exact_match"], "differing_n": changed["n"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--standard", help="a trained standard-code checkpoint (default: train one)")
    parser.add_argument("--standard-budget", type=float, default=480.0, help="seconds to train it")
    parser.add_argument("--n-pairs", type=int, default=500, help="table-2 pairs to fine-tune on")
    parser.add_argument("--finetune-steps", type=int, default=1000)
    parser.add_argument("--scratch-steps", type=int, default=None, help="default: 10x the fine-tuning steps")
    parser.add_argument("--eval-pairs", type=int, default=2000)
    parser.add_argument("--out-dir", default="transfer-results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"n_pairs": args.n_pairs}

    if args.standard:
        standard, _ = load_model(args.standard)
    else:
        run = train_codon_model(CodonRecipe(), table=1, time_budget=args.standard_budget, seed=args.seed)
        standard = run.model
        results["standard_training"] = {"steps": run.trainer.step, "seconds": run.trainer.train_seconds}

    fresh = generate_pairs(args.eval_pairs, 1, MAX_LEN, table=2, seed=args.seed + 777)
    differs = [translate(r, 1) != p for r, p in zip(fresh["rna"], fresh["protein"])]
    results["unchanged_standard_model"] = score(standard, fresh, differs)
    print("unchanged standard model on table 2:", results["unchanged_standard_model"], flush=True)

    finetune_data = generate_pairs(args.n_pairs, 1, MAX_LEN, table=2, seed=args.seed + 1)
    started = time.perf_counter()
    tuned = finetune_codon_model(copy.deepcopy(standard), table=2, data=finetune_data,
                                 max_steps=args.finetune_steps, seed=args.seed, target_exact=0.99)
    results["finetuned"] = score(tuned.model, fresh, differs)
    results["finetuned"].update(steps=tuned.trainer.step, seconds=time.perf_counter() - started,
                                stop_reason=tuned.trainer.stop_reason)
    print("fine-tuned:", results["finetuned"], flush=True)

    scratch_steps = args.scratch_steps or 10 * tuned.trainer.step
    started = time.perf_counter()
    scratch = train_codon_model(CodonRecipe(target_exact=0.99), table=2, data=finetune_data,
                                max_steps=scratch_steps, seed=args.seed)
    results["from_scratch"] = score(scratch.model, fresh, differs)
    history = scratch.history
    best = history["eval_exact_match"].dropna()
    results["from_scratch"].update(steps=scratch.trainer.step, seconds=time.perf_counter() - started,
                                   best_check_exact_match=float(best.max()) if len(best) else None,
                                   stop_reason=scratch.trainer.stop_reason)
    print("from scratch:", results["from_scratch"], flush=True)

    # the real mitochondrial genes, by each model (longer ones in pieces of the trained length)
    genes = load_example_genes("mitochondrial")
    results["mitochondrial_genes"] = []
    by_model = {name: translate_rna(m, genes["rna"], max_codons=MAX_LEN)
                for name, m in (("unchanged", standard), ("finetuned", tuned.model), ("from_scratch", scratch.model))}
    for i, (name, expected) in enumerate(zip(genes["name"], genes["protein"])):
        row = {"name": name, "residues": len(expected)}
        for model_name, predicted in by_model.items():
            row[model_name] = score_translations([predicted[i]], [expected])["residue_accuracy"]
            row[model_name + "_exact"] = predicted[i] == expected
        results["mitochondrial_genes"].append(row)
        print(row, flush=True)

    (out / "transfer.json").write_text(json.dumps(results, indent=2))
    plot(tuned.history, scratch.history, results, out / "transfer-learning.png")
    print(f"wrote {out / 'transfer.json'} and {out / 'transfer-learning.png'}")


def plot(tuned, scratch, results, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    for ax, (name, history) in zip(fig.subplots(1, 2, sharey=True),
                                   [("fine-tuned from the standard code", tuned),
                                    ("trained from scratch", scratch)]):
        checks = history.dropna(subset=["eval_exact_match"])
        ax.plot(checks["step"], checks["eval_exact_match"], marker=".",
                label="exact match, check set (scratch: its current curriculum lengths)")
        ax.axhline(results["unchanged_standard_model"]["exact_match"], color="gray", linestyle=":",
                   label="standard model, unchanged")
        ax.axhline(0.99, color="black", linewidth=0.6, linestyle="--", label="99%")
        ax.set_title(name)
        ax.set_xlabel("optimizer steps on the table-2 pairs")
        ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    fig.axes[0].set_ylabel("exact match, fresh table-2 pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
