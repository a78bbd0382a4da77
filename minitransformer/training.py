"""The training loop: batches, one optimizer step, evaluation, history, progress bar.

One training step is the whole story of the library in five lines::

    logits = model.forward(batch.src, batch.tgt_in)        # predict every target token
    loss = criterion.forward(logits, batch.tgt_out)        # how wrong, on average
    model.zero_grad(); model.backward(criterion.backward())  # every gradient, by hand
    clip_grad_norm(model.parameters(), max_norm)           # guard against rare huge steps
    optimizer.step()                                       # move the weights

On a CPU a large batch runs the same lines shard by shard (data parallelism: one
explicit branch of :meth:`Trainer.train_step`, see :mod:`minitransformer.parallel`).
The rest of this module is care around it: batches grouped by length so little padding
is computed, a seeded generator for everything random, a history of every logged step
(a pandas DataFrame, saved as CSV), periodic evaluation, stopping early when a target is
reached, a clear stop when the loss becomes NaN, and a clean stop with a checkpoint on
Ctrl-C.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from . import backend as _backend
from .losses import CrossEntropyLoss
from .optim import clip_grad_norm
from .parallel import DataParallel


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite: the run stopped instead of training garbage."""


# --------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Padded id arrays for one step: ``tgt_in`` = [bos] + target, ``tgt_out`` = target + [eos]."""

    src: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    n_tokens: int  #: real (non-padding) target tokens: the ones the loss counts

    def to(self, backend_name):
        """The same batch with its arrays on another backend."""
        move = lambda a: _backend.asarray(a, backend_name)  # noqa: E731
        return Batch(move(self.src), move(self.tgt_in), move(self.tgt_out), self.n_tokens)

    @property
    def size(self) -> int:
        return int(self.src.shape[0])


def make_batch(src_seqs: Sequence[Sequence[int]], tgt_seqs: Sequence[Sequence[int]], *, pad_id: int,
               bos_id: int, eos_id: int) -> Batch:
    """Pad id sequences into a :class:`Batch` (targets get the start and end tokens)."""
    if len(src_seqs) != len(tgt_seqs):
        raise ValueError(f"{len(src_seqs)} sources but {len(tgt_seqs)} targets")
    if not len(src_seqs):
        raise ValueError("cannot make an empty batch")
    b = len(src_seqs)
    s_len = max(len(s) for s in src_seqs)
    t_len = max(len(t) for t in tgt_seqs) + 1
    src = np.full((b, s_len), pad_id, dtype=np.int64)
    tgt_in = np.full((b, t_len), pad_id, dtype=np.int64)
    tgt_out = np.full((b, t_len), pad_id, dtype=np.int64)
    for i, (s, t) in enumerate(zip(src_seqs, tgt_seqs)):
        if len(s) == 0:
            raise ValueError(f"source {i} of the batch is empty")
        src[i, : len(s)] = s
        tgt_in[i, 0] = bos_id
        tgt_in[i, 1 : len(t) + 1] = t
        tgt_out[i, : len(t)] = t
        tgt_out[i, len(t)] = eos_id
    n_tokens = int(sum(len(t) + 1 for t in tgt_seqs))
    return Batch(src, tgt_in, tgt_out, n_tokens)


def length_bucketed_batches(lengths: Sequence[int], max_tokens: int, rng: np.random.Generator,
                            *, bucket_width: int | None = None) -> list[np.ndarray]:
    """Indices grouped into batches of similar length, each about ``max_tokens`` padded tokens.

    Sorting by length (with a random tie-break) puts sequences of equal length together,
    so a batch pads little: its cost is batch size x its longest member. The batches
    are then shuffled, so the model does not see all short sequences first.
    """
    lengths = np.asarray(lengths)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])
        end = start + 1
        while end < len(order):
            longest = max(longest, int(lengths[order[end]]))
            if (end - start + 1) * longest > max_tokens:
                break
            end += 1
        batches.append(order[start:end])
        start = end
    rng.shuffle(batches)
    return batches


# --------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------
@dataclass
class StepResult:
    loss: float
    n_tokens: int
    grad_norm: float
    lr: float
    shards: int = 1  #: how many shards the batch was cut into (1: it ran whole)


