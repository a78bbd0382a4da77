"""Parameters and the Module base class.

A :class:`Parameter` is an array (``data``) and the gradient of the loss with respect to
it (``grad``), of the same shape, dtype and backend. A :class:`Module` owns parameters and
child modules as plain attributes and finds them by walking its own ``__dict__`` in the
order they were assigned, so ``named_parameters()`` needs no registration calls.

Every module's ``backward`` **adds** into ``param.grad``; it never assigns. A parameter
used in several places (a tied embedding, say) then receives the sum of its gradients,
and ``zero_grad()`` is what starts a new step.

Every module runs its math on one of two paths (its ``math_path``): ``"fast"``, the
default, calls :mod:`minitransformer.fast`; ``"reference"`` calls the textbook functions of
:mod:`minitransformer.functional`, the code the docs quote, which a debugger steps into.
The numbers are the same to rounding. ``model.use_math("reference")`` switches a model
and all its layers; ``MINITRANSFORMER_MATH=reference`` makes it the default of every
module built while it is set.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from . import backend


class Parameter:
    """A trainable array and its gradient."""

    def __init__(self, data):
        self.data = data
        self.grad = backend.get_array_module(data).zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


#: The two paths through the math (see the module docstring), and the variable that picks
#: the default of modules being built.
MATH_PATHS = ("fast", "reference")
MATH_ENV_VAR = "MINITRANSFORMER_MATH"


def default_math_path() -> str:
    """``$MINITRANSFORMER_MATH`` if set ("fast" or "reference"), else "fast"."""
    value = os.environ.get(MATH_ENV_VAR, "").strip().lower() or "fast"
    if value not in MATH_PATHS:
        raise ValueError(f"{MATH_ENV_VAR}={os.environ[MATH_ENV_VAR]!r} is not a path through the math; "
                         f"set it to 'fast' or 'reference', or unset it")
    return value


class NonFiniteStateError(ValueError):
    """A state dict holds NaN or infinite values: the arrays fit the model, the numbers do not.
    ``names``: the parameters that hold them."""

    def __init__(self, names):
        self.names = list(names)
        super().__init__(f"state dict holds NaN or infinite values in {', '.join(self.names)}")


class Module:
    """Base class: owns parameters and child modules, switches train/eval and the path
    through the math, moves backends."""

    training: bool = True

    def __new__(cls, *args, **kwargs):
        # set here, so that every module has it without calling Module.__init__
        module = super().__new__(cls)
        module.math_path = default_math_path()
        return module

    # -- discovery -----------------------------------------------------------------
    def named_children(self):
        """(name, module) for each direct child, in assignment order."""
        for name, value in self.__dict__.items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = ""):
        """(name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) for every parameter, each shared one only once."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, value in module.__dict__.items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # -- gradients and modes -------------------------------------------------------
    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def clear_caches(self) -> "Module":
        """Drop what the last forward pass kept for the backward pass, in this module and
        every descendant: each attribute whose name ends in ``_cache`` becomes None.

        A layer's ``forward`` keeps its cache (``self._cache``; the Transformer's output
        layer ``self._out_cache``) until ``backward`` reads it; clearing frees those arrays
        (after an evaluation pass, say) and leaves nothing for a copy of the model to copy.
        A ``backward`` then needs a new ``forward`` first."""
        for _, module in self.named_modules():
            for name in [n for n, value in module.__dict__.items() if n.endswith("_cache") and value is not None]:
                setattr(module, name, None)
        return self

    def use_math(self, path: str) -> "Module":
        """Run this module and every descendant on ``path``: "fast" (the default) or
        "reference" (the textbook functions of :mod:`minitransformer.functional`, to read
        or step through in a debugger). A backward pass runs the path its forward ran."""
        if path not in MATH_PATHS:
            raise ValueError(f"unknown math path {path!r}: use 'fast' or 'reference'")
        for _, module in self.named_modules():
            module.math_path = path
        return self

    # -- where the numbers live ----------------------------------------------------
    @property
    def backend_name(self) -> str:
        params = self.parameters()
        return backend.get_array_module_name(params[0].data) if params else "numpy"

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].data.dtype if params else np.dtype(backend.DEFAULT_DTYPE)

    def to(self, backend_name: str | None = None, dtype=None) -> "Module":
        """Move every parameter (and gradient) to a backend and/or dtype, in place.

        ``model.to("cupy")`` moves to the GPU; ``model.to(dtype=np.float64)`` is how a
        gradient check gets a float64 model. Modules keeping arrays of their own (such
        as a positional-encoding table) move them in :meth:`_move_buffers`.
        """
        if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"a model's dtype must be float32 (training) or float64 (gradient checks), "
                             f"got {np.dtype(dtype).name}")
        name = backend.resolve_backend_name(backend_name or self.backend_name)
        xp = backend.get_backend(name)
        memo = {}  # objects shared by several modules (a dropout generator) move once
        for _, module in self.named_modules():
            for attr, value in list(module.__dict__.items()):
                if isinstance(value, Parameter):
                    new_dtype = dtype if dtype is not None else value.data.dtype
                    value.data = backend.asarray(value.data, name, new_dtype)
                    value.grad = xp.zeros_like(value.data)
            module._move_buffers(name, dtype, memo)
        config = getattr(self, "config", None)
        if dtype is not None and isinstance(getattr(config, "dtype", None), str):
            config.dtype = np.dtype(dtype).name   # what a checkpoint saves says what the model is
        return self

    def astype(self, dtype) -> "Module":
        return self.to(None, dtype)

    def _move_buffers(self, backend_name: str, dtype, memo: dict) -> None:
        """Hook for modules holding non-parameter arrays or generators; called by :meth:`to`.

        ``memo`` maps ``id(old object)`` to its moved copy, so that an object shared by
        several modules is still shared after the move."""

    # -- saving --------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Name → host (NumPy) copy of every parameter."""
        return OrderedDict((name, backend.to_numpy(p.data).copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters of the same names (converted to this model's
        backend and dtype). Mismatched names or shapes raise ``ValueError`` listing them."""
        params = dict(self.named_parameters())
        missing = [n for n in params if n not in state]
        unexpected = [n for n in state if n not in params]
        if strict and (missing or unexpected):
            raise ValueError(
                "state dict does not match the model: "
                f"missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}")
        bad_shapes = [f"{n}: model {tuple(params[n].shape)} vs saved {tuple(np.shape(state[n]))}"
                      for n in params if n in state and tuple(np.shape(state[n])) != tuple(params[n].shape)]
        if bad_shapes:
            raise ValueError("state dict shapes do not match the model: " + "; ".join(bad_shapes))
        not_finite = [n for n in params if n in state and not np.isfinite(backend.to_numpy(state[n])).all()]
        if not_finite:   # a diverged model would load and silently predict nothing
            raise NonFiniteStateError(not_finite)
        name = self.backend_name
        for n, p in params.items():
            if n in state:
                p.data = backend.asarray(state[n], name, p.data.dtype).copy()
                p.grad = backend.get_array_module(p.data).zeros_like(p.data)

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in children:
            lines.append("  (" + name + "): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"

    def extra_repr(self) -> str:
        return ""


class ModuleList(Module):
    """An ordered list of modules (the layers of an encoder, say), registered as children."""

    def __init__(self, modules=()):
        modules = list(modules)
        for i, module in enumerate(modules):
            setattr(self, str(i), module)
        self._len = len(modules)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> Module:
        if i < 0:
            i += self._len
        return getattr(self, str(i))

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._len))
