"""Training runs that end in files: ``codon train`` and ``codon finetune`` without the
command line.

:func:`train_to_file` trains a model from a recipe and :func:`finetune_to_file` adapts a
saved model to another genetic code; each saves the model (:mod:`.checkpoints`), its
training history and learning curve beside it, prints what happened, and returns the exit
status (130 when the run was interrupted: what was learned so far is saved).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from ..errors import CommandError
from ..files import atomic_write, signals_held
from .checkpoints import checkpoint_recipe, load_codon_model, model_table, save_run, trained_lengths
from .data import generate_pairs
from .finetune import (FINETUNE_DEFAULTS, finetune_codon_model, frozen_parameter_names, held_out_pairs,
                       score_held_out)
from .genetic_code import get_genetic_code
from .inputs import SIDECARS, ModelOutput, read_training_pairs, same_file, sidecar
from .report import describe_training, pct, plot_codon_learning_curves, scores_line
from .train import CodonRecipe, train_codon_model

__all__ = ["train_to_file", "finetune_to_file", "FINETUNE_DEFAULT_LENGTHS", "NO_TARGET"]

#: Protein lengths to fine-tune on when the model to start from does not record its own.
FINETUNE_DEFAULT_LENGTHS = (1, 100)
#: A target that no exact match reaches (it never exceeds 1): fine-tuning without early stop.
NO_TARGET = 2.0


# --------------------------------------------------------------------------------------
# codon train
# --------------------------------------------------------------------------------------
def train_to_file(out, recipe: CodonRecipe, *, table: int | None = None, data_path=None, seed: int = 0,
                  backend=None, max_steps=None, time_budget=None, progress: bool = True, force: bool = False,
                  resume=None) -> int:
    """Train a model of ``recipe`` on the pairs of ``data_path`` (None: fresh random pairs)
    and save it to ``out``, its history and learning curve beside it.

    ``out`` must be new unless ``force`` (see :class:`~minitransformer.codon.inputs.ModelOutput`).
    ``resume``: a checkpoint saved by an earlier ``train_to_file`` (interrupted, or stopped at
    its ``max_steps`` or ``time_budget``): training continues from it exactly, with its
    recipe, genetic code and pairs file; ``out`` may be that checkpoint itself.
    """
    output = ModelOutput(out, force=force, inputs=(data_path,), resume=resume)
    model = ckpt = None
    if resume is not None:
        model, ckpt, earlier = _resumed(resume, backend, "train")
        recipe, table = checkpoint_recipe(model, ckpt), _same_table(ckpt, table)
        data_path = data_path or (ckpt.metadata or {}).get("data")
    table = 1 if table is None else table
    data = read_training_pairs(data_path, table, recipe.max_len) if data_path else None
    source = f"{len(data)} pairs from {data_path}" if data is not None else "fresh random pairs"
    limit = []
    if max_steps:
        limit.append(f"at most {max_steps} steps")
    if time_budget:
        limit.append(f"at most {time_budget:g} s")
    print(f"{'resuming at step ' + str(ckpt.step) + ': ' if ckpt else ''}training a codon model "
          f"({get_genetic_code(table)}) on {source}"
          f"{' (' + ', '.join(limit) + ')' if limit else ' until it translates well (Ctrl-C stops and saves)'}")
    run = train_codon_model(recipe, table=table, data=data, seed=seed, backend=backend, max_steps=max_steps,
                            time_budget=time_budget, progress=progress, model=model, resume=ckpt)
    if ckpt is not None:
        run.trainer.history_rows[:0] = earlier
    path, files, interrupted = _save_model(output, run, data_path, f"codon model, {get_genetic_code(run.table)}")
    for line in describe_training(run):
        print(line)
    _print_files(path, *files)
    return 130 if interrupted else 0


def _resumed(path, backend, command: str):
    """``(model, checkpoint, earlier history rows)`` of a run to resume with ``codon COMMAND``."""
    model, ckpt = load_codon_model(path, backend)
    made_by = "finetune" if isinstance((ckpt.metadata or {}).get("finetune"), dict) else "train"
    if made_by != command:
        raise CommandError(f"--resume {path} was saved by 'codon {made_by}'; resume it with "
                           f"'codon {made_by} --resume {path}'")
    history = sidecar(Path(path), ".history.csv")
    earlier = pd.read_csv(history).to_dict("records") if history.is_file() else []
    return model, ckpt, [r for r in earlier if r.get("step", 0) <= ckpt.step]


def _same_table(ckpt, table):
    """The resumed run's genetic code: its own; a different ``--table`` is refused."""
    own = model_table(ckpt)
    if table is not None and table != own:
        raise CommandError(f"--table {table}: the run to resume ({ckpt.path}) trains for table {own}; "
                           f"leave --table out")
    return own


