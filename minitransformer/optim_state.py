"""The optimiser's state: per-parameter buffers, the step count, the schedule; saved and loaded.

:class:`Optimizer` is the base class of every update rule in :mod:`~minitransformer.optim`.
It holds what a rule needs besides its equations: the parameters, one dict of state
arrays per parameter (zeros shaped like it, e.g. Adam's ``exp_avg``), the step count and
the learning-rate schedule. :meth:`Optimizer.step` walks the parameters and calls the
rule's ``_update(p, state, lr)`` once for each.

The rest of the class is bookkeeping that the equations never see: the state follows its
parameter to another backend or dtype, and :meth:`Optimizer.state_dict` /
:meth:`Optimizer.load_state_dict` save and restore all of it (a checkpoint stores the
arrays in the ``.npz`` and the rest as JSON; see :mod:`~minitransformer.checkpoint`).
"""
from __future__ import annotations

import numpy as np

from . import backend
from .module import Parameter
from .schedules import as_schedule, schedule_from_dict

__all__ = ["Optimizer"]


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
        self.schedule = as_schedule(lr)
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
