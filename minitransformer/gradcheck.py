"""Gradient checking: compare a hand-written backward pass with finite differences.

For any layer, pick a fixed random array R of the output's shape and look at the scalar

    L(x, theta) = sum(forward(x; theta) * R).

Its gradient with respect to the output is exactly R, so ``backward(R)`` must return dL/dx
and fill dL/dtheta. Finite differences measure the same numbers without any calculus:

    dL/dx_i  ~=  (L(x + h e_i) - L(x - h e_i)) / (2h),

with an error of order h^2 (the central difference cancels the h^1 term) plus the
round-off of subtracting two nearly equal numbers, of order 1e-16 / h. In float64 with
h = 1e-5 both are far below the size of any real mistake, which shows up as a relative
error of 1e-3 or worse where a correct backward pass gives about 1e-9. See
:func:`relative_error` for how the error is measured: the worst entry counts, so one
wrong entry among thousands is not averaged away.

Use :func:`check_module` for a layer (it checks every float input and every parameter) and
:func:`check_function` for a pure forward/backward pair from :mod:`functional`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import get_array_module, to_numpy

DEFAULT_STEP = 1e-5


def relative_error(analytic, numeric, floor=1e-12) -> float:
    """Relative error of two gradient arrays, measured on the scale of the whole array:

        max_i |a_i - n_i| / max(max_i |a_i|, max_i |n_i|)

    This is CS231n's |a - n| / max(|a|, |n|) with the magnitudes taken over the array
    (the max-norm) instead of entry by entry. Entry by entry, the ratio divides the
    round-off noise of a finite difference (about 1e-10) by an exact zero whenever a true
    gradient entry is 0, and reports 1e-2 for a correct backward pass: the key bias of
    attention is the textbook case, since adding the same number to every score of a row
    leaves the softmax unchanged and its gradient is identically zero. Measured on the
    array's own scale, a wrong entry still shows up at once: it is off by a sizeable
    fraction of the gradient, where a correct pass stays near 1e-9.
    """
    a = to_numpy(analytic).astype(np.float64).reshape(-1)
    n = to_numpy(numeric).astype(np.float64).reshape(-1)
    if a.shape != n.shape:
        raise ValueError(f"gradient shapes differ: analytic {a.shape}, numeric {n.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(n).max(), floor)
    return float(np.abs(a - n).max() / scale)


def numerical_gradient(loss_fn, x, h=DEFAULT_STEP, indices=None):
    """Central differences of ``loss_fn()`` (a scalar) with respect to the array ``x``.

    ``x`` is perturbed *in place* one entry at a time and restored afterwards, so
    ``loss_fn`` must read ``x`` itself (a parameter's data, or an input it closes over).
    ``indices`` (flat positions) limits the check to a sample of entries; the others are
    left at 0 in the result.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient perturbs x in place and needs a C-contiguous array; "
                         "pass an array made with ascontiguousarray(...)")
    flat_x = x.reshape(-1)  # a view of a contiguous array: writes go to x
    positions = range(x.size) if indices is None else indices
    flat_grad = grad.reshape(-1)
    for i in positions:
        old = float(flat_x[i])
        flat_x[i] = old + h
        plus = float(loss_fn())
        flat_x[i] = old - h
        minus = float(loss_fn())
        flat_x[i] = old
        flat_grad[i] = (plus - minus) / (2.0 * h)
    return grad


@dataclass
class GradCheckReport:
    """Relative error per checked input and parameter (name -> error)."""

    errors: dict = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        return max(self.errors.values()) if self.errors else 0.0

    def ok(self, tol=1e-7) -> bool:
        """True when every checked gradient is within ``tol``; False for a report that checked
        nothing (a check that looked at no gradient proves nothing)."""
        return bool(self.errors) and self.max_error <= tol

    def assert_ok(self, tol=1e-7) -> "GradCheckReport":
        if not self.errors:
            raise AssertionError("gradient check checked nothing: no float input and no parameter")
        if not self.ok(tol):
            bad = {k: v for k, v in self.errors.items() if v > tol}
            raise AssertionError(f"gradient check failed (tolerance {tol:g}): {bad}\n{self}")
        return self

    def __str__(self) -> str:
        width = max([4] + [len(k) for k in self.errors])
        lines = [f"{'name':<{width}}  relative error"]
        lines += [f"{k:<{width}}  {v:.2e}" for k, v in self.errors.items()]
        return "\n".join(lines)


def _require_float64(arrays, what):
    for name, a in arrays:
        if a.dtype != np.float64:
            raise ValueError(f"gradient checks need float64 (finite differences in float32 are "
                             f"too coarse): {what} {name!r} is {a.dtype}; convert with "
                             f".astype(np.float64) or module.to(dtype=np.float64)")


def _require_something_to_check(n_checked, what):
    if n_checked == 0:
        raise ValueError(f"nothing to check: {what} has no float input and no parameter, so there is "
                         f"no gradient to compare (give float64 inputs, or check a module with parameters)")


