"""Optimisers, learning-rate schedules and gradient clipping.

An optimiser holds a list of :class:`~minitransformer.module.Parameter` objects. After the
backward pass has filled every ``p.grad``, one call to :meth:`Optimizer.step` moves every
``p.data`` a little against its gradient; :meth:`Optimizer.zero_grad` then clears the
gradients for the next batch::

    optimizer = Adam(model.parameters(), lr=NoamSchedule(d_model=64, warmup_steps=400))
    for batch in batches:
        model.zero_grad()                      # or optimizer.zero_grad()
        loss = ...forward...; ...backward...   # fills p.grad
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()

Three rules keep the code fast and correct on both backends:

* **Updates are in place** (``m *= b1``, ``p.data -= ...``): no new arrays for the state or
  the parameters, so anything holding a view of ``p.data`` stays valid, and a large model
  does not allocate a second copy of itself at every step.
* **Scalars stay Python floats.** Under NumPy 2's promotion rules a Python float times a
  float32 array is float32; an ``np.float64`` scalar would silently upcast the update.
* **The state lives where the parameters live**: same backend (NumPy or CuPy) and dtype.

The update rules follow PyTorch's ``torch.optim`` exactly (the tests compare them step by
step in float64), so what students learn here carries over.

Learning-rate schedules are small classes: ``schedule(step) -> lr``, with ``step`` counted
from 1 (the first optimiser step uses ``step=1``). An optimiser accepts either a number
(a constant rate) or a schedule for ``lr``.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
from .module import Parameter

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm",
    "Schedule", "ConstantSchedule", "NoamSchedule", "WarmupCosineSchedule",
    "schedule_from_dict", "optimizer_from_state_dict", "OPTIMIZERS", "SCHEDULES",
]


# ======================================================================================
# Learning-rate schedules
# ======================================================================================

def _check_number(name: str, value, *, minimum: float | None = None, strict: bool = False,
                  maximum: float | None = None, max_strict: bool = False) -> float:
    """``value`` as a Python float, or a ValueError naming the argument and the rule broken."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if max_strict else value > maximum):
        raise ValueError(f"{name} must be {'<' if max_strict else '<='} {maximum}, got {value}")
    return value


def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


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
        self.lr = _check_number("lr", lr, minimum=0.0)

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
        self.d_model = _check_int("d_model", d_model, minimum=1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, minimum=1)
        self.factor = _check_number("factor", factor, minimum=0.0)

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
        self.peak_lr = _check_number("peak_lr", peak_lr, minimum=0.0)
        self.min_lr = _check_number("min_lr", min_lr, minimum=0.0)
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed peak_lr ({self.peak_lr})")
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, minimum=0)
        self.total_steps = _check_int("total_steps", total_steps, minimum=1)
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


#: name → schedule class, for :func:`schedule_from_dict`.
SCHEDULES = {cls.name: cls for cls in (ConstantSchedule, NoamSchedule, WarmupCosineSchedule)}