@dataclass
class Trainer:
    """Runs optimizer steps on a model and records what happened.

    ``evaluate(trainer) -> dict`` is called every ``eval_every`` steps (and at the end);
    its numbers join the history. Training stops when ``stop_when(metrics)`` is true, when
    ``max_steps`` or ``time_budget`` (wall-clock seconds of the whole ``fit`` call,
    evaluations included) is reached, or on Ctrl-C (after saving
    ``checkpoint_fn(trainer)`` if given).

    ``shards``: how batches are cut for data parallelism
    (:class:`~minitransformer.parallel.DataParallel`), whose shards' forward and backward
    passes run at once on the threads of :func:`~minitransformer.cpu.threads`. None (the
    default): large batches in a power of two of shards of at least 2,048 positions each,
    at most 16 (the benchmark's batch of 64 sequences: 2; the codon demo's: whole); ``k``:
    every batch in ``k`` shards (fewer when it has fewer sequences); 1: every batch whole.
    The cut depends on the batch and this setting only, so a seed gives the same run on
    any number of cores. On a GPU every batch runs whole.
    """

    model: object
    optimizer: object
    criterion: CrossEntropyLoss = None
    max_grad_norm: float | None = 1.0
    step: int = 0
    history_rows: list = field(default_factory=list)
    train_seconds: float = 0.0
    shards: int | None = None

    def __post_init__(self):
        if self.criterion is None:
            self.criterion = CrossEntropyLoss(ignore_index=self.model.config.pad_id)
        self.parallel = DataParallel(self.model, self.shards)

    # -- one step -----------------------------------------------------------------------
    def train_step(self, batch: Batch) -> StepResult:
        """Forward, loss, backward, clip, update. Raises TrainingDivergedError on NaN/inf.

        ``net`` is the model itself, except for a batch that data parallelism cuts into
        shards (see ``shards``): then ``self.parallel`` runs the same ``forward`` and
        ``backward`` shard by shard, giving the whole batch's logits and gradients."""
        model = self.model
        model.train()
        shards = self.parallel.shards_of(batch.src, batch.tgt_in)
        net = self.parallel if shards > 1 else model
        logits = net.forward(batch.src, batch.tgt_in)
        loss = float(self.criterion.forward(logits, batch.tgt_out))
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"the loss became {loss} at step {self.step + 1}; training stopped. Try a lower "
                f"learning rate, a longer warm-up or gradient clipping (max_grad_norm)")
        model.zero_grad()
        net.backward(self.criterion.backward())
        params = model.parameters()
        grad_norm = clip_grad_norm(params, self.max_grad_norm) if self.max_grad_norm else float("nan")
        lr = self.optimizer.current_lr
        self.optimizer.step()
        self.step += 1
        return StepResult(loss, batch.n_tokens, float(grad_norm), float(lr), shards)

    # -- the loop -----------------------------------------------------------------------
    def fit(self, batches: Iterable[Batch] | Iterator[Batch], *, max_steps: int | None = None,
            time_budget: float | None = None, evaluate: Callable | None = None, eval_every: int = 0,
            stop_when: Callable[[dict], bool] | None = None, log_every: int = 10,
            progress: bool = True, checkpoint_fn: Callable | None = None,
            description: str = "training") -> pd.DataFrame:
        """Train until a stop condition; returns the history as a DataFrame.

        ``progress``: True shows a bar on a terminal and a plain line every half minute
        elsewhere (a pipe, a log file, CI); ``"checks"`` only the lines of the evaluations;
        False nothing (see :class:`Progress`).
        """
        if max_steps is None and time_budget is None and stop_when is None:
            raise ValueError("give max_steps, time_budget or stop_when, or training never ends")
        bar = Progress(progress, description, max_steps=max_steps, time_budget=time_budget, step=self.step)
        iterator = iter(batches)
        window_loss, window_tokens, window_time = 0.0, 0, 0.0
        self.stop_reason = None
        fit_started = time.perf_counter()
        try:
            while True:
                if max_steps is not None and self.step >= max_steps:
                    self.stop_reason = "max_steps"
                    break
                if time_budget is not None and time.perf_counter() - fit_started >= time_budget:
                    self.stop_reason = "time_budget"
                    break
                try:
                    batch = next(iterator)
                except StopIteration:
                    self.stop_reason = "data exhausted"
                    break
                started = time.perf_counter()
                result = self.train_step(batch)
                elapsed = time.perf_counter() - started
                self.train_seconds += elapsed
                window_loss += result.loss * result.n_tokens
                window_tokens += result.n_tokens
                window_time += elapsed
                if self.step % log_every == 0:
                    row = {"step": self.step, "loss": window_loss / window_tokens, "lr": result.lr,
                           "grad_norm": result.grad_norm, "tokens_per_s": window_tokens / max(window_time, 1e-9),
                           "train_seconds": self.train_seconds}
                    self.history_rows.append(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}",
                                    tok_s=f"{row['tokens_per_s']:.0f}")
                    window_loss, window_tokens, window_time = 0.0, 0, 0.0
                bar.show(self.step)
                if evaluate is not None and eval_every and self.step % eval_every == 0:
                    metrics = self._evaluate(evaluate, bar if progress else None)
                    if stop_when is not None and stop_when(metrics):
                        self.stop_reason = "target reached"
                        break
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            if progress:
                bar.write(f"interrupted at step {self.step}", file=sys.stderr)
            if checkpoint_fn is not None:
                checkpoint_fn(self)
        finally:
            bar.close()
        already_evaluated = bool(eval_every) and self.step % eval_every == 0
        if evaluate is not None and self.stop_reason not in ("target reached", "interrupted") \
                and not already_evaluated:
            try:
                self._evaluate(evaluate, None)
            except KeyboardInterrupt:   # during the last evaluation: the steps made are kept
                self.stop_reason = "interrupted"
                if checkpoint_fn is not None:
                    checkpoint_fn(self)
        return self.history

    def _evaluate(self, evaluate, bar) -> dict:
        metrics = dict(evaluate(self))
        row = {"step": self.step, "train_seconds": self.train_seconds}
        row.update({f"eval_{k}" if not k.startswith("eval_") else k: v for k, v in metrics.items()})
        self.history_rows.append(row)
        if bar is not None:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
            bar.write(f"step {self.step}: {shown}")
        return metrics

    @property
    def history(self) -> pd.DataFrame:
        """Every logged step and evaluation, one row each (evaluation columns start with eval_)."""
        if not self.history_rows:
            return pd.DataFrame(columns=["step", "loss", "lr", "grad_norm", "tokens_per_s", "train_seconds"])
        return pd.DataFrame(self.history_rows)


