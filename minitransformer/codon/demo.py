"""``minitransformer codon demo``: the whole codon story in one run, in four steps.

1. :func:`train_default_model` -- train the default recipe on fresh random pairs;
2. :func:`score_on_fresh_pairs` -- score it on fresh pairs of the training lengths, and of
   lengths it never saw;
3. :func:`translate_real_genes` -- translate the real genes shipped with the package;
4. :func:`draw_attention` -- draw the cross-attention on the first codons of a gene.

:func:`run_demo` runs them in order, writes every result into one folder and prints what
it found. Each step prints its own lines and returns what the next steps and the
``evaluation.json`` summary need.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import CommandError
from ..files import atomic_write, check_output_path
from .alignment import edit_counts
from .checkpoints import save_run
from .data import generate_pairs, load_example_genes
from .genetic_code import get_genetic_code
from .inputs import ModelOutput
from .report import (cross_attention, describe_training, json_scores, pct, plot_codon_accuracy_by_length,
                     plot_codon_learning_curves, plot_cross_attention, score_table)
from .train import (CodonRecipe, evaluate_on_pairs, safe_piece_codons, score_translations, train_codon_model,
                    translate_pieces, translate_rna)

__all__ = ["run_demo", "demo_files", "train_default_model", "score_on_fresh_pairs",
           "translate_real_genes", "draw_attention"]

#: The demo's genetic code: the standard one.
TABLE = 1
INDENT = "      "


def demo_files(out_dir: Path) -> dict:
    """What the demo writes, by name."""
    return {"model": out_dir / "model.npz", "history": out_dir / "history.csv",
            "learning curve": out_dir / "learning-curve.png",
            "accuracy by length": out_dir / "accuracy-by-length.png",
            "evaluation": out_dir / "evaluation.json", "attention": out_dir / "attention.png"}


def run_demo(out_dir, *, time_budget: float = 480.0, seed: int = 0, backend=None, eval_pairs: int = 2000,
             long_eval_pairs: int = 300, progress: bool = True, force: bool = False) -> int:
    """Train, score, translate and draw; everything into ``out_dir``. Returns the exit status
    (130 when training was interrupted: the model so far is saved, the other steps skipped).
    The model of an earlier demo in ``out_dir`` is replaced only with ``force``."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out-dir {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = demo_files(out_dir)
    for name, path in files.items():   # every file checked before the ten minutes of work
        if name != "model":
            check_output_path(path, f"--out-dir ({name})")
    output = ModelOutput(files["model"], "--out-dir (model)", force=force)

    run, train_wall = train_default_model(files, time_budget=time_budget, seed=seed, backend=backend,
                                          progress=progress, output=output)
    if getattr(run.trainer, "stop_reason", None) == "interrupted":
        return 130
    trained_up_to = int(run.curriculum[-1][2])
    evaluation = {"table": TABLE, "seed": seed,
                  "train": {"steps": run.trainer.step, "train_seconds": float(run.trainer.train_seconds),
                            "stop_reason": getattr(run.trainer, "stop_reason", None),
                            "wall_seconds": round(train_wall, 1),
                            "curriculum": [list(c) for c in run.curriculum],
                            "trained_up_to": trained_up_to, "recipe": run.recipe.to_dict()}}
    eval_rng = np.random.default_rng([seed, 2024])  # a generator of its own, never the training one
    evaluation.update(score_on_fresh_pairs(run, files["accuracy by length"], eval_rng,
                                           n_in_range=eval_pairs, n_longer=long_eval_pairs))
    genes = load_example_genes("standard")
    genes = genes[[len(r) <= run.model.config.max_len for r in genes["rna"]]].reset_index(drop=True)
    evaluation["genes"] = translate_real_genes(run.model, genes, trained_up_to)
    evaluation["attention"] = draw_attention(run.model, genes, files["attention"], eval_rng)
    evaluation["seconds"] = round(time.perf_counter() - started, 1)
    evaluation["files"] = {k: str(v) for k, v in files.items()}
    atomic_write(files["evaluation"], lambda f: f.write((json.dumps(evaluation, indent=2) + "\n").encode()))
    _print_summary(evaluation, files)
    return 0