def schedule_from_dict(d: dict) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_dict`'s output."""
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"a schedule dict needs a 'name' key, got {d!r}")
    kwargs = dict(d)
    name = kwargs.pop("name")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}: expected one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)


def _as_schedule(lr):
    """A number becomes a :class:`ConstantSchedule`; a callable ``step -> lr`` is kept."""
    if callable(lr):
        return lr
    return ConstantSchedule(_check_number("lr", lr, minimum=0.0))


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
    max_norm = _check_number("max_norm", max_norm, minimum=0.0, strict=True)
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


# ======================================================================================
# Optimisers
# ======================================================================================

class Optimizer:
    """Base class: holds the parameters, the learning-rate schedule and per-parameter state.

    Subclasses name their state buffers in ``state_names`` (created as zeros shaped like
    each parameter) and write the update of one parameter in :meth:`_update`.

    Attributes:
        params: the list of :class:`Parameter` objects updated by :meth:`step`.
        schedule: a callable ``step -> lr`` (a :class:`Schedule` when built from a number).
        step_count: the number of optimiser steps taken so far (one per batch).
        state: one dict per parameter, ``buffer name -> array`` (e.g. Adam's ``exp_avg``).
    """

    #: names of the per-parameter state arrays (e.g. ``("exp_avg", "exp_avg_sq")``)
    state_names: tuple = ()

    def __init__(self, params, lr):
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty parameter list (pass model.parameters())")
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer parameters must be Parameter objects (e.g. model.parameters()), "
                                f"item {i} is a {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"parameter {i} appears more than once in the optimizer's parameter list")
            seen.add(id(p))
        self.params = params
        self.schedule = _as_schedule(lr)
        self.step_count = 0
        self.state = [self._init_state(p) for p in params]

    def _init_state(self, p) -> dict:
        xp = backend.get_array_module(p.data)
        return {name: xp.zeros_like(p.data) for name in self._active_state_names()}

    def _active_state_names(self) -> tuple:
        """The state buffers this configuration needs (SGD without momentum needs none)."""
        return self.state_names

    # -- the public loop ---------------------------------------------------------------
    @property
    def current_lr(self) -> float:
        """The learning rate the *next* call to :meth:`step` will use."""
        return float(self.schedule(self.step_count + 1))

    def step(self) -> None:
        """Update every parameter in place from its ``grad``; then count the step."""
        lr = self.current_lr
        for p, state in zip(self.params, self.state):
            self._follow_parameter(p, state)
            self._update(p, state, lr)
        self.step_count += 1

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (in place)."""
        for p in self.params:
            p.zero_grad()

    def _update(self, p: Parameter, state: dict, lr: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _follow_parameter(self, p: Parameter, state: dict) -> None:
        """Keep the state on the parameter's backend and dtype.

        ``model.to("cupy")`` or ``model.to(dtype=np.float64)`` after the optimiser was built
        replaces ``p.data`` by an array elsewhere; the state then follows on the next step
        (costs nothing when nothing moved: two attribute checks per buffer).
        """
        for name, buf in state.items():
            if type(buf) is not type(p.data) or buf.dtype != p.data.dtype:
                state[name] = backend.asarray(buf, backend.get_array_module_name(p.data), p.data.dtype).copy()
            if state[name].shape != p.data.shape:
                raise ValueError(f"optimizer state {name!r} has shape {tuple(state[name].shape)} but its "
                                 f"parameter now has shape {tuple(p.data.shape)}")

    # -- hyper-parameters --------------------------------------------------------------
    def hyperparameters(self) -> dict:
        """The scalar settings besides the learning rate, JSON-able (e.g. ``betas``, ``eps``)."""
        return {}

    def _set_hyperparameters(self, hp: dict) -> None:
        """Check and apply a dict from :meth:`hyperparameters` (subclasses validate)."""

    # -- moving and saving -------------------------------------------------------------
    def to(self, backend_name: str | None = None, dtype=None) -> "Optimizer":
        """Move the state arrays to a backend (``"numpy"``/``"cupy"``) and/or dtype, in place.

        Call it next to ``model.to(...)``; :meth:`step` would otherwise move the state on
        the first step after the parameters moved.
        """
        for state, p in zip(self.state, self.params):
            name = backend.resolve_backend_name(backend_name or backend.get_array_module_name(p.data))
            for key, buf in state.items():
                state[key] = backend.asarray(buf, name, dtype if dtype is not None else buf.dtype)
        return self

    def state_dict(self) -> dict:
        """Everything needed to resume: host NumPy copies of the state, and JSON-able scalars::

            {"type": "Adam", "step_count": 10,
             "hyperparameters": {"betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0},
             "schedule": {"name": "noam", "d_model": 64, ...} (None for a plain callable),
             "param_shapes": [[64, 64], [64], ...],
             "state": {"0.exp_avg": ndarray, "0.exp_avg_sq": ndarray, "1.exp_avg": ...}}

        State keys are ``"<parameter index>.<buffer name>"``, the index being the parameter's
        position in the list given to the constructor.
        """
        schedule = self.schedule.to_dict() if hasattr(self.schedule, "to_dict") else None
        arrays = {}
        for i, state in enumerate(self.state):
            for name, buf in state.items():
                host = backend.to_numpy(buf)
                arrays[f"{i}.{name}"] = host.copy() if host is buf else host
        return {
            "type": type(self).__name__,
            "step_count": int(self.step_count),
            "hyperparameters": self.hyperparameters(),
            "schedule": schedule,
            "param_shapes": [list(p.data.shape) for p in self.params],
            "state": arrays,
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned (PyTorch-style: the saved step count,
        hyper-parameters and schedule replace the current ones; a saved ``schedule`` of
        ``None`` keeps the current one). Arrays are copied onto each parameter's backend
        and dtype. A state for another optimiser type, another number of parameters or
        other shapes raises ``ValueError`` saying what differs.
        """
        for key in ("type", "step_count", "hyperparameters", "param_shapes", "state"):
            if key not in d:
                raise ValueError(f"optimizer state dict is missing the key {key!r}")
        if d["type"] != type(self).__name__:
            raise ValueError(f"optimizer state dict is for {d['type']}, cannot load it into {type(self).__name__}")
        shapes = [tuple(s) for s in d["param_shapes"]]
        if len(shapes) != len(self.params):
            raise ValueError(f"optimizer state dict is for {len(shapes)} parameters, "
                             f"this optimizer has {len(self.params)}")
        bad = [f"parameter {i}: saved {s} vs now {tuple(p.data.shape)}"
               for i, (s, p) in enumerate(zip(shapes, self.params)) if s != tuple(p.data.shape)]
        if bad:
            raise ValueError("optimizer state dict shapes do not match the parameters: " + "; ".join(bad))
        step_count = d["step_count"]
        if isinstance(step_count, bool) or not isinstance(step_count, (int, np.integer)) or step_count < 0:
            raise ValueError(f"optimizer state dict has an invalid step_count {step_count!r}")

        # Apply the hyper-parameters first (they decide which state arrays exist), and put
        # the old ones back if anything below fails: a failed load leaves the optimiser as it was.
        old_hyperparameters = self.hyperparameters()
        self._set_hyperparameters(dict(d["hyperparameters"]))
        try:
            expected = {f"{i}.{name}" for i in range(len(self.params)) for name in self._active_state_names()}
            saved = set(d["state"])
            if saved != expected:
                raise ValueError("optimizer state dict arrays do not match this optimizer's settings: "
                                 f"missing {sorted(expected - saved) or 'nothing'}, "
                                 f"unexpected {sorted(saved - expected) or 'nothing'}")
            new_state = []
            for i, p in enumerate(self.params):
                state = {}
                for name in self._active_state_names():
                    arr = d["state"][f"{i}.{name}"]
                    if tuple(np.shape(arr)) != tuple(p.data.shape):
                        raise ValueError(f"optimizer state {i}.{name} has shape {tuple(np.shape(arr))}, "
                                         f"parameter {i} has shape {tuple(p.data.shape)}")
                    # copy: the state is updated in place and must not alias the caller's arrays
                    state[name] = backend.asarray(arr, backend.get_array_module_name(p.data), p.data.dtype).copy()
                new_state.append(state)
            schedule = self.schedule if d.get("schedule") is None else schedule_from_dict(d["schedule"])
        except Exception:
            self._set_hyperparameters(old_hyperparameters)
            raise
        self.schedule = schedule
        self.step_count = int(step_count)
        self.state = new_state

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return (f"{type(self).__name__}({len(self.params)} parameters, lr={self.schedule!r}"
                f"{', ' + hp if hp else ''}, step_count={self.step_count})")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    For each parameter ``p`` with gradient ``g`` (PyTorch's ``torch.optim.SGD``)::

        g <- g + weight_decay * p                  (L2 penalty, if weight_decay > 0)
        b <- momentum * b + g                      (velocity; b starts at 0, so b_1 = g_1)
        g <- g + momentum * b   if nesterov        (look one step ahead)
             b                  otherwise
        p <- p - lr * g

    With ``momentum=0`` this is the plain rule ``p <- p - lr * g`` and no state is kept.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        self._set_hyperparameters({"momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov})
        super().__init__(params, lr)

    def _active_state_names(self) -> tuple:
        return self.state_names if self.momentum != 0.0 else ()

    def hyperparameters(self) -> dict:
        return {"momentum": self.momentum, "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _set_hyperparameters(self, hp: dict) -> None:
        unknown = set(hp) - {"momentum", "weight_decay", "nesterov"}
        if unknown:
            raise ValueError(f"unknown SGD hyper-parameters: {sorted(unknown)}")
        momentum = _check_number("momentum", hp.get("momentum", 0.0), minimum=0.0)
        weight_decay = _check_number("weight_decay", hp.get("weight_decay", 0.0), minimum=0.0)
        nesterov = bool(hp.get("nesterov", False))
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def _update(self, p, state, lr):
        xp = backend.get_array_module(p.data)
        g = p.grad
        if self.weight_decay != 0.0:
            g = xp.multiply(p.data, self.weight_decay)      # a new array: p.grad itself is left alone
            g += p.grad
        if self.momentum != 0.0:
            b = state["momentum_buffer"]
            b *= self.momentum
            b += g
            g = g + self.momentum * b if self.nesterov else b
        p.data -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction and L2 weight decay in the gradient.

    At step ``t = 1, 2, ...``, for each parameter ``p`` with gradient ``g``
    (PyTorch's ``torch.optim.Adam``)::

        g <- g + weight_decay * p                        (L2 penalty, if weight_decay > 0)
        m <- beta1 * m + (1 - beta1) * g                 (running mean of g,     m_0 = 0)
        v <- beta2 * v + (1 - beta2) * g * g             (running mean of g**2,  v_0 = 0)
        m_hat = m / (1 - beta1**t)                       (undo the pull towards the zero start)
        v_hat = v / (1 - beta2**t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    Each coordinate moves by about ``lr`` at most, whatever the scale of its gradient.
    The code folds the bias corrections into two scalars, so one temporary array per
    parameter is enough::

        p <- p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    With an L2 penalty, Adam's per-coordinate scaling rescales the decay too;
    :class:`AdamW` decouples the two.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    #: False: weight decay is an L2 term in the gradient (Adam); True: p *= 1 - lr*wd (AdamW)
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self._set_hyperparameters({"betas": betas, "eps": eps, "weight_decay": weight_decay})
        super().__init__(params, lr)

    def hyperparameters(self) -> dict:
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _set_hyperparameters(self, hp: dict) -> None:
        unknown = set(hp) - {"betas", "eps", "weight_decay"}
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} hyper-parameters: {sorted(unknown)}")
        betas = hp["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = _check_number("betas[0]", betas[0], minimum=0.0, maximum=1.0, max_strict=True)
        b2 = _check_number("betas[1]", betas[1], minimum=0.0, maximum=1.0, max_strict=True)
        eps = _check_number("eps", hp["eps"], minimum=0.0)
        weight_decay = _check_number("weight_decay", hp["weight_decay"], minimum=0.0)
        self.betas, self.eps, self.weight_decay = (b1, b2), eps, weight_decay

    def _update(self, p, state, lr):
        xp = backend.get_array_module(p.data)
        b1, b2 = self.betas
        t = self.step_count + 1
        g = p.grad
        if self.weight_decay != 0.0:
            if self.decoupled_weight_decay:
                p.data *= 1.0 - lr * self.weight_decay      # AdamW: shrink p itself
            else:
                g = xp.multiply(p.data, self.weight_decay)  # Adam: L2 term, p.grad left alone
                g += p.grad

        m, v = state["exp_avg"], state["exp_avg_sq"]
        tmp = xp.multiply(g, 1.0 - b1)        # the one temporary array of this update
        m *= b1
        m += tmp                              # m = b1 m + (1 - b1) g
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp                              # v = b2 v + (1 - b2) g^2

        step_size = lr / (1.0 - b1 ** t)
        bias_correction2_sqrt = math.sqrt(1.0 - b2 ** t)
        xp.sqrt(v, out=tmp)
        tmp /= bias_correction2_sqrt
        tmp += self.eps                       # tmp = sqrt(v_hat) + eps
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        p.data -= tmp                         # p = p - lr m_hat / (sqrt(v_hat) + eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Before the Adam update (run without an L2 term), the parameter itself is shrunk
    (PyTorch's ``torch.optim.AdamW``)::

        p <- p - lr * weight_decay * p      i.e.  p *= 1 - lr * weight_decay

    then ``m``, ``v`` and ``p`` are updated exactly as in :class:`Adam`. The decay is the
    same for every coordinate instead of being rescaled by ``1 / sqrt(v_hat)`` as Adam's
    L2 term is. ``lr`` is the scheduled rate of this step.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay)


#: class name → optimiser class, for :func:`optimizer_from_state_dict`.
OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW)}


def optimizer_from_state_dict(params, d: dict, lr=None) -> Optimizer:
    """Build the optimiser described by a :meth:`Optimizer.state_dict` and load its state.

    ``lr`` is only needed when the saved schedule was a plain callable (saved as ``None``).
    """
    if d.get("type") not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer type {d.get('type')!r}: expected one of {', '.join(OPTIMIZERS)}")
    if d.get("schedule") is not None:
        lr = schedule_from_dict(d["schedule"])
    elif lr is None:
        raise ValueError("the saved optimizer used a custom learning-rate callable; pass it as lr=")
    hp = dict(d.get("hyperparameters", {}))
    if "betas" in hp:
        hp["betas"] = tuple(hp["betas"])
    optimizer = OPTIMIZERS[d["type"]](params, lr, **hp)
    optimizer.load_state_dict(d)
    return optimizer