def _require_deterministic(first, second, what):
    """Finite differences compare forward passes; if two passes on the same input differ
    (dropout in training mode, an unseeded generator), the differences measure the noise."""
    if not np.array_equal(to_numpy(first), to_numpy(second)):
        raise ValueError(f"{what} gives different outputs for the same input (dropout in training mode?); "
                         f"finite differences need a deterministic forward pass: call .eval(), or reseed "
                         f"the dropout generator before every forward pass")


def _sample(size, max_elements, rng):
    if max_elements is None or size <= max_elements:
        return None
    return rng.choice(size, max_elements, replace=False)


def _as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


def check_function(forward, backward, inputs, *, h=DEFAULT_STEP, seed=0, max_elements=None):
    """Check a pure pair: ``forward(*inputs) -> (out, cache)``, ``backward(dout, cache) -> grads``.

    ``inputs`` is a dict name -> array; float inputs are checked in the order given, and
    ``backward`` must return one gradient per float input, in the same order (extra
    trailing values are ignored). ``forward`` must be deterministic (seed any dropout
    inside it).
    """
    rng = np.random.default_rng(seed)
    names = list(inputs)
    values = [inputs[n] for n in names]
    float_names = [n for n in names if np.issubdtype(inputs[n].dtype, np.floating)]
    _require_float64([(n, inputs[n]) for n in float_names], "input")
    _require_something_to_check(len(float_names), "the function")
    out, cache = forward(*values)
    _require_deterministic(out, forward(*values)[0], "the forward function")
    xp = get_array_module(out)
    weights = xp.asarray(rng.standard_normal(out.shape))
    analytic = _as_tuple(backward(weights, cache))

    def loss():
        return (forward(*values)[0] * weights).sum()

    report = GradCheckReport()
    for name, grad in zip(float_names, analytic):
        idx = _sample(inputs[name].size, max_elements, rng)
        numeric = numerical_gradient(loss, inputs[name], h, idx)
        a = to_numpy(grad).reshape(-1) if idx is None else to_numpy(grad).reshape(-1)[idx]
        n = numeric.reshape(-1) if idx is None else numeric.reshape(-1)[idx]
        report.errors[name] = relative_error(a, n)
    return report


def check_module(module, *inputs, h=DEFAULT_STEP, seed=0, max_elements=None, **forward_kwargs):
    """Check a module's ``backward`` against finite differences, inputs and parameters.

    ``module.forward(*inputs, **forward_kwargs)`` must return one array;
    ``module.backward(dout)`` must return the gradient of each float input, in order
    (a tuple when there are several; ``None`` where an input receives no gradient), and
    add parameter gradients into ``param.grad``. The module and the float inputs must be
    float64, and dropout must be off (``module.eval()``), since finite differences need a
    deterministic forward pass. Returns a :class:`GradCheckReport` with entries
    ``input[i]`` and one per parameter name.
    """
    rng = np.random.default_rng(seed)
    params = list(module.named_parameters())
    _require_float64([(n, p.data) for n, p in params], "parameter")
    float_inputs = [(i, x) for i, x in enumerate(inputs)
                    if hasattr(x, "dtype") and np.issubdtype(x.dtype, np.floating)]
    _require_float64([(f"input[{i}]", x) for i, x in float_inputs], "input")
    _require_something_to_check(len(float_inputs) + len(params), type(module).__name__)

    out = module.forward(*inputs, **forward_kwargs)
    _require_deterministic(out, module.forward(*inputs, **forward_kwargs), type(module).__name__)
    xp = get_array_module(out)
    weights = xp.asarray(rng.standard_normal(out.shape))
    module.zero_grad()
    module.forward(*inputs, **forward_kwargs)
    input_grads = _as_tuple(module.backward(weights))
    param_grads = {n: p.grad.copy() for n, p in params}

    def loss():
        return (module.forward(*inputs, **forward_kwargs) * weights).sum()

    report = GradCheckReport()
    for k, (i, x) in enumerate(float_inputs):
        grad = input_grads[k] if k < len(input_grads) else None
        if grad is None:
            raise ValueError(f"backward returned no gradient for float input {i}")
        idx = _sample(x.size, max_elements, rng)
        numeric = numerical_gradient(loss, x, h, idx)
        a = to_numpy(grad).reshape(-1)
        report.errors[f"input[{i}]"] = relative_error(a if idx is None else a[idx],
                                                      numeric.reshape(-1) if idx is None else numeric.reshape(-1)[idx])
    for name, p in params:
        idx = _sample(p.size, max_elements, rng)
        numeric = numerical_gradient(loss, p.data, h, idx)
        a = to_numpy(param_grads[name]).reshape(-1)
        report.errors[name] = relative_error(a if idx is None else a[idx],
                                             numeric.reshape(-1) if idx is None else numeric.reshape(-1)[idx])
    return report