# --------------------------------------------------------------------------------------
# The four steps
# --------------------------------------------------------------------------------------
def train_default_model(files: dict, *, time_budget: float, seed: int, backend=None, progress=True,
                        output=None):
    """Step 1: train, save the model, its history and learning curve. ``(run, wall seconds)``.
    ``output``: where the model may go (:class:`~minitransformer.codon.inputs.ModelOutput`;
    default: ``files["model"]``, replaced if it exists)."""
    recipe, code = CodonRecipe(), get_genetic_code(TABLE)
    print(f"[1/4] training the default codon model ({code}) on fresh random proteins of "
          f"{recipe.min_len}-{recipe.train_max_len} residues (promised: up to {recipe.final_max_len}), "
          f"for at most {time_budget:g} s")
    t0 = time.perf_counter()
    run = train_codon_model(recipe, table=TABLE, seed=seed, backend=backend, time_budget=time_budget,
                            progress=progress)
    train_wall = time.perf_counter() - t0
    interrupted = getattr(run.trainer, "stop_reason", None) == "interrupted"
    output = output or ModelOutput(files["model"], force=True)
    model = output.path(interrupted)
    save_run(model, run)
    if output.note(model, interrupted):
        print(output.note(model, interrupted), file=sys.stderr)
    if interrupted:
        print(f"interrupted: the model after {run.trainer.step} steps is saved to {model}")
        return run, train_wall
    atomic_write(files["history"], lambda f: run.history.to_csv(f, index=False))
    plot_codon_learning_curves(run, files["learning curve"], title=f"codon demo, {code}")
    for line in describe_training(run):
        print(INDENT + line)
    print(f"{INDENT}training took {train_wall:.0f} s in all (curriculum checks included)")
    return run, train_wall


def score_on_fresh_pairs(run, picture: Path, rng, *, n_in_range: int, n_longer: int) -> dict:
    """Step 2: scores on ``n_in_range`` fresh pairs of the promised lengths (``"in_range"``:
    1..``final_max_len``) and ``n_longer`` longer than any in training, up to twice the
    promised length (``"longer"``; none when 0); the accuracy by length drawn to ``picture``."""
    import pandas as pd

    print("[2/4] scoring on fresh random pairs")
    recipe = run.recipe
    sets = [("in_range", "the promised lengths", recipe.min_len, recipe.final_max_len, n_in_range)]
    if n_longer:
        sets.append(("longer", "longer than any in training", recipe.train_max_len + 1,
                     2 * recipe.final_max_len, n_longer))
    scores, by_length_all = {}, []
    for key, what, lo, hi, n in sets:
        pairs = generate_pairs(n, lo, hi, TABLE, recipe.stop_rate, rng)
        t0 = time.perf_counter()
        overall, by_length, _ = evaluate_on_pairs(run.model, pairs)
        scores[key] = {"lengths": f"{lo}-{hi}", **json_scores(overall, by_length),
                       "seconds": round(time.perf_counter() - t0, 1)}
        by_length_all.append(by_length)
        print(f"{INDENT}{n} proteins of {lo}-{hi} residues ({what}): {pct(overall['exact_match'])} exact, "
              f"{overall['residue_accuracy']:.2%} of residues right ({scores[key]['seconds']:.0f} s)")
    by_length = pd.concat(by_length_all, ignore_index=True)
    print("\n".join(INDENT + line for line in score_table(None, by_length).splitlines()))
    plot_codon_accuracy_by_length(by_length, picture, train_max_len=int(run.curriculum[-1][2]),
                                  title=f"codon demo: accuracy on fresh proteins ({run.trainer.step} steps)")
    return scores