# --------------------------------------------------------------------------------------
# codon finetune
# --------------------------------------------------------------------------------------
def finetune_to_file(source, out, table: int, *, data_path=None, n_pairs=None, min_len=None, max_len=None,
                     freeze: str = "none", lr: float = 5e-4, warmup_steps: int = 50, max_steps: int = 1000,
                     time_budget=None, target_exact=0.99, check_every: int = 50, check_pairs: int = 500,
                     seed: int = 0, backend=None, progress: bool = True, force: bool = False,
                     resume=None) -> int:
    """Fine-tune the codon model saved at ``source`` to genetic code ``table`` and save it to
    ``out`` (never ``source``; an existing ``out`` only with ``force``).

    The pairs: the file ``data_path``, or ``n_pairs`` random ones of ``min_len..max_len``
    residues (by default the lengths the model was trained on) drawn once with ``seed``.
    ``target_exact=None``: no early stop. The model is scored before and after on
    ``check_pairs`` fresh pairs of ``table``, none of them in the fine-tuning pairs.
    ``resume``: a checkpoint saved by an interrupted run of the same fine-tuning (the same
    options): it continues from there exactly.
    """
    output_text, source, out = out, Path(source), Path(out)
    if same_file(source, out):
        raise CommandError(f"--out {out} is the --from model itself, which is never overwritten; "
                           f"give another file name")
    if data_path and n_pairs is not None:
        raise CommandError("give --data FILE or --n N, not both")
    if data_path and (min_len or max_len):
        raise CommandError("--min-len and --max-len are for random pairs; with --data the lengths are "
                           "the file's")
    output = ModelOutput(output_text, force=force, inputs=(source, data_path), resume=resume)
    model, ckpt = load_codon_model(source, backend)
    from_table, code = model_table(ckpt), get_genetic_code(table)
    recipe = checkpoint_recipe(model, ckpt)
    n_pairs = n_pairs or FINETUNE_DEFAULTS["n_pairs"]
    data, lo, hi, described = _finetune_pairs(ckpt, source, table, data_path, n_pairs, min_len, max_len,
                                              recipe.stop_rate, seed, int(model.config.max_len))
    recipe.min_len = lo  # the checks during fine-tuning draw proteins of lo..(longest in data)
    held_out = held_out_pairs(data, check_pairs, lo, hi, table, recipe.stop_rate, seed)
    how = {"from": str(source), "from_table": from_table, "freeze": freeze, "lr": lr,
           "warmup_steps": warmup_steps, "max_steps": max_steps, "target_exact": target_exact,
           "pairs": len(data), "lengths": [lo, hi], "seed": seed}
    trained, resumed, earlier = model, None, []
    if resume is not None:
        trained, resumed, earlier = _resumed(resume, backend, "finetune")
        _same_finetuning(resumed, how)

    stops = [f"at most {max_steps} steps"] + ([f"at most {time_budget:g} s"] if time_budget else [])
    stops.append("no early stop" if target_exact is None
                 else f"stops early at {pct(target_exact)} exact on a check")
    print(f"{'resuming at step ' + str(resumed.step) + ': ' if resumed else ''}fine-tuning {source} "
          f"({get_genetic_code(from_table)}) to {code} on {described}")
    print(f"freeze {freeze}: {_frozen_summary(model, freeze)}; lr {lr:g}, "
          f"{min(warmup_steps, max_steps // 2)} warm-up steps, " + ", ".join(stops))
    before = score_held_out(model, held_out, from_table) if len(held_out) else None
    run = finetune_codon_model(trained, table=table, data=data, freeze=freeze, lr=lr, warmup_steps=warmup_steps,
                               max_steps=max_steps, time_budget=time_budget, seed=seed,
                               target_exact=NO_TARGET if target_exact is None else target_exact,
                               check_every=check_every, progress=progress, recipe=recipe, resume=resumed)
    run.trainer.history_rows[:0] = earlier
    path, files, interrupted = _save_model(output, run, data_path, f"fine-tuning to {code}, freeze {freeze}",
                                           extra={"finetune": how})
    for line in describe_training(run, curriculum=False):
        print(line)
    if before is not None and not interrupted:
        after = score_held_out(trained, held_out, from_table)
        print(f"held-out check on {len(held_out)} fresh pairs of {code} ({lo}-{hi} residues, none in the "
              f"fine-tuning data):")
        print(f"  before fine-tuning: {scores_line(before[0])}")
        print(f"  after fine-tuning:  {scores_line(after[0])}")
        if before[1]["n"]:
            print(f"  the {before[1]['n']} whose translation differs under {get_genetic_code(from_table)}: "
                  f"{pct(before[1]['exact_match'])} exact before, {pct(after[1]['exact_match'])} after")
    elif before is None and check_pairs:
        print(f"held-out check skipped: every fresh pair of {lo}-{hi} residues drawn is in the "
              f"fine-tuning data")
    _print_files(path, *files)
    return 130 if interrupted else 0


