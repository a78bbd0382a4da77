"""Optimisers: the update rules SGD (with momentum), Adam and AdamW, each written as its equations.

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

This module holds the rules: each class lists its equations in its docstring, and its
``_update(p, state, lr)`` computes them for one parameter, each equation as a comment above
the lines that compute it. Around them, in their own modules and importable from here too:

* :mod:`~minitransformer.optim_state`: the base class :class:`Optimizer`, which keeps the
  per-parameter state, calls ``_update`` for every parameter, and saves and loads the state;
* :mod:`~minitransformer.schedules`: the learning-rate schedules (``lr`` is a number or a
  schedule ``step -> lr``) and :func:`clip_grad_norm`.

Three rules keep the code fast and correct on both backends:

* **Updates are in place** (``m *= b1``, ``p.data -= ...``): no new arrays for the state or
  the parameters, so anything holding a view of ``p.data`` stays valid, and a large model
  does not allocate a second copy of itself at every step.
* **Scalars stay Python floats.** Under NumPy 2's promotion rules a Python float times a
  float32 array is float32; an ``np.float64`` scalar would silently upcast the update.
* **The state lives where the parameters live**: same backend (NumPy or CuPy) and dtype.

The update rules follow PyTorch's ``torch.optim`` exactly (the tests compare them step by
step in float64), so what students learn here carries over.
"""
from __future__ import annotations

import math

from . import backend, gpu
from .fast import fused
from .optim_state import Optimizer
from .schedules import (SCHEDULES, ConstantSchedule, NoamSchedule, Schedule,  # noqa: F401  (importable from here)
                        WarmupCosineSchedule, clip_grad_norm, schedule_from_dict)
from .validation import check_number

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm",
    "Schedule", "ConstantSchedule", "NoamSchedule", "WarmupCosineSchedule",
    "schedule_from_dict", "optimizer_from_state_dict", "OPTIMIZERS", "SCHEDULES",
]


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

    def _update(self, p, state, lr):
        """The equations above, for one parameter, in place."""
        xp = backend.get_array_module(p.data)
        g = p.grad
        if self.weight_decay != 0.0:
            # g <- g + weight_decay * p          (a new array: p.grad itself is left alone)
            g = xp.multiply(p.data, self.weight_decay)
            g += p.grad
        if self.momentum != 0.0:
            # b <- momentum * b + g
            b = state["momentum_buffer"]
            b *= self.momentum
            b += g
            # g <- g + momentum * b   if nesterov, else   g <- b
            g = g + self.momentum * b if self.nesterov else b
        # p <- p - lr * g
        p.data -= lr * g

    def _active_state_names(self) -> tuple:
        return self.state_names if self.momentum != 0.0 else ()

    def hyperparameters(self) -> dict:
        return {"momentum": self.momentum, "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _set_hyperparameters(self, hp: dict) -> None:
        unknown = set(hp) - {"momentum", "weight_decay", "nesterov"}
        if unknown:
            raise ValueError(f"unknown SGD hyper-parameters: {sorted(unknown)}")
        momentum = check_number("momentum", hp.get("momentum", 0.0), minimum=0.0)
        weight_decay = check_number("weight_decay", hp.get("weight_decay", 0.0), minimum=0.0)
        nesterov = bool(hp.get("nesterov", False))
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov


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

    With the fused kernels switched on (:func:`minitransformer.gpu.use_fused_kernels`), a
    parameter on a device is updated by one kernel, :func:`fast.fused.adam_update`, which
    computes these lines operation for operation.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    #: False: weight decay is an L2 term in the gradient (Adam); True: p *= 1 - lr*wd (AdamW)
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self._set_hyperparameters({"betas": betas, "eps": eps, "weight_decay": weight_decay})
        super().__init__(params, lr)

    def _update(self, p, state, lr):
        """The equations above, for one parameter, in place."""
        if gpu.fused_kernels_active(p.data):   # the lines below in one GPU kernel
            return self._fused_update(p, state, lr)
        xp = backend.get_array_module(p.data)
        b1, b2 = self.betas
        t = self.step_count + 1
        g = p.grad
        if self.weight_decay != 0.0 and self.decoupled_weight_decay:
            # AdamW:  p <- p - lr * weight_decay * p
            p.data *= 1.0 - lr * self.weight_decay
        elif self.weight_decay != 0.0:
            # Adam:   g <- g + weight_decay * p          (a new array: p.grad itself is left alone)
            g = xp.multiply(p.data, self.weight_decay)
            g += p.grad
        m, v = state["exp_avg"], state["exp_avg_sq"]

        # m <- beta1 * m + (1 - beta1) * g
        tmp = xp.multiply(g, 1.0 - b1)        # the one temporary array of this update
        m *= b1
        m += tmp
        # v <- beta2 * v + (1 - beta2) * g * g
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp
        # p <- p - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1**t),  v_hat = v / (1 - beta2**t)
        #    = p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
        step_size = lr / (1.0 - b1 ** t)
        xp.sqrt(v, out=tmp)
        tmp /= math.sqrt(1.0 - b2 ** t)
        tmp += self.eps
        xp.divide(m, tmp, out=tmp)
        tmp *= step_size
        p.data -= tmp

    def _fused_update(self, p, state, lr):
        """:meth:`_update` as one kernel (:func:`fast.fused.adam_update`), the same numbers."""
        b1, b2 = self.betas
        t = self.step_count + 1
        decoupled = self.weight_decay != 0.0 and self.decoupled_weight_decay
        coupled = self.weight_decay != 0.0 and not self.decoupled_weight_decay
        fused.adam_update(p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], betas=self.betas, eps=self.eps,
                          step_size=lr / (1.0 - b1 ** t), bias2_sqrt=math.sqrt(1.0 - b2 ** t),
                          decay=1.0 - lr * self.weight_decay if decoupled else 1.0,
                          l2=self.weight_decay if coupled else 0.0)

    def hyperparameters(self) -> dict:
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _set_hyperparameters(self, hp: dict) -> None:
        unknown = set(hp) - {"betas", "eps", "weight_decay"}
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} hyper-parameters: {sorted(unknown)}")
        betas = hp["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = check_number("betas[0]", betas[0], minimum=0.0, maximum=1.0, max_strict=True)
        b2 = check_number("betas[1]", betas[1], minimum=0.0, maximum=1.0, max_strict=True)
        eps = check_number("eps", hp["eps"], minimum=0.0)
        weight_decay = check_number("weight_decay", hp["weight_decay"], minimum=0.0)
        self.betas, self.eps, self.weight_decay = (b1, b2), eps, weight_decay


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