def translate_real_genes(model, genes, trained_up_to: int) -> list[dict]:
    """Step 3: translate each gene in pieces of at most :func:`safe_piece_codons` codons (what
    ``translate --piece-codons auto`` does; and, for the genes that needed more than one piece,
    whole too); a row of scores per gene, its errors counted by alignment."""
    size = safe_piece_codons(trained_up_to)
    print(f"[3/4] translating {len(genes)} real genes ({get_genetic_code(TABLE)}); genes longer than "
          f"{size} codons in pieces of at most {size} (5/6 of the longest proteins the model was trained on)")
    piece_proteins = translate_pieces(model, genes["rna"], size)
    predicted = ["".join(p) for p in piece_proteins]
    pieces = [len(p) for p in piece_proteins]
    # a gene of one piece was already translated whole; only the longer ones are decoded again
    cut = [i for i, n in enumerate(pieces) if n > 1]
    whole = list(predicted)
    for i, protein in zip(cut, translate_rna(model, [genes["rna"][i] for i in cut])):
        whole[i] = protein
    rows = []
    width = max([len(n) for n in genes["name"]] + [4])
    print(f"{INDENT}{'gene':<{width}}  {'length':>6}  {'pieces':>6}  {'exact':>5}  {'residues right':>14}  "
          f"{'edits':>5}  {'exact if whole':>14}")
    for name, expected, protein, protein_whole, n_pieces in zip(genes["name"], genes["protein"], predicted,
                                                                whole, pieces):
        s = score_translations([protein], [expected])
        edits = edit_counts(protein, expected)
        rows.append({"name": name, "length": len(expected), "pieces": n_pieces,
                     "exact_match": bool(protein == expected), "residue_accuracy": float(s["residue_accuracy"]),
                     "edits": edits.distance, "substitutions": edits.substitutions,
                     "insertions": edits.insertions, "deletions": edits.deletions,
                     "exact_match_whole": bool(protein_whole == expected)})
        print(f"{INDENT}{name:<{width}}  {len(expected):>6}  {n_pieces:>6}  "
              f"{'yes' if protein == expected else 'no':>5}  {s['residue_accuracy']:>14.1%}  "
              f"{edits.distance:>5}  {'yes' if protein_whole == expected else 'no':>14}")
    return rows


def draw_attention(model, genes, picture: Path, rng) -> dict:
    """Step 4: the cross-attention of every decoder layer on the first 12 codons of the first
    gene, drawn to ``picture``; what was drawn."""
    print("[4/4] drawing the attention")
    if len(genes):
        gene = genes.iloc[0]
        rna, what = gene["rna"][:36], f"first 12 codons of {gene['name']}"
    else:  # pragma: no cover - the package ships its genes
        rna, what = generate_pairs(1, 12, 12, TABLE, 0.0, rng)["rna"][0], "a random 12-codon RNA"
    weights, labels, protein = cross_attention(model, rna)
    plot_cross_attention(weights, labels, rna, picture, title=f"cross-attention on the {what}: "
                                                             f"{protein or '(empty)'}",
                         layers=range(len(weights)))
    return {"rna": rna, "translation": protein, "source": what}


def _print_summary(evaluation: dict, files: dict) -> None:
    train, genes = evaluation["train"], evaluation["genes"]
    print()
    print(f"codon demo done in {evaluation['seconds']:.0f} s: {train['steps']} steps, "
          f"curriculum up to {train['trained_up_to']} residues")
    for key in ("in_range", "longer"):
        if key in evaluation:
            e = evaluation[key]
            print(f"  fresh proteins of {e['lengths']} residues: {pct(e['exact_match'])} exact match, "
                  f"{e['residue_accuracy']:.2%} residue accuracy (n={e['n']})")
    print(f"  real genes: {sum(g['exact_match'] for g in genes)} of {len(genes)} translated exactly "
          f"({sum(g['exact_match_whole'] for g in genes)} of {len(genes)} when the long ones are not cut "
          f"into pieces)")
    edits = sum(g["edits"] for g in genes)
    print(f"  real genes, errors by alignment: {edits} edits in {sum(g['length'] for g in genes)} residues "
          f"({sum(g['substitutions'] for g in genes)} substitutions, {sum(g['insertions'] for g in genes)} "
          f"insertions, {sum(g['deletions'] for g in genes)} deletions)")
    for name, path in files.items():
        print(f"  {name + ':':<20}{path}")
    print(f"try: minitransformer codon translate --model {files['model']} AUGGCCAUUGUAAUGGGCCGCUGA --check")