def _in_a_notebook() -> bool:
    """True inside a running Jupyter kernel (not merely with ipykernel imported, as a test
    suite that executes notebooks in other processes may have it)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "ipykernel" in type(shell).__module__


class Progress:
    """How :meth:`Trainer.fit` shows where it is.

    ``mode`` True: on a terminal (or in a notebook), a tqdm bar of the steps out of
    ``max_steps`` or, with only a ``time_budget``, of the seconds out of the budget, and the
    time left of the budget either way; when stderr is not a terminal (a pipe, a log, CI),
    where a bar's ``\\r`` redraws pile up, a plain line every :attr:`EVERY_SECONDS` instead.
    ``"checks"``: no bar and no lines, but the evaluations' lines (:meth:`write`). False:
    nothing at all.
    """

    #: seconds between two plain progress lines
    EVERY_SECONDS = 30.0

    def __init__(self, mode, description: str, *, max_steps=None, time_budget=None, step: int = 0, file=None):
        from tqdm import tqdm

        self.file = file or sys.stderr
        self.mode, self.description = mode, description
        self.max_steps, self.time_budget, self.first_step = max_steps, time_budget, step
        self.started = self.last_line = time.perf_counter()
        self.postfix: dict = {}
        # (a notebook's output is no terminal, but it redraws a bar's line as a terminal does)
        on_terminal = mode is True and ((hasattr(self.file, "isatty") and self.file.isatty())
                                        or _in_a_notebook())
        self.plain = mode is True and not on_terminal
        by_time = max_steps is None and time_budget is not None
        self.bar = tqdm(total=round(time_budget) if by_time else max_steps, initial=0 if by_time else step,
                        desc=description, disable=not on_terminal, dynamic_ncols=True, leave=True,
                        unit="s" if by_time else "step", file=self.file,
                        bar_format=("{l_bar}{bar}| {n:.0f}/{total} s of the time budget{postfix}"
                                    if by_time else None))
        self.by_time = by_time

    def _seconds_left(self) -> float | None:
        if self.time_budget is None:
            return None
        return max(0.0, self.time_budget - (time.perf_counter() - self.started))

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def show(self, step: int) -> None:
        """After each step: move the bar, or print a plain line when it is time."""
        left = self._seconds_left()
        if not self.bar.disable:
            shown = {**({"step": step} if self.by_time else {}), **self.postfix}
            if left is not None:
                shown["left"] = f"{left:.0f}s"
            self.bar.set_postfix(shown, refresh=False)
            if self.by_time:
                self.bar.update(min(self.time_budget, time.perf_counter() - self.started) - self.bar.n)
            else:
                self.bar.update(1)
        elif self.plain and time.perf_counter() - self.last_line >= self.EVERY_SECONDS:
            self.last_line = time.perf_counter()
            print(self.line(step, left), file=self.file, flush=True)

    def line(self, step: int, left=None) -> str:
        """``codon: step 120 of 1000 (12%), 45 s, about 330 s left, loss=1.234 ...``"""
        elapsed = time.perf_counter() - self.started
        text = f"{self.description}: step {step}"
        if self.max_steps:
            text += f" of {self.max_steps} ({step / self.max_steps:.0%})"
        text += f", {elapsed:.0f} s"
        done = step - self.first_step
        estimates = [] if left is None else [left]
        if self.max_steps and done > 0:
            estimates.append(elapsed / done * (self.max_steps - step))
        if estimates:
            text += f", about {min(estimates):.0f} s left"
        return text + "".join(f", {k}={v}" for k, v in self.postfix.items())

    def write(self, line: str, file=None) -> None:
        """A line that stays (an evaluation's scores): above the bar, or printed."""
        if self.mode is False:
            return
        if self.bar.disable:
            print(line, file=file, flush=True)
        else:
            self.bar.write(line, file=file)

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------------------
# Scoring generated sequences
# --------------------------------------------------------------------------------------
def sequence_accuracy(predicted: Sequence[Sequence[int]], expected: Sequence[Sequence[int]]) -> dict:
    """Exact match (whole sequence right) and per-token accuracy (position by position;
    a missing or extra token counts as wrong, out of max(len(pred), len(true)))."""
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} targets")
    exact = correct = total = 0
    for p, e in zip(predicted, expected):
        p, e = list(p), list(e)
        exact += p == e
        correct += sum(a == b for a, b in zip(p, e))
        total += max(len(p), len(e))
    n = max(len(expected), 1)
    return {"exact_match": exact / n, "token_accuracy": correct / max(total, 1), "n": len(expected)}