#: what a resumed fine-tuning must repeat, by the option that sets it
_FINETUNE_OPTIONS = {"from_table": "--from", "freeze": "--freeze", "lr": "--lr", "warmup_steps": "--warmup",
                     "max_steps": "--steps", "target_exact": "--target", "pairs": "--n or --data",
                     "lengths": "--min-len/--max-len", "seed": "--seed"}


def _same_finetuning(resumed, how: dict) -> None:
    """Refuse to resume a fine-tuning with other settings than it was started with."""
    recorded = resumed.metadata["finetune"]
    for key, option in _FINETUNE_OPTIONS.items():
        if key in recorded and recorded[key] != how[key]:
            raise CommandError(f"{option}: the run to resume ({resumed.path}) was started with {key} "
                               f"{recorded[key]!r}, this command says {how[key]!r}; give the options of "
                               f"the run you resume")


def _finetune_pairs(ckpt, source, table, data_path, n_pairs, min_len, max_len, stop_rate, seed, limit):
    """``(pairs, shortest, longest protein, description)``: the file's pairs, or random ones."""
    if data_path:
        data = read_training_pairs(data_path, table, limit)
        lengths = data["protein"].str.len()
        return (data, max(1, int(lengths.min())), max(1, int(lengths.max())),
                f"{len(data)} pairs from {data_path}")
    trained = trained_lengths(ckpt) or FINETUNE_DEFAULT_LENGTHS
    lo, hi = min_len or trained[0], max_len or trained[1]
    if lo > hi:
        raise CommandError(f"--min-len {lo} is larger than --max-len {hi}")
    if 3 * hi > limit:
        raise CommandError(f"--max-len {hi}: proteins of {hi} residues have {3 * hi} nucleotides, more "
                           f"than {source} reads ({limit}, its max_len)")
    data = generate_pairs(n_pairs, lo, hi, table, stop_rate, seed)
    return data, lo, hi, f"{n_pairs} random pairs of {lo}-{hi} residues (drawn once, seed {seed})"


def _frozen_summary(model, freeze: str) -> str:
    frozen = set(frozen_parameter_names(model, freeze))
    named = list(model.named_parameters())
    n_weights = sum(int(p.data.size) for _, p in named)
    if not frozen:
        return f"all {len(named)} parameter arrays ({n_weights:,} weights) are trained"
    n_frozen = sum(int(p.data.size) for name, p in named if name in frozen)
    return f"{len(frozen)} of {len(named)} parameter arrays ({n_frozen:,} of {n_weights:,} weights) stay"


# --------------------------------------------------------------------------------------
# Beside the model
# --------------------------------------------------------------------------------------
def _save_model(output, run, data_path, title: str, extra: dict | None = None):
    """Save a finished or interrupted run where ``output`` says (never over a model the run did
    not make), its history and curve beside it: ``(model path, (history, curve), interrupted)``.
    A Ctrl-C or SIGTERM that comes while it saves waits until the files are written."""
    interrupted = getattr(run.trainer, "stop_reason", None) == "interrupted"
    with signals_held():
        path = output.path(interrupted)
        save_run(path, run, data=data_path, extra=extra)
        files = _save_history(path, run, title)
        note = output.note(path, interrupted)
        if note:
            print(note, file=sys.stderr)
        if interrupted:
            print(f"interrupted: the model after {run.trainer.step} steps is saved to {path}; continue with "
                  f"--resume {path}", file=sys.stderr)
    return path, files, interrupted


def _save_history(out: Path, run, title: str) -> tuple[Path, Path]:
    """A run's history and learning curve beside its model: ``(history, curve)`` paths."""
    history_path, curve_path = (sidecar(out, suffix) for suffix in SIDECARS)
    atomic_write(history_path, lambda f: run.history.to_csv(f, index=False))
    plot_codon_learning_curves(run, curve_path, title=title)
    return history_path, curve_path


def _print_files(out, history_path, curve_path) -> None:
    print(f"model:          {out}")
    print(f"history:        {history_path}")
    print(f"learning curve: {curve_path}")
