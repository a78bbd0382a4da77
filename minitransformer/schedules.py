"""Learning-rate schedules and gradient clipping: what an optimiser step is given.

A schedule is a small class, ``schedule(step) -> lr``, with ``step`` counted from 1 (the
first optimiser step uses ``step=1``). An optimiser (:mod:`~minitransformer.optim`)
accepts either a number (a constant rate) or a schedule for ``lr``. A schedule saves
itself as plain JSON (:meth:`Schedule.to_dict`), so a checkpoint can rebuild it
(:func:`schedule_from_dict`).

:func:`clip_grad_norm` caps the length of the gradient between the backward pass and the
optimiser step.
"""
from __future__ import annotations

import math

from . import backend
from .validation import check_int, check_number

__all__ = ["Schedule", "ConstantSchedule", "NoamSchedule", "WarmupCosineSchedule", "LinearTailSchedule", "SCHEDULES",
           "schedule_from_dict", "as_schedule", "clip_grad_norm"]


# ======================================================================================
# Learning-rate schedules
# ======================================================================================

def _check_step(step) -> float:
    if step < 0:
        raise ValueError(f"the step of a learning-rate schedule must be >= 0, got {step}")
    return float(step)


class Schedule:
    """Base class of learning-rate schedules: ``schedule(step) -> lr`` (a Python float).

    ``step`` counts optimiser steps from 1. Subclasses set ``name`` (the key used by
    :func:`schedule_from_dict`) and return their constructor arguments from :meth:`to_dict`,
    so a schedule can be saved in a checkpoint as plain JSON.
    """

    name = "schedule"

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _arguments(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict:
        """``{"name": ..., **constructor arguments}``: JSON-able, read by :func:`schedule_from_dict`."""
        return {"name": self.name, **self._arguments()}

    def __eq__(self, other) -> bool:
        return isinstance(other, Schedule) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args})"


class ConstantSchedule(Schedule):
    """``lr(step) = lr``: the same rate at every step (what a plain number for ``lr`` means)."""

    name = "constant"

    def __init__(self, lr: float):
        self.lr = check_number("lr", lr, minimum=0.0)

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.lr

    def _arguments(self) -> dict:
        return {"lr": self.lr}


class NoamSchedule(Schedule):
    """The schedule of "Attention Is All You Need" (Vaswani et al., 2017, section 5.3)::

        lr(step) = factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)

    The rate rises linearly for ``warmup_steps`` steps, peaks at ``step == warmup_steps``
    with ``lr = factor / sqrt(d_model * warmup_steps)``, then decays as ``1 / sqrt(step)``.
    Step 0 (before any optimiser step) gives 0, the start of the warm-up line.
    """

    name = "noam"

    def __init__(self, d_model: int, warmup_steps: int, factor: float = 1.0):
        self.d_model = check_int("d_model", d_model, minimum=1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=1)
        self.factor = check_number("factor", factor, minimum=0.0)

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        if step == 0:
            return 0.0
        return self.factor * self.d_model ** -0.5 * min(step ** -0.5, step * self.warmup_steps ** -1.5)

    @property
    def peak_lr(self) -> float:
        """The highest rate, reached at ``step == warmup_steps``."""
        return self(self.warmup_steps)

    def _arguments(self) -> dict:
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "factor": self.factor}


class WarmupCosineSchedule(Schedule):
    """Linear warm-up to ``peak_lr``, then a half cosine down to ``min_lr``::

        step <= warmup_steps:                lr = peak_lr * step / warmup_steps
        warmup_steps < step < total_steps:   p  = (step - warmup_steps) / (total_steps - warmup_steps)
                                             lr = min_lr + (peak_lr - min_lr) * (1 + cos(pi * p)) / 2
        step >= total_steps:                 lr = min_lr

    So ``lr(warmup_steps) == peak_lr`` and ``lr(total_steps) == min_lr``. ``warmup_steps=0``
    means no warm-up: the cosine starts at ``peak_lr`` right away.
    """

    name = "warmup_cosine"

    def __init__(self, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        self.peak_lr = check_number("peak_lr", peak_lr, minimum=0.0)
        self.min_lr = check_number("min_lr", min_lr, minimum=0.0)
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed peak_lr ({self.peak_lr})")
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps ({self.total_steps}) must be larger than "
                             f"warmup_steps ({self.warmup_steps})")

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        if step >= self.total_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _arguments(self) -> dict:
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "min_lr": self.min_lr}


class LinearTailSchedule(Schedule):
    """Another schedule, ``base``, up to step ``start``; then the same rate times a line that
    falls to 0 over the next ``steps`` steps::

        step <= start:                 lr = base(step)
        start < step < start + steps:  lr = base(step) * (1 - (step - start) / steps)
        step >= start + steps:         lr = 0

    A final phase of training that settles the weights once a run has learned what it was
    to learn (the codon recipe's ``final_steps``). ``base`` may be given as the dict of its
    :meth:`~Schedule.to_dict`, which is how it is saved inside this one.
    """

    name = "linear_tail"

    def __init__(self, base, start: int, steps: int):
        self.base = base if callable(base) else schedule_from_dict(base)
        if not isinstance(self.base, Schedule):
            raise TypeError(f"the base of a linear_tail schedule must be a Schedule (it is saved with it), "
                            f"got {type(base).__name__}")
        self.start = check_int("start", start, minimum=0)
        self.steps = check_int("steps", steps, minimum=1)

    def __call__(self, step: int) -> float:
        lr = self.base(step)
        into = _check_step(step) - self.start
        return lr if into <= 0 else lr * max(0.0, 1.0 - into / self.steps)

    def _arguments(self) -> dict:
        return {"base": self.base.to_dict(), "start": self.start, "steps": self.steps}


#: name → schedule class, for :func:`schedule_from_dict`.
SCHEDULES = {cls.name: cls for cls in (ConstantSchedule, NoamSchedule, WarmupCosineSchedule, LinearTailSchedule)}


def schedule_from_dict(d: dict) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_dict`'s output."""
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"a schedule dict needs a 'name' key, got {d!r}")
    kwargs = dict(d)
    name = kwargs.pop("name")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}: expected one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)


def as_schedule(lr):
    """A number becomes a :class:`ConstantSchedule`; a callable ``step -> lr`` is kept."""
    if callable(lr):
        return lr
    return ConstantSchedule(check_number("lr", lr, minimum=0.0))


# ======================================================================================
# Gradient clipping
# ======================================================================================

def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    With every gradient flattened into one long vector ``g``::

        norm = sqrt(sum_p sum_i g_p,i**2)
        if norm > max_norm:   g <- g * max_norm / (norm + 1e-6)

    The direction of the update is kept; only its length is capped, which tames the rare
    huge gradient early in training. This is ``torch.nn.utils.clip_grad_norm_`` with the
    2-norm (the ``1e-6`` guards against dividing by zero). Returns the norm *before*
    clipping, a useful number to log. If the norm is infinite or NaN the gradients are
    left as they are (scaling cannot repair them) and the norm is returned so that the
    caller can skip the step.
    """
    max_norm = check_number("max_norm", max_norm, minimum=0.0, strict=True)
    params = list(params)
    if not params:
        return 0.0
    # Sum of squares per parameter, added up on the device; one transfer to the host at the end.
    total_sq = None
    for p in params:
        g = p.grad.reshape(-1)
        sq = backend.get_array_module(g).vdot(g, g)
        total_sq = sq if total_sq is None else total_sq + sq
    norm = math.sqrt(float(total_sq))
    if not math.isfinite(norm):
        return norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for p in params:
            p.grad *= coef
    return norm
