"""Transfer learning: adapt a model trained on one genetic code to another.

Vertebrate mitochondria read four codons differently from the standard code (NCBI table 2:
UGA -> W instead of stop, AUA -> M instead of I, AGA and AGG -> stop instead of R). A model
that has learned the standard code already knows the hard part of the task, the 3:1
alignment of codons to residues, and 60 of the 64 codons. Fine-tuning it on a small set of
mitochondrial pairs only has to change what four codons mean, so it needs a fraction of
the steps that learning from scratch needs, and far less data.

Parts of the model can be frozen (left out of the optimizer, so they do not change):

* ``"none"``: everything is trained;
* ``"embeddings"``: the token and position embeddings stay as they are;
* ``"encoder"``: the source embedding and the whole encoder stay; the decoder relearns
  what the encoder's codon representations mean.
"""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd

from ..optim import Adam, WarmupCosineSchedule
from .data import generate_pairs
from .train import CodonRecipe, CodonRun, train_codon_model

FREEZE_CHOICES = ("none", "embeddings", "encoder")

_FROZEN_PREFIXES = {
    "none": (),
    "embeddings": ("src_embed.", "tgt_embed.", "src_pos.", "tgt_pos."),
    "encoder": ("src_embed.", "src_pos.", "encoder."),
}


def frozen_parameter_names(model, freeze: str) -> list[str]:
    """Names of the parameters that ``freeze`` keeps fixed."""
    if freeze not in _FROZEN_PREFIXES:
        raise ValueError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, got {freeze!r}")
    prefixes = _FROZEN_PREFIXES[freeze]
    return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def trainable_parameters(model, freeze: str):
    """The parameters the optimizer may change (everything not frozen)."""
    frozen = set(frozen_parameter_names(model, freeze))
    return [p for name, p in model.named_parameters() if name not in frozen]


def finetune_codon_model(model, *, table=2, data: pd.DataFrame | None = None, n_pairs: int = 500,
                         freeze: str = "none", lr: float = 5e-4, warmup_steps: int = 50,
                         max_steps: int = 1000, time_budget: float | None = None, seed: int = 0,
                         target_exact: float = 0.99, check_every: int = 50, progress: bool = True,
                         recipe: CodonRecipe | None = None, resume=None) -> CodonRun:
    """Fine-tune ``model`` on pairs of genetic code ``table``.

    ``data``: the fine-tuning pairs; by default ``n_pairs`` synthetic pairs (protein lengths
    1..100) drawn once with ``seed`` -- a small, fixed data set, as in a real transfer-learning
    setting. The learning rate warms up linearly over ``warmup_steps`` to ``lr`` and decays
    along a cosine to ``lr / 10`` at ``max_steps``. Training stops at ``max_steps`` or once
    ``target_exact`` of a check set of fresh pairs of the new code is reached. ``resume``: the
    checkpoint of an interrupted run of the same fine-tuning, whose weights ``model`` holds
    (see :func:`~minitransformer.codon.train.train_codon_model`).
    """
    if data is None:
        data = generate_pairs(n_pairs, 1, 100, table, 0.05, np.random.default_rng(seed))
    longest = int(data["protein"].str.len().max())
    recipe = CodonRecipe(**{**(recipe or CodonRecipe()).to_dict(),
                            "start_max_len": longest, "final_max_len": longest,
                            "target_exact": target_exact, "check_every": check_every, "final_steps": 0})
    params = trainable_parameters(model, freeze)
    warmup_steps = min(warmup_steps, max_steps // 2)
    optimizer = Adam(params, lr=WarmupCosineSchedule(lr, warmup_steps, max_steps, lr / 10),
                     betas=(0.9, 0.98), eps=1e-9)
    return train_codon_model(recipe, table=table, data=data, seed=seed, max_steps=max_steps,
                             time_budget=time_budget, progress=progress, model=model, optimizer=optimizer,
                             resume=resume)


#: The defaults of :func:`finetune_codon_model` by name (``codon finetune`` uses the same).
FINETUNE_DEFAULTS = {name: parameter.default for name, parameter
                     in inspect.signature(finetune_codon_model).parameters.items()
                     if parameter.default is not inspect.Parameter.empty}


# --------------------------------------------------------------------------------------
# Before and after: a held-out check
# --------------------------------------------------------------------------------------
def held_out_pairs(data: pd.DataFrame, n: int, min_len: int, max_len: int, table, stop_rate: float,
                   seed: int) -> pd.DataFrame:
    """Up to ``n`` fresh pairs of ``table`` (proteins of ``min_len..max_len`` residues), none of
    whose RNA is in the fine-tuning ``data``: the pairs to score a model on before and after."""
    if not n:
        return data[:0].reset_index(drop=True)
    fresh = generate_pairs(n, min_len, max_len, table, stop_rate, np.random.default_rng([seed, 2024]))
    return fresh[~fresh["rna"].isin(set(data["rna"]))].reset_index(drop=True)


def score_held_out(model, pairs: pd.DataFrame, from_table) -> tuple[dict, dict]:
    """``(scores on every pair, scores on the pairs whose translation differs under
    from_table)``: the second shows whether the codons that changed meaning were learned."""
    from .genetic_code import translate
    from .train import score_translations, translate_rna

    expected = list(pairs["protein"])
    differs = [i for i, (rna, protein) in enumerate(zip(pairs["rna"], expected))
               if translate(rna, from_table) != protein]
    predicted = translate_rna(model, pairs["rna"])
    return (score_translations(predicted, expected),
            score_translations([predicted[i] for i in differs], [expected[i] for i in differs]))


__all__ = ["FINETUNE_DEFAULTS", "FREEZE_CHOICES", "finetune_codon_model", "frozen_parameter_names",
           "held_out_pairs", "score_held_out", "trainable_parameters"]
